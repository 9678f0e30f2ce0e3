// The Outcome area: Succeed, Fail, Release, and DeleteExpired of what
// they made expire.

package storagetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

func (s *suite[TTx]) succeed(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	var msgs []*storage.Message
	for range 5 {
		msgs = append(msgs, s.msg("ok", t0.Add(-time.Second)))
	}
	s.insert(t, d, msgs...)
	got := claim(t, d, storage.Published, t0, time.Minute, 10)
	var leases []storage.Lease
	for _, m := range got {
		leases = append(leases, lease(m))
	}
	exp := t0.Add(24 * time.Hour)
	if n, err := d.Succeed(bg, storage.Published, completed(leases), exp); err != nil || n != 5 {
		t.Fatalf("Succeed: %d, %v", n, err)
	}
	for _, m := range msgs {
		r := get(t, d, storage.Published, m.ID)
		if r.Status != storage.StatusSucceeded || !r.ExpiresAt.Equal(exp) || r.LeaseToken != 0 || !r.LeaseUntil.IsZero() {
			t.Errorf("row %d: status %s expires %v token %d", m.ID, r.Status, r.ExpiresAt, r.LeaseToken)
		}
	}
	if n, err := d.Succeed(bg, storage.Published, completed(leases), exp); err != nil || n != 0 {
		t.Errorf("second Succeed of the same leases: %d, %v; want 0", n, err)
	}
	if c := claim(t, d, storage.Published, t0.Add(time.Hour), time.Minute, 10); len(c) != 0 {
		t.Errorf("claimed %d Succeeded rows", len(c))
	}
}

func (s *suite[TTx]) failRetriesAndFinal(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	m := s.msg("fail", t0.Add(-time.Second))
	s.insert(t, d, m)
	at := t0
	const maxAttempts = 3
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		c := claim(t, d, storage.Published, at, time.Minute, 1)
		if len(c) != 1 {
			t.Fatalf("attempt %d: claimed %d rows", attempt, len(c))
		}
		if c[0].Retries != attempt-1 {
			t.Errorf("attempt %d: retries %d before, want %d", attempt, c[0].Retries, attempt-1)
		}
		next := at.Add(10 * time.Second)
		res, err := d.Fail(bg, storage.Published, lease(c[0]), storage.Failure{
			Error: fmt.Sprintf("boom %d", attempt), Now: at, NextAttemptAt: next, MaxAttempts: maxAttempts,
			ExpiresAt: at.Add(15 * 24 * time.Hour),
		})
		if err != nil {
			t.Fatalf("attempt %d: Fail: %v", attempt, err)
		}
		if res.Retries != attempt {
			t.Errorf("attempt %d: retries %d, want %d", attempt, res.Retries, attempt)
		}
		r := get(t, d, storage.Published, m.ID)
		if attempt < maxAttempts {
			if res.Status != storage.StatusScheduled || r.Status != storage.StatusScheduled || !r.NextAttemptAt.Equal(next) || !r.ExpiresAt.IsZero() {
				t.Errorf("attempt %d: %s / row %s next %v expires %v", attempt, res.Status, r.Status, r.NextAttemptAt, r.ExpiresAt)
			}
			if early := claim(t, d, storage.Published, next.Add(-time.Second), time.Minute, 1); len(early) != 0 {
				t.Errorf("attempt %d: claimed before NextAttemptAt", attempt)
			}
		} else if res.Status != storage.StatusFailed || r.Status != storage.StatusFailed || !r.ExpiresAt.Equal(at.Add(15*24*time.Hour)) {
			t.Errorf("final attempt: %s / row %s expires %v", res.Status, r.Status, r.ExpiresAt)
		}
		if r.LastError != fmt.Sprintf("boom %d", attempt) || r.Retries != attempt {
			t.Errorf("attempt %d: row retries %d error %q", attempt, r.Retries, r.LastError)
		}
		at = next
	}
	if c := claim(t, d, storage.Published, at.Add(time.Hour), time.Minute, 1); len(c) != 0 {
		t.Error("claimed a Failed row")
	}
}

func (s *suite[TTx]) failPermanent(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	m := s.msg("perm", t0.Add(-time.Second))
	s.insert(t, d, m)
	c := claim(t, d, storage.Published, t0, time.Minute, 1)
	res, err := d.Fail(bg, storage.Published, lease(c[0]), storage.Failure{
		Error: "cannot decode", Now: t0, NextAttemptAt: t0, MaxAttempts: 50, Permanent: true, ExpiresAt: t0.Add(time.Hour),
	})
	if err != nil || res.Status != storage.StatusFailed || res.Retries != 1 {
		t.Errorf("permanent Fail: %+v %v; want Failed after 1", res, err)
	}
}

