// Package backoff is the one backoff of gocap's engine and transports: a
// delay that doubles from a minimum to a maximum, and a sleep that ends
// with its context.
package backoff

import (
	"context"
	"time"
)

// Backoff doubles a delay from Min to Max. The zero value is not usable:
// set Min and Max. It is not safe for concurrent use.
type Backoff struct {
	// Min is the first delay and Max the longest.
	Min, Max time.Duration
	cur      time.Duration
}

// New returns a Backoff from min to max.
func New(min, max time.Duration) *Backoff { return &Backoff{Min: min, Max: max} }

// Next returns the next delay: Min first, then twice the last one, at most Max.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
	} else {
		b.cur = min(b.cur*2, b.Max)
	}
	return b.cur
}

// Reset makes the next delay Min again.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits d or until ctx ends; it reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
