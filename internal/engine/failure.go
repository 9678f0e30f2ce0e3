package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocap/gocap/internal/backoff"
	"github.com/gocap/gocap/storage"
)

// maxErrorText bounds the error text stored on a row. Storages cut longer
// texts too (on a character boundary), each to its column's size.
const maxErrorText = 4000

// IsPermanent reports whether err says that retrying cannot help: it (or
// an error it wraps) has a method Permanent() bool that returns true, as
// outbox.PermanentError does.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// pendingFailure is a failed attempt of a row with its policy's outcome
// computed, to be recorded under the row's lease.
type pendingFailure struct {
	m         *storage.Message
	lease     storage.Lease
	cause     error
	f         storage.Failure
	wait      time.Duration // the policy's wait before the next attempt
	permanent bool
}

// failure applies the row's retry policy to a failed attempt of m: the
// wait before the next attempt, MaxAttempts, and whether cause is
// permanent.
func (p *processor) failure(m *storage.Message, lease storage.Lease, attempt storage.Attempt, cause error) pendingFailure {
	policy, perr := p.policies.of(m.Policy)
	if perr != nil {
		p.log.Error("gocap: a row's retry policy does not decode; the default policy applies", "id", m.ID, "err", perr)
	}
	now := time.Now().UTC()
	wait := policy.Wait(m.Retries + 1)
	permanent := IsPermanent(cause)
	text := storage.TruncateText(cause.Error(), maxErrorText)
	attempt.Error = text
	return pendingFailure{m: m, lease: lease, cause: cause, wait: wait, permanent: permanent, f: storage.Failure{
		Error:         text,
		Now:           now,
		NextAttemptAt: now.Add(wait),
		MaxAttempts:   policy.MaxAttempts,
		Permanent:     permanent,
		ExpiresAt:     now.Add(p.cfg.FailedTTL),
		Attempt:       attempt,
	}}
}

// fail records a failed attempt of m by the row's retry policy: due again
// after the policy's wait, Failed after its MaxAttempts or at once for a
// permanent error, with OnFailed. It records it at once with Store.Fail:
// for the attempts of the worker pool, process hands failures to the
// failer instead when the Store is a storage.FailBatcher.
func (p *processor) fail(ctx context.Context, m *storage.Message, lease storage.Lease, attempt storage.Attempt, cause error) {
	pf := p.failure(m, lease, attempt, cause)
	res, err := p.recordFailure(ctx, pf.lease, pf.f)
	p.failed(ctx, pf, res, err)
}

// failed acts on the recorded outcome of a failed attempt (err is the
// recording's error): logs, OnFailed for a row that became Failed, and
// the claim loop woken or told when the row is due again.
func (p *processor) failed(ctx context.Context, pf pendingFailure, res storage.FailResult, err error) {
	m, cause := pf.m, pf.cause
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
			"group", m.Group, "retries", res.Retries, "permanent", pf.permanent, "err", cause)
		if p.cfg.OnFailed != nil {
			p.cfg.OnFailed(ctx, m, cause, res.Retries)
		}
		if m.OrderingKey != "" && !p.cfg.FailedHoldsKey {
			p.Wake() // the key's next row is due now ("skip", #18)
		}
	default:
		p.log.Warn("gocap: attempt failed; retrying", "id", m.ID, "name", m.Name, "group", m.Group,
			"retries", res.Retries, "next_attempt", pf.f.NextAttemptAt, "err", cause)
		if pf.wait <= 0 {
			p.Wake()
		} else {
			p.dueAt(pf.f.NextAttemptAt)
		}
	}
}

// recordFailure records a failed attempt. Should the storage refuse the
// error text itself, it records a short plain one instead, so that the
// row's retry count advances and it ends Failed by its policy whatever
// the text of its errors.
func (p *processor) recordFailure(ctx context.Context, lease storage.Lease, f storage.Failure) (storage.FailResult, error) {
	ctx, cancel := writeContext(ctx) // recorded even if ctx ends meanwhile
	defer cancel()
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
		// The attempt appended to the history carries the text too.
		f.Error = fmt.Sprintf("the storage refused this attempt's error text (%s); its start: %q",
			storage.TruncateText(err.Error(), 300), storage.TruncateText(f.Error, 300))
		f.Attempt.Error = f.Error
		if err = p.retryStore(ctx, record); err != nil && errors.Is(err, storage.ErrPermanent) {
			f.Error = "the storage refused this attempt's error text; see the processor's log"
			f.Attempt.Error = f.Error
			err = p.retryStore(ctx, record)
		}
	}
	return res, err
}

// release gives up the leases of sends that did not take place, without
// counting an attempt, so that the rows are due again at at; it logs a
// failure, and reports whether the leases were given back.
func (p *processor) release(ctx context.Context, leases []storage.Lease, at time.Time, cause error) bool {
	if err := p.releaseAt(ctx, leases, at, "not sent, not counted as an attempt: "+cause.Error()); err != nil {
		p.log.Error("gocap: releasing rows that were not attempted failed; they are due again after their lease ends",
			"count", len(leases), "err", err)
		return false
	}
	return true
}

// releaseAt gives up the leases of rows that were not attempted: due
// again at at, their retry count unchanged, reason their last error. A
// transient error is retried (retryStore): a lease left behind holds its
// row, and the later rows of its ordering key, until it ends.
func (p *processor) releaseAt(ctx context.Context, leases []storage.Lease, at time.Time, reason string) error {
	return p.retryStore(ctx, func() error {
		_, err := p.store.Release(ctx, p.kind, leases, at.UTC(), storage.TruncateText(reason, maxErrorText))
		return err
	})
}

// Tries of a storage write whose outcome must not be lost (recording a
// success or a failure, releasing leases) while its error is transient.
const recordTries = 3

// retryStore runs f until it succeeds, fails permanently or with a lost
// lease, or has failed recordTries times, waiting a little longer after
// each try; it returns f's last error.
func (p *processor) retryStore(ctx context.Context, f func() error) error {
	for i := 1; ; i++ {
		err := f()
		if err == nil || i == recordTries || ctx.Err() != nil ||
			errors.Is(err, storage.ErrPermanent) || errors.Is(err, storage.ErrLeaseLost) {
			return err
		}
		backoff.Sleep(ctx, time.Duration(i)*100*time.Millisecond)
	}
}
