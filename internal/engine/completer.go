package engine

import (
	"context"
	"time"

	"github.com/gocap/gocap/storage"
)

// completer records successes in batches: while one batch is written, the
// next one gathers. Every success handed to it before close is written
// before run returns.
type completer struct {
	p    *processor
	done chan storage.Completed
}

func newCompleter(p *processor, capacity int) *completer {
	return &completer{p: p, done: make(chan storage.Completed, capacity)}
}

// succeeded hands over a row whose attempt succeeded.
func (c *completer) succeeded(d storage.Completed) { c.done <- d }

// close ends run once everything handed over is written.
func (c *completer) close() { close(c.done) }

// maxCompleteBatch bounds the rows one Succeed statement marks.
const maxCompleteBatch = 1000

func (c *completer) run(ctx context.Context) {
	batch := make([]storage.Completed, 0, maxCompleteBatch)
	for first := range c.done {
		batch = append(batch[:0], first)
	gather:
		for len(batch) < maxCompleteBatch {
			select {
			case l, ok := <-c.done:
				if !ok {
					break gather
				}
				batch = append(batch, l)
			default:
				break gather
			}
		}
		c.write(ctx, batch)
	}
}

func (c *completer) write(ctx context.Context, batch []storage.Completed) {
	p := c.p
	err := p.retryStore(ctx, func() error {
		_, err := p.store.Succeed(ctx, p.kind, batch, time.Now().UTC().Add(p.cfg.SucceededTTL))
		return err
	})
	if err != nil {
		p.log.Error("gocap: recording successes failed; these rows will be attempted again when their lease ends",
			"count", len(batch), "err", err)
	}
}
