package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/internal/adapter"
	"github.com/gocap/gocap/wire"
)

// publisher is one connection with a confirm-mode channel.
type publisher struct {
	conn    *amqp.Connection
	sock    net.Conn // conn's socket, closed to tear down a connection the broker stopped reading
	ch      *amqp.Channel
	returns chan amqp.Return
	closes  chan *amqp.Error // the reason the broker closed ch, if it did
	blocked atomic.Pointer[string]
	watched chan struct{} // closed when the watch of connection.blocked ended

	mu       sync.Mutex
	returned map[string]int // message ids the broker returned, not yet claimed by their Send
	closeErr *amqp.Error    // what closes held, once read
}

// closeTimeout bounds the closing handshake of a publisher's connection:
// a broker that does not answer in time (or does not read what is sent)
// has the socket closed under it.
const closeTimeout = time.Second

// close closes the connection, waiting for the broker's answer at most
// closeTimeout, and waits (as long again at most) for the watch of
// connection.blocked to end.
func (p *publisher) close() {
	p.conn.CloseDeadline(time.Now().Add(closeTimeout))
	p.sock.Close()
	select {
	case <-p.watched:
	case <-time.After(closeTimeout):
	}
}

// abort tears the connection down at once by closing its socket: a write
// that the broker does not read fails, and so does every Send waiting for
// the channel behind it or for a confirm; the next Send connects again.
func (p *publisher) abort() { p.sock.Close() }

// watchBlocked records connection.blocked and connection.unblocked (a
// broker's memory or disk alarm) until the connection closes, which closes
// blocks.
func (p *publisher) watchBlocked(blocks <-chan amqp.Blocking, log *slog.Logger) {
	defer close(p.watched)
	for b := range blocks {
		if b.Active {
			reason := b.Reason
			p.blocked.Store(&reason)
			log.Warn("gocap: RabbitMQ blocked the publishing connection; sends fail as unavailable until it unblocks it", "reason", reason)
		} else if p.blocked.Swap(nil) != nil {
			log.Info("gocap: RabbitMQ unblocked the publishing connection")
		}
	}
}

// closeReason returns the error the broker closed the channel with, nil
// if the channel is open or was closed by the client or with its
// connection. amqp091 hands it to closes before it fails the pending
// confirms, so a Send whose confirm was lost finds it here.
func (p *publisher) closeReason() *amqp.Error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closeErr == nil {
		select {
		case err, ok := <-p.closes:
			if ok {
				p.closeErr = err
			}
		default:
		}
	}
	return p.closeErr
}

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
	uri, err := amqp.ParseURI(t.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: Config.URL: %w", err)
	}
	timeout := 30 * time.Second // amqp091's default
	if uri.ConnectionTimeout > 0 {
		timeout = time.Duration(uri.ConnectionTimeout) * time.Millisecond
	}
	var sock net.Conn
	dial := amqp.DefaultDial(timeout)
	conn, err := amqp.DialConfig(t.cfg.URL, amqp.Config{Dial: func(network, addr string) (net.Conn, error) {
		c, err := dial(network, addr)
		sock = c
		return c, err
	}})
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
	p := &publisher{conn: conn, sock: sock, ch: ch, returned: map[string]int{}, watched: make(chan struct{})}
	// Large enough that the broker never waits for us: every Send drains it.
	p.returns = ch.NotifyReturn(make(chan amqp.Return, 4096))
	p.closes = ch.NotifyClose(make(chan *amqp.Error, 1))
	go p.watchBlocked(conn.NotifyBlocked(make(chan amqp.Blocking, 1)), t.log)
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
//
// A message that the broker cannot take (see [RefusedError]) is not
// published. If ctx ends while a message is being written (the broker
// stopped reading, or the channel is held by a write it does not read),
// the connection is torn down, which fails every Send in flight on it as
// unavailable, and the next Send connects again.
func (t *Transport) SendBatch(ctx context.Context, msgs []transport.Outgoing) []error {
	if err := ctx.Err(); err != nil {
		return adapter.FailBatch("rabbitmq", "", msgs, ctxEnded("publishing", err))
	}
	p, err := t.publisher()
	if err != nil {
		return adapter.FailBatch("rabbitmq", "", msgs, err)
	}
	if reason := p.blocked.Load(); reason != nil {
		return adapter.FailBatch("rabbitmq", "", msgs,
			fmt.Errorf("the broker blocks publishing (%s): %w", *reason, transport.ErrUnavailable))
	}
	errs := make([]error, len(msgs))
	type pending struct {
		dc *amqp.DeferredConfirmation
		id string
	}
	sent := make([]pending, len(msgs))
	now := time.Now().UTC()
	var writing atomic.Bool
	writing.Store(true)
	stop := context.AfterFunc(ctx, func() {
		if writing.Load() {
			p.abort()
		}
	})
	for i, m := range msgs {
		id := m.Headers[wire.MsgID]
		if err := t.check(p, m, id); err != nil {
			errs[i] = err
			continue
		}
		headers := make(amqp.Table, len(m.Headers))
		for k, v := range m.Headers {
			headers[k] = v
		}
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
			if ctx.Err() != nil {
				err = ctxEnded("publishing", ctx.Err())
			}
			errs[i] = adapter.SendError("rabbitmq", m.Topic, unavailable(err))
			continue
		}
		sent[i] = pending{dc: dc, id: id}
	}
	writing.Store(false)
	stop()
	for i, s := range sent {
		if s.dc != nil {
			errs[i] = t.confirmed(ctx, p, s.dc, s.id, msgs[i])
		}
	}
	return errs
}

