package storage_test

// MemStore's failed attempts in batches: FailBatch, the optional
// storage.FailBatcher, and what it shares with Fail.

import (
	"context"
	"fmt"
	"time"

	"github.com/gocap/gocap/storage"
)

// MemStore records batches of failures under one lock.
var _ storage.FailBatcher = (*MemStore)(nil)

// FailBatch records the failure of each row still held under its lease
// as Fail does, all under one lock, so that no claim or other outcome
// sees part of a batch; a row whose lease no longer holds it is reported
// LeaseLost and left alone. A batch naming a row twice records nothing.
func (s *MemStore) FailBatch(ctx context.Context, kind storage.Kind, rows []storage.FailedAttempt) ([]storage.FailOutcome, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	if _, err := storage.FailBatchIDs(rows); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	table, err := s.table(kind)
	if err != nil {
		return nil, err
	}
	out := make([]storage.FailOutcome, len(rows))
	for i, r := range rows {
		res, ok := failHeld(table, r.Lease, r.Failure, storage.TruncateText(r.Failure.Error, maxErrorBytes))
		out[i] = storage.FailOutcome{FailResult: res, LeaseLost: !ok}
	}
	return out, nil
}

// failHeld records the failure f of the row held under lease, with text
// as its LastError, and returns the row's new state; false if lease no
// longer holds the row. s.mu is held.
func failHeld(table map[int64]*storage.Message, lease storage.Lease, f storage.Failure, text string) (storage.FailResult, bool) {
	m := held(table, lease)
	if m == nil {
		return storage.FailResult{}, false
	}
	m.Retries++
	m.LastError = text
	// The attempt's error is the failure's, unless the caller gave it one.
	a := f.Attempt
	if a.Error == "" {
		a.Error = f.Error
	}
	if a.At.IsZero() {
		a.At = f.Now
	}
	appendAttempt(m, a)
	m.LeaseToken, m.LeaseUntil = 0, time.Time{}
	if f.Permanent || (f.MaxAttempts > 0 && m.Retries >= f.MaxAttempts) {
		m.Status = storage.StatusFailed
		m.ExpiresAt = f.ExpiresAt.UTC()
	} else {
		m.NextAttemptAt = f.NextAttemptAt.UTC()
	}
	return storage.FailResult{Retries: m.Retries, Status: m.Status}, true
}
