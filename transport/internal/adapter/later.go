package adapter

import (
	"sync"
	"time"
)

// Later calls functions after a fixed delay, each from a timer of its own,
// so that no goroutine waits meanwhile: a transport hands a delivery whose
// handler failed back to its broker with it, without holding a worker.
// It belongs to one consumer: [Later.Stop] ends it when the consumer ends.
type Later struct {
	delay time.Duration

	mu      sync.Mutex
	stopped bool
	drop    bool                   // Stop(false): calls due now are not made
	pending map[*time.Timer]func() // timers not yet fired, and their calls
	wg      sync.WaitGroup         // calls pending or under way
}

// NewLater returns a Later that calls each function delay after [Later.After].
func NewLater(delay time.Duration) *Later {
	return &Later{delay: delay, pending: map[*time.Timer]func(){}}
}

// After calls f after the delay, on a goroutine of its own. After Stop it
// does nothing.
func (l *Later) After(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	l.wg.Add(1)
	var tm *time.Timer
	// l.mu is held until tm is set, and the timer's function takes it first.
	tm = time.AfterFunc(l.delay, func() {
		defer l.wg.Done()
		l.mu.Lock()
		delete(l.pending, tm)
		drop := l.drop
		l.mu.Unlock()
		if !drop {
			f()
		}
	})
	l.pending[tm] = f
}

// Stop ends l. The calls whose delay has not passed are made at once if
// now is true, and never otherwise; so are calls whose delay just passed
// and which have not started. Stop returns when no call is under way.
func (l *Later) Stop(now bool) {
	l.mu.Lock()
	l.stopped, l.drop = true, !now
	var due []func()
	for tm, f := range l.pending {
		if tm.Stop() {
			due = append(due, f)
			l.wg.Done()
		}
	}
	clear(l.pending)
	l.mu.Unlock()
	if now {
		for _, f := range due {
			f()
		}
	}
	l.wg.Wait()
}
