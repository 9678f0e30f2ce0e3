package engine

import (
	"slices"
	"testing"

	"github.com/gocap/gocap/storage"
)

// TestLimiter: rows beyond the limit wait in order, are handed over as
// calls end (admitted once, without counting twice), overflow past
// maxWaiting, and are given back when run stops.
func TestLimiter(t *testing.T) {
	l := &limiter{max: 2, maxWaiting: 2}
	rows := make([]*storage.Message, 6)
	for i := range rows {
		rows[i] = &storage.Message{ID: int64(i + 1)}
	}
	var outcome []string
	for _, m := range rows[:5] {
		switch run, full := l.enter(m); {
		case run:
			outcome = append(outcome, "run")
		case full:
			outcome = append(outcome, "full")
		default:
			outcome = append(outcome, "wait")
		}
	}
	if want := []string{"run", "run", "wait", "wait", "full"}; !slices.Equal(outcome, want) {
		t.Fatalf("enter: %v, want %v", outcome, want)
	}
	next, _ := l.leave(rows[0], false)
	if next != rows[2] {
		t.Fatalf("the first call to end hands over %v, want row 3", next)
	}
	if run, _ := l.enter(next); !run {
		t.Fatal("a handed-over row is not admitted")
	}
	if l.running != 2 {
		t.Fatalf("%d running after a hand-over, want 2", l.running)
	}
	if run, full := l.enter(rows[5]); run || full {
		t.Fatalf("a new row while one waits: run %v full %v, want it to wait", run, full)
	}
	next, drop := l.leave(rows[1], true)
	if next != nil || len(drop) != 2 || drop[0] != rows[3] || drop[1] != rows[5] {
		t.Fatalf("stopping: next %v, dropped %v; want rows 4 and 6 dropped", next, drop)
	}
	l.leave(rows[2], false)
	if l.running != 0 || len(l.waiting) != 0 {
		t.Errorf("after every call ended: %d running, %d waiting", l.running, len(l.waiting))
	}
}

// TestLimiterWithdrawnHandOver: a row handed over that the caller does
// not run (handOver releases a row whose lease ran low) is withdrawn: the
// call's place goes to the next waiting row or ends, and the row, claimed
// again later, enters as any other — it does not run beside the limit.
func TestLimiterWithdrawnHandOver(t *testing.T) {
	l := &limiter{max: 1, maxWaiting: 4}
	a, b, c := &storage.Message{ID: 1}, &storage.Message{ID: 2}, &storage.Message{ID: 3}
	if run, _ := l.enter(a); !run {
		t.Fatal("a is not admitted")
	}
	if run, full := l.enter(b); run || full {
		t.Fatal("b does not wait behind a")
	}
	// a ends: b is handed over, but released instead of run.
	if next, _ := l.leave(a, false); next != b {
		t.Fatalf("a's end hands over %v, want b", next)
	}
	if next, _ := l.withdraw(b, false); next != nil || l.running != 0 {
		t.Fatalf("after b's hand-over was withdrawn: next %v, %d running; want none", next, l.running)
	}
	// b, claimed again, runs; c must wait for it.
	if run, _ := l.enter(b); !run {
		t.Fatal("b claimed again is not admitted")
	}
	if run, full := l.enter(c); run || full {
		t.Errorf("c admitted beside b under a limit of 1 (run %v, full %v)", run, full)
	}
	if next, _ := l.leave(b, false); next != c {
		t.Fatalf("b's end hands over %v, want c", next)
	}
	if run, _ := l.enter(c); !run {
		t.Fatal("c handed over is not admitted")
	}
	l.leave(c, false)
	if l.running != 0 || len(l.handed) != 0 || len(l.admitted) != 0 {
		t.Errorf("after every call ended: %d running, handed %v", l.running, l.handed)
	}
}

