// The Claim area: which rows a claim takes, and leases.

package storagetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

func (s *suite[TTx]) claimDueOnly(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	old, mid, future := s.msg("due", t0.Add(-2*time.Minute)), s.msg("due", t0.Add(-time.Minute)), s.msg("due", t0.Add(time.Hour))
	s.insert(t, d, future, mid, old)
	got := claim(t, d, storage.Published, t0, time.Minute, 1)
	if len(got) != 1 || got[0].ID != old.ID {
		t.Fatalf("first claim: %v, want the oldest due row %d", idsOf(got), old.ID)
	}
	if got[0].LeaseToken == 0 || !got[0].LeaseUntil.Equal(t0.Add(time.Minute)) {
		t.Errorf("claimed row lease: token %d until %v", got[0].LeaseToken, got[0].LeaseUntil)
	}
	got = claim(t, d, storage.Published, t0, time.Minute, 10)
	if len(got) != 1 || got[0].ID != mid.ID {
		t.Fatalf("second claim: %v, want %d only (the other is not due)", idsOf(got), mid.ID)
	}
	if _, err := d.Claim(bg, storage.Published, storage.ClaimRequest{Now: t0, LeaseUntil: t0, Token: 0, Limit: 1}); err == nil {
		t.Error("Claim with a zero token: no error")
	}
	if _, err := d.Claim(bg, storage.Published, storage.ClaimRequest{Now: t0, LeaseUntil: t0, Token: 1, Limit: 0}); err == nil {
		t.Error("Claim with a zero limit: no error")
	}
}

// claimDueFrom: a claim with ClaimRequest.DueFrom takes the rows due at
// or after it, oldest first, as any claim (those due before it it may
// leave out, or not), and one without it takes the others.
func (s *suite[TTx]) claimDueFrom(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	old, from, mid := s.msg("from", t0.Add(-time.Hour)), s.msg("from", t0.Add(-2*time.Minute)), s.msg("from", t0.Add(-time.Minute))
	future := s.msg("from", t0.Add(time.Hour))
	s.insert(t, d, future, mid, from, old)
	claimFrom := func(limit int) []int64 {
		t.Helper()
		got, err := d.Claim(bg, storage.Published, storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: ids.Token(), Limit: limit,
			DueFrom: t0.Add(-2 * time.Minute)})
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		return idsOf(got)
	}
	first := claimFrom(1)
	if !slices.Equal(first, []int64{old.ID}) && !slices.Equal(first, []int64{from.ID}) {
		t.Fatalf("claim of 1 from %v: %v, want %d (the oldest due from it) or %d (the oldest due)", t0.Add(-2*time.Minute), first, from.ID, old.ID)
	}
	got := append(first, claimFrom(10)...)
	slices.Sort(got)
	want := []int64{from.ID, mid.ID}
	if len(got) == 3 {
		want = append(want, old.ID) // a Store that ignores DueFrom
	}
	if slices.Sort(want); !slices.Equal(got, want) {
		t.Fatalf("claims from %v: %v, want %v (the rows due from it, and not the future one)", t0.Add(-2*time.Minute), got, want)
	}
	if len(got) == 2 {
		if rest := claim(t, d, storage.Published, t0, time.Minute, 10); !slices.Equal(idsOf(rest), []int64{old.ID}) {
			t.Fatalf("claim from the start: %v, want %d, the row due before the other claim's DueFrom", idsOf(rest), old.ID)
		}
	}
}

