package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gocap/gocap/internal/backoff"
	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// attemptFunc attempts claimed rows and returns one error per row, in
// order: nil for success, errReleased for a row whose lease it gave back
// without an attempt, and the failure otherwise.
type attemptFunc func(ctx context.Context, ms []*storage.Message) []error

// errReleased is the outcome of a row whose attempt did not take place and
// whose lease the attempt released: nothing more is recorded for it.
var errReleased = errors.New("released without an attempt")

// errStopped is the outcome of a row whose attempt the shutdown cancelled
// (see process): released without counting it, like errReleased, which it
// wraps; unlike a row errReleased marks, the row was admitted to its
// subscription's concurrency limit, whose hand-over must run.
var errStopped = fmt.Errorf("%w: cancelled as the processor stopped", errReleased)

// errWaiting is the outcome of a row whose attempt was put off, with its
// lease kept: it waits for its subscription's concurrency limit
// (limit.go), and its outcome is recorded when it has run.
var errWaiting = errors.New("waiting for its subscription's concurrency limit")

// processor runs the attempts of one table: it claims due rows, runs them
// on a pool of workers with bounded concurrency, and records each outcome
// under the row's lease. The dispatcher and the receiver each own one.
type processor struct {
	kind  storage.Kind
	store storage.Store
	cfg   *Config
	log   *slog.Logger

	attempt   attemptFunc
	batchSize int      // rows per attempt at most
	maxRun    int      // rows of a run at most (storage.ClaimRequest.Run; runs.go)
	groups    []string // for received rows: the groups to claim rows of
	// pollWait returns how long to wait for a wake-up before polling
	// again; pause, if set, how long claiming must still wait.
	pollWait func() time.Duration
	pause    func() time.Duration
	// claimed, if set, is told how many rows each claim found.
	claimed func(n int)
	// claiming is true while the claim loop runs.
	claiming atomic.Bool
	// deadline bounds each attempt: half the lease unless set otherwise.
	deadline time.Duration
	// attemptTime, if set, is the longest an attempt of m may take, when
	// less than deadline: a row of a run is attempted only while its lease
	// outlasts it.
	attemptTime func(m *storage.Message) time.Duration
	// handOver, if set, is told the outcome of each single-row attempt
	// (and whether run is stopping), and may return a row to attempt next
	// in the same worker and slot.
	handOver func(m *storage.Message, err error, closing bool) *storage.Message

	limit int           // rows in flight at most
	slots chan struct{} // one token per row in flight
	freed chan struct{} // signalled when a slot is released
	wake  chan struct{} // signalled when rows may have become due

	// Attempts run on a pool of worker goroutines that grows on demand
	// and shrinks when idle: reusing a goroutine and its grown stack is
	// markedly cheaper than a new goroutine per message at thousands of
	// messages a second.
	jobs    chan job       // to an idle worker
	quit    chan struct{}  // closed when run ends: idle workers exit
	workers sync.WaitGroup // worker goroutines

	completer *completer
	failer    *failer        // nil unless the Store is a storage.FailBatcher
	policies  policies       // the retry policies of the rows
	due       due            // the earliest known time a row becomes due
	floor     dueFloor       // where claims start (the claim loop's)
	wg        sync.WaitGroup // attempts in flight

	mu      sync.Mutex
	closing bool // set when run stops taking attempts; guarded by mu
}

// job is one attempt, of one row or of a batch, or the attempts of a run
// one after the other, handed to a worker. It holds slots slots: one per
// row, or one for a run.
type job struct {
	work  context.Context
	ms    []*storage.Message
	slots int
	run   bool
}

// workerIdle is how long a worker waits for its next job before it exits.
const workerIdle = 10 * time.Second

func newProcessor(kind storage.Kind, cfg *Config, limit, batchSize int, attempt attemptFunc) *processor {
	p := &processor{
		kind:      kind,
		store:     cfg.Store,
		cfg:       cfg,
		log:       cfg.Logger.With("table", kind.String()),
		attempt:   attempt,
		batchSize: batchSize,
		maxRun:    maxRun,
		limit:     limit,
		slots:     make(chan struct{}, limit),
		freed:     make(chan struct{}, 1),
		wake:      make(chan struct{}, 1),
		jobs:      make(chan job),
		quit:      make(chan struct{}),
	}
	p.pollWait = func() time.Duration { return cfg.PollInterval }
	p.deadline = cfg.Lease / 2
	p.completer = newCompleter(p, max(limit, maxCompleteBatch))
	if fb, ok := cfg.Store.(storage.FailBatcher); ok {
		p.failer = newFailer(p, fb, limit)
	}
	p.policies.def = cfg.Retry
	return p
}

