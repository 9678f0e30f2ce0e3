package sqlstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/gocap/gocap/storage"
)

// The attempts column of every SQL storage holds a row's attempt history
// (storage.Message.Attempts) as a JSON array, oldest first, of objects
// with short field names:
//
//	{"at": "2026-03-15T15:09:26.123456Z", "ms": 12.345, "err": "broker said no"}
//
// at is when the attempt started (RFC 3339, UTC), ms how long it took in
// milliseconds with microsecond decimals, err its error text (left out
// for an attempt that succeeded). A storage appends one object per
// Succeed or Fail in SQL, in the statement that records the outcome, and
// keeps the last storage.MaxAttemptHistory.
type attemptJSON struct {
	At  string  `json:"at"`
	Ms  float64 `json:"ms"`
	Err string  `json:"err,omitempty"`
}

// AttemptJSON encodes a as the JSON object that a storage appends to the
// attempts column. Its error is made valid text and cut to
// storage.MaxAttemptErrorBytes (storage.TruncateText).
func AttemptJSON(a storage.Attempt) string {
	v := attemptJSON{
		At:  a.At.UTC().Format(time.RFC3339Nano),
		Ms:  float64(a.Duration.Microseconds()) / 1000,
		Err: storage.TruncateText(a.Error, storage.MaxAttemptErrorBytes),
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<" stays one byte, not six
	if err := enc.Encode(v); err != nil {
		// Cannot happen: every field is a valid string or a finite number.
		panic(fmt.Sprintf("sqlstore: encoding an attempt: %v", err))
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

// FailedAttempt is the attempt that storage.Store.Fail appends for f:
// f.Attempt, with f.Error as its error and f.Now as its start when it
// has none.
func FailedAttempt(f storage.Failure) storage.Attempt {
	a := f.Attempt
	if a.Error == "" {
		a.Error = f.Error
	}
	if a.At.IsZero() {
		a.At = f.Now
	}
	return a
}

// AttemptJSONs encodes the attempt of each of done, in order, with
// AttemptJSON.
func AttemptJSONs(done []storage.Completed) []string {
	out := make([]string, len(done))
	for i, c := range done {
		out[i] = AttemptJSON(c.Attempt)
	}
	return out
}

// DecodeAttempts reads the attempts column of row id; empty text (a
// column a storage could not fill) is no attempts.
func DecodeAttempts(id int64, text []byte) ([]storage.Attempt, error) {
	if len(bytes.TrimSpace(text)) == 0 {
		return nil, nil
	}
	var raw []attemptJSON
	if err := json.Unmarshal(text, &raw); err != nil {
		return nil, fmt.Errorf("decoding attempts of message %d: %w", id, err)
	}
	if len(raw) == 0 {
		return nil, nil
	}
	out := make([]storage.Attempt, len(raw))
	for i, r := range raw {
		at, err := time.Parse(time.RFC3339Nano, r.At)
		if err != nil {
			return nil, fmt.Errorf("decoding attempt %d of message %d: %w", i, id, err)
		}
		out[i] = storage.Attempt{
			At:       at.UTC(),
			Duration: time.Duration(math.Round(r.Ms*1000)) * time.Microsecond,
			Error:    r.Err,
		}
	}
	return out, nil
}

// LastAttemptsFrom is the index, counted back from the last element, of
// the oldest attempt a history keeps: "last-19" for 20 attempts, in the
// array subscripts of SQL/JSON paths.
var LastAttemptsFrom = "last-" + strconv.Itoa(storage.MaxAttemptHistory-1)

// InsertStatus is the status a published row is inserted with:
// storage.StatusDelayed for a Delayed message, else storage.StatusScheduled.
func InsertStatus(m *storage.Message) string {
	if m.Status == storage.StatusDelayed {
		return string(storage.StatusDelayed)
	}
	return string(storage.StatusScheduled)
}

// PendingStatuses is the SQL list of the statuses a claim takes and
// NextDue looks at, for "status IN (" + PendingStatuses + ")": the
// predicate of the partial due index of PostgreSQL and SQLite, which a
// query must repeat as it is for the planner to use that index.
const PendingStatuses = `'Scheduled', 'Delayed'`

// HoldingStatuses is the SQL list of the statuses of a row that holds
// its ordering key (#18): the pending ones, and Failed when failedHolds
// (the "block" policy; see storage.ClaimRequest.FailedHoldsKey).
func HoldingStatuses(failedHolds bool) string {
	if failedHolds {
		return PendingStatuses + `, 'Failed'`
	}
	return PendingStatuses
}