// TestLimiterLeaveOfRowNotAdmitted: a row that holds no place — it
// waited, was released, or is no call of the handler at all (a keyed
// row that could not be stored, failed at its turn without a call) —
// frees none when it ends: the limit holds.
func TestLimiterLeaveOfRowNotAdmitted(t *testing.T) {
	l := &limiter{max: 1, maxWaiting: 4}
	a, b, u := &storage.Message{ID: 1}, &storage.Message{ID: 2}, &storage.Message{ID: 3}
	if run, _ := l.enter(a); !run {
		t.Fatal("a is not admitted")
	}
	if run, full := l.enter(b); run || full {
		t.Fatal("b does not wait behind a")
	}
	if next, drop := l.leave(u, false); next != nil || drop != nil || l.running != 1 || len(l.waiting) != 1 {
		t.Fatalf("a row never admitted left: next %v, drop %v, %d running, %d waiting; want nothing changed",
			next, drop, l.running, len(l.waiting))
	}
	if next, _ := l.leave(a, false); next != b {
		t.Fatalf("a's end hands over %v, want b", next)
	}
}

// TestLimiterRowAdmittedTwice: a call that overran its lease while its
// row, claimed again, entered a second call holds a place of its own: the
// two calls' ends free both places.
func TestLimiterRowAdmittedTwice(t *testing.T) {
	l := &limiter{max: 2, maxWaiting: 4}
	r := &storage.Message{ID: 1}
	for i := range 2 {
		if run, _ := l.enter(r); !run {
			t.Fatalf("call %d of the row is not admitted", i+1)
		}
	}
	l.leave(r, false)
	l.leave(r, false)
	if l.running != 0 || len(l.admitted) != 0 {
		t.Errorf("after both calls ended: %d running, admitted %v; want none", l.running, l.admitted)
	}
}

// TestLimiterTwoCopiesOfARow: a row that waited past its lease's end and
// was claimed again waits as two copies (two leases of one row); each
// copy's hand-over, withdrawal and call is its own, so that no place is
// lost and none is given twice.
func TestLimiterTwoCopiesOfARow(t *testing.T) {
	stale, fresh := &storage.Message{ID: 7, LeaseToken: 1}, &storage.Message{ID: 7, LeaseToken: 2}

	// Two calls end at once and hand over both copies; the stale one is
	// withdrawn before the fresh one enters.
	l := &limiter{max: 2, maxWaiting: 4}
	c1, c2 := &storage.Message{ID: 1}, &storage.Message{ID: 2}
	for _, m := range []*storage.Message{c1, c2, stale, fresh} {
		l.enter(m)
	}
	if n1, _ := l.leave(c1, false); n1 != stale {
		t.Fatalf("c1's end hands over %v, want the stale copy", n1)
	}
	if n2, _ := l.leave(c2, false); n2 != fresh {
		t.Fatalf("c2's end hands over %v, want the fresh copy", n2)
	}
	l.withdraw(stale, false)
	if run, _ := l.enter(fresh); !run {
		t.Fatal("the fresh copy, handed over, is not admitted")
	}
	l.leave(fresh, false)
	if l.running != 0 || len(l.handed) != 0 || len(l.admitted) != 0 {
		t.Errorf("after every call ended: %d running, handed %v, admitted %v; want none", l.running, l.handed, l.admitted)
	}

	// The fresh copy arrives between the stale one's hand-over and its
	// withdrawal: it waits for the place, which the withdrawal passes on
	// to it, once.
	l = &limiter{max: 1, maxWaiting: 4}
	c, d := &storage.Message{ID: 1}, &storage.Message{ID: 9}
	l.enter(c)
	l.enter(stale)
	if n, _ := l.leave(c, false); n != stale {
		t.Fatalf("c's end hands over %v, want the stale copy", n)
	}
	if run, _ := l.enter(fresh); run {
		t.Fatal("the fresh copy runs on the stale copy's hand-over")
	}
	if n, _ := l.withdraw(stale, false); n != fresh {
		t.Fatalf("the stale copy's withdrawal hands over %v, want the fresh copy", n)
	}
	if run, _ := l.enter(fresh); !run {
		t.Fatal("the fresh copy, handed over, is not admitted")
	}
	if run, _ := l.enter(d); run {
		t.Errorf("a third row runs beside the fresh copy under a limit of 1 (%d running)", l.running)
	}
}
