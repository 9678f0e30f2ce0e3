package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/internal/testproxy"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
)

// runBatches runs the cases of deliveries stored in batches: every
// guarantee of the per-delivery path holds.
func runBatches[TTx any](t *testing.T, be backend[TTx]) {
	t.Run("BatchDedup", func(t *testing.T) { testBatchDedup(t, be) })
	t.Run("BatchCrashBeforeAck", func(t *testing.T) { testBatchCrashBeforeAck(t, be) })
	t.Run("BatchHandlerFailsOne", func(t *testing.T) { testBatchHandlerFailsOne(t, be) })
	t.Run("ShutdownWritesCompletions", func(t *testing.T) { testShutdownWritesCompletions(t, be) })
}

// batchCounter records the sizes of the batches the transport hands over.
type batchCounter struct {
	transport.Transport
	mu    sync.Mutex
	sizes []int
}

func (b *batchCounter) ConsumeBatch(ctx context.Context, group string, topics []string, max int, linger time.Duration, h transport.BatchHandler) error {
	return b.Transport.(transport.BatchReceiver).ConsumeBatch(ctx, group, topics, max, linger,
		func(ctx context.Context, ds []transport.Delivery) []error {
			b.mu.Lock()
			b.sizes = append(b.sizes, len(ds))
			b.mu.Unlock()
			return h(ctx, ds)
		})
}

func (b *batchCounter) largest() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := 0
	for _, n := range b.sizes {
		m = max(m, n)
	}
	return m
}

// testBatchDedup: copies of one message inside one batch and across
// batches are stored once and handled once.
func testBatchDedup[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	tr, ex := rabbitFor(t, url)
	counter := &batchCounter{Transport: tr}
	ob := newOutbox(t, env.driver(t), counter, outbox.Options{})
	var mu sync.Mutex
	calls := map[string]int{}
	if err := outbox.Subscribe(ob, "order.paid", func(_ context.Context, m outbox.Received[[]byte]) error {
		mu.Lock()
		defer mu.Unlock()
		calls[m.ID]++
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	// Preload before the consumer starts, so they arrive as full batches.
	var msgs []amqp.Publishing
	for i := range 60 {
		id := fmt.Sprintf("dup-%d", i%20) // each id three times
		msgs = append(msgs, amqp.Publishing{Headers: amqp.Table{"cap-msg-id": id}, Body: []byte("{}")})
	}
	declareGroupQueue(t, url, ex, "billing", "order.paid")
	foreignPublishAll(t, url, ex, "order.paid", msgs)
	run(t, ob)
	waitFor(t, 10*time.Second, "20 messages handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) == 20
	})
	// Copies after the first batches.
	foreignPublishAll(t, url, ex, "order.paid", msgs[:20])
	time.Sleep(time.Second)
	mu.Lock()
	defer mu.Unlock()
	for id, n := range calls {
		if n != 1 {
			t.Errorf("%s handled %d times", id, n)
		}
	}
	if rows := receivedRows(t, ob.Store()); len(rows) != 20 {
		t.Errorf("%d received rows, want 20", len(rows))
	}
	if counter.largest() < 2 {
		t.Errorf("the deliveries came one by one (largest batch %d): the batch path was not used", counter.largest())
	}
}

// declareGroupQueue declares the queue of group bound to topic, as the
// RabbitMQ transport of rabbitFor names it, so that messages sent before
// the consumer starts wait in it.
func declareGroupQueue(t *testing.T, url, exchange, group, topic string) {
	t.Helper()
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	q := exchange + "." + group
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q, topic, exchange, false, nil); err != nil {
		t.Fatal(err)
	}
}

// batchAckCutter breaks the broker connection after the outbox stored a
// batch and before the transport acknowledges it.
type batchAckCutter struct {
	transport.Transport
	proxy *testproxy.Proxy
	cut   atomic.Bool
	seen  atomic.Int32
}

func (a *batchAckCutter) ConsumeBatch(ctx context.Context, group string, topics []string, max int, linger time.Duration, h transport.BatchHandler) error {
	return a.Transport.(transport.BatchReceiver).ConsumeBatch(ctx, group, topics, max, linger,
		func(ctx context.Context, ds []transport.Delivery) []error {
			a.seen.Add(int32(len(ds)))
			errs := h(ctx, ds)
			if a.cut.CompareAndSwap(false, true) {
				a.proxy.Down()
				go func() {
					time.Sleep(300 * time.Millisecond)
					a.proxy.Up()
				}()
			}
			return errs
		})
}