// failPastMaxAttempts: a Fail whose MaxAttempts the row's retry count
// has already passed (three failures without a limit, then the policy's
// limit set to 2) ends the row Failed, as one that reaches it does.
func (s *suite[TTx]) failPastMaxAttempts(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	m := s.msg("past", t0.Add(-time.Second))
	s.insert(t, d, m)
	at := t0
	for attempt := 1; attempt <= 3; attempt++ {
		c := claim(t, d, storage.Published, at, time.Minute, 1)
		if len(c) != 1 {
			t.Fatalf("attempt %d: claimed %d rows", attempt, len(c))
		}
		res, err := d.Fail(bg, storage.Published, lease(c[0]), storage.Failure{Error: "no limit", Now: at, NextAttemptAt: at})
		if err != nil || res.Status != storage.StatusScheduled || res.Retries != attempt {
			t.Fatalf("attempt %d without a limit: %+v %v; want Scheduled after %d", attempt, res, err, attempt)
		}
	}
	c := claim(t, d, storage.Published, at, time.Minute, 1)
	if len(c) != 1 {
		t.Fatalf("attempt 4: claimed %d rows", len(c))
	}
	res, err := d.Fail(bg, storage.Published, lease(c[0]), storage.Failure{
		Error: "limit 2", Now: at, NextAttemptAt: at.Add(time.Second), MaxAttempts: 2, ExpiresAt: at.Add(time.Hour),
	})
	if err != nil || res.Status != storage.StatusFailed || res.Retries != 4 {
		t.Errorf("Fail past MaxAttempts (4 attempts, limit 2): %+v %v; want Failed after 4", res, err)
	}
	if r := get(t, d, storage.Published, m.ID); r.Status != storage.StatusFailed || r.Retries != 4 || !r.ExpiresAt.Equal(at.Add(time.Hour)) {
		t.Errorf("row after a Fail past MaxAttempts: status %s retries %d expires %v; want Failed, 4, %v", r.Status, r.Retries, r.ExpiresAt, at.Add(time.Hour))
	}
	if c := claim(t, d, storage.Published, at.Add(time.Hour), time.Minute, 1); len(c) != 0 {
		t.Error("claimed a row failed past its MaxAttempts")
	}
}

func (s *suite[TTx]) release(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	a, b, c := s.msg("release", t0.Add(-time.Second)), s.msg("release", t0.Add(-time.Second)), s.msg("release", t0.Add(-time.Second))
	s.insert(t, d, a, b, c)
	got := claim(t, d, storage.Published, t0, time.Minute, 10)
	if len(got) != 3 {
		t.Fatalf("claimed %d rows, want 3", len(got))
	}
	byID := map[int64]*storage.Message{}
	for _, m := range got {
		byID[m.ID] = m
	}
	// a has one failed attempt behind it: Release must not count another.
	if _, err := d.Fail(bg, storage.Published, lease(byID[a.ID]), storage.Failure{Error: "boom", Now: t0, NextAttemptAt: t0, MaxAttempts: 5}); err != nil {
		t.Fatal(err)
	}
	again := claim(t, d, storage.Published, t0, time.Minute, 10)
	if len(again) != 1 || again[0].ID != a.ID {
		t.Fatalf("claim after Fail: %v, want %d", idsOf(again), a.ID)
	}
	if n, err := d.Release(bg, storage.Published, nil, t0, "nothing"); err != nil || n != 0 {
		t.Errorf("Release of no leases: %d, %v", n, err)
	}
	next := t0.Add(30 * time.Second)
	const reason = "broker unreachable: \x00\xff"
	stale := storage.Lease{ID: c.ID, Token: byID[c.ID].LeaseToken + 1}
	n, err := d.Release(bg, storage.Published, []storage.Lease{lease(again[0]), lease(byID[b.ID]), stale}, next, reason)
	if err != nil || n != 2 {
		t.Fatalf("Release: %d rows, %v; want 2", n, err)
	}
	for _, want := range []struct {
		id      int64
		retries int
	}{{a.ID, 1}, {b.ID, 0}} {
		r := get(t, d, storage.Published, want.id)
		if r.Status != storage.StatusScheduled || r.Retries != want.retries || r.LeaseToken != 0 || !r.LeaseUntil.IsZero() ||
			!r.NextAttemptAt.Equal(next) || !r.ExpiresAt.IsZero() {
			t.Errorf("released row %d: status %s retries %d (want %d) token %d until %v next %v expires %v",
				want.id, r.Status, r.Retries, want.retries, r.LeaseToken, r.LeaseUntil, r.NextAttemptAt, r.ExpiresAt)
		}
		if r.LastError != storage.ValidText(reason) {
			t.Errorf("released row %d: LastError %q, want %q", want.id, r.LastError, storage.ValidText(reason))
		}
	}
	if r := get(t, d, storage.Published, c.ID); r.LeaseToken != byID[c.ID].LeaseToken || r.LastError != "" {
		t.Errorf("Release with a stale token changed the row: token %d error %q", r.LeaseToken, r.LastError)
	}
	if early := claim(t, d, storage.Published, next.Add(-time.Second), time.Minute, 10); len(early) != 0 {
		t.Errorf("claimed %v before the released rows were due", idsOf(early))
	}
	if due := claim(t, d, storage.Published, next, time.Minute, 10); len(due) != 2 {
		t.Errorf("claimed %v at NextAttemptAt, want the 2 released rows", idsOf(due))
	}

	r := s.received("rel-1", "g", "release", nil)
	if res, err := d.InsertReceived(bg, r, ids.Token(), t0.Add(time.Minute)); err != nil || !res.Claimed {
		t.Fatalf("InsertReceived: %+v %v", res, err)
	}
	rl := storage.Lease{ID: r.ID, Token: get(t, d, storage.Received, r.ID).LeaseToken}
	if n, err := d.Release(bg, storage.Received, []storage.Lease{rl}, next, strings.Repeat("日本", 20_000)); err != nil || n != 1 {
		t.Fatalf("Release of a received row with a 120 KB reason: %d, %v", n, err)
	}
	if got := get(t, d, storage.Received, r.ID); got.LeaseToken != 0 || got.Retries != 0 || !utf8.ValidString(got.LastError) || !strings.HasPrefix(got.LastError, "日本") {
		t.Errorf("released received row: token %d retries %d error %.20q", got.LeaseToken, got.Retries, got.LastError)
	}
}

