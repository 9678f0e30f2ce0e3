// The FailBatch area: FailBatch of a Store that implements
// storage.FailBatcher (skipped for one that does not).

package storagetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// claimAll claims the n due rows of kind at at, or fails the test.
func claimAll(t *testing.T, d storage.Store, kind storage.Kind, at time.Time, n int) map[int64]*storage.Message {
	t.Helper()
	c := claim(t, d, kind, at, time.Minute, n+1)
	if len(c) != n {
		t.Fatalf("claimed %d %s rows, want %d", len(c), kind, n)
	}
	byID := make(map[int64]*storage.Message, n)
	for _, m := range c {
		byID[m.ID] = m
	}
	return byID
}

// failBatch runs FailBatch and checks that it returns one outcome per row.
func failBatch(t *testing.T, b storage.FailBatcher, kind storage.Kind, rows []storage.FailedAttempt) []storage.FailOutcome {
	t.Helper()
	out, err := b.FailBatch(bg, kind, rows)
	if err != nil {
		t.Fatalf("FailBatch of %d rows: %v", len(rows), err)
	}
	if len(out) != len(rows) {
		t.Fatalf("FailBatch of %d rows: %d outcomes", len(rows), len(out))
	}
	return out
}

// failBatchMix fails, in one batch, rows that are retried, that reach
// their MaxAttempts (one with an earlier failure), that fail permanently,
// that have no limit, and rows whose lease is lost (taken by another
// claim; Succeeded meanwhile), in an order that is not the rows' id
// order, and checks each row's outcome, in order, and state.
func (s *suite[TTx]) failBatchMix(t *testing.T) {
	d, b := newAs[storage.FailBatcher](t, s)
	t0 := now()
	retry, final, earlier, perm, unlimited, taken, done := s.msg("fb.retry", t0.Add(-time.Minute)),
		s.msg("fb.final", t0.Add(-time.Minute)), s.msg("fb.earlier", t0.Add(-3*time.Minute)),
		s.msg("fb.perm", t0.Add(-time.Minute)), s.msg("fb.unlimited", t0.Add(-time.Minute)),
		s.msg("fb.taken", t0.Add(-2*time.Minute)), s.msg("fb.done", t0.Add(-time.Minute))
	s.insert(t, d, retry, final, earlier, perm, unlimited, taken, done)
	// earlier, the only row due at t0-150s, fails once (Fail), due again at t0.
	c := claimAll(t, d, storage.Published, t0.Add(-150*time.Second), 1)
	if _, err := d.Fail(bg, storage.Published, lease(c[earlier.ID]), storage.Failure{Error: "first", Now: t0, NextAttemptAt: t0, MaxAttempts: 2}); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	// taken, the only row due at t0-90s, is claimed under a lease that
	// ends at t0-30s: the claim below takes it again, and this lease is lost.
	stale := lease(claimAll(t, d, storage.Published, t0.Add(-90*time.Second), 1)[taken.ID])
	at := t0.Add(time.Minute)
	c = claimAll(t, d, storage.Published, at, 7)
	// done succeeds.
	if _, err := d.Succeed(bg, storage.Published, completed([]storage.Lease{lease(c[done.ID])}), at.Add(time.Hour)); err != nil {
		t.Fatalf("Succeed: %v", err)
	}
	beforeTaken := get(t, d, storage.Published, taken.ID)

	next, exp := at.Add(10*time.Second), at.Add(24*time.Hour)
	row := func(m *storage.Message, l storage.Lease, max int, permanent bool, i int) storage.FailedAttempt {
		text := fmt.Sprintf("boom %s", m.Name)
		return storage.FailedAttempt{Lease: l, Failure: storage.Failure{
			Error: text, Now: at, NextAttemptAt: next.Add(time.Duration(i) * time.Second), MaxAttempts: max,
			Permanent: permanent, ExpiresAt: exp.Add(time.Duration(i) * time.Second),
			Attempt: storage.Attempt{At: at.Add(time.Duration(i) * time.Millisecond), Duration: time.Duration(i+1) * time.Millisecond},
		}}
	}
	rows := []storage.FailedAttempt{
		row(unlimited, lease(c[unlimited.ID]), 0, false, 0),
		row(taken, stale, 5, false, 1),
		row(perm, lease(c[perm.ID]), 50, true, 2),
		row(final, lease(c[final.ID]), 1, false, 3),
		row(done, lease(c[done.ID]), 5, false, 4),
		row(earlier, lease(c[earlier.ID]), 2, false, 5),
		row(retry, lease(c[retry.ID]), 5, false, 6),
	}
	type outcome struct {
		lost    bool
		retries int
		status  storage.Status
	}
	wants := []outcome{
		{retries: 1, status: storage.StatusScheduled},
		{lost: true},
		{retries: 1, status: storage.StatusFailed},
		{retries: 1, status: storage.StatusFailed},
		{lost: true},
		{retries: 2, status: storage.StatusFailed},
		{retries: 1, status: storage.StatusScheduled},
	}
	out := failBatch(t, b, storage.Published, rows)
	for i, w := range wants {
		g := out[i]
		if g.LeaseLost != w.lost || (!w.lost && (g.Retries != w.retries || g.Status != w.status)) {
			t.Errorf("outcome %d (row %d): %+v; want lost %v, retries %d, %s", i, rows[i].ID, g, w.lost, w.retries, w.status)
		}
		r := get(t, d, storage.Published, rows[i].ID)
		if w.lost {
			continue
		}
		f := rows[i].Failure
		if r.Retries != w.retries || r.Status != w.status || r.LastError != f.Error {
			t.Errorf("row %d: retries %d, %s, error %q; want %d, %s, %q", i, r.Retries, r.Status, r.LastError, w.retries, w.status, f.Error)
		}
		if r.LeaseToken != 0 || !r.LeaseUntil.IsZero() {
			t.Errorf("row %d: lease %d until %v kept", i, r.LeaseToken, r.LeaseUntil)
		}
		if w.status == storage.StatusScheduled {
			if !r.NextAttemptAt.Equal(f.NextAttemptAt) || !r.ExpiresAt.IsZero() {
				t.Errorf("row %d retried: due %v, expires %v; want due %v, no expiry", i, r.NextAttemptAt, r.ExpiresAt, f.NextAttemptAt)
			}
		} else if !r.ExpiresAt.Equal(f.ExpiresAt) {
			t.Errorf("row %d Failed: expires %v, want %v", i, r.ExpiresAt, f.ExpiresAt)
		}
		if len(r.Attempts) != w.retries {
			t.Fatalf("row %d: %d attempts in its history, want %d", i, len(r.Attempts), w.retries)
		}
		checkAttempts(t, fmt.Sprintf("row %d's last attempt", i), r.Attempts[len(r.Attempts)-1:],
			[]storage.Attempt{{At: f.Attempt.At, Duration: f.Attempt.Duration, Error: f.Error}})
	}
	// The rows whose lease was lost are as they were.
	if r := get(t, d, storage.Published, taken.ID); r.Retries != 0 || r.LeaseToken != beforeTaken.LeaseToken ||
		!r.LeaseUntil.Equal(beforeTaken.LeaseUntil) || r.LastError != "" || len(r.Attempts) != 0 {
		t.Errorf("row taken by another claim changed: retries %d, lease %d until %v, error %q, %d attempts",
			r.Retries, r.LeaseToken, r.LeaseUntil, r.LastError, len(r.Attempts))
	}
	if r := get(t, d, storage.Published, done.ID); r.Status != storage.StatusSucceeded || r.Retries != 0 || len(r.Attempts) != 1 {
		t.Errorf("Succeeded row changed: %s, retries %d, %d attempts", r.Status, r.Retries, len(r.Attempts))
	}
	// The retried rows are due at their NextAttemptAt, the Failed ones never.
	got := claim(t, d, storage.Published, at.Add(time.Hour), time.Minute, 10)
	if g := idsOf(got); len(g) != 3 || !hasIDs(g, unlimited.ID, retry.ID, taken.ID) {
		t.Errorf("claim after FailBatch took %v; want %d, %d and %d", g, unlimited.ID, retry.ID, taken.ID)
	}
}