// testBatchCrashBeforeAck: a batch stored but not acknowledged is
// delivered again, and each message is handled once.
func testBatchCrashBeforeAck[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	proxy := testproxy.New(t, hostPort(t, url))
	tr, ex := rabbitFor(t, "amqp://guest:guest@"+proxy.Addr()+"/")
	cutter := &batchAckCutter{Transport: tr, proxy: proxy}
	ob := newOutbox(t, env.driver(t), cutter, outbox.Options{})
	var mu sync.Mutex
	calls := map[string]int{}
	if err := outbox.Subscribe(ob, "order.paid", func(_ context.Context, m outbox.Received[[]byte]) error {
		mu.Lock()
		defer mu.Unlock()
		calls[m.ID]++
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	var msgs []amqp.Publishing
	for i := range 30 {
		msgs = append(msgs, amqp.Publishing{Headers: amqp.Table{"cap-msg-id": fmt.Sprintf("crash-%d", i)}, Body: []byte("{}")})
	}
	declareGroupQueue(t, url, ex, "billing", "order.paid")
	foreignPublishAll(t, url, ex, "order.paid", msgs)
	run(t, ob)
	waitFor(t, 30*time.Second, "deliveries again after the lost ack", func() bool { return cutter.seen.Load() > 30 })
	waitFor(t, 10*time.Second, "30 messages handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) == 30
	})
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for id, n := range calls {
		if n != 1 {
			t.Errorf("%s handled %d times, want once", id, n)
		}
	}
	waitFor(t, 5*time.Second, "30 rows Succeeded", func() bool {
		c, err := ob.Store().Counts(context.Background(), storage.Received)
		return err == nil && c[storage.StatusSucceeded] == 30
	})
}

// testBatchHandlerFailsOne: a handler failure in the middle of a batch
// affects only its own row.
func testBatchHandlerFailsOne[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	tr, ex := rabbitFor(t, url)
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{})
	if err := outbox.Subscribe(ob, "order.paid", func(_ context.Context, m outbox.Received[[]byte]) error {
		if m.ID == "mid-5" {
			return outbox.Permanent(errors.New("this one is bad"))
		}
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	var msgs []amqp.Publishing
	for i := range 10 {
		msgs = append(msgs, amqp.Publishing{Headers: amqp.Table{"cap-msg-id": fmt.Sprintf("mid-%d", i)}, Body: []byte("{}")})
	}
	declareGroupQueue(t, url, ex, "billing", "order.paid")
	foreignPublishAll(t, url, ex, "order.paid", msgs)
	run(t, ob)
	waitFor(t, 10*time.Second, "9 Succeeded and 1 Failed", func() bool {
		c, err := ob.Store().Counts(context.Background(), storage.Received)
		return err == nil && c[storage.StatusSucceeded] == 9 && c[storage.StatusFailed] == 1
	})
	rows, err := ob.Store().List(context.Background(), storage.Filter{Kind: storage.Received, Status: storage.StatusFailed})
	if err != nil || len(rows) != 1 || rows[0].MsgID != "mid-5" {
		t.Errorf("Failed rows %v (%v), want mid-5 alone", rows, err)
	}
}

// testShutdownWritesCompletions: when Run stops, every handler that
// finished has its row marked Succeeded before Run returns.
func testShutdownWritesCompletions[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	tr, ex := rabbitFor(t, url)
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{})
	release := make(chan struct{})
	var entered atomic.Int32
	if err := outbox.Subscribe(ob, "order.paid", func(context.Context, outbox.Received[[]byte]) error {
		entered.Add(1)
		<-release
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	var msgs []amqp.Publishing
	for i := range 16 {
		msgs = append(msgs, amqp.Publishing{Headers: amqp.Table{"cap-msg-id": fmt.Sprintf("stop-%d", i)}, Body: []byte("{}")})
	}
	declareGroupQueue(t, url, ex, "billing", "order.paid")
	foreignPublishAll(t, url, ex, "order.paid", msgs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx) }()
	waitFor(t, 10*time.Second, "16 handlers running", func() bool { return entered.Load() == 16 })
	cancel()       // stop while every handler is in flight
	close(release) // they all finish during the shutdown
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("Run did not return")
	}
	c, err := ob.Store().Counts(context.Background(), storage.Received)
	if err != nil || c[storage.StatusSucceeded] != 16 {
		t.Errorf("after Run returned: %v (%v), want 16 Succeeded", c, err)
	}
}
