// Package nats is gocap's NATS JetStream transport, on
// github.com/nats-io/nats.go and its jetstream package.
//
// # The CAP mapping
//
// It stores and reads messages as DotNetCore.CAP's NATS transport does
// (src/DotNetCore.CAP.NATS/ITransport.NATS.cs, NATSConsumerClient.cs and
// CAP.NATSOptions.cs in the CAP repository), so that a CAP service and a
// gocap service share a stream:
//
//   - A message is published to the subject named like its topic
//     (Config.SubjectPrefix before it, empty by default), with every message
//     header as a NATS header and the body as the data. Its Nats-Msg-Id
//     header is the message id (cap-msg-id), as CAP's
//     PublishOptions.WithMessageId(message.GetId()) sets it, so JetStream
//     stores a message sent again within the stream's duplicate window
//     (Config.DuplicateWindow) once. A send counts once JetStream's publish
//     acknowledgement says the stream stored it.
//   - The stream of a topic is named by its first word (CAP's
//     NATSOptions.NormalizeStreamName: origin.Split('.')[0]; "order" for
//     "order.paid"), or by Config.StreamName. Like CAP's consumer client
//     (FetchTopicsAsync), the transport creates the stream when it is
//     missing and adds the subscribed topics to its subjects; unlike CAP it
//     also adds a topic it publishes to, so that a send never waits for a
//     subscriber to have created the stream. An existing stream keeps its
//     configuration (storage, retention, limits): only subjects are added,
//     and a subject already covered by a wildcard subject is not. With
//     Config.FixedStreams the transport creates and changes no stream.
//   - CAP creates its streams in memory storage; gocap in file storage
//     (Config.Storage), so that a message survives a server restart. A
//     stream shared with CAP must have the storage both sides ask for:
//     CAP's consumer client updates an existing stream with its own
//     storage type and its subjects, which the server refuses for a stream
//     of the other storage ("stream configuration update can not change
//     storage type"), and CAP ignores the error, so its topics never join
//     the stream and its subscribers get nothing. Either have CAP create
//     file streams (set CAP's NATSOptions.StreamOptions to
//     b => b.WithStorageType(StorageType.File)) or set Config.Storage to
//     jetstream.MemoryStorage. gocap itself publishes to and consumes from
//     a stream of either storage, and logs a warning when it finds an
//     existing stream whose storage is not Config.Storage.
//   - Received headers are the NATS headers, several values of one header
//     joined with ", "; Nats-Msg-Id is left out when it equals cap-msg-id
//     (it is then the copy this transport or CAP made). Delivery.Topic is
//     the subject without Config.SubjectPrefix.
//
// # Consumer groups
//
// Each consumer group has a durable pull consumer per subscribed subject,
// named "gocap-" + group + "-" + subject with '.', '*', '>', white space
// and path separators replaced by '_' (CAP names its push consumers
// group + "-" + subject: the prefix keeps the two apart, as a push and a
// pull consumer cannot share a name), with explicit acknowledgement,
// Config.AckWait, Config.MaxDeliver, and the deliver policy "new" as CAP's:
// a group's consumer, once created, gets every message stored after it, and
// keeps its position while no process consumes. Processes and Consume
// calls of one group share the consumer, and so share the work.
//
// gocap's topic patterns map to NATS subjects: '*' (one word) stays '*',
// and a final '#' (any number of words, none included) becomes two
// subjects, the pattern's words alone and followed by '>' ("order.#":
// "order" and "order.>"). NATS cannot express a '#' before the last word,
// and a pattern must start with a word, which names its stream: Consume
// refuses other patterns with an error naming them. (CAP passes its topic
// names to NATS unchanged, so a CAP subscriber writes NATS's own '*' and
// '>'.)
//
// A delivery is acknowledged only after the handler returned nil (the
// outbox stored it). A handler error naks it with a delay of
// Config.RequeueDelay, so the server delivers it again after the pause
// without a worker waiting, and other messages flow meanwhile; an error
// wrapping transport.ErrDiscard terminates it (JetStream's Term: never
// delivered again). A delivery not acknowledged within Config.AckWait (a
// crash, a lost connection) is delivered again by the server; while a
// batch is in the handler its deliveries are kept alive with
// progress acknowledgements.
//
// ConsumeBatch (transport.BatchReceiver) hands over what the pull
// consumers fetched, in batches of up to Config.FetchBatch; Consume is
// ConsumeBatch with batches of one. Config.Concurrency batches are handled
// at once.
//
// # Ordering
//
// JetStream keeps the order of a subject's messages for one consumer that
// handles one message at a time: with Config.Concurrency 1 and one
// process in the group, deliveries of a subject are handled in the order
// they were stored, except that one whose handler failed comes again after
// the later ones. Several pull subscribers of a consumer (Concurrency
// above 1, or several processes) do not preserve it; neither do
// subscriptions of one group to several subjects, which are separate
// consumers.
//
// # Connection loss
//
// nats.go reconnects by itself, forever, waiting Config.ReconnectMin
// doubling to Config.ReconnectMax between attempts, and the pull consumers
// resume on the new connection. While the connection is down a send fails
// at once with an error wrapping transport.ErrUnavailable (publishes are
// not buffered); so does a send whose acknowledgement did not come before
// the connection broke, Config.PublishTimeout passed, or the send's
// context's deadline passed, or JetStream answered that it cannot take
// messages now (status 503: JetStream not enabled or not available, no
// stream leader, not enough resources; status 429: too many requests). A
// message the server refused (no stream holds its subject, larger than the
// server's maximum payload or the stream's MaxMsgSize, a header NATS
// cannot carry) fails with a permanent error naming the subject: the outbox
// marks it Failed at once. A stream that did not store a message for a
// reason that may pass — full, with Discard: New and its MaxMsgs, MaxBytes
// or MaxMsgsPerSubject reached (JetStream's err_code 10077, "maximum
// messages exceeded"), its store failing, the account's limits reached
// (10002) — fails the send with an error that is neither: a failed attempt,
// which the outbox retries by the message's policy, so the message is sent
// once the stream has room, and fails for good if it never has. A send that found no stream for its subject
// first adds the subject to its stream again (another service may have
// replaced the stream's subjects, as CAP's consumer client does) and
// publishes once more.
package nats

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gocap/gocap/transport"
)

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("nats: transport closed")