// hasIDs reports whether got holds every id of want.
func hasIDs(got []int64, want ...int64) bool {
	in := map[int64]bool{}
	for _, id := range got {
		in[id] = true
	}
	for _, id := range want {
		if !in[id] {
			return false
		}
	}
	return true
}

// failBatchOtherToken checks that FailBatch acts on no row but those
// still held under the batch's leases: rows claimed under another token
// and listed with a wrong one, and rows not listed, keep their state.
func (s *suite[TTx]) failBatchOtherToken(t *testing.T) {
	d, b := newAs[storage.FailBatcher](t, s)
	t0 := now()
	mine, theirs, other := s.msg("fb.mine", t0.Add(-time.Second)), s.msg("fb.theirs", t0.Add(-time.Second)), s.msg("fb.other", t0.Add(-time.Second))
	s.insert(t, d, mine, theirs, other)
	c := claimAll(t, d, storage.Published, t0, 3)
	f := storage.Failure{Error: "boom", Now: t0, NextAttemptAt: t0.Add(time.Second), MaxAttempts: 1, ExpiresAt: t0.Add(time.Hour)}
	out := failBatch(t, b, storage.Published, []storage.FailedAttempt{
		{Lease: lease(c[mine.ID]), Failure: f},
		{Lease: storage.Lease{ID: theirs.ID, Token: c[theirs.ID].LeaseToken + 1}, Failure: f},
		{Lease: storage.Lease{ID: s.id(), Token: c[mine.ID].LeaseToken}, Failure: f}, // no such row
	})
	if out[0].LeaseLost || out[0].Status != storage.StatusFailed || !out[1].LeaseLost || !out[2].LeaseLost {
		t.Errorf("outcomes %+v; want Failed, lost, lost", out)
	}
	for _, m := range []*storage.Message{theirs, other} {
		r := get(t, d, storage.Published, m.ID)
		if r.Status != storage.StatusScheduled || r.Retries != 0 || r.LeaseToken != c[m.ID].LeaseToken || r.LastError != "" || len(r.Attempts) != 0 {
			t.Errorf("row %d not in the batch's leases changed: %s, retries %d, lease %d (was %d), error %q",
				m.ID, r.Status, r.Retries, r.LeaseToken, c[m.ID].LeaseToken, r.LastError)
		}
	}
	// A lease lost stays lost: the same batch again records nothing.
	again := failBatch(t, b, storage.Published, []storage.FailedAttempt{{Lease: lease(c[mine.ID]), Failure: f}})
	if !again[0].LeaseLost {
		t.Errorf("second FailBatch of the same lease: %+v; want lost", again[0])
	}
	if r := get(t, d, storage.Published, mine.ID); r.Retries != 1 || len(r.Attempts) != 1 {
		t.Errorf("row failed twice under one lease: retries %d, %d attempts", r.Retries, len(r.Attempts))
	}
}

