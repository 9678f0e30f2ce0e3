package rabbitmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/backoff"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/internal/adapter"
	"github.com/gocap/gocap/wire"
)

// Consume consumes the queue of group, bound to topics (see
// transport.Receiver). A delivery whose handler fails is handed back to the
// tail of the queue after Config.RequeueDelay; one whose handler discards
// it is rejected without requeue (see the package documentation). After a
// connection loss Consume dials again with the backoff of
// Config.ReconnectMin and ReconnectMax.
func (t *Transport) Consume(ctx context.Context, group string, topics []string, h transport.Handler) error {
	if err := adapter.CheckConsume("rabbitmq", group, topics); err != nil {
		return err
	}
	ctx, cancel := adapter.UntilClosed(ctx, t.closed)
	defer cancel()
	queue := t.cfg.QueuePrefix + group
	wait := backoff.New(t.cfg.ReconnectMin, t.cfg.ReconnectMax)
	for {
		err := t.consumeOnce(ctx, queue, topics, h, wait.Reset)
		if ctx.Err() != nil {
			return nil
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

// consumeOnce runs one connection's consumer until it breaks or ctx ends.
func (t *Transport) consumeOnce(ctx context.Context, queue string, topics []string, h transport.Handler, connected func()) error {
	conn, err := amqp.Dial(t.cfg.URL)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	if err := ch.ExchangeDeclare(t.cfg.Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declaring exchange %q: %w", t.cfg.Exchange, err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declaring queue %q: %w", queue, err)
	}
	for _, topic := range topics {
		if err := ch.QueueBind(queue, topic, t.cfg.Exchange, false, nil); err != nil {
			return fmt.Errorf("binding queue %q to %q: %w", queue, topic, err)
		}
	}
	if err := ch.Qos(t.cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("setting prefetch: %w", err)
	}
	// Failed deliveries are copied to the tail of the queue (see retrier).
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("enabling publisher confirms: %w", err)
	}
	deliveries, err := ch.ConsumeWithContext(ctx, queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consuming: %w", err)
	}
	connected()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))

	later := newRetrier(ctx, t, ch, queue)
	var wg sync.WaitGroup
	for range t.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range deliveries {
				t.handle(ctx, d, h, later)
			}
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
	}
	conn.Close() // ends deliveries, so the workers return
	wg.Wait()
	later.stop() // the broker redelivers what was waiting: nothing was acknowledged
	return result
}

func (t *Transport) handle(ctx context.Context, d amqp.Delivery, h transport.Handler, later *retrier) {
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
	err := h(ctx, transport.Delivery{Message: transport.Message{Headers: headers, Body: d.Body}, Topic: topic})
	switch {
	case err == nil:
		if err := d.Ack(false); err != nil {
			t.log.Warn("gocap: acknowledging a delivery failed; the broker will deliver it again", "err", err)
		}
	case errors.Is(err, transport.ErrDiscard):
		t.log.Warn("gocap: discarding a delivery at the handler's request", "topic", d.RoutingKey, "err", err)
		if err := d.Nack(false, false); err != nil {
			t.log.Warn("gocap: discarding a delivery failed; the broker will deliver it again", "err", err)
		}
	default:
		t.log.Warn("gocap: handling a delivery failed; handing it back to the broker after a pause", "topic", d.RoutingKey, "err", err, "pause", t.cfg.RequeueDelay)
		later.schedule(d)
	}
}

// retrier hands failed deliveries back to the broker after
// Config.RequeueDelay, without holding a worker while they wait. It
// belongs to one consumer channel: stop cancels what has not started and
// waits for what has.
type retrier struct {
	t     *Transport
	ctx   context.Context // the consumer's
	ch    *amqp.Channel   // in confirm mode
	queue string
	later *adapter.Later
}

func newRetrier(ctx context.Context, t *Transport, ch *amqp.Channel, queue string) *retrier {
	return &retrier{t: t, ctx: ctx, ch: ch, queue: queue, later: adapter.NewLater(t.cfg.RequeueDelay)}
}

// schedule hands d back after the delay. After stop it does nothing: the
// channel is closed or closing, and the broker redelivers every delivery
// that was not acknowledged on it.
func (r *retrier) schedule(d amqp.Delivery) {
	r.later.After(func() { r.handBack(d) })
}

// handBack puts a copy of d at the tail of its queue, through the default
// exchange, and acknowledges d once the broker confirmed the copy. A
// rejected delivery (basic.nack with requeue) would go back to the head of
// the queue, so that deliveries that keep failing, as many as the prefetch,
// would be all the consumer ever receives. The copy keeps d's headers,
// body and properties, and carries d's routing key in RoutingKeyHeader.
// If the copy cannot be confirmed, d is rejected with requeue instead; if
// the channel closed, the broker redelivers d anyway (and the copy, if it
// was routed, too: a duplicate, as after any lost acknowledgement).
func (r *retrier) handBack(d amqp.Delivery) {
	headers := make(amqp.Table, len(d.Headers)+1)
	maps.Copy(headers, d.Headers)
	if _, ok := headers[RoutingKeyHeader].(string); !ok || d.Exchange != "" {
		headers[RoutingKeyHeader] = d.RoutingKey
	}
	dc, err := r.ch.PublishWithDeferredConfirmWithContext(r.ctx, "", r.queue, false, false, amqp.Publishing{
		Headers:         headers,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    d.DeliveryMode,
		Priority:        d.Priority,
		CorrelationId:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		Expiration:      d.Expiration,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		AppId:           d.AppId,
		Body:            d.Body,
	})
	if err == nil {
		var ok bool
		if ok, err = dc.WaitContext(r.ctx); err == nil && !ok {
			err = errors.New("the broker rejected the copy (nack) or the channel closed")
		}
	}
	if err != nil {
		r.t.log.Debug("gocap: requeueing a failed delivery at the tail of its queue failed; rejecting it with requeue", "queue", r.queue, "err", err)
		if err := d.Nack(false, true); err != nil {
			r.t.log.Debug("gocap: handing a delivery back failed; the broker redelivers it when the channel closes", "err", err)
		}
		return
	}
	if err := d.Ack(false); err != nil {
		r.t.log.Debug("gocap: acknowledging a requeued delivery failed; the broker redelivers it when the channel closes (a duplicate of its copy)", "err", err)
	}
}

// stop cancels the deliveries still waiting and waits for those being
// handed back.
func (r *retrier) stop() { r.later.Stop(false) }

// headerString converts an AMQP header value to a string: foreign
// publishers send numbers, booleans, byte arrays, timestamps and tables.
func headerString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return wire.HeaderValue(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case amqp.Decimal:
		return fmt.Sprintf("%de-%d", x.Value, x.Scale)
	case amqp.Table, []any:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	default:
		return fmt.Sprint(x)
	}
}
