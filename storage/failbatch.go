package storage

import (
	"context"
	"fmt"
)

// FailBatcher is implemented by a Store that records many failed attempts
// in one round trip (issue #14): the processor gathers the failures of
// its attempts for a moment, as it gathers successes for
// [Store.Succeed], and records them with one FailBatch call instead of
// one [Store.Fail] per row. A processor falls back to Fail per row for a
// Store without it; the conformance suite checks it when a Store has it.
type FailBatcher interface {
	// FailBatch records the failed attempt of each leased row of rows as
	// Fail records one, with the same semantics row by row: for a row
	// still held under its lease (Scheduled, with its LeaseToken), the
	// retry count is incremented in SQL, LastError set to the failure's
	// Error (cut as Fail cuts it), its Attempt appended to the row's
	// history (with the failure's Error and Now when it has none), the
	// lease cleared, and the row becomes Failed (with its ExpiresAt) if
	// the failure is Permanent or the new retry count reaches its
	// MaxAttempts, else it stays Scheduled, due at its NextAttemptAt.
	//
	// It returns one outcome per row, in the order of rows. A row whose
	// lease no longer matches, or that is no longer Scheduled, is left
	// alone, and its outcome has LeaseLost set: where Fail returns
	// ErrLeaseLost for one row, FailBatch reports it per row and records
	// the others (it is no error of the call).
	//
	// The batch is written in one statement or one transaction: when it
	// returns an error nothing is recorded, whatever the row, and the
	// caller may retry it as a whole (a transient error) or row by row
	// with Fail (an error wrapping ErrPermanent: the database refused a
	// value of one of the rows, typically its error text). The rows must
	// be of distinct ids (FailBatchIDs checks it); an empty batch records
	// nothing and returns no outcome.
	FailBatch(ctx context.Context, kind Kind, rows []FailedAttempt) ([]FailOutcome, error)
}

// FailedAttempt is one row of [FailBatcher.FailBatch]: the lease under
// which the row was attempted, and the failure to record, as
// [Store.Fail] takes them.
type FailedAttempt struct {
	Lease
	Failure Failure
}

// FailOutcome is the outcome of one row of [FailBatcher.FailBatch].
type FailOutcome struct {
	// FailResult is the row's state after the failure was recorded: its
	// new retry count, and Scheduled or Failed. Zero when LeaseLost.
	FailResult
	// LeaseLost reports that the row was no longer held under the lease
	// (Fail's ErrLeaseLost): nothing was recorded for it.
	LeaseLost bool
}

// FailBatchIDs checks that rows are of distinct ids and returns them in
// order, for a FailBatch to look the rows up by id. The error wraps
// ErrPermanent: retrying the same batch cannot fix it.
func FailBatchIDs(rows []FailedAttempt) ([]int64, error) {
	ids := make([]int64, len(rows))
	seen := make(map[int64]bool, len(rows))
	for i, r := range rows {
		if seen[r.ID] {
			return nil, fmt.Errorf("storage: FailBatch with row %d twice (at %d): %w", r.ID, i, ErrPermanent)
		}
		seen[r.ID] = true
		ids[i] = r.ID
	}
	return ids, nil
}
