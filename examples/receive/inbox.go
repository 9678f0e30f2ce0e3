package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport/rabbitmq"
	"github.com/gocap/gocap/wire"
)

// inbox measures the hand-rolled inbox: workers goroutines share one
// consumer (prefetch 100); each stores a delivery in one transaction,
// commits, then acks it.
func (b *bench) inbox(ctx context.Context) (float64, error) {
	store, qp := b.next()
	if err := b.db.storeOf(store).Migrate(ctx); err != nil {
		return 0, err
	}
	q := qp + "inbox"
	if err := b.preload(ctx, q); err != nil {
		return 0, err
	}
	defer b.deleteQueue(q)
	ch, err := b.conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	if err := ch.Qos(100, 0, false); err != nil {
		return 0, err
	}
	runCtx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	start := time.Now()
	deliveries, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	var handled atomic.Int64
	finished := make(chan struct{})
	errc := make(chan error, b.workers)
	var wg sync.WaitGroup
	for range b.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case d, ok := <-deliveries:
					if !ok {
						return
					}
					if err := b.handle(runCtx, store, d); err != nil {
						d.Nack(false, true)
						errc <- err
						return
					}
					if err := d.Ack(false); err != nil {
						errc <- err
						return
					}
					if handled.Add(1) == int64(b.n) {
						close(finished)
					}
				case <-runCtx.Done():
					return
				}
			}
		}()
	}
	var elapsed time.Duration
	select {
	case <-finished:
		elapsed = time.Since(start)
	case err = <-errc:
	case <-runCtx.Done():
		err = fmt.Errorf("only %d of %d messages handled: %w", handled.Load(), b.n, runCtx.Err())
	}
	cancel()
	ch.Close()
	wg.Wait()
	if err != nil {
		return 0, err
	}
	if got, err := b.db.rows(ctx, store); err != nil || got != int64(b.n) {
		return 0, fmt.Errorf("%d of %d rows stored (%v)", got, b.n, err)
	}
	return float64(b.n) / elapsed.Seconds(), nil
}

// handle stores d as a handled message of the inbox's group.
func (b *bench) handle(ctx context.Context, store string, d amqp.Delivery) error {
	h := make(map[string]string, len(d.Headers))
	for k, v := range d.Headers {
		if s, ok := v.(string); ok {
			h[k] = s
		} else {
			h[k] = fmt.Sprint(v)
		}
	}
	msgID, name := h[wire.MsgID], h[wire.MsgName]
	if msgID == "" {
		return errors.New("a delivery without " + wire.MsgID)
	}
	if name == "" {
		name = d.RoutingKey
	}
	const group = "bench.inbox"
	h[wire.Group] = group
	headers, err := json.Marshal(h)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	return b.db.insertInbox(ctx, store, inboxRow{
		id: b.gen.Next(), msgID: msgID, group: group, name: name, headers: string(headers), body: d.Body,
		added: now, expires: now.Add(24 * time.Hour),
	})
}

// gocap measures outbox.Subscribe with a no-op handler and default
// options, until every received row is Succeeded.
func (b *bench) gocap(ctx context.Context) (float64, error) {
	store, qp := b.next()
	if b.db.pool != nil {
		return runGocap(ctx, b, b.db.postgres(store), store, qp)
	}
	return runGocap(ctx, b, b.db.mysql(store), store, qp)
}

func runGocap[TTx any](ctx context.Context, b *bench, d storage.Driver[TTx], store, queuePrefix string) (float64, error) {
	if err := d.Migrate(ctx); err != nil {
		return 0, err
	}
	// The group's queue, as gocap names it, preloaded.
	q := queuePrefix + outbox.DefaultGroup
	if err := b.preload(ctx, q); err != nil {
		return 0, err
	}
	defer b.deleteQueue(q)
	tr, err := rabbitmq.New(rabbitmq.Config{URL: b.amqpURL, Exchange: b.exchange, QueuePrefix: queuePrefix, Logger: quiet})
	if err != nil {
		return 0, err
	}
	defer tr.Close()
	ob, err := outbox.New(d, tr, outbox.Options{Logger: quiet})
	if err != nil {
		return 0, err
	}
	defer ob.Close()
	var handled atomic.Int64
	err = outbox.Subscribe(ob, topic, func(context.Context, outbox.Received[[]byte]) error {
		handled.Add(1)
		return nil
	})
	if err != nil {
		return 0, err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		ob.Run(runCtx)
	}()
	defer func() { stop(); wg.Wait() }()
	deadline := time.Now().Add(b.timeout)
	for {
		// Every handler has run; then wait for the Succeeded marks.
		if handled.Load() >= int64(b.n) {
			more, err := b.db.pending(ctx, store)
			if err != nil {
				return 0, err
			}
			if !more {
				break
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d of %d handled after %v", handled.Load(), b.n, b.timeout)
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	c, err := d.Counts(ctx, storage.Received)
	if err != nil {
		return 0, err
	}
	if c[storage.StatusSucceeded] != int64(b.n) {
		return 0, fmt.Errorf("%d of %d received rows Succeeded (counts %v)", c[storage.StatusSucceeded], b.n, c)
	}
	return float64(b.n) / elapsed.Seconds(), nil
}
