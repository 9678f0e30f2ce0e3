package engine

import (
	"sync/atomic"
	"time"
)

// notifier decides which publishes ask the storage to notify processors
// of their commit. PostgreSQL commits transactions that sent a NOTIFY one
// at a time (it takes a database-wide lock for that), without group
// commit, so notifying from every transaction would cap concurrent
// publishers at one commit per WAL flush. At most one publish per interval
// notifies; the dispatcher, after each notification, polls every interval
// for a while, and so finds the rows of the publishes that did not notify
// as promptly.
type notifier struct {
	interval time.Duration
	last     atomic.Int64 // when a publish last notified, in Unix nanoseconds
}

// shouldNotify reports whether this publish is to notify: when none did
// within interval. Of concurrent callers, one wins.
func (n *notifier) shouldNotify() bool {
	if n.interval <= 0 {
		return true
	}
	now := time.Now().UnixNano()
	last := n.last.Load()
	if now-last < int64(n.interval) {
		return false
	}
	return n.last.CompareAndSwap(last, now)
}
