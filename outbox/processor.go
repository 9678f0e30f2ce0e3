package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
)

// maxErrorText bounds the error text stored on a row. Storages cut longer
// texts too (on a character boundary), each to its column's size.
const maxErrorText = 4000

// PermanentError marks an error that retrying cannot fix: the message
// becomes Failed at once. Wrap errors with [Permanent].
type PermanentError struct{ Err error }

// Error returns the wrapped error's text.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that the message fails without further retries.
// A handler returns it for input it can never accept. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// attemptFunc sends or handles one claimed row.
type attemptFunc func(ctx context.Context, m *storage.Message) error

// batchAttemptFunc sends several claimed rows at once and returns one error
// per row, in order.
type batchAttemptFunc func(ctx context.Context, ms []*storage.Message) []error

// maxAttemptBatch bounds the rows of one batch attempt: large enough that a
// batch amortizes its goroutine, deadline and confirmation wait, small
// enough that a claim of ClaimBatch rows is spread over several batches
// running at once.
const maxAttemptBatch = 100

// processor runs the attempts of one table: it claims due rows, runs them
// with bounded concurrency, and records each outcome under the row's lease.
// The published and the received side are the same processor with a
// different attemptFunc.
type processor struct {
	kind    storage.Kind
	store   storage.Store
	opts    *Options
	log     *slog.Logger
	attempt attemptFunc
	// attemptBatch, if set, replaces attempt: claimed rows are attempted in
	// batches of up to maxAttemptBatch.
	attemptBatch batchAttemptFunc

	groups []string // for received rows: the groups to claim rows of

	// pauseOnUnavailable makes a send that failed with
	// transport.ErrUnavailable no attempt: the row's lease is released
	// without counting it, and claiming pauses until a probe finds the
	// transport back (the publish side).
	pauseOnUnavailable bool
	outage             outage

	limit int           // attempts in flight at most
	slots chan struct{} // one token per attempt in flight
	freed chan struct{} // signalled when a slot is released
	wake  chan struct{} // signalled when rows may have become due

	// fastPoll, if set, is the poll interval for a while after a
	// notification: the storage's notifications are coalesced, and a
	// commit close after a notified one is found by this poll.
	fastPoll   time.Duration
	notifiedAt atomic.Int64 // the last notification, in Unix nanoseconds

	// Attempts run on a pool of worker goroutines that grows on demand
	// and shrinks when idle: reusing a goroutine and its grown stack is
	// markedly cheaper than a new goroutine per message at thousands of
	// messages a second.
	jobs    chan job       // to an idle worker
	quit    chan struct{}  // closed when run ends: idle workers exit
	workers sync.WaitGroup // worker goroutines

	succeeded chan storage.Lease
	wg        sync.WaitGroup // attempts in flight

	mu      sync.Mutex
	closing bool // set when run stops taking attempts; guarded by mu
}

// job is one attempt, of one row or of a batch, handed to a worker. It
// holds one slot per row.
type job struct {
	work context.Context
	ms   []*storage.Message
}

// workerIdle is how long a worker waits for its next job before it exits.
const workerIdle = 10 * time.Second

func newProcessor(kind storage.Kind, store storage.Store, opts *Options, limit int, attempt attemptFunc) *processor {
	return &processor{
		kind:      kind,
		store:     store,
		opts:      opts,
		log:       opts.Logger.With("table", kind.String()),
		attempt:   attempt,
		limit:     limit,
		slots:     make(chan struct{}, limit),
		freed:     make(chan struct{}, 1),
		wake:      make(chan struct{}, 1),
		jobs:      make(chan job),
		quit:      make(chan struct{}),
		succeeded: make(chan storage.Lease, limit),
	}
}

// fastPollWindow is how long the claim loop polls every fastPoll after a
// notification: long enough to cover the commits coalesced into it.
func (p *processor) fastPollWindow() time.Duration { return max(time.Second, 20*p.fastPoll) }

// Notified reports a notification from the storage: rows were committed.
// The claim loop looks for due rows now, and every fastPoll for a while.
func (p *processor) Notified() {
	p.notifiedAt.Store(time.Now().UnixNano())
	p.Wake()
}