// failBatchEmpty checks that an empty batch records nothing and returns
// no outcome, without an error.
func (s *suite[TTx]) failBatchEmpty(t *testing.T) {
	_, b := newAs[storage.FailBatcher](t, s)
	for _, rows := range [][]storage.FailedAttempt{nil, {}} {
		out, err := b.FailBatch(bg, storage.Published, rows)
		if err != nil || len(out) != 0 {
			t.Errorf("FailBatch of %v: %v, %v; want no outcome, no error", rows, out, err)
		}
	}
}

// failBatchDuplicate checks that a batch naming a row twice is refused
// as storage.ErrPermanent and records nothing.
func (s *suite[TTx]) failBatchDuplicate(t *testing.T) {
	d, b := newAs[storage.FailBatcher](t, s)
	t0 := now()
	m, n := s.msg("fb.dup", t0.Add(-time.Second)), s.msg("fb.dup", t0.Add(-time.Second))
	s.insert(t, d, m, n)
	c := claimAll(t, d, storage.Published, t0, 2)
	f := storage.Failure{Error: "boom", Now: t0, NextAttemptAt: t0, MaxAttempts: 5}
	_, err := b.FailBatch(bg, storage.Published, []storage.FailedAttempt{
		{Lease: lease(c[n.ID]), Failure: f}, {Lease: lease(c[m.ID]), Failure: f}, {Lease: lease(c[m.ID]), Failure: f},
	})
	if !errors.Is(err, storage.ErrPermanent) {
		t.Errorf("FailBatch naming row %d twice: %v; want storage.ErrPermanent", m.ID, err)
	}
	for _, x := range []*storage.Message{m, n} {
		if r := get(t, d, storage.Published, x.ID); r.Retries != 0 || r.LeaseToken != c[x.ID].LeaseToken {
			t.Errorf("row %d changed by a refused batch: retries %d, lease %d", x.ID, r.Retries, r.LeaseToken)
		}
	}
}