// dueAt tells the claim loop that a row becomes due at t; if that is
// sooner than anything it knew of, it wakes it, so it sleeps until then
// instead of until its next poll.
func (p *processor) dueAt(t time.Time) {
	if p.due.note(t) {
		p.Wake()
	}
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
		p.completer.run(work)
	}()
	failerDone := make(chan struct{})
	if p.failer != nil {
		go func() {
			defer close(failerDone)
			p.failer.run(work)
		}()
	} else {
		close(failerDone)
	}

	p.claimLoop(ctx, work)

	// No attempt starts after this: wg.Wait below sees them all.
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	p.wg.Wait()
	close(p.quit)
	p.workers.Wait()
	p.completer.close()
	if p.failer != nil {
		p.failer.close()
	}
	<-completerDone
	<-failerDone
}

// Backoff of the claim loop after a storage error: a few tries in the
// first second, then one every claimRetryMax, so that a database that is
// down or restarting is not hammered, and work resumes within
// claimRetryMax of its return.
const (
	claimRetryMin = 250 * time.Millisecond
	claimRetryMax = 2 * time.Second
)

// writeTimeout bounds a storage write that writeContext detaches.
const writeTimeout = 10 * time.Second

// writeContext returns the context of a storage write whose effect the
// caller must see through once it has begun — a claim, the insert of
// received rows, the record of an attempt that ended — bounded by writeTimeout but not ended by ctx: were the
// statement cancelled as run stops, the database could commit it while
// the caller sees an error, leaving rows leased that nobody attempts
// until their lease ends (and, for rows of an ordering key, every later
// row of the key waiting behind them). What it returns is attempted or
// released as usual.
func writeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
}

// askNextDue is the shortest sleep before which the idle claim loop asks
// the storage when the next row becomes due: a shorter sleep (fast polling
// after a notification) would only double the queries.
const askNextDue = 50 * time.Millisecond

func (p *processor) claimLoop(ctx, work context.Context) {
	poll := time.NewTimer(0)
	defer poll.Stop()
	// Claim in batches: with many attempts in flight, wait until a good part
	// of a batch is free instead of claiming a row or two per query.
	threshold := max(1, min(p.cfg.ClaimBatch, p.limit)/2)
	retry := backoff.New(claimRetryMin, claimRetryMax)
	p.claiming.Store(true)
	defer p.claiming.Store(false)
	for ctx.Err() == nil {
		if p.pause != nil {
			if d := p.pause(); d > 0 {
				backoff.Sleep(ctx, d)
				continue
			}
		}
		free := p.limit - len(p.slots)
		if free < threshold {
			select {
			case <-p.freed:
			case <-ctx.Done():
			}
			continue
		}
		limit := min(free, p.cfg.ClaimBatch)
		now := time.Now().UTC()
		cctx, cancel := writeContext(ctx)
		req := p.claimRequest(now, limit)
		req.DueFrom = p.floor.from(now)
		msgs, err := p.store.Claim(cctx, p.kind, req)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := retry.Next()
			p.log.Error("gocap: claiming due messages failed; retrying with backoff", "retry_in", d, "err", err)
			backoff.Sleep(ctx, d)
			continue
		}
		retry.Reset()
		p.floor.claimed(now, req.DueFrom, msgs, limit, p.cfg.Lease)
		if p.claimed != nil {
			p.claimed(len(msgs))
		}
		p.startAll(work, msgs)
		if len(msgs) >= limit {
			// There may be more due rows. (The rows of runs come on top of
			// the limit: a claim that returns more found limit heads.)
			continue
		}
		// Idle: sleep until the next poll, or until the earliest row
		// known to become due, if sooner. Rows of other processes become
		// due unseen: ask the storage, unless the next poll is soon anyway
		// (polling fast after a notification).
		p.due.passed(now)
		wait := p.pollWait()
		if wait >= askNextDue {
			if next, err := p.store.NextDue(ctx, p.kind, storage.DueRequest{After: now, Version: p.cfg.Version}); err == nil {
				p.due.note(next)
			} else if ctx.Err() == nil {
				p.log.Warn("gocap: reading when the next row is due failed; polling", "err", err)
			}
		}
		poll.Reset(p.due.sooner(wait))
		select {
		case <-p.wake:
		case <-poll.C:
		case <-ctx.Done():
		}
	}
}

