package sqlstore

import (
	"time"

	"github.com/gocap/gocap/storage"
)

// FailBatchArrays are the columns of a storage.FailBatcher.FailBatch, one
// element per row, in order: what a driver binds as arrays (PostgreSQL)
// or as the rows of a derived table (MySQL). Errors are cut to maxError
// bytes on a character boundary, as Fail cuts them; attempts are encoded
// with AttemptJSON(FailedAttempt(...)).
type FailBatchArrays struct {
	IDs, Tokens []int64
	Errors      []string
	MaxAttempts []int32
	Permanent   []bool
	ExpiresAt   []time.Time
	Next        []time.Time
	Attempts    []string
}

// FailBatchColumns splits rows into FailBatchArrays, times in UTC.
func FailBatchColumns(rows []storage.FailedAttempt, maxError int) FailBatchArrays {
	n := len(rows)
	a := FailBatchArrays{
		IDs: make([]int64, n), Tokens: make([]int64, n), Errors: make([]string, n),
		MaxAttempts: make([]int32, n), Permanent: make([]bool, n),
		ExpiresAt: make([]time.Time, n), Next: make([]time.Time, n), Attempts: make([]string, n),
	}
	for i, r := range rows {
		f := r.Failure
		a.IDs[i], a.Tokens[i] = r.ID, r.Token
		a.Errors[i] = storage.TruncateText(f.Error, maxError)
		a.MaxAttempts[i] = clampInt32(f.MaxAttempts)
		a.Permanent[i] = f.Permanent
		a.ExpiresAt[i], a.Next[i] = f.ExpiresAt.UTC(), f.NextAttemptAt.UTC()
		a.Attempts[i] = AttemptJSON(FailedAttempt(f))
	}
	return a
}

// clampInt32 bounds a MaxAttempts to an SQL integer: any value beyond
// is as good as no limit reached.
func clampInt32(n int) int32 {
	const hi, lo = 1<<31 - 1, -1 << 31
	return int32(min(max(n, lo), hi))
}

// FailOutcomes returns the outcome of each row of a FailBatch, in order,
// from the rows it recorded (by id): a row not recorded lost its lease.
func FailOutcomes(ids []int64, recorded map[int64]storage.FailResult) []storage.FailOutcome {
	out := make([]storage.FailOutcome, len(ids))
	for i, id := range ids {
		if r, ok := recorded[id]; ok {
			out[i].FailResult = r
		} else {
			out[i].LeaseLost = true
		}
	}
	return out
}
