package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/gocap/gocap/internal/backoff"
	"github.com/gocap/gocap/storage"
)

// Run processes messages until ctx ends or Close is called (see
// outbox.Outbox.Run).
func (e *Engine) Run(ctx context.Context) error {
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
	log := e.log
	log.Info("gocap: processor starting", "instance", e.instance.ID, "node", e.ids.Node(),
		"groups", len(e.receiver.groups))

	var wg sync.WaitGroup
	goRun := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}

	running := []*processor{e.dispatcher.proc}
	if len(e.receiver.groups) > 0 {
		e.receiver.proc.groups = slices.Sorted(maps.Keys(e.receiver.groups))
		running = append(running, e.receiver.proc)
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
	for group := range e.receiver.groups {
		goRun(func() { e.receiver.consume(ctx, work, group) })
	}
	goRun(func() { e.heartbeat(ctx) })
	goRun(func() { e.clean(ctx) })

	<-ctx.Done()
	log.Info("gocap: processor stopping; waiting for attempts in flight", "timeout", e.cfg.ShutdownTimeout)
	wg.Wait()

	done := make(chan struct{})
	go func() {
		processors.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(e.cfg.ShutdownTimeout):
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

// listen wakes the dispatcher whenever the storage reports a commit, and
// listens again after an error, with backoff.
func (e *Engine) listen(ctx context.Context, l storage.Listener) {
	retry := backoff.New(100*time.Millisecond, 5*time.Second)
	for ctx.Err() == nil {
		started := time.Now()
		err := l.Listen(ctx, e.dispatcher.notified)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			retry.Reset()
		}
		d := retry.Next()
		e.log.Warn("gocap: listening for commits failed; polling meanwhile", "err", err, "retry_in", d)
		if !backoff.Sleep(ctx, d) {
			return
		}
	}
}

func (e *Engine) heartbeat(ctx context.Context) {
	t := time.NewTicker(e.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		e.instance.LastSeen = time.Now().UTC()
		if err := e.store.Heartbeat(ctx, e.instance); err != nil {
			if ctx.Err() == nil {
				e.log.Warn("gocap: recording heartbeat failed", "err", err)
			}
		} else {
			e.lastHeartbeat.Store(e.instance.LastSeen.UnixNano())
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
func (e *Engine) clean(ctx context.Context) {
	t := time.NewTicker(e.cfg.CleanInterval)
	defer t.Stop()
	for {
		for _, kind := range []storage.Kind{storage.Published, storage.Received} {
			n, err := e.deleteExpired(ctx, kind)
			if err != nil && ctx.Err() == nil {
				e.log.Error("gocap: cleaning expired messages failed", "table", kind.String(), "deleted", n, "err", err)
			} else if n > 0 {
				e.log.Info("gocap: cleaned expired messages", "table", kind.String(), "deleted", n)
			}
		}
		stale := time.Now().UTC().Add(-24 * time.Hour)
		if err := e.store.RemoveInstance(ctx, "", stale); err != nil && ctx.Err() == nil {
			e.log.Warn("gocap: forgetting stale processors failed", "err", err)
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

func (e *Engine) deleteExpired(ctx context.Context, kind storage.Kind) (int64, error) {
	var total int64
	for range maxCleanBatches {
		n, err := e.store.DeleteExpired(ctx, kind, time.Now().UTC(), e.cfg.CleanBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("deleting expired %s messages: %w", kind, err)
		}
		if n < int64(e.cfg.CleanBatch) {
			return total, nil
		}
	}
	return total, nil
}