// failBatchText checks that FailBatch stores a long error text with
// invalid UTF-8 and NUL as Fail stores it, in a batch whose texts differ
// in length (a later row's longer than the first's), on received rows.
func (s *suite[TTx]) failBatchText(t *testing.T) {
	d, b := newAs[storage.FailBatcher](t, s)
	long := "\x00\xff " + strings.Repeat("日本", 100_000/6)
	texts := []string{"short", "a longer text than the first row's, é ü ß, " + strings.Repeat("x", 900), long}
	var single, batch []*storage.Message
	for i := range texts {
		single = append(single, s.received(fmt.Sprintf("fb-single-%d-%d", i, s.id()), "fb.group", "fb.text", []byte("{}")))
		batch = append(batch, s.received(fmt.Sprintf("fb-batch-%d-%d", i, s.id()), "fb.group", "fb.text", []byte("{}")))
	}
	t0 := now()
	tok := ids.Token()
	for _, m := range append(append([]*storage.Message{}, single...), batch...) {
		if _, err := d.InsertReceived(bg, m, tok, t0.Add(time.Minute)); err != nil {
			t.Fatalf("InsertReceived: %v", err)
		}
	}
	rows := make([]storage.FailedAttempt, len(texts))
	for i, text := range texts {
		f := storage.Failure{Error: text, Now: t0, NextAttemptAt: t0.Add(time.Minute), MaxAttempts: 3, ExpiresAt: t0.Add(time.Hour),
			Attempt: storage.Attempt{At: t0, Duration: time.Second, Error: text}}
		if _, err := d.Fail(bg, storage.Received, storage.Lease{ID: single[i].ID, Token: tok}, f); err != nil {
			t.Fatalf("Fail with a text of %d bytes: %v", len(text), err)
		}
		rows[i] = storage.FailedAttempt{Lease: storage.Lease{ID: batch[i].ID, Token: tok}, Failure: f}
	}
	out := failBatch(t, b, storage.Received, rows)
	for i := range texts {
		if out[i].LeaseLost || out[i].Retries != 1 || out[i].Status != storage.StatusScheduled {
			t.Errorf("outcome %d: %+v; want Scheduled after 1", i, out[i])
		}
		want, got := get(t, d, storage.Received, single[i].ID), get(t, d, storage.Received, batch[i].ID)
		if got.LastError != want.LastError {
			t.Errorf("row %d: FailBatch stored an error of %d bytes starting %.40q; Fail stored %d bytes starting %.40q",
				i, len(got.LastError), got.LastError, len(want.LastError), want.LastError)
		}
		if len(got.Attempts) != 1 || len(want.Attempts) != 1 || got.Attempts[0].Error != want.Attempts[0].Error {
			t.Errorf("row %d: FailBatch's attempts %d, Fail's %d, or their errors differ", i, len(got.Attempts), len(want.Attempts))
		}
	}
}

// failBatchLarge fails 1,100 rows in one batch (past a statement's rows
// in a driver that splits a batch), every other one under a lost lease.
func (s *suite[TTx]) failBatchLarge(t *testing.T) {
	d, b := newAs[storage.FailBatcher](t, s)
	t0 := now()
	const n = 1100
	c := s.insertClaimed(t, d, "fb.large", t0, n)
	rows := make([]storage.FailedAttempt, n)
	for i, m := range c {
		l := lease(m)
		if i%2 == 1 {
			l.Token++ // lost
		}
		rows[i] = storage.FailedAttempt{Lease: l, Failure: storage.Failure{Error: fmt.Sprintf("boom %d", i), Now: t0,
			NextAttemptAt: t0.Add(time.Minute), MaxAttempts: 5, Attempt: storage.Attempt{At: t0, Duration: time.Millisecond}}}
	}
	out := failBatch(t, b, storage.Published, rows)
	for i, o := range out {
		if lost := i%2 == 1; o.LeaseLost != lost || (!lost && (o.Retries != 1 || o.Status != storage.StatusScheduled)) {
			t.Fatalf("outcome %d of %d: %+v; want lost %v", i, n, o, lost)
		}
	}
	for _, i := range []int{0, 1, 998, 999, 1000, 1001, n - 1} {
		r := get(t, d, storage.Published, rows[i].ID)
		if wantRetries := 1 - i%2; r.Retries != wantRetries || len(r.Attempts) != wantRetries {
			t.Errorf("row %d: retries %d, %d attempts; want %d", i, r.Retries, len(r.Attempts), wantRetries)
		}
		if i%2 == 0 && r.LastError != rows[i].Failure.Error {
			t.Errorf("row %d: error %q, want %q", i, r.LastError, rows[i].Failure.Error)
		}
	}
}
