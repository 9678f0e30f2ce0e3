package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/backoff"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/internal/adapter"
)

// Consume consumes the queue of group, bound to topics (see
// transport.Receiver), on Config.Concurrency channels of one connection,
// one delivery at a time per channel. A delivery whose handler fails is
// handed back to the tail of the queue after Config.RequeueDelay; one whose
// handler discards it is rejected without requeue (see the package
// documentation). After a connection loss Consume dials again with the
// backoff of Config.ReconnectMin and ReconnectMax. If the broker refuses
// to declare the queue (it exists with other arguments, see
// Config.QueueArguments), Consume returns at once an error wrapping
// ErrQueueMismatch.
//
// Consume is ConsumeBatch with batches of one delivery.
func (t *Transport) Consume(ctx context.Context, group string, topics []string, h transport.Handler) error {
	return t.consume(ctx, group, topics, 1, 0, func(ctx context.Context, ds []transport.Delivery) []error {
		return []error{h(ctx, ds[0])}
	})
}

// ConsumeBatch consumes the queue of group, bound to topics, as Consume
// does, and hands deliveries to h in batches (see transport.BatchReceiver).
//
// Each of the Config.Concurrency channels of the consumer has one batch in
// flight at a time, so that as many batches are handled at once, and
// gathers the next one from what the broker pushed meanwhile (at most
// Config.Prefetch deliveries). A batch holds up to max deliveries (max ≤ 0
// means, and a larger max is capped at, Config.Prefetch: the broker sends
// no more unacknowledged deliveries on one channel). It is handed over as
// soon as it is full; otherwise once no further delivery is waiting, after
// waiting for more up to linger after the first arrived (linger ≤ 0: no
// wait).
//
// When every result of a batch is nil, the batch is acknowledged with one
// basic.ack of its last delivery tag with the multiple flag, unless the
// channel still holds a failed delivery waiting to be handed back (it would
// be acknowledged too): then, as for a batch with errors, each delivery is
// acknowledged, handed back (a plain error) or rejected (an error wrapping
// transport.ErrDiscard) by its own result, as Consume does.
func (t *Transport) ConsumeBatch(ctx context.Context, group string, topics []string, max int, linger time.Duration, h transport.BatchHandler) error {
	return t.consume(ctx, group, topics, min(adapter.BatchSize(max, t.cfg.Prefetch), t.cfg.Prefetch), linger, h)
}

// consume runs consumeOnce, reconnecting with backoff, until ctx ends or
// the broker refuses the consumer.
func (t *Transport) consume(ctx context.Context, group string, topics []string, max int, linger time.Duration, h transport.BatchHandler) error {
	if err := adapter.CheckConsume("rabbitmq", group, topics); err != nil {
		return err
	}
	ctx, cancel := adapter.UntilClosed(ctx, t.closed)
	defer cancel()
	queue := t.cfg.QueuePrefix + group
	wait := backoff.New(t.cfg.ReconnectMin, t.cfg.ReconnectMax)
	b := batcher{t: t, queue: queue, max: max, linger: linger, h: h}
	for {
		err := t.consumeOnce(ctx, queue, topics, &b, wait.Reset)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrQueueMismatch) {
			t.log.Error("gocap: RabbitMQ refused to declare a group queue; its consumer stops until the configuration or the queue changes", "queue", queue, "err", err)
			return err
		}
		if refused(err) {
			return fmt.Errorf("rabbitmq: consuming queue %q: %w", queue, err)
		}
		d := wait.Next()
		t.log.Warn("gocap: RabbitMQ consumer disconnected; reconnecting", "queue", queue, "err", err, "retry_in", d)
		if !backoff.Sleep(ctx, d) {
			return nil
		}
	}
}

// consumeOnce runs one connection's consumer, Config.Concurrency channels
// each with a consumer of the queue, until the connection or one of the
// channels breaks, or ctx ends.
func (t *Transport) consumeOnce(ctx context.Context, queue string, topics []string, b *batcher, connected func()) error {
	conn, err := amqp.Dial(t.cfg.URL)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	if err := ch.ExchangeDeclare(t.cfg.Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declaring exchange %q: %w", t.cfg.Exchange, err)
	}
	// Durable, not exclusive, not auto-deleted: what a quorum queue must be.
	if _, err := ch.QueueDeclare(queue, true, false, false, false, t.queueArgs); err != nil {
		return queueDeclareError(queue, err)
	}
	for _, topic := range topics {
		if err := ch.QueueBind(queue, topic, t.cfg.Exchange, false, nil); err != nil {
			return fmt.Errorf("binding queue %q to %q: %w", queue, topic, err)
		}
	}
	consumers := make([]*channelConsumer, 0, t.cfg.Concurrency)
	for i := range t.cfg.Concurrency {
		if i > 0 {
			if ch, err = conn.Channel(); err != nil {
				return fmt.Errorf("opening a channel: %w", err)
			}
		}
		c, err := t.startConsumer(ctx, ch, queue)
		if err != nil {
			return err
		}
		consumers = append(consumers, c)
	}
	connected()

	var wg sync.WaitGroup
	ended := make(chan struct{}, len(consumers))
	for _, c := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.run(ctx, c)
			ended <- struct{}{}
		}()
	}
	var result error
	select {
	case <-ctx.Done():
	case e := <-closed:
		if e != nil {
			result = e
		} else {
			result = errors.New("connection closed")
		}
	case <-ended:
		// The broker closed a channel (or cancelled its consumer, as when
		// the queue is deleted): start over on a new connection.
		result = errors.New("a consumer channel closed")
	}
	conn.Close() // ends every channel's deliveries, so the loops return
	wg.Wait()
	for _, c := range consumers {
		c.retry.stop() // the broker redelivers what was waiting: nothing was acknowledged
	}
	return result
}

