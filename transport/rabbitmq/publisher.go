package rabbitmq

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/internal/adapter"
	"github.com/gocap/gocap/wire"
)

// publisher is one connection with a confirm-mode channel.
type publisher struct {
	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return

	mu       sync.Mutex
	returned map[string]int // message ids the broker returned, not yet claimed by their Send
}

func (p *publisher) close() { p.conn.Close() }

// drainReturns moves the returns the broker already sent into p.returned.
// A basic.return is dispatched before the basic.ack of the same message, so
// after a Send's confirmation its return, if any, is in the channel.
func (p *publisher) drainReturns() {
	for {
		select {
		case r, ok := <-p.returns:
			if !ok {
				return
			}
			p.returned[r.MessageId]++
		default:
			return
		}
	}
}

func (p *publisher) takeReturned(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drainReturns()
	if p.returned[id] == 0 {
		return false
	}
	if p.returned[id]--; p.returned[id] == 0 {
		delete(p.returned, id)
	}
	return true
}

// publisher returns the live publisher, connecting if there is none. While
// the broker is unreachable it fails fast, trying again after a backoff.
func (t *Transport) publisher() (*publisher, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.closed:
		return nil, ErrClosed
	default:
	}
	if t.pub != nil && !t.pub.conn.IsClosed() && !t.pub.ch.IsClosed() {
		return t.pub, nil
	}
	if t.pub != nil {
		t.pub.close()
		t.pub = nil
	}
	if now := time.Now(); now.Before(t.nextDial) {
		return nil, fmt.Errorf("rabbitmq: not connected; reconnecting in %v: %w", t.nextDial.Sub(now).Round(time.Millisecond), transport.ErrUnavailable)
	}
	p, err := t.dialPublisher()
	if err != nil {
		err = unavailable(err)
		wait := t.dialWait.Next()
		t.nextDial = time.Now().Add(wait)
		t.log.Warn("gocap: connecting to RabbitMQ failed", "err", err, "retry_in", wait)
		return nil, err
	}
	if !t.nextDial.IsZero() {
		t.log.Info("gocap: reconnected to RabbitMQ")
	}
	t.dialWait.Reset()
	t.nextDial = time.Time{}
	t.pub = p
	return p, nil
}

func (t *Transport) dialPublisher() (*publisher, error) {
	conn, err := amqp.Dial(t.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: connecting: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("rabbitmq: opening a channel: %w", err)
	}
	if err := ch.ExchangeDeclare(t.cfg.Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("rabbitmq: declaring exchange %q: %w", t.cfg.Exchange, err)
	}
	if err := ch.Confirm(false); err != nil {
		conn.Close()
		return nil, fmt.Errorf("rabbitmq: enabling publisher confirms: %w", err)
	}
	p := &publisher{conn: conn, ch: ch, returned: map[string]int{}}
	// Large enough that the broker never waits for us: every Send drains it.
	p.returns = ch.NotifyReturn(make(chan amqp.Return, 4096))
	return p, nil
}

// Send publishes msg to topic and waits for the broker's confirmation (see
// transport.Sender).
func (t *Transport) Send(ctx context.Context, topic string, msg transport.Message) error {
	return t.SendBatch(ctx, []transport.Outgoing{{Topic: topic, Message: msg}})[0]
}

// SendBatch publishes msgs on the publisher channel one after the other,
// without waiting, then waits for their confirmations (see
// transport.BatchSender). Concurrent calls interleave on the channel.
func (t *Transport) SendBatch(ctx context.Context, msgs []transport.Outgoing) []error {
	p, err := t.publisher()
	if err != nil {
		return adapter.FailBatch("rabbitmq", "", msgs, err)
	}
	errs := make([]error, len(msgs))
	type pending struct {
		dc *amqp.DeferredConfirmation
		id string
	}
	sent := make([]pending, len(msgs))
	now := time.Now().UTC()
	for i, m := range msgs {
		headers := make(amqp.Table, len(m.Headers))
		for k, v := range m.Headers {
			headers[k] = v
		}
		id := m.Headers[wire.MsgID]
		if id == "" {
			id = "gocap-" + strconv.FormatUint(t.seq.Add(1), 10)
		}
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, t.cfg.Exchange, m.Topic, true, false, amqp.Publishing{
			Headers:      headers,
			DeliveryMode: amqp.Persistent,
			MessageId:    id,
			Timestamp:    now,
			Body:         m.Body,
		})
		if err != nil {
			errs[i] = adapter.SendError("rabbitmq", m.Topic, unavailable(err))
			continue
		}
		sent[i] = pending{dc: dc, id: id}
	}
	for i, s := range sent {
		if s.dc != nil {
			errs[i] = t.confirmed(ctx, p, s.dc, s.id, msgs[i].Topic)
		}
	}
	return errs
}

// confirmed waits for the broker's confirmation of one published message
// and reports whether it was accepted and routed.
func (t *Transport) confirmed(ctx context.Context, p *publisher, dc *amqp.DeferredConfirmation, id, topic string) error {
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("rabbitmq: send to %q: waiting for the confirm: %w", topic, err)
	}
	if !ok {
		if p.ch.IsClosed() {
			return fmt.Errorf("rabbitmq: send to %q: the connection closed before the broker confirmed the message: %w", topic, transport.ErrUnavailable)
		}
		return fmt.Errorf("rabbitmq: send to %q: the broker rejected the message (nack)", topic)
	}
	if p.takeReturned(id) && !t.cfg.AcceptUnroutable {
		return fmt.Errorf("rabbitmq: send to %q on exchange %q: %w", topic, t.cfg.Exchange, ErrUnroutable)
	}
	return nil
}
