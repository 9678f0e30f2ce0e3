package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// maxErrorText bounds the error text stored on a row.
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

	groups []string // for received rows: the groups to claim rows of

	limit int           // attempts in flight at most
	slots chan struct{} // one token per attempt in flight
	freed chan struct{} // signalled when a slot is released
	wake  chan struct{} // signalled when rows may have become due

	succeeded chan storage.Lease
	wg        sync.WaitGroup // attempts in flight
}

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
		succeeded: make(chan storage.Lease, limit),
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
		p.complete(work)
	}()

	p.claimLoop(ctx, work)

	p.wg.Wait()
	close(p.succeeded)
	<-completerDone
}

func (p *processor) claimLoop(ctx, work context.Context) {
	poll := time.NewTimer(0)
	defer poll.Stop()
	// Claim in batches: with many attempts in flight, wait until a good part
	// of a batch is free instead of claiming a row or two per query.
	threshold := max(1, min(p.opts.ClaimBatch, p.limit)/2)
	for ctx.Err() == nil {
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
		if err != nil && ctx.Err() == nil {
			p.log.Error("gocap: claiming due messages failed; retrying after the poll interval", "err", err)
		}
		for _, m := range msgs {
			p.start(work, m)
		}
		if err == nil && len(msgs) == limit {
			continue // there may be more due rows
		}
		poll.Reset(p.opts.PollInterval)
		select {
		case <-p.wake:
		case <-poll.C:
		case <-ctx.Done():
		}
	}
}

// start runs the attempt of a claimed row in a new goroutine. The caller
// has checked that a slot is free.
func (p *processor) start(work context.Context, m *storage.Message) {
	p.slots <- struct{}{}
	p.launch(work, m)
}

// startClaimed runs the attempt of a row the caller claimed itself (a
// received message just stored), waiting for a free slot first. It returns
// false if ctx ends before a slot is free; the row is then attempted by a
// claim loop when its lease ends.
func (p *processor) startClaimed(ctx, work context.Context, m *storage.Message) bool {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	p.launch(work, m)
	return true
}

// launch processes m in a new goroutine that holds the slot the caller
// took, and releases it when done.
func (p *processor) launch(work context.Context, m *storage.Message) {
	p.wg.Add(1)
	go func() {
		defer func() {
			<-p.slots
			select {
			case p.freed <- struct{}{}:
			default:
			}
			p.wg.Done()
		}()
		p.process(work, m)
	}()
}

// process makes one attempt and records its outcome.
func (p *processor) process(work context.Context, m *storage.Message) {
	lease := storage.Lease{ID: m.ID, Token: m.LeaseToken}
	err := p.safeAttempt(work, m)
	if err == nil {
		p.succeeded <- lease
		return
	}
	p.fail(work, m, lease, err)
}

// safeAttempt runs the attempt with a deadline of half the lease, turns a
// panic into an error, and counts a cancelled or expired context as a
// failure even when the attempt returned nil.
func (p *processor) safeAttempt(work context.Context, m *storage.Message) (err error) {
	ctx, cancel := context.WithTimeout(work, p.opts.Lease/2)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	err = p.attempt(ctx, m)
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("attempt did not finish in time: %w", context.Cause(ctx))
	}
	return err
}

func (p *processor) fail(ctx context.Context, m *storage.Message, lease storage.Lease, cause error) {
	now := time.Now().UTC()
	retries := m.Retries + 1
	next := now
	immediate := retries <= p.opts.Retry.ImmediateRetries
	if !immediate {
		next = now.Add(p.opts.Retry.Interval)
	}
	text := cause.Error()
	if len(text) > maxErrorText {
		text = text[:maxErrorText]
	}
	var perm *PermanentError
	res, err := p.store.Fail(ctx, p.kind, lease, storage.Failure{
		Error:         text,
		Now:           now,
		NextAttemptAt: next,
		MaxAttempts:   p.opts.Retry.MaxAttempts,
		Permanent:     errors.As(cause, &perm),
		ExpiresAt:     now.Add(p.opts.FailedTTL),
	})
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