func (s *suite[TTx]) deleteExpired(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	var expired, kept []int64
	var all []*storage.Message
	for i := range 7 {
		m := s.msg("exp", t0.Add(-time.Hour))
		all = append(all, m)
		if i < 5 {
			expired = append(expired, m.ID)
		} else {
			kept = append(kept, m.ID)
		}
	}
	pending := s.msg("exp", t0.Add(time.Hour)) // Scheduled: never expires
	s.insert(t, d, append(all, pending)...)
	c := claim(t, d, storage.Published, t0, time.Minute, 10)
	byID := map[int64]*storage.Message{}
	for _, m := range c {
		byID[m.ID] = m
	}
	var short, long []storage.Lease
	for _, id := range expired {
		short = append(short, lease(byID[id]))
	}
	for _, id := range kept {
		long = append(long, lease(byID[id]))
	}
	if _, err := d.Succeed(bg, storage.Published, completed(short), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Succeed(bg, storage.Published, completed(long), t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(90 * time.Second)
	var total int64
	for range 10 {
		n, err := d.DeleteExpired(bg, storage.Published, at, 2)
		if err != nil {
			t.Fatal(err)
		}
		if n > 2 {
			t.Fatalf("DeleteExpired removed %d rows with limit 2", n)
		}
		total += n
		if n == 0 {
			break
		}
	}
	if _, err := d.DeleteExpired(bg, storage.Published, at, 0); err == nil {
		t.Error("DeleteExpired with a zero limit: no error")
	}
	if total != int64(len(expired)) {
		t.Errorf("deleted %d rows, want %d", total, len(expired))
	}
	for _, id := range expired {
		if _, err := d.Get(bg, storage.Published, id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("expired row %d still there (%v)", id, err)
		}
	}
	for _, id := range append(kept, pending.ID) {
		get(t, d, storage.Published, id)
	}
}

func (s *suite[TTx]) attemptHistory(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	m := s.msg("history", t0.Add(-time.Second))
	s.insert(t, d, m)
	if r := get(t, d, storage.Published, m.ID); len(r.Attempts) != 0 {
		t.Fatalf("new row has attempts %v", r.Attempts)
	}
	// 24 failures and a success: the row keeps the last 20, in order.
	const failures = 24
	var want []storage.Attempt
	at := t0
	for i := range failures {
		c := claim(t, d, storage.Published, at, time.Minute, 1)
		if len(c) != 1 {
			t.Fatalf("attempt %d: claimed %d rows", i+1, len(c))
		}
		a := storage.Attempt{At: at, Duration: time.Duration(i+1)*time.Millisecond + 250*time.Microsecond, Error: fmt.Sprintf("boom %d", i+1)}
		want = append(want, a)
		next := at.Add(time.Second)
		if _, err := d.Fail(bg, storage.Published, lease(c[0]), storage.Failure{
			Error: a.Error, Now: at, NextAttemptAt: next, Attempt: a, // MaxAttempts 0: no limit
		}); err != nil {
			t.Fatalf("attempt %d: Fail: %v", i+1, err)
		}
		if i == 2 {
			checkAttempts(t, "after 3 failures", get(t, d, storage.Published, m.ID).Attempts, want)
		}
		at = next
	}
	c := claim(t, d, storage.Published, at, time.Minute, 1)
	if len(c) != 1 {
		t.Fatalf("after %d failures without a limit: claimed %d rows, want the row still Scheduled", failures, len(c))
	}
	ok := storage.Attempt{At: at, Duration: 1500 * time.Microsecond}
	want = append(want, ok)
	if n, err := d.Succeed(bg, storage.Published, []storage.Completed{{Lease: lease(c[0]), Attempt: ok}}, at.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("Succeed: %d %v", n, err)
	}
	r := get(t, d, storage.Published, m.ID)
	if r.Retries != failures || r.Status != storage.StatusSucceeded {
		t.Errorf("row: retries %d status %s, want %d Succeeded", r.Retries, r.Status, failures)
	}
	checkAttempts(t, "after 25 attempts", r.Attempts, want[len(want)-storage.MaxAttemptHistory:])
	// Release records no attempt; the received table keeps a history too.
	rm := s.received("history-1", "g", "history", nil)
	tok := ids.Token()
	if _, err := d.InsertReceived(bg, rm, tok, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Release(bg, storage.Received, []storage.Lease{{ID: rm.ID, Token: tok}}, t0, "unreachable"); err != nil {
		t.Fatal(err)
	}
	rc := claim(t, d, storage.Received, t0, time.Minute, 1)
	if len(rc) != 1 || len(rc[0].Attempts) != 0 {
		t.Fatalf("received claim after Release: %d rows, attempts %v", len(rc), rc)
	}
	ra := storage.Attempt{At: t0, Duration: 2 * time.Second, Error: "handler: no"}
	if _, err := d.Fail(bg, storage.Received, lease(rc[0]), storage.Failure{Error: ra.Error, Now: t0, NextAttemptAt: t0, MaxAttempts: 1, ExpiresAt: t0.Add(time.Hour), Attempt: ra}); err != nil {
		t.Fatal(err)
	}
	checkAttempts(t, "received row", get(t, d, storage.Received, rm.ID).Attempts, []storage.Attempt{ra})
}

// checkAttempts compares a history read back with the attempts recorded.
func checkAttempts(t *testing.T, what string, got, want []storage.Attempt) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d attempts, want %d: %+v", what, len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.At.Equal(w.At) || g.At.Location() != time.UTC || g.Duration != w.Duration || g.Error != w.Error {
			t.Errorf("%s: attempt %d is %+v, want %+v", what, i, g, w)
		}
	}
}

