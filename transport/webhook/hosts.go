package webhook

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gocap/gocap/transport"
)

// hosts bounds the requests in flight to each destination host, so that
// an endpoint that hangs holds at most limit requests and queue waiting
// sends — not every send slot of the processor — and the messages to
// other hosts go on.
type hosts struct {
	limit, queue int

	mu sync.Mutex
	m  map[string]*host // guarded by mu; a host is removed when unused
}

type host struct {
	slots   chan struct{} // one token per request in flight
	waiting int           // sends waiting for a slot; guarded by hosts.mu
	users   int           // sends holding or waiting for a slot; guarded by hosts.mu
}

// busyError is the error of a send that found its host saturated: it was
// not sent.
type busyError struct {
	host         string
	limit, queue int
	waited       time.Duration // > 0: waited this long for a slot
}

// Unwrap makes the error a transport.ErrBusy: the message was not sent,
// and the processor does not count an attempt.
func (e *busyError) Unwrap() error { return transport.ErrBusy }

func (e *busyError) Error() string {
	if e.waited > 0 {
		return fmt.Sprintf("webhook: host %s busy: no free request slot within %v (%d requests in flight at most, Config.PerHostConcurrency)",
			e.host, e.waited.Round(time.Millisecond), e.limit)
	}
	return fmt.Sprintf("webhook: host %s busy: %d requests in flight and %d waiting (Config.PerHostConcurrency, Config.PerHostQueue)",
		e.host, e.limit, e.queue)
}

// acquire takes a request slot of key, waiting at most wait (and while ctx
// lasts) if all are taken and fewer than queue sends wait already. It
// returns the function that gives the slot back.
func (hs *hosts) acquire(ctx context.Context, key string, wait time.Duration) (func(), error) {
	hs.mu.Lock()
	h := hs.m[key]
	if h == nil {
		h = &host{slots: make(chan struct{}, hs.limit)}
		hs.m[key] = h
	}
	h.users++
	select {
	case h.slots <- struct{}{}:
		hs.mu.Unlock()
		return func() { hs.release(key, h) }, nil
	default:
	}
	if h.waiting >= hs.queue {
		hs.done(key, h)
		hs.mu.Unlock()
		return nil, &busyError{host: key, limit: hs.limit, queue: hs.queue}
	}
	h.waiting++
	hs.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	var err error
	select {
	case h.slots <- struct{}{}:
	case <-timer.C:
		err = &busyError{host: key, limit: hs.limit, queue: hs.queue, waited: wait}
	case <-ctx.Done():
		err = fmt.Errorf("webhook: waiting for a request slot of host %s: %w (%w)", key, context.Cause(ctx), transport.ErrBusy)
	}
	hs.mu.Lock()
	h.waiting--
	if err != nil {
		hs.done(key, h)
	}
	hs.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return func() { hs.release(key, h) }, nil
}

func (hs *hosts) release(key string, h *host) {
	<-h.slots
	hs.mu.Lock()
	hs.done(key, h)
	hs.mu.Unlock()
}

// done drops a user of h, and h when it has none; hs.mu is held.
func (hs *hosts) done(key string, h *host) {
	h.users--
	if h.users == 0 {
		delete(hs.m, key)
	}
}
