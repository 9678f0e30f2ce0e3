package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gocap/gocap/storage"
)

// limiter bounds the calls of one subscription's handler that run at once
// (Subscription.Concurrency) without blocking the worker pool: a row that
// finds its subscription at its limit does not wait on its worker; it is
// put aside with its lease (its worker and slot go to other rows), and the
// next call of that subscription to finish runs it in its own worker and
// slot (receiver.handOver). At most maxWaiting rows wait so; a row beyond
// them is released to the storage, due again after limitRetry, so that a
// burst of one subscription fills neither memory nor the pool.
//
// Invariant: rows wait only while running == max, so a call that finishes
// always finds the next waiting row to hand over.
type limiter struct {
	max        int
	maxWaiting int

	mu      sync.Mutex
	running int                // calls admitted, handed over ones included
	waiting []*storage.Message // in arrival order
	// handed holds the rows handed over, admitted already; admitted
	// counts the calls that entered and have not left. Both are kept by
	// lease, not by row: a row waiting past its lease's end may be
	// claimed again, and its two copies are two calls.
	handed   map[storage.Lease]bool
	admitted map[storage.Lease]int
}

// leaseOf is the lease m is attempted under: the limiter's key of a call.
func leaseOf(m *storage.Message) storage.Lease {
	return storage.Lease{ID: m.ID, Token: m.LeaseToken}
}

// limitRetry is how long a row released because too many rows of its
// subscription wait stays unclaimed.
const limitRetry = 500 * time.Millisecond

// enter admits m to run now, or puts it aside (wait) or, with too many
// waiting, tells the caller to release it (full).
func (l *limiter) enter(m *storage.Message) (run, full bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.admitted == nil {
		l.admitted = map[storage.Lease]int{}
	}
	key := leaseOf(m)
	if l.handed[key] {
		delete(l.handed, key)
		l.admitted[key]++
		return true, false
	}
	if l.running < l.max {
		l.running++
		l.admitted[key]++
		return true, false
	}
	if len(l.waiting) >= l.maxWaiting {
		return false, true
	}
	l.waiting = append(l.waiting, m)
	return false, false
}

// leave ends the call of m and returns the row to run next in its place,
// admitted, or nil (see passOn). A row that was not admitted (it waited,
// was released, or never entered: a row that is no call of the handler)
// holds no place: leaving does nothing.
func (l *limiter) leave(m *storage.Message, stop bool) (next *storage.Message, drop []*storage.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := leaseOf(m)
	switch n := l.admitted[key]; n {
	case 0:
		return nil, nil
	case 1:
		delete(l.admitted, key)
	default:
		l.admitted[key] = n - 1
	}
	return l.passOn(stop)
}

// passOn gives the place of a call that ended to the next waiting row,
// which it returns, admitted; with stop set, or none waiting, the place
// ends, and with stop set it returns the waiting rows to be released.
// l.mu is held.
func (l *limiter) passOn(stop bool) (next *storage.Message, drop []*storage.Message) {
	if stop || len(l.waiting) == 0 {
		l.running--
		drop, l.waiting = l.waiting, nil
		return nil, drop
	}
	next = l.waiting[0]
	l.waiting[0] = nil
	l.waiting = l.waiting[1:]
	if l.handed == nil {
		l.handed = map[storage.Lease]bool{}
	}
	l.handed[leaseOf(next)] = true
	return next, nil
}

// withdraw takes back the admission of next, which leave or withdraw
// handed over but the caller does not run (it releases the row instead):
// should the row come back, claimed afresh, it enters as any other row.
// The place passes on, as when a call ends (passOn).
func (l *limiter) withdraw(next *storage.Message, stop bool) (*storage.Message, []*storage.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.handed, leaseOf(next))
	return l.passOn(stop)
}

// limited runs m's handler if its subscription is below its limit, puts
// it aside (errWaiting), or releases it (errReleased).
func (r *receiver) limited(ctx context.Context, s Subscription, m *storage.Message) error {
	run, full := s.limit.enter(m)
	switch {
	case run:
		return s.Handle(ctx, m)
	case full:
		r.release(ctx, []*storage.Message{m}, time.Now().Add(limitRetry),
			fmt.Sprintf("not attempted: %d rows of its subscription wait for its concurrency limit of %d", s.limit.maxWaiting, s.limit.max))
		return errReleased
	default:
		return errWaiting
	}
}

// handOver ends the call of m, whose outcome err is recorded or handed to
// the completer or failer (it needs err alone, not the stored result:
// the row keeps its lease until the outcome is written), and returns
// the next waiting row of its subscription to run in its place. It skips
// (releases) a waiting row whose lease would end during the call, and when
// run is stopping it releases all waiting rows.
func (r *receiver) handOver(m *storage.Message, err error, closing bool) *storage.Message {

	if err == errWaiting || err == errReleased {
		return nil // not admitted
	}
	s, ok := r.subscriptionFor(m.Group, m.Name)
	if !ok || s.limit == nil {
		return nil
	}
	next, drop := s.limit.leave(m, closing)
	for {
		if len(drop) > 0 {
			r.release(context.Background(), drop, time.Now(), "not attempted: the processor stopped while it waited for its subscription's concurrency limit")
		}
		if next == nil {
			return nil
		}
		if next.LeaseUntil.IsZero() || time.Until(next.LeaseUntil) > s.Timeout {
			return next
		}
		// Its lease would end during the call: release it to be claimed
		// afresh; its place passes on in turn.
		skipped := next
		next, drop = s.limit.withdraw(skipped, closing)
		r.release(context.Background(), []*storage.Message{skipped}, time.Now(), "not attempted: its lease ran out while it waited for its subscription's concurrency limit")
	}
}

// release gives the leases of rows that were not attempted (waiting for
// a concurrency limit, or stored as the processor stopped) back to the
// storage: they are due again at at, their retry count unchanged.
func (r *receiver) release(ctx context.Context, ms []*storage.Message, at time.Time, reason string) {
	leases := make([]storage.Lease, len(ms))
	for i, m := range ms {
		leases[i] = storage.Lease{ID: m.ID, Token: m.LeaseToken}
	}
	ctx, cancel := writeContext(ctx)
	defer cancel()
	if err := r.proc.releaseAt(ctx, leases, at, reason); err != nil {
		// The rows stay leased: a claim loop takes them when the lease ends.
		r.e.log.Warn("gocap: releasing rows that were not attempted failed; they run after their lease",
			"count", len(ms), "err", err)
		return
	}
	r.proc.dueAt(at)
}
