package engine

import (
	"sync/atomic"
	"time"

	"github.com/gocap/gocap/storage"
)

// Claims from a floor (storage.ClaimRequest.DueFrom).
//
// On PostgreSQL each row completed since the table's last VACUUM leaves an
// entry in the pending index, dead, before every row still due (its
// next_attempt_at is in the past): a claim that reads the index from its
// start reads them all, an index page per ~170 rows completed, hundreds
// of times a second under a sustained load, while autovacuum runs at most
// once a minute. So the claim loop claims from a floor most of the time: a
// moment before which a claim from the start found every due row.
//
// Rows due before the floor can still become claimable after it was set:
// a row published in a transaction that commits late (its NextAttemptAt is
// the time of its Publish, not of its commit), the row of a holder whose
// lease ended without an outcome, a row of a process whose clock is
// behind. The floor lags its claim by lateCommit, which covers the usual
// transaction, and a claim from the start at least every fullClaimEvery
// finds the others: they wait that much longer at most.
//
// Rows of an ordering key wait behind their key's head and become
// claimable when it is done, with their own, earlier, NextAttemptAt: a
// processor that claimed or attempted a keyed row within the last lease
// (received heads are attempted without a claim) claims from the start
// (the rows of keys whose heads another process holds are that process's
// to follow).
const (
	fullClaimEvery = time.Second
	lateCommit     = time.Second
)

// dueFloor is the claim loop's floor: it tells each claim where to start
// (from) and learns from its outcome (claimed); only the claim loop calls
// these two. keyed is told of the keyed rows attempted.
type dueFloor struct {
	floor    time.Time // claims may start here; zero: from the start
	lastFull time.Time // the last claim from the start
	// keyedUntil: no floor before then (Unix nanoseconds), as a keyed
	// row was claimed or attempted; set by any goroutine (keyed).
	keyedUntil atomic.Int64
}

// keyed turns the floor off for lease after now if one of ms has an
// ordering key. Safe for concurrent use.
func (f *dueFloor) keyed(now time.Time, ms []*storage.Message, lease time.Duration) {
	for _, m := range ms {
		if m.OrderingKey != "" {
			f.keyedUntil.Store(now.Add(lease).UnixNano())
			return
		}
	}
}

// from returns the DueFrom of a claim at now: zero (from the start)
// without a floor, while keyed rows were claimed recently, or if the last
// claim from the start was fullClaimEvery ago or more (or the clock went
// back).
func (f *dueFloor) from(now time.Time) time.Time {
	if f.floor.IsZero() || now.UnixNano() < f.keyedUntil.Load() || now.Sub(f.lastFull) >= fullClaimEvery || now.Before(f.lastFull) {
		return time.Time{}
	}
	return f.floor
}

// claimed records a claim at now that started at from (zero: from the
// start), asked for up to limit rows and got msgs, under leases of lease.
// A claim from the start that got fewer rows than its limit saw every due
// row, and sets the floor lateCommit before now; one that got its limit
// (a backlog, whose oldest rows are at the start) clears it, so that the
// claims read from the start until the backlog is gone. A keyed row among
// msgs turns the floor off for a lease.
func (f *dueFloor) claimed(now, from time.Time, msgs []*storage.Message, limit int, lease time.Duration) {
	f.keyed(now, msgs, lease)
	if !from.IsZero() {
		return
	}
	f.lastFull = now
	if len(msgs) < limit {
		f.floor = now.Add(-lateCommit)
	} else {
		f.floor = time.Time{}
	}
}
