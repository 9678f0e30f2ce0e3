// Package kafka is gocap's Kafka transport, on github.com/segmentio/kafka-go.
//
// A message is a record on the topic named like the message (with
// Config.TopicPrefix), with DotNetCore.CAP's headers as record headers and
// the body as the value. Its key is the message's ordering key
// (outbox.WithOrderingKey, carried in wire.OrderingKey), else the value of
// the header named by Config.KeyHeader, else empty (records spread over
// partitions).
//
// # Order
//
// Records of one key go to one partition, and a partition keeps the
// order in which records were written and is read in that order. That
// order is the order of the writes, not of the publishes: the outbox
// sends its rows concurrently, so a record key alone (KeyHeader) gives
// partition affinity, not order. Messages published with an ordering key
// are sent one at a time per key, in publish order (the outbox's claim
// rule), so their records are written in that order; and since one
// consumer of a group reads a partition, a receiving gocap stores them in
// that order and handles them one at a time per key and group. A
// rebalance may hand a partition to another process: records fetched but
// not committed are then delivered again, and de-duplicated. A send
// counts only when every in-sync replica acknowledged it
// (acks=all). Concurrent sends share one kafka.Writer, which batches them:
// dispatch never waits a batch timeout per message. The outbox hands the
// transport whole batches of claimed rows (SendBatch, one writer call each),
// which is several times cheaper than a Send per row.
//
// A consumer group is a Kafka consumer group (Config.GroupPrefix + group).
// An offset is committed only after the handler returned nil — that is,
// after the outbox stored the message. A handler error keeps the offset: the
// message is handed to the handler again after Config.RequeueDelay, in the
// same process, and a crash in between redelivers it from the last
// committed offset; so can a rebalance of the group, for a record fetched
// but not yet committed (the outbox de-duplicates such redeliveries by
// message id and group). Because a partition is read in order, such a
// record holds up the records after it in its partition (not other
// partitions) until its handler accepts or discards it; gocap's processor
// bounds the failures of one record. A handler error wrapping
// transport.ErrDiscard (see transport.Discard) commits the record's offset
// without handling it, and the consumer moves on. Kafka has no topic
// wildcards: Consume rejects patterns with '*' or '#'. A record without
// cap-msg-name (from a foreign producer) gets its topic, without the
// prefix, as Delivery.Topic, which the outbox uses as the name.
//
// ConsumeBatch (transport.BatchReceiver) hands the handler the records
// fetched together, up to a batch size, and commits their offsets after it
// returned, per partition up to the first record whose result is an error;
// failed records are handed again, alone, before the next fetch, so a
// partition keeps its order. Consume is ConsumeBatch with batches of one.
//
// Record header values are bytes. A value that is valid UTF-8 without NUL
// bytes becomes that string in Delivery.Headers; any other value becomes
// "base64:" followed by its standard base64 encoding (see wire.HeaderValue
// and wire.DecodeHeaderValue). Sent header values are written as their
// UTF-8 bytes, unchanged.
//
// Config.TLS and Config.SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) apply
// to every connection: the writer's, the consumers', topic creation's and
// Healthy's. Credentials or a certificate the brokers refuse are no
// outage: Send, Healthy, Consume and ConsumeBatch return an error wrapping
// ErrAuthentication (a consumer checks them before it starts, since
// kafka-go's reader would retry them for ever).
//
// kafka-go reconnects by itself; the transport logs errors and backs off.
// A send that fails at the connection level (a dial or network error, a
// broker or partition leader not available, not enough in-sync replicas,
// the writer closed) returns an error wrapping transport.ErrUnavailable.
// A record that can never be written fails with a [RefusedError], which is
// permanent (the outbox marks the message Failed at once): a record larger
// than the writer takes ([MaxRecordBytes]; checked before anything is
// written, so the other records of its batch are sent), or one the broker
// refuses for itself (MESSAGE_TOO_LARGE for the topic's max.message.bytes,
// INVALID_RECORD, INVALID_TOPIC_EXCEPTION). A broker refuses such a record
// with the whole record batch it came in, so the records of a refused batch
// are written again one per batch, and only a record refused alone fails
// for good. Any other error is a failed attempt, retried by the message's
// policy.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/internal/adapter"
	"github.com/gocap/gocap/wire"
)

// recordKey is the record key of a message with headers h: its ordering
// key (wire.OrderingKey), else the value of Config.KeyHeader, else none.
func (t *Transport) recordKey(h map[string]string) []byte {
	if k := h[wire.OrderingKey]; k != "" {
		return []byte(k)
	}
	if t.cfg.KeyHeader != "" {
		if k := h[t.cfg.KeyHeader]; k != "" {
			return []byte(k)
		}
	}
	return nil
}

