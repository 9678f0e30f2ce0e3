package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/gocap/gocap/storage"
)

// failer records failed attempts in batches, as the completer records
// successes (#14): the failures of one attempt (up to a whole batch send)
// are handed over together, and while one batch is written with one
// storage.FailBatcher.FailBatch, the next one gathers. Each row's outcome
// is then acted on as fail acts on it (logs, OnFailed, the claim loop
// woken or told the due time). Every failure handed over before close is
// written before run returns. A processor has one only when its Store is
// a storage.FailBatcher; otherwise its workers record each failure with
// Store.Fail.
type failer struct {
	p     *processor
	store storage.FailBatcher
	in    chan []pendingFailure
}

func newFailer(p *processor, store storage.FailBatcher, capacity int) *failer {
	return &failer{p: p, store: store, in: make(chan []pendingFailure, capacity)}
}

// add hands over the failures of one attempt.
func (f *failer) add(pfs []pendingFailure) { f.in <- pfs }

// close ends run once everything handed over is written.
func (f *failer) close() { close(f.in) }

// maxFailBatch is the number of rows past which the failer stops
// gathering more for one FailBatch (the failures of one attempt are
// never split, so a batch may pass it by less than one send batch).
const maxFailBatch = 1000

func (f *failer) run(ctx context.Context) {
	batch := make([]pendingFailure, 0, maxFailBatch)
	for first := range f.in {
		batch = append(batch[:0], first...)
	gather:
		for len(batch) < maxFailBatch {
			select {
			case more, ok := <-f.in:
				if !ok {
					break gather
				}
				batch = append(batch, more...)
			default:
				break gather
			}
		}
		f.write(ctx, batch)
		clear(batch) // drop the rows' references until the next batch
	}
}

// write records batch with one FailBatch (retried while its error is
// transient) and acts on each row's outcome. Should the storage refuse
// the batch (storage.ErrPermanent: a value of one row, typically an error
// text it cannot hold), each row is recorded alone with recordFailure,
// which falls back to a shortened text, so that every row's retry count
// still advances.
//
// Like the completer's, the write runs under writeContext, so that the
// failures of attempts that ended are recorded even when ctx ends.
func (f *failer) write(ctx context.Context, batch []pendingFailure) {
	p := f.p
	ctx, cancel := writeContext(ctx)
	defer cancel()
	rows := make([]storage.FailedAttempt, len(batch))
	for i, pf := range batch {
		rows[i] = storage.FailedAttempt{Lease: pf.lease, Failure: pf.f}
	}
	var outs []storage.FailOutcome
	err := p.retryStore(ctx, func() error {
		var err error
		outs, err = f.store.FailBatch(ctx, p.kind, rows)
		if err == nil && len(outs) != len(rows) {
			err = fmt.Errorf("engine: FailBatch of %d rows returned %d outcomes", len(rows), len(outs))
		}
		return err
	})
	switch {
	case err != nil && errors.Is(err, storage.ErrPermanent):
		p.log.Warn("gocap: the storage refused a batch of failed attempts; recording them one by one",
			"count", len(batch), "err", err)
		for _, pf := range batch {
			res, err := p.recordFailure(ctx, pf.lease, pf.f)
			p.failed(ctx, pf, res, err)
		}
	case err != nil:
		p.log.Error("gocap: recording failed attempts failed; these rows are retried when their lease ends",
			"count", len(batch), "err", err)
	default:
		for i, pf := range batch {
			if outs[i].LeaseLost {
				p.failed(ctx, pf, storage.FailResult{}, storage.ErrLeaseLost)
				continue
			}
			p.failed(ctx, pf, outs[i].FailResult, nil)
		}
	}
}
