// The Ordering area, runs: a claim with ClaimRequest.Run leases with each
// head of a key the rows that follow it, or the head alone (a Store may
// ignore Run); never a row past one that cannot join, and nothing of a
// key while its run is in flight.

package storagetest

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// claimRun claims up to limit heads at at with runs of up to run rows,
// Failed rows holding their keys, and checks that every row is leased
// under the request's token.
func claimRun(t *testing.T, d storage.Store, at time.Time, limit, run int) []*storage.Message {
	t.Helper()
	req := storage.ClaimRequest{Now: at, LeaseUntil: at.Add(time.Minute), Token: ids.Token(), Limit: limit, Run: run, FailedHoldsKey: true}
	got, err := d.Claim(bg, storage.Published, req)
	if err != nil {
		t.Fatalf("Claim with Run %d: %v", run, err)
	}
	checkLeased(t, d, got, req)
	return got
}

// checkLeased checks that the rows of got are stored leased under req.
func checkLeased(t *testing.T, d storage.Store, got []*storage.Message, req storage.ClaimRequest) {
	t.Helper()
	for _, m := range got {
		r := get(t, d, storage.Published, m.ID)
		if m.LeaseToken != req.Token || r.LeaseToken != req.Token || !r.LeaseUntil.Equal(req.LeaseUntil) || r.Status != storage.StatusScheduled {
			t.Fatalf("row %d claimed with a run: returned token %d, stored token %d until %v, %s; want token %d until %v, Scheduled",
				m.ID, m.LeaseToken, r.LeaseToken, r.LeaseUntil, r.Status, req.Token, req.LeaseUntil)
		}
	}
}

// runPrefix checks that the rows of got of the sequence seq (in id
// order) are its first rows, at least one and at most most, and returns
// them in id order.
func runPrefix(t *testing.T, what string, got, seq []*storage.Message, most int) []*storage.Message {
	t.Helper()
	var of []*storage.Message
	for _, m := range got {
		if slices.ContainsFunc(seq, func(s *storage.Message) bool { return s.ID == m.ID }) {
			of = append(of, m)
		}
	}
	slices.SortFunc(of, func(a, b *storage.Message) int { return cmp.Compare(a.ID, b.ID) })
	n := len(of)
	if n < 1 || n > most || !slices.Equal(idsOf(of), idsOf(seq[:n])) {
		t.Fatalf("%s: claimed %v of the sequence %v; want its first row and at most %d rows in all, consecutive",
			what, idsOf(of), idsOf(seq), most)
	}
	return of
}

// orderingRuns: Run lets a claim lease a head's following rows, up to Run
// rows in all and up to the first that is not due; the run holds its key;
// its holder succeeds, fails and releases its rows, and the key goes on
// from there; Limit counts heads.
func (s *suite[TTx]) orderingRuns(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	var a []*storage.Message
	for i := range 7 {
		due := t0.Add(time.Duration(i-10) * time.Second)
		if i == 5 {
			due = t0.Add(time.Hour) // a6 is not due: the runs stop before it
		}
		a = append(a, s.keyed("a", due))
	}
	c1, c2, c3 := s.keyed("c", t0.Add(-3*time.Second)), s.keyed("c", t0.Add(time.Hour)), s.keyed("c", t0.Add(-time.Second))
	u := s.msg("free", t0.Add(-time.Second))
	s.insert(t, d, append(a, c1, c2, c3, u)...)

	got := claimRun(t, d, t0, 100, 3)
	ra := runPrefix(t, "key a, Run 3", got, a, 3)
	runPrefix(t, "key c, whose second row is not due", got, []*storage.Message{c1}, 1)
	if !slices.ContainsFunc(got, func(m *storage.Message) bool { return m.ID == u.ID }) || len(got) != len(ra)+2 {
		t.Fatalf("claim with Run 3: %v; want key a's run, c1 and the unkeyed row %d", sortedIDs(got), u.ID)
	}
	for _, m := range a[len(ra):] {
		if r := get(t, d, storage.Published, m.ID); r.LeaseToken != 0 {
			t.Fatalf("row %d of key a, not in the run, is leased", m.ID)
		}
	}
	// The run holds its key, even where its head has succeeded.
	if again := claimRun(t, d, t0, 100, 3); len(again) != 0 {
		t.Fatalf("claimed %v while the runs are in flight", idsOf(again))
	}
	succeedAll(t, d, storage.Published, ra[0])
	if len(ra) > 1 {
		if again := claimRun(t, d, t0, 100, 3); len(again) != 0 {
			t.Fatalf("claimed %v while the rest of key a's run is in flight", idsOf(again))
		}
		// The second row fails, to be retried at once; the holder
		// releases the rest: the key goes on from the failed row.
		f := storage.Failure{Error: "x", Now: t0, NextAttemptAt: t0, MaxAttempts: 10, ExpiresAt: t0.Add(time.Hour)}
		if _, err := d.Fail(bg, storage.Published, lease(ra[1]), f); err != nil {
			t.Fatal(err)
		}
		if rest := ra[2:]; len(rest) > 0 {
			leases := make([]storage.Lease, len(rest))
			for i, m := range rest {
				leases[i] = lease(m)
			}
			if n, err := d.Release(bg, storage.Published, leases, t0, ""); err != nil || n != int64(len(rest)) {
				t.Fatalf("Release of the rest of the run: %d, %v", n, err)
			}
		}
		a = a[1:]
	} else {
		a = a[1:]
	}
	// From the first row not done, up to a6, which is not due.
	next := claimRun(t, d, t0.Add(time.Second), 100, 10)
	rn := runPrefix(t, "key a after its run", next, a, 4)
	if last := rn[len(rn)-1]; last.ID >= a[len(a)-2].ID {
		t.Fatalf("the run of key a reached %d, past its row %d that is not due", last.ID, a[len(a)-2].ID)
	}

	// Limit counts heads, not the rows of their runs.
	d2 := s.h.New(t)
	var k, l []*storage.Message
	for range 3 {
		k = append(k, s.keyed("k", t0.Add(-2*time.Second)))
		l = append(l, s.keyed("l", t0.Add(-time.Second)))
	}
	s.insert(t, d2, append(k, l...)...)
	one := claimRun(t, d2, t0, 1, 3)
	runPrefix(t, "Limit 1, Run 3", one, k, 3)
	if len(one) == 0 || slices.ContainsFunc(one, func(m *storage.Message) bool { return m.OrderingKey != "k" }) {
		t.Fatalf("Limit 1: %v; want the earliest due key's head with its run, nothing of key l", sortedIDs(one))
	}

	// SucceedClaimNext leases the next head with its run.
	nc, ok := d2.(storage.NextClaimer)
	if !ok {
		return
	}
	head := claimRun(t, d2, t0, 10, 1)
	hl := runPrefix(t, "key l, Run 1", head, l, 1)
	req := storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: ids.Token(), Limit: 10, Run: 2, FailedHoldsKey: true}
	_, nextL, err := nc.SucceedClaimNext(bg, storage.Published, completed([]storage.Lease{lease(hl[0])}), t0.Add(time.Hour), req)
	if err != nil {
		t.Fatalf("SucceedClaimNext with Run 2: %v", err)
	}
	checkLeased(t, d2, nextL, req)
	runPrefix(t, "SucceedClaimNext of key l's head, Run 2", nextL, l[1:], 2)
}
