// Package sqlstore holds what gocap's SQL storages (storage/postgres,
// storage/mysql, storage/sqlite) share, so that each driver keeps only its
// SQL and what its database does differently:
//
//   - text: how headers are encoded ([HeadersJSON]) and text fitted to
//     character columns ([FitChars]); the wrapping of permanent errors
//     ([Permanent]);
//   - the attempt history: the JSON of one attempt that a storage appends
//     in SQL ([AttemptJSON], [FailedAttempt]) and the reading of the
//     attempts column ([DecodeAttempts]); the status a published row is
//     inserted with ([InsertStatus]) and the statuses a claim takes
//     ([PendingStatuses]);
//   - the contract's argument checks ([CheckClaim], [CheckDeleteExpired],
//     [CheckReceivedToken], [HistogramRange], [CheckTx]) and the choice
//     of a table by kind ([Tables]);
//   - the dashboard's list filter ([List]), in either placeholder style;
//   - scanning of message, instance, count and histogram rows ([Rows]),
//     from database/sql and pgx alike, and the read-only queries and
//     error wrapping built on it ([Base]); transactions of database/sql
//     ([InTx], [Execer]);
//   - received messages as InsertReceived and InsertReceivedBatch store
//     them ([ReceivedRow]), a batch de-duplicated and sorted, with its
//     results mapped back to its messages ([ReceivedBatch],
//     [Base.InsertReceivedBatch]);
//   - argument lists of id and lease sets ([Placeholders], [IDArgs],
//     [LeaseArgs], [CompletedArrays], [CompletedLeases]).
package sqlstore

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/gocap/gocap/storage"
)

// HeadersJSON encodes m's headers as a JSON object, {} when nil, for the
// headers column of every SQL storage. Keys and values that are not valid
// UTF-8 or hold NUL characters are stored as storage.ValidText makes them
// (jsonb refuses \u0000, and encoding/json would silently replace invalid
// bytes with U+FFFD). Valid headers, the usual case, are encoded as they
// are, without a copy. Should two keys become equal once made valid, one
// of their values is kept.
func HeadersJSON(m *storage.Message) (string, error) {
	h := m.Headers
	if len(h) == 0 {
		return "{}", nil
	}
	if !validHeaders(h) {
		valid := make(map[string]string, len(h))
		for k, v := range h {
			valid[storage.ValidText(k)] = storage.ValidText(v)
		}
		h = valid
	}
	b, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("encoding headers of message %d: %w", m.ID, err)
	}
	return string(b), nil
}

// validHeaders reports whether every key and value of h is stored as it is.
func validHeaders(h map[string]string) bool {
	for k, v := range h {
		if !isValidText(k) || !isValidText(v) {
			return false
		}
	}
	return true
}

// isValidText reports whether storage.ValidText returns s unchanged.
func isValidText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// truncatedMark ends a text that FitChars cut, as storage.TruncateText
// ends one it cut.
const truncatedMark = "…[truncated]"

// FitChars returns storage.ValidText(s) cut to at most n characters, for
// a column whose size counts characters (MySQL's VARCHAR(n)). A text that
// had to be cut ends with "…[truncated]" (within the n characters), unless
// n is too small for that mark. Text that fits is returned as it is.
func FitChars(s string, n int) string {
	s = storage.ValidText(s)
	if len(s) <= n || utf8.RuneCountInString(s) <= n { // bytes >= characters
		return s
	}
	if n <= 0 {
		return ""
	}
	mark := truncatedMark
	markChars := utf8.RuneCountInString(mark)
	if n < 4*markChars {
		mark, markChars = "", 0
	}
	keep, cut := n-markChars, 0
	for range keep {
		_, size := utf8.DecodeRuneInString(s[cut:])
		cut += size
	}
	return s[:cut] + mark
}

// Permanent wraps err with storage.ErrPermanent, for a storage's error
// classifier: errors.Is(result, storage.ErrPermanent) holds, and err stays
// reachable with errors.Is and errors.As.
func Permanent(err error) error {
	return fmt.Errorf("%w: %w", storage.ErrPermanent, err)
}

// IDTaken wraps err, a driver's report that the id of a message to insert
// is stored already, with storage.ErrIDTaken (and so ErrPermanent).
func IDTaken(err error) error {
	return fmt.Errorf("%w: %w: %w", storage.ErrIDTaken, storage.ErrPermanent, err)
}

// NonNil returns b, or an empty slice for nil, for NOT NULL body columns.
func NonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
