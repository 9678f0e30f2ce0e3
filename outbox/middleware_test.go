package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport/memory"
)

// memOutbox is an outbox on a SQLite file of its own and a memory broker.
func memOutbox(t *testing.T, opts outbox.Options) *outbox.Outbox[*sql.Tx] {
	t.Helper()
	env := sqliteBackend.open(t)
	return newOutbox(t, env.driver(t), memory.New(memory.Options{}), opts)
}

// callLog records the calls of a chain, each as the names of the steps
// it went through.
type callLog struct {
	mu    sync.Mutex
	calls [][]string
	cur   map[string][]string // by message id
}

func (l *callLog) step(id, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil {
		l.cur = map[string][]string{}
	}
	l.cur[id] = append(l.cur[id], name)
}

// end closes the call of id.
func (l *callLog) end(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, l.cur[id])
	delete(l.cur, id)
}

func (l *callLog) all() [][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

// TestMiddlewareChain: the outbox's and the subscription's middleware run
// in order around every handler call, see the retries, can stop a call,
// and a panicking middleware is caught by the recovery outside it.
func TestMiddlewareChain(t *testing.T) {
	var log callLog
	named := func(name string) outbox.Middleware {
		return func(next outbox.Handler) outbox.Handler {
			return func(ctx context.Context, m *outbox.Message) error {
				log.step(m.ID, fmt.Sprintf("%s(retries=%d)", name, m.Retries))
				if name == "outer" {
					defer log.end(m.ID)
				}
				return next(ctx, m)
			}
		}
	}
	stop := func(next outbox.Handler) outbox.Handler {
		return func(ctx context.Context, m *outbox.Message) error {
			if m.Headers["x-stop"] == "yes" {
				log.step(m.ID, "stopped")
				return nil
			}
			if m.Headers["x-panic"] == "yes" {
				panic("middleware panics")
			}
			return next(ctx, m)
		}
	}
	var failed sync.Map // message id -> error of its Failed row
	ob := memOutbox(t, outbox.Options{
		Middleware: []outbox.Middleware{named("outer"), named("inner")},
		OnFailed:   func(_ context.Context, f outbox.FailedMessage) { failed.Store(f.Message.MsgID, f.Err) },
	})
	var handled atomic.Int32
	if err := outbox.Subscribe(ob, "job.run", func(_ context.Context, m outbox.Received[[]byte]) error {
		log.step(m.ID, "handler")
		if m.Retries < 2 {
			return errors.New("not yet")
		}
		handled.Add(1)
		return nil
	}, outbox.WithMiddleware(named("own"), stop),
		outbox.WithSubscriptionRetry(outbox.RetryPolicy{MaxAttempts: 3, Schedule: []time.Duration{time.Millisecond}})); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	ctx := context.Background()
	retried, err := ob.PublishWithoutTx(ctx, "job.run", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	stopped, _ := ob.PublishWithoutTx(ctx, "job.run", []byte("x"), outbox.WithHeader("x-stop", "yes"))
	panicking, _ := ob.PublishWithoutTx(ctx, "job.run", []byte("x"), outbox.WithHeader("x-panic", "yes"))
	waitFor(t, 10*time.Second, "the calls of all three messages", func() bool {
		_, ok := failed.Load(fmt.Sprint(panicking))
		return handled.Load() == 1 && len(log.all()) == 3+1+3 && ok
	})
	byMsg := map[string][][]string{}
	for _, c := range log.all() {
		// The message id is not in the steps: tell the messages apart by their last step.
		switch {
		case slices.Contains(c, "stopped"):
			byMsg["stopped"] = append(byMsg["stopped"], c)
		case slices.Contains(c, "handler"):
			byMsg["retried"] = append(byMsg["retried"], c)
		default:
			byMsg["panicking"] = append(byMsg["panicking"], c)
		}
	}
	for i, c := range byMsg["retried"] {
		r := fmt.Sprintf("(retries=%d)", i)
		if want := []string{"outer" + r, "inner" + r, "own" + r, "handler"}; !slices.Equal(c, want) {
			t.Errorf("call %d of the retried message: %v, want %v", i, c, want)
		}
	}
	if len(byMsg["retried"]) != 3 {
		t.Errorf("the retried message had %d calls, want 3: %v", len(byMsg["retried"]), byMsg["retried"])
	}
	if want := [][]string{{"outer(retries=0)", "inner(retries=0)", "own(retries=0)", "stopped"}}; !slices.EqualFunc(byMsg["stopped"], want, slices.Equal) {
		t.Errorf("stopped message: %v, want %v (the handler must not run)", byMsg["stopped"], want)
	}
	if len(byMsg["panicking"]) != 3 {
		t.Errorf("the panicking middleware ran %d times, want 3 (retried, then Failed): %v", len(byMsg["panicking"]), byMsg["panicking"])
	}
	if err, _ := failed.Load(fmt.Sprint(panicking)); err == nil || !strings.Contains(fmt.Sprint(err), "panic: middleware panics") {
		t.Errorf("the panicking middleware's message failed with %v", err)
	}
	for id, status := range map[int64]storage.Status{retried: storage.StatusSucceeded, stopped: storage.StatusSucceeded} {
		waitFor(t, 5*time.Second, fmt.Sprintf("message %d %s", id, status), func() bool {
			rows, err := ob.Store().List(ctx, storage.Filter{Kind: storage.Received, Status: status})
			if err != nil {
				return false
			}
			return slices.ContainsFunc(rows, func(r *storage.Message) bool { return r.MsgID == fmt.Sprint(id) })
		})
	}
}

// TestHandlerTimeout: a handler call that overruns its subscription's
// timeout fails the attempt with an error that says so.
func TestHandlerTimeout(t *testing.T) {
	ob := memOutbox(t, outbox.Options{})
	var calls atomic.Int32
	if err := outbox.Subscribe(ob, "slow.job", func(ctx context.Context, m outbox.Received[[]byte]) error {
		calls.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}, outbox.WithHandlerTimeout(100*time.Millisecond),
		outbox.WithSubscriptionRetry(outbox.RetryPolicy{MaxAttempts: 2, Schedule: []time.Duration{time.Millisecond}})); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	if _, err := ob.PublishWithoutTx(context.Background(), "slow.job", []byte("x")); err != nil {
		t.Fatal(err)
	}
	row := firstReceived(t, ob.Store(), storage.StatusFailed)
	if calls.Load() != 2 || !strings.Contains(row.LastError, "handler timeout exceeded: the call did not finish within 100ms") {
		t.Errorf("%d calls, last error %q; want 2 calls ending in the handler timeout", calls.Load(), row.LastError)
	}
}

// TestHandlerOptionsBadInput: bad handler options are refused with errors
// naming them.
func TestHandlerOptionsBadInput(t *testing.T) {
	env := sqliteBackend.open(t)
	mem := memory.New(memory.Options{})
	for _, c := range []struct {
		opts outbox.Options
		want string
	}{
		{outbox.Options{HandlerTimeout: time.Minute}, "HandlerTimeout 1m0s must be below Options.Lease (1m0s)"},
		{outbox.Options{HandlerTimeout: -time.Second}, "HandlerTimeout -1s must not be negative"},
		{outbox.Options{TopicPrefix: "shop.*"}, "TopicPrefix \"shop.*\": wildcards"},
		{outbox.Options{Middleware: []outbox.Middleware{nil}}, "Options.Middleware[0] is nil"},
	} {
		if _, err := outbox.New(env.driver(t), mem, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", c.opts, err, c.want)
		}
	}
	ob := newOutbox(t, env.driver(t), mem, outbox.Options{Lease: 10 * time.Second})
	h := func(context.Context, outbox.Received[[]byte]) error { return nil }
	for _, c := range []struct {
		opt  outbox.SubscribeOption
		want string
	}{
		{outbox.WithHandlerTimeout(10 * time.Second), "WithHandlerTimeout(10s) must be below Options.Lease (10s)"},
		{outbox.WithHandlerTimeout(0), "WithHandlerTimeout(0s): the timeout must be positive"},
		{outbox.WithConcurrency(0), "WithConcurrency(0): the limit must be at least 1"},
		{outbox.WithMiddleware(nil), "WithMiddleware: a middleware is nil"},
	} {
		if err := outbox.Subscribe(ob, "a.b", h, c.opt); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Subscribe = %v, want an error with %q", err, c.want)
		}
	}
	if _, err := ob.PublishWithoutTx(context.Background(), "a.b", []byte("x"), outbox.WithCallback("replies.*")); err == nil ||
		!strings.Contains(err.Error(), "WithCallback: callback topic \"replies.*\" has a wildcard") {
		t.Errorf("WithCallback with a wildcard: %v", err)
	}
}

// TestConcurrencyLimit: a subscription at its WithConcurrency limit runs
// no more calls at once, and does not keep the worker pool from the
// messages of other subscriptions.
func TestConcurrencyLimit(t *testing.T) {
	ob := memOutbox(t, outbox.Options{HandlerConcurrency: 4})
	release := make(chan struct{})
	var calls concurrency
	var slowDone atomic.Int32
	if err := outbox.Subscribe(ob, "slow.job", func(ctx context.Context, m outbox.Received[[]byte]) error {
		defer calls.enter()()
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		slowDone.Add(1)
		return nil
	}, outbox.WithConcurrency(2)); err != nil {
		t.Fatal(err)
	}
	var fastDone atomic.Int32
	if err := outbox.Subscribe(ob, "fast.job", func(context.Context, outbox.Received[[]byte]) error {
		fastDone.Add(1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	ctx := context.Background()
	const slow, fast = 12, 10
	for range slow {
		if _, err := ob.PublishWithoutTx(ctx, "slow.job", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "two slow calls running", func() bool { return calls.running.Load() == 2 })
	for range fast {
		if _, err := ob.PublishWithoutTx(ctx, "fast.job", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// The slow subscription holds its two calls; the pool has four workers.
	waitFor(t, 10*time.Second, "every fast message handled while the slow ones wait", func() bool { return fastDone.Load() == fast })
	time.Sleep(200 * time.Millisecond) // give a third slow call the chance to start, were the limit not kept
	if n := calls.running.Load(); n != 2 {
		t.Errorf("%d slow calls at once, want the limit, 2", n)
	}
	close(release)
	waitFor(t, 20*time.Second, "every slow message handled", func() bool { return slowDone.Load() == slow })
	if n := calls.most.Load(); n != 2 {
		t.Errorf("at most %d slow calls ran at once, want 2", n)
	}
	// The handlers returned; their rows become Succeeded when the
	// completer's batch is written.
	var counts map[storage.Status]int64
	waitFor(t, 10*time.Second, "every received row Succeeded", func() bool {
		var err error
		counts, err = ob.Store().Counts(ctx, storage.Received)
		return err == nil && counts[storage.StatusSucceeded] == slow+fast
	})
	if counts[storage.StatusScheduled] != 0 || counts[storage.StatusFailed] != 0 {
		t.Errorf("received counts %v, want %d Succeeded only", counts, slow+fast)
	}
}