// claimRequest is the request of a claim of up to limit rows at now.
func (p *processor) claimRequest(now time.Time, limit int) storage.ClaimRequest {
	return storage.ClaimRequest{
		Now:        now,
		LeaseUntil: now.Add(p.cfg.Lease),
		Token:      ids.Token(),
		Limit:      limit,
		Groups:     p.groups,
		Version:    p.cfg.Version,
		Run:        p.maxRun,
		// ordering keys (#18)
		FailedHoldsKey: p.cfg.FailedHoldsKey,
	}
}

// reserve takes up to n of the free slots, without waiting, for rows the
// caller is about to claim, and returns how many it took: none while
// claiming is paused or once run stops taking attempts. The caller hands
// them back with startReserved, which run waits for.
func (p *processor) reserve(n int) int {
	if p.pause != nil && p.pause() > 0 {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return 0
	}
	got := 0
take:
	for got < n {
		select {
		case p.slots <- struct{}{}:
			got++
		default:
			break take
		}
	}
	if got > 0 {
		p.wg.Add(1) // until startReserved: run waits for the rows
	}
	return got
}

// startReserved runs the attempts of msgs on the slots that reserve
// took, reserved of them: in batches of batchSize, a slot per row, and
// each run on one slot (see units); it frees the slots left over. Rows
// beyond the reserved slots, which a Store that claimed more than it was
// asked to would give, are released.
func (p *processor) startReserved(work context.Context, reserved int, msgs []*storage.Message) {
	defer p.wg.Done()
	left := reserved
	var over []*storage.Message
	for _, u := range p.units(msgs) {
		if u.slots > left {
			over = append(over, u.ms...)
			continue
		}
		left -= u.slots
		p.wg.Add(1)
		p.launch(work, u)
	}
	if len(over) > 0 {
		p.releaseRest(work, over, "not attempted: claimed beyond the free slots")
	}
	if left > 0 {
		for range left {
			<-p.slots
		}
		select {
		case p.freed <- struct{}{}:
		default:
		}
	}
}

// startAll runs the attempts of claimed rows in batches of batchSize,
// and each run on a slot of its own (see units). The caller has checked
// that a slot is free for each row or run.
func (p *processor) startAll(work context.Context, msgs []*storage.Message) {
	for _, u := range p.units(msgs) {
		for range u.slots {
			p.slots <- struct{}{}
		}
		p.wg.Add(1)
		p.launch(work, u)
	}
}

// startClaimed runs the attempt of a row the caller claimed itself (a
// received message just stored), waiting for a free slot first. It returns
// "" once the attempt started, else why it did not: ctx ended before a
// slot was free, the processor has stopped, or the row's lease no longer
// outlasts an attempt (leaseOutlasts) — another processor may claim it
// any moment. The caller then gives the row's lease back.
func (p *processor) startClaimed(ctx, work context.Context, m *storage.Message) string {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return "not attempted: the processor stopped before its handler started"
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		<-p.slots
		return "not attempted: the processor stopped before its handler started"
	}
	if !p.leaseOutlasts(m) {
		p.mu.Unlock()
		<-p.slots
		select {
		case p.freed <- struct{}{}:
		default:
		}
		return "not attempted: too little of its lease was left when a handler slot became free"
	}
	p.wg.Add(1)
	p.mu.Unlock()
	p.launch(work, job{ms: []*storage.Message{m}, slots: 1})
	return ""
}

// leaseOutlasts reports whether m's lease outlasts the longest attempt
// of m: the attempt's deadline, or attemptTime's bound if shorter. A row
// whose lease does not is not attempted: it could be claimed by another
// processor while its attempt runs.
func (p *processor) leaseOutlasts(m *storage.Message) bool {
	need := p.deadline
	if p.attemptTime != nil {
		need = min(need, p.attemptTime(m))
	}
	return time.Until(m.LeaseUntil) > need
}