// Config configures a [Transport]. Only URL is required.
type Config struct {
	// URL is the NATS server URL, such as nats://127.0.0.1:4222, or several
	// separated by commas.
	URL string
	// Name is the connection's name, shown by the server's monitoring.
	// Empty means "gocap".
	Name string
	// Token, User and Password, and CredentialsFile (a .creds file with a
	// JWT and NKey seed) authenticate the connection when set.
	Token, User, Password string
	CredentialsFile       string
	// TLS, if set, is the TLS configuration of the connection.
	TLS *tls.Config
	// Options are further nats.go options, applied after the transport's
	// own (which set the name, the authentication and TLS above, unlimited
	// reconnection with the backoff of ReconnectMin and ReconnectMax, no
	// buffering of publishes while reconnecting, and the handlers that log
	// connection events).
	Options []natsgo.Option

	// SubjectPrefix is put before every topic to make its subject ("" by
	// default, as CAP has no prefix).
	SubjectPrefix string
	// StreamName names the stream of a topic (without SubjectPrefix). Nil
	// means CAP's rule: the topic's first word.
	StreamName func(topic string) string
	// FixedStreams makes the transport create no stream and add no
	// subject: the streams are managed by other means, and a send to a
	// subject no stream holds fails.
	FixedStreams bool

	// Storage, Replicas, Retention, MaxAge and DuplicateWindow configure
	// the streams the transport creates (an existing stream keeps its
	// configuration). The zero Storage is file storage: messages survive a
	// server restart. CAP creates memory streams by default, and a stream
	// shared with CAP must have the storage CAP asks for (see the package
	// doc). Zero Replicas means 1, for a single server; set 3 on a cluster. The zero Retention is the
	// limits policy (messages stay until MaxAge), which lets CAP's and
	// gocap's groups share the stream; jetstream.InterestPolicy deletes a
	// message once every consumer acknowledged it. MaxAge zero means 7
	// days: a group whose processes are all stopped for up to a week still
	// gets every message, and a stream whose messages were consumed long
	// ago does not grow without bound; negative means no limit.
	// DuplicateWindow zero means 2 minutes (the server's default): a
	// message sent again by the outbox after a lost acknowledgement
	// (within a second) or its immediate retries is stored once.
	Storage         jetstream.StorageType
	Replicas        int
	Retention       jetstream.RetentionPolicy
	MaxAge          time.Duration
	DuplicateWindow time.Duration

	// AckWait is how long the server waits for a delivery's
	// acknowledgement before delivering it again. Zero means 30 seconds,
	// CAP's value: far longer than storing a batch takes, and a delivery a
	// crashed process held comes again within it. Batches in the handler
	// are kept alive meanwhile (see the package documentation).
	AckWait time.Duration
	// MaxDeliver is how many times the server delivers a message to a
	// group at most. Zero means no limit: gocap's processor itself stores a
	// delivery it keeps failing to store as a Failed row after 5
	// deliveries, and a server-side limit below that would drop the
	// message instead. Set it (above 5) only as a safety net.
	MaxDeliver int
	// FetchBatch is how many deliveries a group's pull consumer asks the
	// server for at once, and the largest batch ConsumeBatch hands over.
	// Zero means 128, RabbitMQ's prefetch in transport/rabbitmq: batches
	// large enough that one multi-row insert stores many deliveries.
	FetchBatch int
	// Concurrency is how many batches (Consume: deliveries) one Consume or
	// ConsumeBatch hands to its handler at once, so that the store's
	// latency of one overlaps the others'. Zero means 4, as in
	// transport/rabbitmq. 1 keeps each subject's order (see the package
	// documentation).
	Concurrency int
	// RequeueDelay is how long a delivery whose handler failed waits
	// before the server delivers it again (a nak with this delay), so
	// that a failing store does not spin. Zero means one second.
	RequeueDelay time.Duration
	// PublishTimeout is how long a send waits for JetStream's
	// acknowledgement at most (less if its context ends sooner) before it
	// fails as unavailable. Zero means 10 seconds: JetStream acknowledges
	// within milliseconds, and a cluster elects a new stream leader within
	// a few seconds.
	PublishTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the wait between reconnection
	// attempts, which doubles from ReconnectMin to ReconnectMax. Zero
	// means 100ms and 1s (as transport/rabbitmq): the transport is back
	// within a second of the server.
	ReconnectMin, ReconnectMax time.Duration
	// Logger receives connection events. Nil means slog.Default().
	Logger *slog.Logger
}