// Wake makes the claim loop look for due rows now.
func (p *processor) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run claims and starts attempts until ctx ends, then waits for the
// attempts in flight: they run under work, which the caller cancels when the
// shutdown deadline passes. Outcomes are recorded before run returns.
func (p *processor) run(ctx, work context.Context) {
	completerDone := make(chan struct{})
	go func() {
		defer close(completerDone)
		p.complete(work)
	}()

	p.claimLoop(ctx, work)

	// No attempt starts after this: wg.Wait below sees them all.
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	p.wg.Wait()
	close(p.quit)
	p.workers.Wait()
	close(p.succeeded)
	<-completerDone
}

// Backoff of the claim loop after a storage error: a few tries in the
// first second, then one every claimRetryMax, so that a database that is
// down or restarting is not hammered, and work resumes within
// claimRetryMax of its return.
const (
	claimRetryMin = 250 * time.Millisecond
	claimRetryMax = 2 * time.Second
)

func (p *processor) claimLoop(ctx, work context.Context) {
	poll := time.NewTimer(0)
	defer poll.Stop()
	// Claim in batches: with many attempts in flight, wait until a good part
	// of a batch is free instead of claiming a row or two per query.
	threshold := max(1, min(p.opts.ClaimBatch, p.limit)/2)
	retry := newBackoff(claimRetryMin, claimRetryMax)
	for ctx.Err() == nil {
		if d := p.outage.wait(); d > 0 {
			// The transport is down: probe again when the pause ends.
			sleep(ctx, d)
			continue
		}
		free := p.limit - len(p.slots)
		if free < threshold {
			select {
			case <-p.freed:
			case <-ctx.Done():
			}
			continue
		}
		limit := min(free, p.opts.ClaimBatch)
		now := time.Now().UTC()
		msgs, err := p.store.Claim(ctx, p.kind, storage.ClaimRequest{
			Now:        now,
			LeaseUntil: now.Add(p.opts.Lease),
			Token:      ids.Token(),
			Limit:      limit,
			Groups:     p.groups,
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := retry.next()
			p.log.Error("gocap: claiming due messages failed; retrying with backoff", "retry_in", d, "err", err)
			sleep(ctx, d)
			continue
		}
		retry.reset()
		p.startAll(work, msgs)
		if err == nil && len(msgs) == limit {
			continue // there may be more due rows
		}
		wait := p.opts.PollInterval
		if p.fastPoll > 0 && time.Since(time.Unix(0, p.notifiedAt.Load())) < p.fastPollWindow() {
			wait = min(wait, p.fastPoll)
		}
		poll.Reset(wait)
		select {
		case <-p.wake:
		case <-poll.C:
		case <-ctx.Done():
		}
	}
}

// startAll runs the attempts of claimed rows, one by one or in batches.
// The caller has checked that a slot is free for each row.
func (p *processor) startAll(work context.Context, msgs []*storage.Message) {
	size := 1
	if p.attemptBatch != nil {
		size = maxAttemptBatch
	}
	for len(msgs) > 0 {
		n := min(len(msgs), size)
		for range n {
			p.slots <- struct{}{}
		}
		p.wg.Add(1)
		p.launch(work, msgs[:n:n])
		msgs = msgs[n:]
	}
}

// startClaimed runs the attempt of a row the caller claimed itself (a
// received message just stored), waiting for a free slot first. It returns
// false if ctx ends before a slot is free, or the processor has stopped;
// the row is then attempted by a claim loop when its lease ends.
func (p *processor) startClaimed(ctx, work context.Context, m *storage.Message) bool {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		<-p.slots
		return false
	}
	p.wg.Add(1)
	p.mu.Unlock()
	p.launch(work, []*storage.Message{m})
	return true
}

// launch processes ms on an idle worker, or on a new one if none is idle.
// The worker holds the slots the caller took, and the caller's count in wg,
// and releases them when done.
func (p *processor) launch(work context.Context, ms []*storage.Message) {
	j := job{work: work, ms: ms}
	select {
	case p.jobs <- j:
	default:
		p.workers.Add(1)
		go p.worker(j)
	}
}