// launch processes j under work on an idle worker, or on a new one if
// none is idle. The worker holds the slots the caller took, and the
// caller's count in wg, and releases them when done.
func (p *processor) launch(work context.Context, j job) {
	j.work = work
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
		if j.run {
			p.processRun(j.work, j.ms)
		} else {
			p.processJob(j)
		}
		for range j.slots {
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

// processJob attempts j's rows, then each row that handOver gives in
// their place, in the same slot.
func (p *processor) processJob(j job) {
	errs := p.process(j.work, j.ms, nil)
	if len(j.ms) == 1 {
		p.handOverFrom(j.work, j.ms[0], errs[0], nil)
	}
}

// handOverFrom tells handOver, if set, the outcome of m's attempt, and
// attempts each row it gives in m's place, in the same worker and slot.
// Before the first of them it calls before, if set: a caller holding
// completions writes them then, rather than after a chain of other rows
// that may outlast their leases.
func (p *processor) handOverFrom(work context.Context, m *storage.Message, err error, before func()) {
	if p.handOver == nil {
		return
	}
	for {
		p.mu.Lock()
		closing := p.closing
		p.mu.Unlock()
		next := p.handOver(m, err, closing)
		if next == nil {
			return
		}
		if before != nil {
			before()
			before = nil
		}
		m = next
		err = p.process(work, []*storage.Message{m}, nil)[0]
	}
}

// process attempts ms and records each row's outcome, with the attempt
// in its history: successes through the completer (or, when held is not
// nil, appended to it for the caller to hand over), failures through the
// failer (all of one attempt together) or, for a Store that cannot
// record them in batches, with Store.Fail at once. It returns the
// attempts' errors.
//
// An attempt that failed once work had ended — cancelled because Run's
// ShutdownTimeout passed, or never begun under a work already cancelled —
// is no attempt: its row's lease is given back without counting it.
func (p *processor) process(work context.Context, ms []*storage.Message, held *[]completion) []error {
	start := time.Now()
	p.floor.keyed(start, ms, p.cfg.Lease)
	errs := p.timedAttempt(work, ms)
	took := time.Since(start)
	var failures []pendingFailure
	var stopped []storage.Lease
	for i, m := range ms {
		lease := storage.Lease{ID: m.ID, Token: m.LeaseToken}
		attempt := storage.Attempt{At: start.UTC(), Duration: took}
		if errs[i] != nil && work.Err() != nil && !errors.Is(errs[i], errReleased) && !errors.Is(errs[i], errWaiting) {
			stopped = append(stopped, lease)
			errs[i] = errStopped
			continue
		}
		switch {
		case errs[i] == nil && held != nil:
			*held = append(*held, completion{Completed: storage.Completed{Lease: lease, Attempt: attempt}, keyed: m.OrderingKey != ""})
		case errs[i] == nil:
			p.completer.succeeded(completion{Completed: storage.Completed{Lease: lease, Attempt: attempt}, keyed: m.OrderingKey != ""})
		case errors.Is(errs[i], errReleased), errors.Is(errs[i], errWaiting):
		case p.failer != nil:
			failures = append(failures, p.failure(m, lease, attempt, errs[i]))
		default:
			p.fail(work, m, lease, attempt, errs[i])
		}
	}
	if len(failures) > 0 {
		p.failer.add(failures) // the attempt's failures, recorded in one batch
	}
	if len(stopped) > 0 {
		ctx, cancel := writeContext(work)
		defer cancel()
		if err := p.releaseAt(ctx, stopped, time.Now(), "not counted as an attempt: cancelled as the processor stopped"); err != nil {
			p.log.Warn("gocap: releasing rows whose attempts the shutdown cancelled failed; they are due again after their lease ends",
				"count", len(stopped), "err", err)
		}
	}
	return errs
}

// timedAttempt attempts ms with a deadline (half the lease, or the lease
// for handler calls, which bound themselves more tightly), so that no row
// is worked on after another processor may have taken it over. It
// returns one error per row; a cancelled or expired context is an error
// for every row, even one whose attempt returned nil.
func (p *processor) timedAttempt(work context.Context, ms []*storage.Message) []error {
	ctx, cancel := context.WithTimeout(work, p.deadline)
	defer cancel()
	errs := p.attempt(ctx, ms)
	if len(errs) != len(ms) {
		err := fmt.Errorf("attempt returned %d results for %d messages", len(errs), len(ms))
		errs = make([]error, len(ms))
		for i := range errs {
			errs[i] = err
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