// MaxRecordBytes is the largest record the transport writes, in bytes, as
// kafka-go counts a record (its value, key and headers, with a few bytes of
// framing): the writer's BatchBytes. A larger record fails with a
// [RefusedError] before anything is written. The brokers' own limit is the
// topic's max.message.bytes (1 MiB by default).
const MaxRecordBytes = 1 << 20

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("kafka: transport closed")

// Config configures a [Transport].
type Config struct {
	// Brokers are the bootstrap addresses, host:port.
	Brokers []string
	// TopicPrefix is put before every topic name.
	TopicPrefix string
	// GroupPrefix is put before every consumer group id.
	GroupPrefix string
	// KeyHeader names the header whose value is the record key of a
	// message without an ordering key; empty means no key (records spread
	// over partitions). It gives partition affinity, not order (see
	// Order in the package doc).
	KeyHeader string
	// AutoCreateTopics creates missing topics, with Partitions partitions
	// (default 1) and ReplicationFactor replicas (default 1), before the
	// first send to or consume from them.
	AutoCreateTopics bool
	// Partitions is the number of partitions of a created topic.
	Partitions int
	// ReplicationFactor is the number of replicas of a created topic.
	ReplicationFactor int
	// BatchTimeout is how long the writer gathers concurrent sends into one
	// request. Zero means 2ms.
	BatchTimeout time.Duration
	// RequeueDelay is the pause before a failed delivery is handed to the
	// handler again. Zero means one second.
	RequeueDelay time.Duration
	// TLS, if not nil, encrypts every connection to the brokers (the
	// writer's, the consumers', topic creation's and Healthy's) with this
	// configuration: set RootCAs to trust a private CA, Certificates for a
	// client certificate.
	TLS *tls.Config
	// SASL, if not nil, authenticates every connection to the brokers
	// with a user name and password (PLAIN, SCRAM-SHA-256 or
	// SCRAM-SHA-512). Credentials the brokers refuse make Send, Healthy,
	// Consume and ConsumeBatch fail at once with ErrAuthentication.
	SASL *SASL
	// Logger receives errors and reconnections. Nil means slog.Default().
	Logger *slog.Logger
}

// Transport is a Kafka transport. It is safe for concurrent use.
type Transport struct {
	cfg    Config
	log    *slog.Logger
	writer *kafkago.Writer
	// alone writes each record in a batch of its own: it sends again the
	// records of a batch the broker refused, to tell which record it
	// refuses.
	alone  *kafkago.Writer
	conns  connections // with Config.TLS and Config.SASL
	closed chan struct{}
	once   sync.Once

	mu      sync.Mutex
	created map[string]bool
}

var (
	_ transport.Transport     = (*Transport)(nil)
	_ transport.BatchSender   = (*Transport)(nil)
	_ transport.BatchReceiver = (*Transport)(nil)
)

// New returns a transport for cfg. It does not connect until used.
func New(cfg Config) (*Transport, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka: Config.Brokers is empty")
	}
	for _, b := range cfg.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return nil, fmt.Errorf("kafka: broker address %q: %w", b, err)
		}
	}
	conns, err := newConnections(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 1
	}
	if cfg.ReplicationFactor <= 0 {
		cfg.ReplicationFactor = 1
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = 2 * time.Millisecond
	}
	if cfg.RequeueDelay <= 0 {
		cfg.RequeueDelay = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("transport", "kafka")
	newWriter := func(batchSize int) *kafkago.Writer {
		return &kafkago.Writer{
			Addr:         kafkago.TCP(cfg.Brokers...),
			Transport:    conns.transport,
			Balancer:     &kafkago.Hash{},
			RequiredAcks: kafkago.RequireAll,
			BatchTimeout: cfg.BatchTimeout,
			BatchSize:    batchSize,
			BatchBytes:   MaxRecordBytes,
			MaxAttempts:  3,
			ErrorLogger:  kafkago.LoggerFunc(func(f string, a ...any) { log.Warn("gocap: kafka writer: " + fmt.Sprintf(f, a...)) }),
		}
	}
	t := &Transport{
		cfg: cfg, log: log, closed: make(chan struct{}), created: map[string]bool{}, conns: conns,
		writer: newWriter(1000), alone: newWriter(1),
	}
	return t, nil
}

// ensureTopics creates the topics once, when Config.AutoCreateTopics.
func (t *Transport) ensureTopics(ctx context.Context, topics ...string) error {
	if !t.cfg.AutoCreateTopics {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var missing []kafkago.TopicConfig
	for _, name := range topics {
		if !t.created[name] {
			missing = append(missing, kafkago.TopicConfig{Topic: name, NumPartitions: t.cfg.Partitions, ReplicationFactor: t.cfg.ReplicationFactor})
		}
	}
	if len(missing) == 0 {
		return nil
	}
	client := &kafkago.Client{Addr: kafkago.TCP(t.cfg.Brokers...), Timeout: 10 * time.Second, Transport: t.conns.transport}
	res, err := client.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: missing})
	if err != nil {
		return fmt.Errorf("kafka: creating topics: %w", t.diagnose(ctx, err))
	}
	for name, err := range res.Errors {
		if err != nil && !errors.Is(err, kafkago.TopicAlreadyExists) {
			return fmt.Errorf("kafka: creating topic %q: %w", name, err)
		}
		t.created[name] = true
	}
	return nil
}