// Transport is a NATS JetStream transport. It is safe for concurrent use.
type Transport struct {
	cfg     Config
	log     *slog.Logger
	nc      *natsgo.Conn
	js      jetstream.JetStream
	streams *streams
	closed  chan struct{}
	once    sync.Once
}

var (
	_ transport.Transport     = (*Transport)(nil)
	_ transport.BatchSender   = (*Transport)(nil)
	_ transport.BatchReceiver = (*Transport)(nil)
	_ transport.HealthChecker = (*Transport)(nil)
)

// New connects to the server of cfg.URL and returns the transport; it
// fails if the server does not answer or has no JetStream.
func New(cfg Config) (*Transport, error) {
	if cfg.URL == "" {
		return nil, errors.New("nats: Config.URL is empty")
	}
	if cfg.Name == "" {
		cfg.Name = "gocap"
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 7 * 24 * time.Hour
	}
	if cfg.DuplicateWindow <= 0 {
		cfg.DuplicateWindow = 2 * time.Minute
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.MaxDeliver <= 0 {
		cfg.MaxDeliver = -1
	}
	if cfg.FetchBatch <= 0 {
		cfg.FetchBatch = 128
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.RequeueDelay <= 0 {
		cfg.RequeueDelay = time.Second
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 10 * time.Second
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
	t := &Transport{cfg: cfg, log: cfg.Logger.With("transport", "nats"), closed: make(chan struct{})}
	nc, err := natsgo.Connect(cfg.URL, t.options()...)
	if err != nil {
		return nil, fmt.Errorf("nats: connecting to %s: %w", cfg.URL, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: JetStream: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: JetStream is not available on %s: %w", cfg.URL, err)
	}
	t.nc, t.js = nc, js
	t.streams = newStreams(js, &t.cfg, t.log)
	return t, nil
}

// options returns the nats.go options of the connection.
func (t *Transport) options() []natsgo.Option {
	cfg := t.cfg
	opts := []natsgo.Option{
		natsgo.Name(cfg.Name),
		natsgo.MaxReconnects(-1),
		natsgo.CustomReconnectDelay(func(attempts int) time.Duration {
			d := cfg.ReconnectMin
			for i := 1; i < attempts && d < cfg.ReconnectMax; i++ {
				d *= 2
			}
			return min(d, cfg.ReconnectMax)
		}),
		// A publish while reconnecting fails at once (ErrUnavailable)
		// instead of waiting in a buffer that a lost connection empties.
		natsgo.ReconnectBufSize(-1),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil {
				t.log.Warn("gocap: NATS connection lost; reconnecting", "err", err)
			}
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			t.log.Info("gocap: reconnected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, sub *natsgo.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			t.log.Warn("gocap: NATS asynchronous error", "subject", subject, "err", err)
		}),
	}
	if cfg.Token != "" {
		opts = append(opts, natsgo.Token(cfg.Token))
	}
	if cfg.User != "" || cfg.Password != "" {
		opts = append(opts, natsgo.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.CredentialsFile != "" {
		opts = append(opts, natsgo.UserCredentials(cfg.CredentialsFile))
	}
	if cfg.TLS != nil {
		opts = append(opts, natsgo.Secure(cfg.TLS))
	}
	return append(opts, cfg.Options...)
}

// Close closes the connection; Sends fail with ErrClosed and Consumes
// return. It is safe to call more than once.
func (t *Transport) Close() error {
	t.once.Do(func() {
		close(t.closed)
		t.nc.Close()
	})
	return nil
}

func (t *Transport) isClosed() bool {
	select {
	case <-t.closed:
		return true
	default:
		return false
	}
}

// Healthy reports whether the transport reaches JetStream: its connection
// is up and the server answers a JetStream account request within ctx.
// See transport.HealthChecker.
func (t *Transport) Healthy(ctx context.Context) error {
	if t.isClosed() {
		return fmt.Errorf("nats: health: %w", ErrClosed)
	}
	if !t.nc.IsConnected() {
		return fmt.Errorf("nats: health: not connected (%v)", t.nc.Status())
	}
	if _, err := t.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("nats: health: JetStream: %w", err)
	}
	return nil
}

// RefusedError is the error of a send that the server or the transport
// refused for the message itself: no stream holds its subject, it is
// larger than the server accepts, a header NATS cannot carry. Sending it
// again cannot succeed, so it is permanent: the outbox marks the message
// Failed at once.
type RefusedError struct {
	// Subject is the subject the message was sent to.
	Subject string
	// Err is the reason.
	Err error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("nats: send to %q refused: %v", e.Subject, e.Err)
}

// Unwrap returns the reason.
func (e *RefusedError) Unwrap() error { return e.Err }

// Permanent reports true: retrying cannot help.
func (e *RefusedError) Permanent() bool { return true }
