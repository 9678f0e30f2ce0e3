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
// handler returned nil.
package rabbitmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/transport"
)

// DefaultExchange is DotNetCore.CAP's exchange name.
const DefaultExchange = "cap.default.router"

// ErrUnroutable is returned by Send for a message that no queue is bound
// to receive.
var ErrUnroutable = errors.New("rabbitmq: message is unroutable: no queue is bound for its topic")

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
	// it is handed back to the broker, so that a failing store does not
	// spin. Zero means one second.
	RequeueDelay time.Duration
	// ReconnectMin and ReconnectMax bound the backoff between connection
	// attempts. Zero means 100ms and 30s.
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
	nextDial time.Time // no dial before this time (backoff)
	backoff  time.Duration
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
		cfg.ReconnectMax = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Transport{cfg: cfg, log: cfg.Logger.With("transport", "rabbitmq"), closed: make(chan struct{})}
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
		return nil, fmt.Errorf("rabbitmq: not connected; reconnecting in %v", t.nextDial.Sub(now).Round(time.Millisecond))
	}
	p, err := t.dialPublisher()
	if err != nil {
		t.backoff = nextBackoff(t.backoff, t.cfg.ReconnectMin, t.cfg.ReconnectMax)
		t.nextDial = time.Now().Add(t.backoff)
		t.log.Warn("gocap: connecting to RabbitMQ failed", "err", err, "retry_in", t.backoff)
		return nil, err
	}
	if t.backoff > 0 {
		t.log.Info("gocap: reconnected to RabbitMQ")
	}
	t.backoff, t.nextDial = 0, time.Time{}
	t.pub = p
	return p, nil
}

func nextBackoff(cur, lo, hi time.Duration) time.Duration {
	if cur == 0 {
		return lo
	}
	return min(cur*2, hi)
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
		id := m.Headers[transport.HeaderMsgID]
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
			errs[i] = fmt.Errorf("rabbitmq: send to %q: %w", m.Topic, err)
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
			return fmt.Errorf("rabbitmq: send to %q: the connection closed before the broker confirmed the message", topic)
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
// broker after Config.RequeueDelay.
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
	var backoff time.Duration
	for {
		err := t.consumeOnce(ctx, queue, topics, h, func() { backoff = 0 })
		if ctx.Err() != nil {
			return nil
		}
		var aerr *amqp.Error
		if errors.As(err, &aerr) && (aerr.Code == amqp.PreconditionFailed || aerr.Code == amqp.AccessRefused || aerr.Code == amqp.NotAllowed) {
			return fmt.Errorf("rabbitmq: consuming queue %q: %w", queue, err)
		}
		backoff = nextBackoff(backoff, t.cfg.ReconnectMin, t.cfg.ReconnectMax)
		t.log.Warn("gocap: RabbitMQ consumer disconnected; reconnecting", "queue", queue, "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
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
	deliveries, err := ch.ConsumeWithContext(ctx, queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consuming: %w", err)
	}
	connected()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))

	var wg sync.WaitGroup
	for range t.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range deliveries {
				t.handle(ctx, d, h)
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
	return result
}

func (t *Transport) handle(ctx context.Context, d amqp.Delivery, h transport.Handler) {
	headers := make(map[string]string, len(d.Headers))
	for k, v := range d.Headers {
		headers[k] = headerString(v)
	}
	err := h(ctx, transport.Delivery{Message: transport.Message{Headers: headers, Body: d.Body}, Topic: d.RoutingKey})
	if err == nil {
		if err := d.Ack(false); err != nil {
			t.log.Warn("gocap: acknowledging a delivery failed; the broker will deliver it again", "err", err)
		}
		return
	}
	t.log.Warn("gocap: handling a delivery failed; handing it back to the broker", "topic", d.RoutingKey, "err", err)
	select {
	case <-time.After(t.cfg.RequeueDelay):
	case <-ctx.Done():
	}
	if err := d.Nack(false, true); err != nil {
		t.log.Debug("gocap: returning a delivery failed; the broker redelivers it when the channel closes", "err", err)
	}
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
		return string(x)
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