// ctxEnded is the error of a send whose context ended while it was doing
// what: past its deadline it did not reach the broker in time (it may have
// reached it, unconfirmed, as when the connection breaks before the
// confirm), so it wraps transport.ErrUnavailable; cancelled, the caller
// gave up, and it wraps context.Canceled only.
func ctxEnded(what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: the send's deadline passed before the broker confirmed the message: %w: %w", what, transport.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// confirmed waits for the broker's confirmation of one published message
// and reports whether it was accepted and routed.
func (t *Transport) confirmed(ctx context.Context, p *publisher, dc *amqp.DeferredConfirmation, id string, m transport.Outgoing) error {
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return adapter.SendError("rabbitmq", m.Topic, ctxEnded("waiting for the confirm", err))
	}
	if !ok {
		if p.ch.IsClosed() {
			return lost(m.Topic, len(m.Body), p.closeReason())
		}
		return fmt.Errorf("rabbitmq: send to %q: the broker rejected the message (nack)", m.Topic)
	}
	if p.takeReturned(id) && !t.cfg.AcceptUnroutable {
		return fmt.Errorf("rabbitmq: send to %q on exchange %q: %w", m.Topic, t.cfg.Exchange, ErrUnroutable)
	}
	return nil
}

// RefusedError is the error of a send of a message that RabbitMQ can never
// take, whose sending again cannot succeed: a topic (routing key), header
// name or message id longer than the 255 bytes of an AMQP short string, a
// body larger than Config.MaxMessageSize or than the broker's
// max_message_size, headers larger than a frame. It is permanent: the
// outbox marks the message Failed at once. The transport refuses what it
// can tell before publishing (nothing is sent, the connection is
// untouched); the broker's refusal of a body for its size closes the
// publishing channel, and Err then carries the broker's reason.
type RefusedError struct {
	// Topic is the topic the message was sent to.
	Topic string
	// Err is the reason.
	Err error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("rabbitmq: send to %q refused: %v", clip(e.Topic), e.Err)
}

// Unwrap returns the reason.
func (e *RefusedError) Unwrap() error { return e.Err }

// Permanent reports true: retrying cannot help.
func (e *RefusedError) Permanent() bool { return true }

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "..."
}

// maxShortString is the length limit of an AMQP short string: a routing
// key, a header name, a message id.
const maxShortString = 255