// channelConsumer is one channel's consumer of the queue, with the retrier
// of its failed deliveries.
type channelConsumer struct {
	deliveries <-chan amqp.Delivery
	retry      *retrier
}

// startConsumer sets ch up (prefetch, publisher confirms for the retrier)
// and starts a consumer of queue on it.
func (t *Transport) startConsumer(ctx context.Context, ch *amqp.Channel, queue string) (*channelConsumer, error) {
	if err := ch.Qos(t.cfg.Prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("setting prefetch: %w", err)
	}
	// Failed deliveries are copied to the tail of the queue (see retrier).
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("enabling publisher confirms: %w", err)
	}
	deliveries, err := ch.ConsumeWithContext(ctx, queue, "", false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consuming: %w", err)
	}
	return &channelConsumer{deliveries: deliveries, retry: newRetrier(ctx, t, ch, queue)}, nil
}

// gatherGrace is how long a channel's consumer waits for one more
// delivery, after the linger, before it hands a batch over: the deliveries
// the broker already pushed come within microseconds (see adapter.Gather).
const gatherGrace = time.Millisecond

// batcher gathers the deliveries of a channel into batches, hands them to
// the handler, and acknowledges them by its results.
type batcher struct {
	t      *Transport
	queue  string
	max    int
	linger time.Duration
	h      transport.BatchHandler
}

// run handles c's deliveries, one batch at a time, until its delivery
// channel closes. One batch at a time makes a multiple ack of a batch's
// last tag acknowledge that batch and nothing else: every earlier delivery
// of the channel was acknowledged, rejected or, if it waits in the
// retrier, is accounted for (see settle).
func (b *batcher) run(ctx context.Context, c *channelConsumer) {
	batch := make([]amqp.Delivery, 0, b.max)
	ds := make([]transport.Delivery, 0, b.max)
	for {
		first, ok := <-c.deliveries
		if !ok {
			return
		}
		batch, ok = adapter.Gather(c.deliveries, append(batch[:0], first), b.max, time.Now().Add(b.linger), gatherGrace)
		if !ok {
			return // the channel closed: the broker redelivers the batch
		}
		ds = ds[:0]
		for _, d := range batch {
			ds = append(ds, delivery(d))
		}
		b.settle(c, batch, adapter.Results(b.h(ctx, ds), len(ds)))
	}
}

// settle acknowledges, hands back or rejects each delivery of batch by its
// result in errs.
func (b *batcher) settle(c *channelConsumer, batch []amqp.Delivery, errs []error) {
	log := b.t.log
	if len(batch) > 1 && allNil(errs) && c.retry.pending() == 0 {
		if err := batch[len(batch)-1].Ack(true); err != nil {
			log.Warn("gocap: acknowledging a batch of deliveries failed; the broker will deliver them again", "count", len(batch), "err", err)
		}
		return
	}
	for i, d := range batch {
		switch err := errs[i]; {
		case err == nil:
			if err := d.Ack(false); err != nil {
				log.Warn("gocap: acknowledging a delivery failed; the broker will deliver it again", "err", err)
			}
		case errors.Is(err, transport.ErrDiscard):
			log.Warn("gocap: discarding a delivery at the handler's request", "topic", d.RoutingKey, "err", err)
			if err := d.Nack(false, false); err != nil {
				log.Warn("gocap: discarding a delivery failed; the broker will deliver it again", "err", err)
			}
		default:
			log.Warn("gocap: handling a delivery failed; handing it back to the broker after a pause", "topic", d.RoutingKey, "err", err, "pause", b.t.cfg.RequeueDelay)
			c.retry.schedule(d)
		}
	}
}

func allNil(errs []error) bool {
	for _, err := range errs {
		if err != nil {
			return false
		}
	}
	return true
}

// delivery converts d: its headers become strings, and a copy that the
// retrier put at the tail of the queue gets its original routing key back
// as its topic.
func delivery(d amqp.Delivery) transport.Delivery {
	topic := d.RoutingKey
	headers := make(map[string]string, len(d.Headers))
	for k, v := range d.Headers {
		headers[k] = headerString(v)
	}
	if rk, ok := d.Headers[RoutingKeyHeader].(string); ok && d.Exchange == "" {
		// A copy that handBack put at the tail of the queue.
		topic = rk
		delete(headers, RoutingKeyHeader)
	}
	return transport.Delivery{Message: transport.Message{Headers: headers, Body: d.Body}, Topic: topic}
}
