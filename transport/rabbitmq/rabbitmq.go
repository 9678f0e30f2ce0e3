// Package rabbitmq is gocap's RabbitMQ transport, on amqp091-go.
//
// Messages are published to one durable topic exchange (DotNetCore.CAP's
// "cap.default.router" by default) with the topic as routing key, as
// persistent messages with publisher confirms. Confirms are pipelined: every
// concurrent Send shares one confirm-mode channel and waits only for its own
// confirmation, so throughput grows with the number of concurrent senders.
//
// Every message is published with the mandatory flag. A message that no
// queue is bound for comes back from the broker, and Send reports it as
// [ErrUnroutable] instead of counting it as sent (DotNetCore.CAP silently
// loses such messages): the outbox retries it, and if no queue is ever
// bound it ends Failed, visible and requeueable. Set Config.AcceptUnroutable
// to count such messages as sent.
//
// Each consumer group has one durable queue, named like CAP's
// (Config.QueuePrefix + group), bound to the exchange for each subscribed
// topic; AMQP topic wildcards ('*' one word, '#' any number) work as
// RabbitMQ defines them. Deliveries are acknowledged manually, after the
// handler returned nil. A delivery whose handler failed is handed back
// after Config.RequeueDelay without holding a worker meanwhile: a copy of
// it (headers, body and properties, its routing key in RoutingKeyHeader)
// is put at the tail of the queue through the default exchange, and the
// delivery is acknowledged once the broker confirmed the copy. (A plain
// basic.nack with requeue would put it back at the head of the queue, so
// that as many failing deliveries as the prefetch would starve every other
// message.) A delivery that is not acknowledged when its channel closes is
// redelivered by the broker, so at worst a message is handed over twice,
// never lost. A handler error wrapping transport.ErrDiscard (see
// transport.Discard) rejects the delivery without requeue: the broker
// drops it, or dead-letters it if the queue has a dead-letter exchange.
//
// Header values of other AMQP types than strings, as foreign publishers
// send them, become strings: numbers and booleans in Go's format,
// timestamps in RFC 3339, tables and arrays as JSON. A byte array that is
// valid UTF-8 without NUL bytes becomes that string; any other byte array
// becomes "base64:" followed by its standard base64 encoding.
//
// A Send that fails because the broker cannot be reached (not connected,
// waiting to reconnect, a dial failure, the channel or connection closed
// before the publish or before the confirm) returns an error wrapping
// transport.ErrUnavailable. ErrUnroutable and a broker nack are not: the
// broker was reached.
package rabbitmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/backoff"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/wire"
)

// DefaultExchange is DotNetCore.CAP's exchange name.
const DefaultExchange = "cap.default.router"

// ErrUnroutable is returned by Send for a message that no queue is bound
// to receive.
var ErrUnroutable = errors.New("rabbitmq: message is unroutable: no queue is bound for its topic")

// RoutingKeyHeader carries the original routing key of a delivery that
// was put back at the tail of its queue after its handler failed (see the
// package documentation). The transport removes it from Delivery.Headers
// and reports its value as Delivery.Topic.
const RoutingKeyHeader = "x-gocap-routing-key"

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("rabbitmq: transport closed")

// Config configures a [Transport].
type Config struct {
	// URL is the AMQP URL, such as amqp://guest:guest@127.0.0.1:5672/.
	URL string
	// Exchange is the durable topic exchange. Empty means DefaultExchange.
	Exchange string
	// QueuePrefix is put before the group name to name a group's queue.
	QueuePrefix string
	// Prefetch is the number of unacknowledged deliveries per consumer.
	// Zero means 16.
	Prefetch int
	// Concurrency is the number of deliveries handled at once per Consume.
	// Zero means 4; it is capped at Prefetch.
	Concurrency int
	// AcceptUnroutable counts a message that no queue receives as sent.
	AcceptUnroutable bool
	// RequeueDelay is how long a delivery whose handler failed waits before
	// it is handed back to the broker (to the tail of its queue), so that a
	// failing store does not spin. The delivery counts against Prefetch
	// while it waits, but no worker waits with it. Zero means one second.
	RequeueDelay time.Duration
	// ReconnectMin and ReconnectMax bound the backoff between connection
	// attempts, which doubles from ReconnectMin up to ReconnectMax while
	// the broker cannot be reached. The publisher dials on demand, at a
	// Send: until the backoff ends, Sends fail at once with
	// transport.ErrUnavailable; a consumer dials again when its backoff
	// ends. Zero means 100ms and 1s, so that a Send issued after the broker
	// came back dials within a second, and consumers resume within a
	// second plus the time to connect. A larger ReconnectMax spares a
	// broker that is down some dials, at the cost of a slower recovery.
	ReconnectMin, ReconnectMax time.Duration
	// Logger receives connection events. Nil means slog.Default().
	Logger *slog.Logger
}

// Transport is a RabbitMQ transport. It is safe for concurrent use.
type Transport struct {
	cfg    Config
	log    *slog.Logger
	seq    atomic.Uint64
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	pub      *publisher
	dialWait *backoff.Backoff // between failed publisher dials
	nextDial time.Time        // no dial before this time; zero after a successful dial
}

