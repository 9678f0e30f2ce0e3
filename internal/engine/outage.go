package engine

import (
	"sync"
	"time"
)

// Pauses of dispatch while the transport cannot reach its broker: the
// first probe after outageProbeMin, then at most outageProbeMax apart, so
// that dispatch resumes within about outageProbeMax of the broker's return.
const (
	outageProbeMin = 100 * time.Millisecond
	outageProbeMax = time.Second
)

// outage tracks whether the transport is known to be down, and when the
// claim loop probes it next. The zero value is "up".
type outage struct {
	mu    sync.Mutex
	until time.Time // no claim before this; zero when up
	delay time.Duration
	since time.Time // when the outage was first seen; zero when up
}

// begin records a send that failed because the broker was unreachable. It
// returns the pause before the next probe, and whether this starts an
// outage. Failures seen during a pause do not lengthen it.
func (o *outage) begin() (pause time.Duration, first bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	first = o.since.IsZero()
	if first {
		o.since = now
	}
	if now.Before(o.until) {
		return o.until.Sub(now), first
	}
	if o.delay == 0 {
		o.delay = outageProbeMin
	} else {
		o.delay = min(2*o.delay, outageProbeMax)
	}
	o.until = now.Add(o.delay)
	return o.delay, first
}

// end records a send that reached the broker; it reports whether that
// ended an outage, and how long the outage lasted.
func (o *outage) end() (time.Duration, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return 0, false
	}
	lasted := time.Since(o.since)
	o.since, o.until, o.delay = time.Time{}, time.Time{}, 0
	return lasted, true
}

// wait returns how long the claim loop must still wait before it probes
// the transport; zero when it may claim now.
func (o *outage) wait() time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.until.IsZero() {
		return 0
	}
	return max(0, time.Until(o.until))
}
