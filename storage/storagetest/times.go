// The Times area: every time a Store returns is UTC (storage's package
// documentation), whatever the column or the row's state.

package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// checkUTC fails the test for each non-zero time of r (Added,
// NextAttemptAt, ExpiresAt, LeaseUntil, the attempts' At) whose location
// is not time.UTC. It returns the number of non-zero times checked.
func checkUTC(t *testing.T, what string, r *storage.Message) int {
	t.Helper()
	times := []struct {
		name string
		tm   time.Time
	}{{"Added", r.Added}, {"NextAttemptAt", r.NextAttemptAt}, {"ExpiresAt", r.ExpiresAt}, {"LeaseUntil", r.LeaseUntil}}
	for i, a := range r.Attempts {
		times = append(times, struct {
			name string
			tm   time.Time
		}{fmt.Sprintf("Attempts[%d].At", i), a.At})
	}
	n := 0
	for _, x := range times {
		if x.tm.IsZero() {
			continue
		}
		n++
		if x.tm.Location() != time.UTC {
			t.Errorf("%s (row %d, %s): %s is in %v, want UTC", what, r.ID, r.Status, x.name, x.tm.Location())
		}
	}
	return n
}

// timesUTC: the times of rows leased, waiting for a retry, Succeeded and
// Failed, published and received, are UTC as Get, Claim and List return
// them.
func (s *suite[TTx]) timesUTC(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	// Published: four rows claimed; one stays leased, one fails and waits
	// for its retry, one succeeds, one fails for good.
	c := s.insertClaimed(t, d, "utc", t0, 4)
	for _, m := range c {
		checkUTC(t, "Claim of a published row", m)
		if m.LeaseUntil.IsZero() {
			t.Errorf("Claim of a published row: row %d without LeaseUntil", m.ID)
		}
	}
	leased, retry, done, failed := c[0], c[1], c[2], c[3]
	if _, err := d.Fail(bg, storage.Published, lease(retry), storage.Failure{Error: "later", Now: t0,
		Attempt: storage.Attempt{At: t0, Duration: time.Millisecond}, NextAttemptAt: t0.Add(time.Hour), MaxAttempts: 5,
		ExpiresAt: t0.Add(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if n, err := d.Succeed(bg, storage.Published, completed([]storage.Lease{lease(done)}), t0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("Succeed: %d %v", n, err)
	}
	if _, err := d.Fail(bg, storage.Published, lease(failed), storage.Failure{Error: "bad", Now: t0,
		Attempt: storage.Attempt{At: t0, Duration: time.Millisecond}, NextAttemptAt: t0, MaxAttempts: 1,
		ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// Received: one leased, one Succeeded, one Failed.
	tok := ids.Token()
	rl, rs, rf := s.received("utc-l", "g", "t", nil), s.received("utc-s", "g", "t", nil), s.received("utc-f", "g", "t", nil)
	for _, m := range []*storage.Message{rl, rs, rf} {
		if res, err := d.InsertReceived(bg, m, tok, t0.Add(time.Minute)); err != nil || !res.Claimed {
			t.Fatalf("InsertReceived: %+v %v", res, err)
		}
	}
	if n, err := d.Succeed(bg, storage.Received, completed([]storage.Lease{{ID: rs.ID, Token: tok}}), t0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("Succeed: %d %v", n, err)
	}
	if _, err := d.Fail(bg, storage.Received, storage.Lease{ID: rf.ID, Token: tok}, storage.Failure{Error: "bad", Now: t0,
		Attempt: storage.Attempt{At: t0, Duration: time.Millisecond}, NextAttemptAt: t0, MaxAttempts: 1,
		ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	rows := map[storage.Kind][]int64{
		storage.Published: {leased.ID, retry.ID, done.ID, failed.ID},
		storage.Received:  {rl.ID, rs.ID, rf.ID},
	}
	for kind, idList := range rows {
		n := 0
		for _, id := range idList {
			n += checkUTC(t, fmt.Sprintf("Get of a %s row", kind), get(t, d, kind, id))
		}
		// Each row has Added and NextAttemptAt; the leased ones LeaseUntil,
		// the others an attempt, the Succeeded and Failed ones ExpiresAt.
		if n < 3*len(idList) {
			t.Errorf("Get of the %s rows: %d times set, want at least %d", kind, n, 3*len(idList))
		}
		list, err := d.List(bg, storage.Filter{Kind: kind, Limit: 100})
		if err != nil {
			t.Fatalf("List(%s): %v", kind, err)
		}
		if len(list) != len(idList) {
			t.Errorf("List(%s): %d rows, want %d", kind, len(list), len(idList))
		}
		for _, r := range list {
			checkUTC(t, fmt.Sprintf("List of %s rows", kind), r)
		}
	}
	// Claimed again: the row that waited for its retry, with its attempt
	// history, and the leased one, its lease ended.
	again := claim(t, d, storage.Published, t0.Add(2*time.Hour), time.Minute, 10)
	if len(again) != 2 {
		t.Fatalf("claim after the retry's due time: %v, want rows %d and %d", idsOf(again), leased.ID, retry.ID)
	}
	for _, m := range again {
		checkUTC(t, "Claim of a published row claimed again", m)
	}
	// A received row claimed after its lease ended.
	stale := s.received("utc-c", "g", "t", nil)
	if _, err := d.InsertReceived(bg, stale, ids.Token(), t0.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	rc := claim(t, d, storage.Received, now().Add(time.Second), time.Minute, 10)
	if len(rc) != 1 || rc[0].ID != stale.ID {
		t.Fatalf("claim of a received row whose lease ended: %v, want row %d", idsOf(rc), stale.ID)
	}
	checkUTC(t, "Claim of a received row", rc[0])
}