func (s *suite[TTx]) leaseHidesAndExpires(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	m := s.msg("lease", t0.Add(-time.Second))
	s.insert(t, d, m)
	first := claim(t, d, storage.Published, t0, time.Minute, 10)
	if len(first) != 1 {
		t.Fatalf("claimed %d, want 1", len(first))
	}
	if again := claim(t, d, storage.Published, t0.Add(59*time.Second), time.Minute, 10); len(again) != 0 {
		t.Fatalf("claimed a leased row before its lease ended")
	}
	second := claim(t, d, storage.Published, t0.Add(61*time.Second), time.Minute, 10)
	if len(second) != 1 || second[0].LeaseToken == first[0].LeaseToken {
		t.Fatalf("after the lease: claimed %d rows, want 1 with a new token", len(second))
	}
	// The first, stale claimer can no longer record anything.
	if n, err := d.Succeed(bg, storage.Published, completed([]storage.Lease{lease(first[0])}), t0.Add(time.Hour)); err != nil || n != 0 {
		t.Errorf("stale Succeed: %d rows, %v; want 0", n, err)
	}
	if _, err := d.Fail(bg, storage.Published, lease(first[0]), storage.Failure{Error: "x", Now: t0, NextAttemptAt: t0, MaxAttempts: 50}); !errors.Is(err, storage.ErrLeaseLost) {
		t.Errorf("stale Fail: %v, want ErrLeaseLost", err)
	}
	if n, err := d.Succeed(bg, storage.Published, completed([]storage.Lease{lease(second[0])}), t0.Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("current Succeed: %d rows, %v; want 1", n, err)
	}
}

