package engine

import (
	"context"
	"time"

	"github.com/gocap/gocap/storage"
)

// completer records successes in batches: while one batch is written, the
// next one gathers. Every success handed to it before close is written
// before run returns. A success of a row of an ordering key makes the
// next row of its key due (#18): with a Store that can claim those rows
// in the transaction of the Succeed (storage.NextClaimer), the completer
// does so, on slots it reserves, and starts them; otherwise, or when it
// had fewer slots than keys, it wakes the claim loop.
type completer struct {
	p    *processor
	next storage.NextClaimer // nil if the Store is none
	done chan completion
}

// completion is a row whose attempt succeeded; keyed tells that it has an
// ordering key.
type completion struct {
	storage.Completed
	keyed bool
}

// newCompleter returns the completer of p. capacity is the successes it
// holds while it writes a batch: at least a whole batch, so that the
// workers hand theirs over without waiting for the write before. With
// room for only the rows in flight (16 handler calls by default), a
// batch held at most twice that many rows and the handlers waited on
// every write: 10,000 received messages took 314 Succeed statements of
// 32 rows one after the other on MariaDB, where the completer was busy
// for the whole run (#14).
func newCompleter(p *processor, capacity int) *completer {
	c := &completer{p: p, done: make(chan completion, capacity)}
	c.next, _ = p.store.(storage.NextClaimer)
	return c
}

// succeeded hands over a row whose attempt succeeded.
func (c *completer) succeeded(d completion) { c.done <- d }

// close ends run once everything handed over is written.
func (c *completer) close() { close(c.done) }

// maxCompleteBatch bounds the rows one Succeed statement marks.
const maxCompleteBatch = 1000

// run writes the successes handed over until close; the rows it claims
// run under ctx.
func (c *completer) run(ctx context.Context) {
	batch := make([]storage.Completed, 0, maxCompleteBatch)
	for first := range c.done {
		batch = append(batch[:0], first.Completed)
		keyed := 0
		if first.keyed {
			keyed++
		}
	gather:
		for len(batch) < maxCompleteBatch {
			select {
			case l, ok := <-c.done:
				if !ok {
					break gather
				}
				batch = append(batch, l.Completed)
				if l.keyed {
					keyed++
				}
			default:
				break gather
			}
		}
		if c.write(ctx, batch, keyed) {
			c.p.Wake()
		}
	}
}

// write records batch, which holds keyed rows of ordering keys, and
// reports whether the claim loop is to look for the next rows of their
// keys: when it did not claim them itself, or could not claim one for
// each key (fewer slots were free). A key whose next row it did not find
// needs no claim: that row is not there yet (its insert wakes the claim
// loop, or stores it claimed), is in flight elsewhere, or waits for its
// due time, which the claim loop knows of.
//
// The write runs under writeContext, not under ctx: the successes of
// attempts that ended are recorded even when ctx (the attempts' context,
// which Run cancels once its ShutdownTimeout has passed) ends meanwhile.
// The rows it claims run under ctx.
func (c *completer) write(ctx context.Context, batch []storage.Completed, keyed int) (wake bool) {
	p := c.p
	wctx, cancel := writeContext(ctx)
	defer cancel()
	expires := time.Now().UTC().Add(p.cfg.SucceededTTL)
	if keyed > 0 && c.next != nil {
		if reserved := p.reserve(keyed); reserved > 0 {
			var next []*storage.Message
			err := p.retryStore(wctx, func() (err error) {
				_, next, err = c.next.SucceedClaimNext(wctx, p.kind, batch, expires, p.claimRequest(time.Now().UTC(), reserved))
				return err
			})
			p.startReserved(ctx, reserved, next)
			if err != nil {
				c.failed(batch, err)
			}
			return err != nil || reserved < keyed
		}
	}
	err := p.retryStore(wctx, func() error {
		_, err := p.store.Succeed(wctx, p.kind, batch, expires)
		return err
	})
	if err != nil {
		c.failed(batch, err)
	}
	return keyed > 0
}

// failed logs a batch whose successes could not be recorded.
func (c *completer) failed(batch []storage.Completed, err error) {
	c.p.log.Error("gocap: recording successes failed; these rows will be attempted again when their lease ends",
		"count", len(batch), "err", err)
}