// worker runs jobs until it has been idle for workerIdle or run ends.
// Workers number at most the slots taken plus those between two jobs, and
// the idle ones exit, so the pool follows the load.
func (p *processor) worker(j job) {
	defer p.workers.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		p.process(j.work, j.ms)
		for range j.ms {
			<-p.slots
		}
		select {
		case p.freed <- struct{}{}:
		default:
		}
		p.wg.Done()

		idle.Reset(workerIdle)
		select {
		case j = <-p.jobs:
		case <-idle.C:
			return
		case <-p.quit:
			return
		}
	}
}

// process attempts ms and records each row's outcome.
func (p *processor) process(work context.Context, ms []*storage.Message) {
	errs := p.safeAttempt(work, ms)
	var (
		notAttempted []storage.Lease
		unavailable  error
		reached      bool
	)
	for i, m := range ms {
		lease := storage.Lease{ID: m.ID, Token: m.LeaseToken}
		switch {
		case errs[i] == nil:
			reached = true
			p.succeeded <- lease
		case p.pauseOnUnavailable && errors.Is(errs[i], transport.ErrUnavailable):
			notAttempted = append(notAttempted, lease)
			unavailable = errs[i]
		default:
			reached = true
			p.fail(work, m, lease, errs[i])
		}
	}
	if reached {
		if lasted, ended := p.outage.end(); ended {
			p.log.Info("gocap: the transport reaches its broker again; dispatch resumed", "outage", lasted.Round(time.Millisecond))
			p.Wake()
		}
	}
	if len(notAttempted) > 0 {
		if d, first := p.outage.begin(); first {
			p.log.Warn("gocap: the transport cannot reach its broker; dispatch paused, attempts are not counted",
				"probe_in", d, "err", unavailable)
		}
		p.release(work, notAttempted, unavailable)
	}
}

// release gives up the leases of rows whose send did not reach the
// broker, without counting an attempt, so that they are sent as soon as
// the transport is back.
func (p *processor) release(ctx context.Context, leases []storage.Lease, cause error) {
	reason := "not sent, not counted as an attempt: " + cause.Error()
	err := p.retryStore(ctx, func() error {
		_, err := p.store.Release(ctx, p.kind, leases, time.Now().UTC(), reason)
		return err
	})
	if err != nil {
		p.log.Error("gocap: releasing rows that were not sent failed; they are sent after their lease ends",
			"count", len(leases), "err", err)
	}
}

// Tries of a storage write whose outcome must not be lost (recording a
// failure, releasing leases), while its error is transient.
const recordTries = 3

// retryStore runs f until it succeeds, fails permanently or with a lost
// lease, or has failed recordTries times; it returns f's last error.
func (p *processor) retryStore(ctx context.Context, f func() error) error {
	for i := 1; ; i++ {
		err := f()
		if err == nil || i == recordTries || ctx.Err() != nil ||
			errors.Is(err, storage.ErrPermanent) || errors.Is(err, storage.ErrLeaseLost) {
			return err
		}
		sleep(ctx, time.Duration(i)*100*time.Millisecond)
	}
}

// safeAttempt attempts ms, as one batch or row by row, with a deadline of
// half the lease. It returns one error per row: a panic is an error for
// every row of the attempt, and so is a cancelled or expired context, even
// for a row whose attempt returned nil.
func (p *processor) safeAttempt(work context.Context, ms []*storage.Message) (errs []error) {
	ctx, cancel := context.WithTimeout(work, p.opts.Lease/2)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err := fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			errs = make([]error, len(ms))
			for i := range errs {
				errs[i] = err
			}
		}
	}()
	if p.attemptBatch != nil {
		errs = p.attemptBatch(ctx, ms)
		if len(errs) != len(ms) {
			err := fmt.Errorf("batch attempt returned %d results for %d messages", len(errs), len(ms))
			errs = make([]error, len(ms))
			for i := range errs {
				errs[i] = err
			}
		}
	} else {
		errs = make([]error, len(ms))
		for i, m := range ms {
			errs[i] = p.attempt(ctx, m)
		}
	}
	if ctx.Err() != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("attempt did not finish in time: %w", context.Cause(ctx))
			}
		}
	}
	return errs
}