// Send writes msg to the topic and returns when all in-sync replicas have
// it (see transport.Sender).
func (t *Transport) Send(ctx context.Context, name string, msg transport.Message) error {
	return t.SendBatch(ctx, []transport.Outgoing{{Topic: name, Message: msg}})[0]
}

// SendBatch writes msgs with one call to the shared writer, which groups
// them by partition into produce requests, and returns when every record
// was acknowledged by all in-sync replicas or refused (see
// transport.BatchSender). A record larger than [MaxRecordBytes] fails with
// a [RefusedError] and the others are written; the records of a batch the
// broker refused for a record's sake are written again one per batch (see
// the package doc).
func (t *Transport) SendBatch(ctx context.Context, msgs []transport.Outgoing) []error {
	fail := func(err error) []error { return adapter.FailBatch("kafka", t.cfg.TopicPrefix, msgs, err) }
	select {
	case <-t.closed:
		return fail(ErrClosed)
	default:
	}
	errs := make([]error, len(msgs))
	if len(msgs) == 0 {
		return errs
	}
	recs := make([]kafkago.Message, 0, len(msgs))
	at := make([]int, 0, len(msgs)) // at[j]: the index in msgs of recs[j]
	var topics []string
	for i, m := range msgs {
		full := t.cfg.TopicPrefix + m.Topic
		rec := kafkago.Message{Topic: full, Value: m.Body, Headers: make([]kafkago.Header, 0, len(m.Headers))}
		for k, v := range m.Headers {
			rec.Headers = append(rec.Headers, kafkago.Header{Key: k, Value: []byte(v)})
		}
		rec.Key = t.recordKey(m.Headers)
		if n := recordSize(&rec); n > MaxRecordBytes {
			errs[i] = &RefusedError{Topic: full, Err: fmt.Errorf(
				"record of %d bytes (body %d, key %d, %d headers) is larger than the %d bytes the transport writes (kafka.MaxRecordBytes)",
				n, len(rec.Value), len(rec.Key), len(rec.Headers), MaxRecordBytes)}
			continue
		}
		if !slices.Contains(topics, full) {
			topics = append(topics, full)
		}
		recs, at = append(recs, rec), append(at, i)
	}
	if len(recs) == 0 {
		return errs
	}
	if err := t.ensureTopics(ctx, topics...); err != nil {
		for _, i := range at {
			errs[i] = adapter.SendError("kafka", t.cfg.TopicPrefix+msgs[i].Topic, unavailable(err))
		}
		return errs
	}
	var diagnosed error // of the first record that failed for want of the brokers
	rerrs := t.write(ctx, t.writer, recs, &diagnosed)
	var again []int // indexes in recs of records refused with their batch
	for j, e := range rerrs {
		if refused(e) {
			again = append(again, j)
			continue
		}
		errs[at[j]] = e
	}
	if len(again) > 0 {
		alone := make([]kafkago.Message, len(again))
		for k, j := range again {
			alone[k] = recs[j]
		}
		for k, e := range t.write(ctx, t.alone, alone, &diagnosed) {
			var kerr kafkago.Error
			if refused(e) && errors.As(e, &kerr) {
				e = &RefusedError{Topic: alone[k].Topic, Err: kerr}
			}
			errs[at[again[k]]] = e
		}
	}
	return errs
}

// write writes recs with w and returns one error per record: nil, or the
// reason wrapped as a send error (with transport.ErrUnavailable when the
// brokers could not take it). *diagnosed holds the diagnosis of the first
// record that failed for want of the brokers, shared by the calls of a
// SendBatch.
func (t *Transport) write(ctx context.Context, w *kafkago.Writer, recs []kafkago.Message, diagnosed *error) []error {
	errs := make([]error, len(recs))
	err := w.WriteMessages(ctx, recs...)
	var werrs kafkago.WriteErrors
	switch {
	case err == nil:
	case errors.As(err, &werrs) && len(werrs) == len(recs):
		for i, e := range werrs {
			if e == nil {
				continue
			}
			if brokersDown(e) {
				if *diagnosed == nil {
					*diagnosed = t.diagnose(ctx, e)
				}
				if errors.Is(*diagnosed, ErrAuthentication) {
					e = *diagnosed
				}
			}
			errs[i] = adapter.SendError("kafka", recs[i].Topic, unavailable(t.authError(e)))
		}
	default:
		err = unavailable(t.diagnose(ctx, err))
		for i := range recs {
			errs[i] = adapter.SendError("kafka", recs[i].Topic, err)
		}
	}
	return errs
}

