// The Dashboard area, continued: BoundedCounts, for a Store that is a
// storage.BoundedCounter.

package storagetest

import (
	"maps"
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
)

// boundedCounts: on a small table with rows of every status, in both
// tables, BoundedCounts is exact, agrees with Counts and marks nothing
// estimated.
func (s *suite[TTx]) boundedCounts(t *testing.T) {
	d := s.h.New(t)
	bc, ok := d.(storage.BoundedCounter)
	if !ok {
		t.Skip("the Store is not a storage.BoundedCounter")
	}
	t0 := now()
	// Published: 2 Delayed, 5 Scheduled of which 3 are claimed, 2 of
	// those Succeeded and 1 Failed: 2 Delayed, 2 Scheduled, 2 Succeeded,
	// 1 Failed.
	var msgs []*storage.Message
	for range 5 {
		msgs = append(msgs, s.msg("bounded", t0.Add(-time.Second)))
	}
	msgs = append(msgs, s.delayed("bounded", t0.Add(time.Hour)), s.delayed("bounded", t0.Add(time.Hour)))
	s.insert(t, d, msgs...)
	c := claim(t, d, storage.Published, t0, time.Minute, 3)
	if len(c) != 3 {
		t.Fatalf("claimed %d rows, want 3", len(c))
	}
	if _, err := d.Succeed(bg, storage.Published, completed([]storage.Lease{lease(c[0]), lease(c[1])}), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Fail(bg, storage.Published, lease(c[2]), storage.Failure{Error: "x", Now: t0, NextAttemptAt: t0, MaxAttempts: 1, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// Received: 1 Succeeded, 1 Scheduled (still leased).
	var leases []storage.Lease
	for _, id := range []string{"bounded-1", "bounded-2"} {
		m := s.received(id, "g", "bounded", []byte("{}"))
		token := int64(len(leases) + 1)
		r, err := d.InsertReceived(bg, m, token, t0.Add(time.Minute))
		if err != nil || !r.Claimed {
			t.Fatalf("InsertReceived: %+v %v", r, err)
		}
		leases = append(leases, storage.Lease{ID: r.ID, Token: token})
	}
	if _, err := d.Succeed(bg, storage.Received, completed(leases[:1]), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		kind storage.Kind
		want map[storage.Status]int64
	}{
		{storage.Published, map[storage.Status]int64{storage.StatusDelayed: 2, storage.StatusScheduled: 2, storage.StatusSucceeded: 2, storage.StatusFailed: 1}},
		{storage.Received, map[storage.Status]int64{storage.StatusDelayed: 0, storage.StatusScheduled: 1, storage.StatusSucceeded: 1, storage.StatusFailed: 0}},
	} {
		got, err := bc.BoundedCounts(bg, w.kind)
		if err != nil {
			t.Fatalf("BoundedCounts(%s): %v", w.kind, err)
		}
		if !maps.Equal(got.ByStatus, w.want) {
			t.Errorf("BoundedCounts(%s) = %v, want %v", w.kind, got.ByStatus, w.want)
		}
		for st, est := range got.Estimated {
			if est {
				t.Errorf("BoundedCounts(%s) marks %s estimated on a table of %d rows", w.kind, st, len(msgs))
			}
		}
		counts, err := d.Counts(bg, w.kind)
		if err != nil || !maps.Equal(counts, got.ByStatus) {
			t.Errorf("Counts(%s) = %v %v, BoundedCounts %v: they differ", w.kind, counts, err, got.ByStatus)
		}
	}
}

// boundedCountsEmpty: on empty tables every status is there, counted 0,
// and exact.
func (s *suite[TTx]) boundedCountsEmpty(t *testing.T) {
	d := s.h.New(t)
	bc, ok := d.(storage.BoundedCounter)
	if !ok {
		t.Skip("the Store is not a storage.BoundedCounter")
	}
	for _, kind := range []storage.Kind{storage.Published, storage.Received} {
		got, err := bc.BoundedCounts(bg, kind)
		if err != nil {
			t.Fatalf("BoundedCounts(%s): %v", kind, err)
		}
		if len(got.ByStatus) != len(storage.Statuses) {
			t.Errorf("BoundedCounts(%s) = %v, want every status", kind, got.ByStatus)
		}
		for _, st := range storage.Statuses {
			if n, ok := got.ByStatus[st]; !ok || n != 0 || got.Estimated[st] {
				t.Errorf("BoundedCounts(%s)[%s] = %d (present %v, estimated %v), want an exact 0", kind, st, n, ok, got.Estimated[st])
			}
		}
	}
}
