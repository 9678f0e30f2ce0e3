// Package engine is gocap's machinery behind the outbox API: the run loop,
// the claim loop and worker pool of each table, the completer, dispatch
// over the transport, the receive path (consume, store, handle), the
// cleaner, the heartbeat and the coalescing of commit notifications.
//
// The outbox package configures an [Engine] and translates its API into
// it; nothing here is exported outside the module.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/internal/topic"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
)

// Errors returned by an [Engine].
var (
	// ErrClosed: the engine was closed.
	ErrClosed = errors.New("outbox: closed")
	// ErrRunning: Run was called twice, or Subscribe after Run.
	ErrRunning = errors.New("outbox: already running")
)

// Config is everything an Engine needs; the outbox package fills it in
// from its Options, with every default applied.
type Config struct {
	Store     storage.Store
	Transport transport.Transport
	Logger    *slog.Logger
	// NodeID is the snowflake node id, 1..1023; -1 picks one at random.
	NodeID int64
	// Version isolates this engine's rows (issue #17): received rows are
	// stored with it, and claims and NextDue take only rows of it
	// (storage.ClaimRequest.Version). The outbox package stores it on
	// published rows and has checked it (storage.CheckVersion).
	Version string

	// Retry is the default retry policy: of rows stored without one.
	Retry              Policy
	SucceededTTL       time.Duration
	FailedTTL          time.Duration
	CleanInterval      time.Duration
	CleanBatch         int
	PollInterval       time.Duration
	Lease              time.Duration
	ClaimBatch         int
	SendConcurrency    int
	HandlerConcurrency int
	ShutdownTimeout    time.Duration
	HeartbeatInterval  time.Duration
	// NotifyInterval is the least time between two publishes that ask
	// the storage to notify processors (see notifier); zero notifies on
	// every publish.
	NotifyInterval time.Duration

	// SendMiddleware wraps every send, outermost first, inside the
	// engine's own panic recovery. A handler call has no chain here: each
	// Subscription's Handle is the whole chain (the outbox package builds
	// it, with its panic recovery first).
	SendMiddleware []func(SendFunc) SendFunc

	// OnFailed is called once for each row that becomes Failed.
	OnFailed func(ctx context.Context, m *storage.Message, err error, retries int)
	// OnReceived, if set, is called for each delivery stored as a row
	// this process is to handle: a new message, or a Failed duplicate
	// that was reset (not for a duplicate left alone). It runs on the
	// consumer's goroutine: keep it short.
	OnReceived func(m *storage.Message)

	// FailedHoldsKey: a Failed row with an ordering key holds its key
	// until it is requeued and succeeds or is deleted (the "block"
	// policy); false lets it release its key ("skip"). See
	// storage.ClaimRequest.FailedHoldsKey.
	FailedHoldsKey bool
}

// Subscription is one handler of a consumer group for a topic pattern.
type Subscription struct {
	Group   string
	Pattern string
	// Handle is the whole handler call, middleware included: it must not
	// panic (the outbox package puts a recovery first in its chain).
	Handle HandleFunc
	// Policy, if not empty, is the stored form of the retry policy of the
	// rows received for this subscription (see Policy.Encode).
	Policy string
	// Concurrency, if positive, is the most calls of Handle that run at
	// once in this process; rows beyond it wait without holding a worker
	// (see limiter).
	Concurrency int
	// Timeout is the time limit of a call of Handle, which Handle itself
	// enforces; the engine starts a waiting row only while its lease
	// outlasts it. Must be below Config.Lease.
	Timeout time.Duration

	limit *limiter // nil without a Concurrency
}

// Engine moves the messages of one outbox: it sends published rows,
// receives and handles subscribed ones, retries, cleans and records its
// heartbeat while Run runs.
type Engine struct {
	cfg      Config
	store    storage.Store
	log      *slog.Logger
	ids      *ids.Generator
	instance storage.Instance
	notifier notifier

	dispatcher *dispatcher
	receiver   *receiver

	// lastHeartbeat is the time of the last heartbeat the storage
	// recorded, in Unix nanoseconds; zero before the first.
	lastHeartbeat atomic.Int64

	mu      sync.Mutex
	running bool
	closed  bool
	stop    context.CancelFunc // cancels Run
	stopped chan struct{}      // closed when Run returns
}

// New returns an engine for cfg; it does not start it.
func New(cfg Config) (*Engine, error) {
	gen, err := ids.NewGenerator(cfg.NodeID)
	if err != nil {
		return nil, fmt.Errorf("outbox: New: %w", err)
	}
	host, _ := os.Hostname()
	e := &Engine{
		cfg:   cfg,
		store: cfg.Store,
		log:   cfg.Logger,
		ids:   gen,
		instance: storage.Instance{
			ID:       fmt.Sprintf("%s/%d/%d", host, os.Getpid(), gen.Next()),
			Hostname: host,
			PID:      os.Getpid(),
		},
		notifier: notifier{interval: cfg.NotifyInterval},
	}
	e.dispatcher = newDispatcher(e)
	e.receiver = newReceiver(e)
	return e, nil
}

// NextID returns a new snowflake id for a message.
func (e *Engine) NextID() int64 { return e.ids.Next() }

// Store returns the storage.
func (e *Engine) Store() storage.Store { return e.store }

// Subscribe registers s; it must be called before Run.
func (e *Engine) Subscribe(s Subscription) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running {
		return fmt.Errorf("outbox: subscribe to %q: %w: subscribe before Run", s.Pattern, ErrRunning)
	}
	return e.receiver.add(s)
}

// Running reports whether Run is running: it has started and has not
// returned.
func (e *Engine) Running() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running && e.stopped != nil && !closedChan(e.stopped)
}

// LastHeartbeat returns when the storage last recorded this processor's
// heartbeat, or the zero time if it never did.
func (e *Engine) LastHeartbeat() time.Time {
	if n := e.lastHeartbeat.Load(); n != 0 {
		return time.Unix(0, n).UTC()
	}
	return time.Time{}
}

func closedChan(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Closed reports whether Close was called.
func (e *Engine) Closed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// NoteDue tells the dispatcher that a published row becomes due at t (a
// delayed publish of this process), so that it claims it then instead of
// at its next poll.
func (e *Engine) NoteDue(t time.Time) { e.dispatcher.proc.dueAt(t) }

// ShouldNotify reports whether a publishing transaction is to ask the
// storage to notify processors of its commit (see notifier). While this
// process's dispatcher polls fast anyway (rows keep coming), it finds the
// row within NotifyInterval without one, and the publish skips the NOTIFY
// and the commit lock that goes with it.
func (e *Engine) ShouldNotify() bool {
	if e.dispatcher.pollingFast() {
		return false
	}
	return e.notifier.shouldNotify()
}

// Wake tells the processor of kind that rows became due.
func (e *Engine) Wake(kind storage.Kind) {
	switch kind {
	case storage.Published:
		e.dispatcher.proc.Wake()
	case storage.Received:
		e.receiver.proc.Wake()
	}
}

// Close stops Run, if it runs, waits for it to return, and makes later
// publishes fail with ErrClosed.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closed = true
	stop, stopped := e.stop, e.stopped
	e.mu.Unlock()
	if stop != nil {
		stop()
		<-stopped
	}
	return nil
}

// subscriptionFor returns the subscription of group whose pattern matches
// name.
func (r *receiver) subscriptionFor(group, name string) (Subscription, bool) {
	for _, s := range r.groups[group] {
		if topic.Match(s.Pattern, name) {
			return s, true
		}
	}
	return Subscription{}, false
}