func (s *suite[TTx]) concurrentClaims(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	const n = 300
	var msgs []*storage.Message
	for range n {
		msgs = append(msgs, s.msg("race", t0.Add(-time.Second)))
	}
	s.insert(t, d, msgs...)
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	errs := make(chan error, s.h.Claimers)
	for range s.h.Claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n { // bounded: each round claims at least one row or stops
				got, err := d.Claim(bg, storage.Published, storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: ids.Token(), Limit: 7})
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, m := range got {
					seen[m.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Claim: %v", err)
	}
	if len(seen) != n {
		t.Errorf("claimed %d distinct rows, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("row %d claimed %d times", id, c)
		}
	}
}

func (s *suite[TTx]) claimDelayed(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	due := t0.Add(time.Hour)
	delayed := s.delayed("delayed", due)
	later := s.delayed("delayed", due.Add(time.Hour))
	immediate := s.msg("immediate", t0.Add(-time.Second))
	s.insert(t, d, delayed, later, immediate)
	if r := get(t, d, storage.Published, delayed.ID); r.Status != storage.StatusDelayed || !r.NextAttemptAt.Equal(due) || r.LeaseToken != 0 {
		t.Fatalf("inserted delayed row: status %s next %v token %d; want Delayed due at %v", r.Status, r.NextAttemptAt, r.LeaseToken, due)
	}
	counts, err := d.Counts(bg, storage.Published)
	if err != nil || counts[storage.StatusDelayed] != 2 || counts[storage.StatusScheduled] != 1 {
		t.Errorf("Counts: %v %v; want 2 Delayed, 1 Scheduled", counts, err)
	}
	// Before its due time only the immediate row is claimed (under a lease
	// that outlasts the test).
	if got := claim(t, d, storage.Published, t0, 24*time.Hour, 10); len(got) != 1 || got[0].ID != immediate.ID {
		t.Fatalf("claim before the due time: %v, want only %d", idsOf(got), immediate.ID)
	}
	if got := claim(t, d, storage.Published, due.Add(-time.Microsecond), time.Minute, 10); len(got) != 0 {
		t.Fatalf("claimed %v a microsecond before the due time", idsOf(got))
	}
	got := claim(t, d, storage.Published, due, time.Minute, 10)
	if len(got) != 1 || got[0].ID != delayed.ID || got[0].Status != storage.StatusScheduled {
		t.Fatalf("claim at the due time: %v (status %v), want %d Scheduled", idsOf(got), statusesOf(got), delayed.ID)
	}
	r := get(t, d, storage.Published, delayed.ID)
	if r.Status != storage.StatusScheduled || r.LeaseToken != got[0].LeaseToken || r.Retries != 0 {
		t.Errorf("claimed delayed row: status %s token %d retries %d, want Scheduled under the claim", r.Status, r.LeaseToken, r.Retries)
	}
	// Once Scheduled, it follows the life of any row.
	if n, err := d.Succeed(bg, storage.Published, completed([]storage.Lease{lease(got[0])}), due.Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("Succeed of a claimed delayed row: %d %v", n, err)
	}
	if r := get(t, d, storage.Published, later.ID); r.Status != storage.StatusDelayed {
		t.Errorf("the later delayed row is %s, want still Delayed", r.Status)
	}
}

func (s *suite[TTx]) nextDue(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	for _, kind := range []storage.Kind{storage.Published, storage.Received} {
		if next, err := d.NextDue(bg, kind, storage.DueRequest{After: t0}); err != nil || !next.IsZero() {
			t.Errorf("NextDue of an empty %s table: %v %v, want the zero time", kind, next, err)
		}
	}
	first, second := t0.Add(10*time.Minute), t0.Add(20*time.Minute)
	failed, succeeded := s.msg("next", t0.Add(-time.Minute)), s.msg("next", t0.Add(-time.Minute))
	s.insert(t, d, s.delayed("next", t0.Add(time.Hour)), s.delayed("next", second), failed, succeeded,
		s.msg("next", first), s.msg("next", t0.Add(-time.Second)))
	// The due rows are not after t0: the earliest row after it is first.
	if next, err := d.NextDue(bg, storage.Published, storage.DueRequest{After: t0}); err != nil || !next.Equal(first) {
		t.Errorf("NextDue: %v %v, want %v", next, err, first)
	}
	if next, err := d.NextDue(bg, storage.Published, storage.DueRequest{After: first}); err != nil || !next.Equal(second) {
		t.Errorf("NextDue after the first: %v %v, want %v (strictly after)", next, err, second)
	}
	if next, err := d.NextDue(bg, storage.Received, storage.DueRequest{After: t0}); err != nil || !next.IsZero() {
		t.Errorf("NextDue of the received table: %v %v, want the zero time", next, err)
	}
	// Rows that are done do not count, whenever their NextAttemptAt.
	c := claim(t, d, storage.Published, t0, time.Minute, 10)
	if len(c) != 3 {
		t.Fatalf("claimed %d rows, want 3", len(c))
	}
	byID := map[int64]*storage.Message{}
	for _, m := range c {
		byID[m.ID] = m
	}
	beyond := t0.Add(48 * time.Hour)
	if _, err := d.Fail(bg, storage.Published, lease(byID[failed.ID]), storage.Failure{
		Error: "x", Now: t0, NextAttemptAt: beyond, Permanent: true, ExpiresAt: beyond,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Succeed(bg, storage.Published, completed([]storage.Lease{lease(byID[succeeded.ID])}), beyond); err != nil {
		t.Fatal(err)
	}
	if next, err := d.NextDue(bg, storage.Published, storage.DueRequest{After: t0.Add(2 * time.Hour)}); err != nil || !next.IsZero() {
		t.Errorf("NextDue after every pending row: %v %v, want the zero time (Succeeded and Failed rows do not count)", next, err)
	}
	// A retry scheduled by Fail counts.
	retry := t0.Add(5 * time.Minute)
	var other *storage.Message
	for _, m := range c {
		if m.ID != failed.ID && m.ID != succeeded.ID {
			other = m
		}
	}
	if _, err := d.Fail(bg, storage.Published, lease(other), storage.Failure{Error: "x", Now: t0, NextAttemptAt: retry, MaxAttempts: 5}); err != nil {
		t.Fatal(err)
	}
	if next, err := d.NextDue(bg, storage.Published, storage.DueRequest{After: t0}); err != nil || !next.Equal(retry) {
		t.Errorf("NextDue with a retry: %v %v, want %v", next, err, retry)
	}
}

func statusesOf(ms []*storage.Message) []storage.Status {
	out := make([]storage.Status, len(ms))
	for i, m := range ms {
		out[i] = m.Status
	}
	return out
}