func (s *suite[TTx]) succeedBatch(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	const n = 1000
	c := s.insertClaimed(t, d, "batch", t0, n)
	done := make([]storage.Completed, n)
	want := map[int64]storage.Attempt{}
	for i, m := range c {
		a := storage.Attempt{At: t0.Add(time.Duration(i) * time.Microsecond), Duration: time.Duration(i) * time.Microsecond}
		done[i] = storage.Completed{Lease: lease(m), Attempt: a}
		want[m.ID] = a
	}
	if got, err := d.Succeed(bg, storage.Published, done, t0.Add(time.Hour)); err != nil || got != n {
		t.Fatalf("Succeed of %d rows: %d %v", n, got, err)
	}
	for _, m := range []*storage.Message{c[0], c[n/2], c[n-1]} {
		r := get(t, d, storage.Published, m.ID)
		if r.Status != storage.StatusSucceeded {
			t.Errorf("row %d: %s", m.ID, r.Status)
		}
		checkAttempts(t, fmt.Sprintf("row %d", m.ID), r.Attempts, []storage.Attempt{want[m.ID]})
	}
	rows, err := d.List(bg, storage.Filter{Kind: storage.Published, Status: storage.StatusSucceeded, Limit: n})
	if err != nil || len(rows) != n {
		t.Fatalf("List of Succeeded rows: %d %v", len(rows), err)
	}
	for _, r := range rows {
		checkAttempts(t, fmt.Sprintf("listed row %d", r.ID), r.Attempts, []storage.Attempt{want[r.ID]})
	}
}
