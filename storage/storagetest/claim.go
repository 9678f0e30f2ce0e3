// The Claim area: which rows a claim takes, and leases.

package storagetest

import (
	"errors"
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
