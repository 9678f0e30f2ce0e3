package rabbitmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/transport/internal/adapter"
	"github.com/gocap/gocap/wire"
)

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
	// waiting counts the deliveries scheduled and not yet acknowledged or
	// rejected by handBack: they are unacknowledged on ch meanwhile.
	waiting atomic.Int64
}

func newRetrier(ctx context.Context, t *Transport, ch *amqp.Channel, queue string) *retrier {
	return &retrier{t: t, ctx: ctx, ch: ch, queue: queue, later: adapter.NewLater(t.cfg.RequeueDelay)}
}

// schedule hands d back after the delay. After stop it does nothing: the
// channel is closed or closing, and the broker redelivers every delivery
// that was not acknowledged on it.
func (r *retrier) schedule(d amqp.Delivery) {
	r.waiting.Add(1)
	r.later.After(func() {
		defer r.waiting.Add(-1) // after handBack's ack or nack was sent
		r.handBack(d)
	})
}

// pending returns the number of deliveries that wait to be handed back,
// or are being handed back: while it is not zero, a multiple ack on the
// channel would acknowledge them too. After stop it may stay above zero
// (the channel is closed then).
func (r *retrier) pending() int64 { return r.waiting.Load() }

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