// refused reports whether the broker refused a record for itself, or for
// another record of its batch: a record batch larger than the topic's
// max.message.bytes (MESSAGE_TOO_LARGE), an invalid record (a record
// without a key to a compacted topic, say), an invalid topic name.
func refused(err error) bool {
	var kerr kafkago.Error
	if err == nil || !errors.As(err, &kerr) {
		return false
	}
	switch kerr {
	case kafkago.MessageSizeTooLarge, kafkago.InvalidRecord, kafkago.InvalidTopic:
		return true
	}
	return false
}

// recordSize is the size of rec as kafka-go's Writer counts it when it
// checks a record against its BatchBytes, before it writes anything
// (Message.totalSize): the length-prefixed key and value, the framing,
// the timestamp, and the headers as varint-prefixed keys and values.
func recordSize(rec *kafkago.Message) int64 {
	n := int64(varIntLen(len(rec.Headers)))
	for _, h := range rec.Headers {
		n += int64(varIntLen(len(h.Key)) + len(h.Key) + varIntLen(len(h.Value)) + len(h.Value))
	}
	const framing = 4 + 1 + 1 + 8 // crc, magic byte, attributes, timestamp
	return n + framing + 4 + int64(len(rec.Key)) + 4 + int64(len(rec.Value))
}

// varIntLen is the length of n as a zig-zag varint.
func varIntLen(n int) int {
	u := uint64(n) << 1 // n ≥ 0: zig-zag encoding
	l := 1
	for u >= 0x80 {
		u >>= 7
		l++
	}
	return l
}

// RefusedError is the error of a send of a record that can never be
// written: larger than [MaxRecordBytes], or refused by the broker for
// itself (see the package doc). It is permanent: the outbox marks the
// message Failed at once.
type RefusedError struct {
	// Topic is the topic the record was sent to, with Config.TopicPrefix.
	Topic string
	// Err is the reason.
	Err error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("kafka: send to %q refused: %v", e.Topic, e.Err)
}

// Unwrap returns the reason.
func (e *RefusedError) Unwrap() error { return e.Err }

// Permanent reports true: retrying cannot help.
func (e *RefusedError) Permanent() bool { return true }

// unavailable wraps with transport.ErrUnavailable an error that means the
// brokers could not take the records now: a dial or network error, a
// broker, coordinator or partition leader not available, not enough
// in-sync replicas, the writer closed. Record-level errors (a message too
// large, an invalid record, an unknown topic) and the caller's context
// ending are returned as they are.
func unavailable(err error) error { return adapter.Unavailable(err, brokersDown) }

// brokersDown reports whether err says that the brokers could not take
// records now (see unavailable).
func brokersDown(err error) bool {
	var (
		kerr kafkago.Error
		nerr net.Error
	)
	switch {
	case errors.Is(err, ErrAuthentication):
		return false
	case errors.As(err, &kerr):
		switch kerr {
		case kafkago.BrokerNotAvailable, kafkago.LeaderNotAvailable, kafkago.NotLeaderForPartition,
			kafkago.NetworkException, kafkago.RequestTimedOut, kafkago.NotEnoughReplicas,
			kafkago.NotEnoughReplicasAfterAppend, kafkago.GroupCoordinatorNotAvailable,
			kafkago.NotCoordinatorForGroup, kafkago.KafkaStorageError, kafkago.PreferredLeaderNotAvailable:
			return true
		}
		return false
	case errors.As(err, &nerr), errors.Is(err, io.ErrClosedPipe), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	return false
}

// Close stops consumers and the writer, flushing pending sends. It is safe
// to call more than once.
func (t *Transport) Close() error {
	var err error
	t.once.Do(func() {
		close(t.closed)
		err = errors.Join(t.writer.Close(), t.alone.Close())
		t.conns.transport.CloseIdleConnections()
	})
	return err
}

var _ transport.HealthChecker = (*Transport)(nil)

// Healthy reports whether a broker of Config.Brokers answers: it opens a
// connection to each in turn, until one succeeds or ctx ends, and closes
// it. See transport.HealthChecker.
func (t *Transport) Healthy(ctx context.Context) error {
	select {
	case <-t.closed:
		return fmt.Errorf("kafka: health: %w", ErrClosed)
	default:
	}
	var errs []error
	for _, b := range t.cfg.Brokers {
		conn, err := t.conns.dialer.DialContext(ctx, "tcp", b)
		if err == nil {
			conn.Close()
			return nil
		}
		errs = append(errs, t.authError(err))
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("kafka: health: no broker answers: %w", errors.Join(errs...))
}
