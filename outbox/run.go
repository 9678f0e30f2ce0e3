package outbox

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/gocap/gocap/storage"
)

// Run processes messages until ctx ends or Close is called: it sends
// committed published messages, consumes the subscribed topics into the
// received table and runs their handlers, retries failures, cleans expired
// rows and records a heartbeat. When ctx ends it stops claiming and
// consuming, waits up to ShutdownTimeout for attempts in flight and records
// their outcomes; an attempt still running after that is cancelled, and its
// row is attempted again after its lease ends. Run returns nil after a
// clean stop.
//
// Several processes may Run against one database at once: every row is
// worked on by one of them at a time.
func (e *engine) Run(ctx context.Context) error {
	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return fmt.Errorf("outbox: run: %w", ErrClosed)
	case e.running:
		e.mu.Unlock()
		return fmt.Errorf("outbox: run: %w", ErrRunning)
	}
	e.running = true
	ctx, stop := context.WithCancel(ctx)
	e.stop, e.stopped = stop, make(chan struct{})
	stopped := e.stopped
	e.mu.Unlock()
	defer close(stopped)
	defer stop()

	// work outlives ctx by up to ShutdownTimeout, so that attempts in
	// flight at shutdown can finish and be recorded.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	e.instance.Started = time.Now().UTC()
	log := e.opts.Logger
	log.Info("gocap: processor starting", "instance", e.instance.ID, "node", e.ids.Node(),
		"groups", len(e.groups))

	var wg sync.WaitGroup
	goRun := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}

	running := []*processor{e.publisher}
	if len(e.groups) > 0 {
		e.receiver.groups = slices.Sorted(maps.Keys(e.groups))
		running = append(running, e.receiver)
	}
	var processors sync.WaitGroup
	for _, p := range running {
		processors.Add(1)
		go func() {
			defer processors.Done()
			p.run(ctx, work)
		}()
	}
	if l, ok := e.store.(storage.Listener); ok {
		goRun(func() { e.listen(ctx, l) })
	}
	for group, subs := range e.groups {
		goRun(func() { e.consume(ctx, work, group, subs) })
	}
	goRun(func() { e.heartbeat(ctx) })
	goRun(func() { e.clean(ctx) })

	<-ctx.Done()
	log.Info("gocap: processor stopping; waiting for attempts in flight", "timeout", e.opts.ShutdownTimeout)
	wg.Wait()

	done := make(chan struct{})
	go func() {
		processors.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(e.opts.ShutdownTimeout):
		log.Warn("gocap: shutdown timeout passed; cancelling attempts in flight")
		cancelWork()
		<-done
	}

	rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := e.store.RemoveInstance(rmCtx, e.instance.ID, time.Time{}); err != nil {
		log.Warn("gocap: removing this processor's heartbeat failed", "err", err)
	}
	log.Info("gocap: processor stopped", "instance", e.instance.ID)
	return nil
}

// listen wakes the publisher whenever the storage reports a commit, and
// listens again after an error, with backoff.
func (e *engine) listen(ctx context.Context, l storage.Listener) {
	backoff := newBackoff(100*time.Millisecond, 30*time.Second)
	for ctx.Err() == nil {
		err := l.Listen(ctx, e.publisher.Notified)
		if ctx.Err() != nil {
			return
		}
		d := backoff.next()
		e.opts.Logger.Warn("gocap: listening for commits failed; polling meanwhile", "err", err, "retry_in", d)
		if !sleep(ctx, d) {
			return
		}
	}
}

func (e *engine) heartbeat(ctx context.Context) {
	t := time.NewTicker(e.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		e.instance.LastSeen = time.Now().UTC()
		if err := e.store.Heartbeat(ctx, e.instance); err != nil && ctx.Err() == nil {
			e.opts.Logger.Warn("gocap: recording heartbeat failed", "err", err)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// clean deletes expired rows of both tables every CleanInterval, in
// batches of CleanBatch, and forgets processors not seen for a day.
func (e *engine) clean(ctx context.Context) {
	t := time.NewTicker(e.opts.CleanInterval)
	defer t.Stop()
	for {
		for _, kind := range []storage.Kind{storage.Published, storage.Received} {
			n, err := e.deleteExpired(ctx, kind)
			if err != nil && ctx.Err() == nil {
				e.opts.Logger.Error("gocap: cleaning expired messages failed", "table", kind.String(), "deleted", n, "err", err)
			} else if n > 0 {
				e.opts.Logger.Info("gocap: cleaned expired messages", "table", kind.String(), "deleted", n)
			}
		}
		stale := time.Now().UTC().Add(-24 * time.Hour)
		if err := e.store.RemoveInstance(ctx, "", stale); err != nil && ctx.Err() == nil {
			e.opts.Logger.Warn("gocap: forgetting stale processors failed", "err", err)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// maxCleanBatches bounds one cleaning round, so a huge backlog is worked
// off over several rounds instead of in one long loop.
const maxCleanBatches = 1000

func (e *engine) deleteExpired(ctx context.Context, kind storage.Kind) (int64, error) {
	var total int64
	for range maxCleanBatches {
		n, err := e.store.DeleteExpired(ctx, kind, time.Now().UTC(), e.opts.CleanBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("deleting expired %s messages: %w", kind, err)
		}
		if n < int64(e.opts.CleanBatch) {
			return total, nil
		}
	}
	return total, nil
}

// backoff doubles a delay from min to max.
type backoff struct{ cur, min, max time.Duration }

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
