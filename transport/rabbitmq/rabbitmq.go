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
// Group queues are declared durable, not exclusive and not auto-deleted,
// with Config.QueueArguments (x-message-ttl, x-dead-letter-exchange, ...)
// and Config.QueueType (classic or quorum), as DotNetCore.CAP declares its
// queues with RabbitMQOptions.QueueArguments. RabbitMQ declares a queue
// only with the arguments it exists with: a queue that CAP or an operator
// declared with other arguments makes Consume return an error wrapping
// ErrQueueMismatch, naming the argument and the Config field to set. With
// a message TTL and a dead-letter exchange, a message no consumer took in
// time, and a delivery its handler discarded, go to the dead-letter
// exchange.
//
// A consumer opens Config.Concurrency channels on one connection, each
// with a consumer of the queue and Config.Prefetch unacknowledged
// deliveries at most. ConsumeBatch (transport.BatchReceiver) hands over
// what a channel holds in batches, one batch in flight per channel, and
// acknowledges a batch whose results are all nil with one basic.ack of its
// last delivery tag with the multiple flag; other batches are settled
// delivery by delivery, as Consume settles each. Consume is ConsumeBatch
// with batches of one.
//
// # Order
//
// What RabbitMQ guarantees: a queue hands its messages to one consumer in
// the order they were enqueued, and a publisher's messages confirmed one
// after the other are enqueued in that order. What it does not: with
// several consumers on one queue (other processes, or the
// Config.Concurrency channels of one, each a consumer) each gets some of
// the messages, and they store them concurrently, so two messages of one
// key can be stored, and handled, in the order opposite to the queue's; a
// delivery whose handler failed is put back at the tail of the queue (see
// above), behind later messages. RabbitMQ itself has no notion of a key.
//
// What gocap adds, for messages published with an ordering key
// (outbox.WithOrderingKey, the gocap-ordering-key header): the sending
// outbox sends a key's messages one at a time, in commit order, each only
// after the broker confirmed the previous one and its row succeeded; the
// receiving outbox handles a key's messages one at a time per group, in
// the order they were stored, in every process (the claim rule of package
// storage, "Ordering keys").
//
// The configuration for ordered groups: declare each group queue as a
// single-active-consumer queue, so that RabbitMQ delivers its messages to
// one consumer at a time (and fails over to another when it goes away):
//
//	rabbitmq.Config{URL: url, QueueArguments: amqp.Table{"x-single-active-consumer": true}}
//
// in every process that consumes the group; Concurrency and the outbox's
// handler concurrency need not be 1 (the active consumer stores its
// deliveries in order, and the claim rule handles each key's messages one
// at a time while other keys go on). RabbitMQ fixes a queue's arguments
// when it declares it: give the argument from the queue's first
// declaration on. A queue that exists without it (declared by an earlier
// run, by CAP, or by an operator) makes Consume return an error wrapping
// ErrQueueMismatch; delete the queue (after it drained) or declare it
// with the argument yourself. A failed store puts the delivery back at
// the tail, so keep Config.RequeueDelay small against the storage's
// outages, or accept that a message that could not be stored may come
// after later ones of its key.
//
// Header values of other AMQP types than strings, as foreign publishers
// send them, become strings: numbers and booleans in Go's format,
// timestamps in RFC 3339, tables and arrays as JSON. A byte array that is
// valid UTF-8 without NUL bytes becomes that string; any other byte array
// becomes "base64:" followed by its standard base64 encoding (see
// wire.HeaderValue and wire.DecodeHeaderValue).
//
// A Send that fails because the broker cannot be reached (not connected,
// waiting to reconnect, a dial failure, the channel or connection closed
// before the publish or before the confirm, the connection blocked by a
// broker's memory or disk alarm, the send's deadline passed before the
// confirm) returns an error wrapping transport.ErrUnavailable. Once
// connected, a Send returns when its context ends (cancelled, with the
// context's error): if it was still writing the message (to a broker that
// stopped reading), the connection is torn down, which fails the other
// Sends in flight on it as unavailable, and the next Send connects again.
// Connecting is bounded by the URL's connection_timeout (amqp091's
// default: 30 s), not by the Send's context, and the Sends that find no
// connection wait for it. ErrUnroutable and a broker nack are not
// unavailable: the broker was reached. A message that RabbitMQ can never take (a topic,
// header name or message id longer than an AMQP short string's 255 bytes,
// headers larger than a frame, a body larger than Config.MaxMessageSize or
// the broker's max_message_size) fails with a permanent [RefusedError]:
// the outbox marks it Failed at once. The transport tells these before
// publishing, except a body larger than the broker's limit when
// Config.MaxMessageSize is not set: the broker then closes the publishing
// channel, the message gets a RefusedError carrying the broker's reason,
// and the others whose confirms the closed channel lost are unavailable.
// Another refusal of a message by the broker (a PRECONDITION_FAILED
// channel exception, such as a string CC header) cannot be told apart
// from the other messages on the channel: each gets an error that counts
// as an attempt, so that the refused message ends Failed after its
// retries.
package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/backoff"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/internal/adapter"
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
	// Prefetch is the number of unacknowledged deliveries per consumer
	// channel, and the largest batch ConsumeBatch hands over. Zero means
	// 128: batches large enough that one multi-row insert stores many
	// deliveries. On a local RabbitMQ 3 (BenchmarkConsumeBatch, 20,000
	// preloaded messages, a handler taking 2ms per batch as a multi-row
	// INSERT does, 4 channels) ConsumeBatch consumed 20k msg/s with 16,
	// 61k with 64, 94k with 128 and 80k with 256 (larger batches are not
	// handed over fuller: the channels drain the queue unevenly).
	Prefetch int
	// Concurrency is the number of channels, each with a consumer of the
	// queue and its own Prefetch, that one Consume or ConsumeBatch opens on
	// its connection: as many deliveries (Consume) or batches
	// (ConsumeBatch) are handled at once, so that the store's latency of
	// one overlaps the others'. Zero means 4: in the same benchmark, with
	// Prefetch 128, 34k msg/s with 1, 60k with 2, 94k with 4 and 90k with
	// 8 (with a handler that returns at once: 38k, 69k, 125k, 102k).
	Concurrency int
	// QueueArguments are the optional queue arguments ("x-arguments") every
	// group queue is declared with, as DotNetCore.CAP's
	// RabbitMQOptions.QueueArguments are: x-message-ttl,
	// x-dead-letter-exchange, x-dead-letter-routing-key, x-max-length,
	// x-overflow, x-single-active-consumer, ... Give integers as Go
	// integers (int is sent as a 64-bit integer), strings as strings. A
	// queue that exists already (declared by CAP or another program) is
	// consumed only if these, and QueueType, are the arguments it was
	// declared with; otherwise Consume returns an error wrapping
	// ErrQueueMismatch that names the argument. CAP declares its queues
	// with an x-message-ttl of CAPMessageTTL unless configured otherwise.
	// New checks the value types of the well-known arguments; the broker
	// checks the rest when the queue is declared. The queue type is
	// QueueType, not an x-queue-type argument.
	QueueArguments amqp.Table
	// QueueType is the type of the group queues: QueueClassic (empty means
	// classic, declared without x-queue-type, as CAP does by default) or
	// QueueQuorum (x-queue-type "quorum", CAP's
	// QueueArguments.QueueType). Stream queues are refused: a stream's
	// consumers each read every message, which does not share a group's
	// work.
	QueueType string
	// AcceptUnroutable counts a message that no queue receives as sent.
	AcceptUnroutable bool
	// MaxMessageSize, if positive, is the largest body Send publishes: a
	// larger one fails at once with a [RefusedError], and nothing is sent.
	// Set it to the broker's max_message_size (RabbitMQ 4's default is 16
	// MiB, 3.8 to 3.13's 128 MiB) to refuse such messages without the
	// broker closing the publishing channel, which fails the Sends in
	// flight on it as unavailable. Zero leaves the check to the broker: its
	// refusal is a RefusedError too.
	MaxMessageSize int
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
	cfg       Config
	queueArgs amqp.Table // the group queues' arguments (see queueArguments)
	log       *slog.Logger
	seq       atomic.Uint64
	closed    chan struct{}
	once      sync.Once

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
	queueArgs, err := queueArguments(cfg)
	if err != nil {
		return nil, err
	}
	cfg.QueueArguments = nil // queueArgs is the transport's own copy
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 128
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
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
		cfg: cfg, queueArgs: queueArgs, log: cfg.Logger.With("transport", "rabbitmq"), closed: make(chan struct{}),
		dialWait: backoff.New(cfg.ReconnectMin, cfg.ReconnectMax),
	}
	if _, err := t.publisher(); err != nil {
		return nil, err
	}
	return t, nil
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
	return adapter.Unavailable(err, func(err error) bool { return !refused(err) })
}

// Exchange returns the name of the exchange the transport publishes to.
func (t *Transport) Exchange() string { return t.cfg.Exchange }

// Close closes the connections; Sends fail with ErrClosed and Consumes
// return. The publishing connection's closing handshake waits for the
// broker at most a second (a broker that stopped reading has its socket
// closed), and Sends in flight on it fail. It is safe to call more than
// once.
func (t *Transport) Close() error {
	t.once.Do(func() {
		close(t.closed)
		t.mu.Lock()
		p := t.pub
		t.pub = nil
		t.mu.Unlock()
		if p != nil {
			p.close()
		}
	})
	return nil
}

var _ transport.HealthChecker = (*Transport)(nil)

// Healthy reports whether the transport reaches RabbitMQ: nil while its
// publishing connection is open, or once it has connected again (a
// reconnection waits for the backoff after a failed one, and the dial is
// bounded by amqp091's 30-second timeout rather than by ctx). See
// transport.HealthChecker.
func (t *Transport) Healthy(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rabbitmq: health: %w", err)
	}
	if _, err := t.publisher(); err != nil {
		return fmt.Errorf("rabbitmq: health: %w", err)
	}
	return nil
}