func (p *processor) fail(ctx context.Context, m *storage.Message, lease storage.Lease, cause error) {
	now := time.Now().UTC()
	retries := m.Retries + 1
	next := now
	immediate := retries <= p.opts.Retry.ImmediateRetries
	if !immediate {
		next = now.Add(p.opts.Retry.Interval)
	}
	var perm *PermanentError
	f := storage.Failure{
		Error:         storage.TruncateText(cause.Error(), maxErrorText),
		Now:           now,
		NextAttemptAt: next,
		MaxAttempts:   p.opts.Retry.MaxAttempts,
		Permanent:     errors.As(cause, &perm),
		ExpiresAt:     now.Add(p.opts.FailedTTL),
	}
	res, err := p.recordFailure(ctx, lease, f)
	if err != nil {
		if errors.Is(err, storage.ErrLeaseLost) {
			p.log.Warn("gocap: attempt failed after its lease was lost; the row is another processor's now",
				"id", m.ID, "name", m.Name, "err", cause)
			return
		}
		p.log.Error("gocap: recording a failed attempt failed; the row is retried when its lease ends",
			"id", m.ID, "name", m.Name, "attempt_err", cause, "err", err)
		return
	}
	switch {
	case res.Status == storage.StatusFailed:
		p.log.Error("gocap: message failed for good; it stays Failed until requeued", "id", m.ID, "name", m.Name,
			"group", m.Group, "retries", res.Retries, "permanent", errors.As(cause, &perm), "err", cause)
		if p.opts.OnFailed != nil {
			p.opts.OnFailed(ctx, FailedMessage{Message: m, Err: cause, Retries: res.Retries})
		}
	default:
		p.log.Warn("gocap: attempt failed; retrying", "id", m.ID, "name", m.Name, "group", m.Group,
			"retries", res.Retries, "next_attempt", next, "err", cause)
		if immediate {
			p.Wake()
		}
	}
}

// recordFailure records a failed attempt. Should the storage refuse the
// error text itself, it records a short plain one instead, so that the
// row's retry count advances and it ends Failed by its policy whatever
// the text of its errors.
func (p *processor) recordFailure(ctx context.Context, lease storage.Lease, f storage.Failure) (storage.FailResult, error) {
	var res storage.FailResult
	record := func() error {
		var err error
		res, err = p.store.Fail(ctx, p.kind, lease, f)
		return err
	}
	err := p.retryStore(ctx, record)
	if err != nil && errors.Is(err, storage.ErrPermanent) {
		p.log.Warn("gocap: the storage refused the error text of a failed attempt; recording a shortened one",
			"id", lease.ID, "err", err)
		f.Error = fmt.Sprintf("the storage refused this attempt's error text (%s); its start: %q",
			storage.TruncateText(err.Error(), 300), storage.TruncateText(f.Error, 300))
		if err = p.retryStore(ctx, record); err != nil && errors.Is(err, storage.ErrPermanent) {
			f.Error = "the storage refused this attempt's error text; see the processor's log"
			err = p.retryStore(ctx, record)
		}
	}
	return res, err
}

// complete records successes in batches: while one batch is written, the
// next one gathers.
func (p *processor) complete(ctx context.Context) {
	const maxBatch = 1000
	batch := make([]storage.Lease, 0, maxBatch)
	for first := range p.succeeded {
		batch = append(batch[:0], first)
	gather:
		for len(batch) < maxBatch {
			select {
			case l, ok := <-p.succeeded:
				if !ok {
					break gather
				}
				batch = append(batch, l)
			default:
				break gather
			}
		}
		p.recordSucceeded(ctx, batch)
	}
}

func (p *processor) recordSucceeded(ctx context.Context, batch []storage.Lease) {
	const tries = 3
	for i := 1; ; i++ {
		now := time.Now().UTC()
		_, err := p.store.Succeed(ctx, p.kind, batch, now, now.Add(p.opts.SucceededTTL))
		if err == nil {
			return
		}
		if i == tries || ctx.Err() != nil {
			p.log.Error("gocap: recording successes failed; these rows will be attempted again when their lease ends",
				"count", len(batch), "err", err)
			return
		}
		select {
		case <-time.After(time.Duration(i) * 100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}