var (
	_ transport.Transport   = (*Transport)(nil)
	_ transport.BatchSender = (*Transport)(nil)
)

// New returns a transport for cfg and checks that the broker answers and
// the exchange can be declared.
func New(cfg Config) (*Transport, error) {
	if cfg.URL == "" {
		return nil, errors.New("rabbitmq: Config.URL is empty")
	}
	if _, err := amqp.ParseURI(cfg.URL); err != nil {
		return nil, fmt.Errorf("rabbitmq: Config.URL: %w", err)
	}
	if cfg.Exchange == "" {
		cfg.Exchange = DefaultExchange
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 16
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	cfg.Concurrency = min(cfg.Concurrency, cfg.Prefetch)
	if cfg.RequeueDelay <= 0 {
		cfg.RequeueDelay = time.Second
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = 100 * time.Millisecond
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = time.Second
	}
	cfg.ReconnectMax = max(cfg.ReconnectMax, cfg.ReconnectMin)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Transport{
		cfg: cfg, log: cfg.Logger.With("transport", "rabbitmq"), closed: make(chan struct{}),
		dialWait: backoff.New(cfg.ReconnectMin, cfg.ReconnectMax),
	}
	if _, err := t.publisher(); err != nil {
		return nil, err
	}
	return t, nil
}

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

// refused reports whether err is the broker's refusal of a request that
// reconnecting does not fix: bad credentials or virtual host, a missing
// permission, an exchange or queue declared with other properties.
func refused(err error) bool {
	var aerr *amqp.Error
	if !errors.As(err, &aerr) {
		return false
	}
	switch aerr.Code {
	case amqp.PreconditionFailed, amqp.AccessRefused, amqp.NotAllowed, amqp.InvalidPath, amqp.NotImplemented:
		return true
	}
	return false
}

// unavailable wraps with transport.ErrUnavailable an error that means the
// broker was not reached: a dial failure, a closed connection or channel,
// a broken socket. The caller's context ending, and the broker's refusals
// (see refused), are returned as they are.
func unavailable(err error) error {
	if err == nil || refused(err) || errors.Is(err, transport.ErrUnavailable) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %w", transport.ErrUnavailable, err)
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
	errs := make([]error, len(msgs))
	p, err := t.publisher()
	if err != nil {
		for i, m := range msgs {
			errs[i] = fmt.Errorf("rabbitmq: send to %q: %w", m.Topic, err)
		}
		return errs
	}
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
			errs[i] = fmt.Errorf("rabbitmq: send to %q: %w", m.Topic, unavailable(err))
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

// Exchange returns the name of the exchange the transport publishes to.
func (t *Transport) Exchange() string { return t.cfg.Exchange }

// Close closes the connections; Sends fail with ErrClosed and Consumes
// return. It is safe to call more than once.
func (t *Transport) Close() error {
	t.once.Do(func() {
		close(t.closed)
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.pub != nil {
			t.pub.close()
			t.pub = nil
		}
	})
	return nil
}

// Consume consumes the queue of group, bound to topics (see
// transport.Receiver). A delivery whose handler fails is handed back to the
// tail of the queue after Config.RequeueDelay; one whose handler discards
// it is rejected without requeue (see the package documentation). After a
// connection loss Consume dials again with the backoff of
// Config.ReconnectMin and ReconnectMax.
func (t *Transport) Consume(ctx context.Context, group string, topics []string, h transport.Handler) error {
	if group == "" {
		return errors.New("rabbitmq: consume: group is empty")
	}
	if len(topics) == 0 {
		return fmt.Errorf("rabbitmq: consume for group %q: no topics", group)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-t.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
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
	delay time.Duration

	mu      sync.Mutex
	stopped bool
	timers  map[*time.Timer]struct{}
	wg      sync.WaitGroup
}

func newRetrier(ctx context.Context, t *Transport, ch *amqp.Channel, queue string) *retrier {
	return &retrier{t: t, ctx: ctx, ch: ch, queue: queue, delay: t.cfg.RequeueDelay, timers: map[*time.Timer]struct{}{}}
}

// schedule hands d back after the delay. After stop it does nothing: the
// channel is closed or closing, and the broker redelivers every delivery
// that was not acknowledged on it.
func (r *retrier) schedule(d amqp.Delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	r.wg.Add(1)
	var tm *time.Timer
	// r.mu is held until tm is set, and the callback takes it first.
	tm = time.AfterFunc(r.delay, func() {
		defer r.wg.Done()
		r.mu.Lock()
		delete(r.timers, tm)
		stopped := r.stopped
		r.mu.Unlock()
		if stopped {
			return
		}
		r.handBack(d)
	})
	r.timers[tm] = struct{}{}
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
func (r *retrier) stop() {
	r.mu.Lock()
	r.stopped = true
	for tm := range r.timers {
		if tm.Stop() {
			r.wg.Done()
		}
	}
	clear(r.timers)
	r.mu.Unlock()
	r.wg.Wait()
}

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