// frameOverhead is the size of an AMQP frame's header and end marker: a
// content header frame carries at most the negotiated frame size less it.
const frameOverhead = 8

// check returns the RefusedError of m if RabbitMQ cannot take it, nil
// otherwise. id is the message id it is published with, empty for one the
// transport makes up.
func (t *Transport) check(p *publisher, m transport.Outgoing, id string) error {
	refuse := func(format string, args ...any) error {
		return &RefusedError{Topic: m.Topic, Err: fmt.Errorf(format, args...)}
	}
	if len(m.Topic) > maxShortString {
		return refuse("the topic (routing key) is %d bytes; AMQP allows at most %d", len(m.Topic), maxShortString)
	}
	if len(id) > maxShortString {
		return refuse("the message id (header %s) is %d bytes; AMQP allows at most %d", wire.MsgID, len(id), maxShortString)
	}
	// The content header frame: class, weight, body size, property flags,
	// then the properties Send sets: headers (each a short string name and
	// a long string value), delivery mode, message id, timestamp.
	header := 2 + 2 + 8 + 2 + 4 + 1 + 1 + max(len(id), 32) + 8
	for k, v := range m.Headers {
		if len(k) > maxShortString {
			return refuse("header name %q is %d bytes; AMQP allows at most %d", clip(k), len(k), maxShortString)
		}
		header += 1 + len(k) + 1 + 4 + len(v)
	}
	if limit := p.conn.Config.FrameSize - frameOverhead; p.conn.Config.FrameSize > 0 && header > limit {
		return refuse("the headers take %d bytes; a frame of this connection carries at most %d (the broker's frame_max)", header, limit)
	}
	if t.cfg.MaxMessageSize > 0 && len(m.Body) > t.cfg.MaxMessageSize {
		return refuse("the body is %d bytes, more than Config.MaxMessageSize (%d)", len(m.Body), t.cfg.MaxMessageSize)
	}
	return nil
}

// maxSizeReason matches the reason of the channel exception of a body
// larger than the broker's max_message_size.
var maxSizeReason = regexp.MustCompile(`message size \d+ is larger than (?:configured )?max size (\d+)`)

// lost is the error of a message of size bytes whose confirm was lost
// because its channel closed with reason: nil when the client or a
// connection loss closed it.
//
// When the broker closed the channel for a message it refuses (a
// PRECONDITION_FAILED channel exception), every message published on the
// channel and not confirmed yet loses its confirm, the one refused and
// those published with it. A body larger than the broker's
// max_message_size is told by the reason, which gives the limit: such a
// message gets a RefusedError, the others are unavailable (sent again
// without counting an attempt; one published before the refused one may
// have been enqueued, and then arrives twice). For
// another refusal the message cannot be told apart: each gets an error
// that is neither permanent nor unavailable, so that the attempt counts
// and the refused message ends Failed after its retries.
func lost(topic string, size int, reason *amqp.Error) error {
	if reason == nil || !reason.Server || (reason.Code != amqp.PreconditionFailed && reason.Code != amqp.ContentTooLarge) {
		return fmt.Errorf("rabbitmq: send to %q: the connection closed before the broker confirmed the message: %w", topic, transport.ErrUnavailable)
	}
	if m := maxSizeReason.FindStringSubmatch(reason.Reason); m != nil {
		limit, err := strconv.Atoi(m[1])
		if err == nil && size > limit {
			return &RefusedError{Topic: topic, Err: fmt.Errorf("the body is %d bytes, more than the broker's max_message_size (%d): %w", size, limit, reason)}
		}
		if err == nil {
			return fmt.Errorf("rabbitmq: send to %q: the broker closed the channel for a larger message published with this one, before it confirmed it (%v): %w", topic, reason, transport.ErrUnavailable)
		}
	}
	return fmt.Errorf("rabbitmq: send to %q: the broker refused this message, or one published with it, and closed the channel: %w", topic, reason)
}
