package engine

import (
	"sync/atomic"
	"time"
)

// due is the earliest time a row of one table is known to become due: a
// delayed publish of this process, a retry this process scheduled, or what
// the storage reported after an idle claim (Store.NextDue). The claim loop
// sleeps until then, if that is sooner than its poll. The zero value knows
// of none.
type due struct {
	at atomic.Int64 // Unix nanoseconds; 0 = none
}

// note records that a row becomes due at t, if that is the earliest
// known; it reports whether it was.
func (d *due) note(t time.Time) bool {
	if t.IsZero() {
		return false
	}
	n := t.UnixNano()
	for {
		cur := d.at.Load()
		if cur != 0 && cur <= n {
			return false
		}
		if d.at.CompareAndSwap(cur, n) {
			return true
		}
	}
}

// passed forgets the known due time if it is not after now: the claim at
// now has taken what was due.
func (d *due) passed(now time.Time) {
	cur := d.at.Load()
	if cur != 0 && cur <= now.UnixNano() {
		d.at.CompareAndSwap(cur, 0)
	}
}

// sooner returns wait, or the time until the known due time if that is
// shorter (and not negative).
func (d *due) sooner(wait time.Duration) time.Duration {
	cur := d.at.Load()
	if cur == 0 {
		return wait
	}
	return max(0, min(wait, time.Until(time.Unix(0, cur))))
}
