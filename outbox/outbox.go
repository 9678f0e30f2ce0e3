package outbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/internal/topic"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
)

// Errors returned by an [Outbox].
var (
	// ErrClosed: the outbox was closed.
	ErrClosed = errors.New("outbox: closed")
	// ErrRunning: Run was called twice, or Subscribe after Run.
	ErrRunning = errors.New("outbox: already running")
)

// Outbox publishes messages in the application's transactions of type TTx
// and runs the processor that sends them, receives messages for
// subscribers, retries failures and cleans expired rows.
//
// Create one per process with [New], register subscribers with [Subscribe],
// then call Run. Publish may be called from any goroutine, before, during
// and after Run.
type Outbox[TTx any] struct {
	driver storage.Driver[TTx]
	*engine
}

// engine is the part of an Outbox that does not depend on the transaction
// type.
type engine struct {
	store     storage.Store
	transport transport.Transport
	opts      Options
	ids       *ids.Generator
	instance  storage.Instance

	publisher *processor
	receiver  *processor

	mu      sync.Mutex
	running bool
	closed  bool
	stop    context.CancelFunc // cancels Run
	stopped chan struct{}      // closed when Run returns
	groups  map[string][]*subscription

	unstored unstoredCounts // deliveries that failed to be stored, by message
}

// New returns an outbox that stores messages with driver and moves them
// over tr. It does not start processing: call Run.
func New[TTx any](driver storage.Driver[TTx], tr transport.Transport, opts Options) (*Outbox[TTx], error) {
	if driver == nil {
		return nil, errors.New("outbox: New: storage driver is nil")
	}
	if tr == nil {
		return nil, errors.New("outbox: New: transport is nil")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	node := opts.NodeID
	if node == 0 {
		node = -1 // random
	}
	gen, err := ids.NewGenerator(node)
	if err != nil {
		return nil, fmt.Errorf("outbox: New: %w", err)
	}
	host, _ := os.Hostname()
	e := &engine{
		store:     driver,
		transport: tr,
		opts:      opts,
		ids:       gen,
		groups:    map[string][]*subscription{},
		instance: storage.Instance{
			ID:       fmt.Sprintf("%s/%d/%d", host, os.Getpid(), gen.Next()),
			Hostname: host,
			PID:      os.Getpid(),
		},
	}
	e.publisher = newProcessor(storage.Published, driver, &e.opts, opts.SendConcurrency, e.send)
	e.publisher.pauseOnUnavailable = true
	e.receiver = newProcessor(storage.Received, driver, &e.opts, opts.HandlerConcurrency, e.handle)
	if bs, ok := tr.(transport.BatchSender); ok {
		e.publisher.attemptBatch = func(ctx context.Context, ms []*storage.Message) []error {
			return sendBatch(ctx, bs, ms)
		}
	}
	if l, ok := driver.(storage.Listener); ok {
		e.publisher.fastPoll = l.NotifyInterval()
	}
	return &Outbox[TTx]{driver: driver, engine: e}, nil
}

// PublishOption customizes one published message.
type PublishOption func(*publishConfig)

type publishConfig struct {
	headers map[string]string
}

// WithHeader adds a transport header to the message. A header named like
// one of gocap's (cap-corr-id, for example) replaces gocap's value, except
// cap-msg-id and cap-msg-name, which are always gocap's.
func WithHeader(key, value string) PublishOption {
	return func(c *publishConfig) {
		if c.headers == nil {
			c.headers = map[string]string{}
		}
		c.headers[key] = value
	}
}

// WithHeaders adds several transport headers, as [WithHeader] does.
func WithHeaders(h map[string]string) PublishOption {
	return func(c *publishConfig) {
		if c.headers == nil {
			c.headers = map[string]string{}
		}
		maps.Copy(c.headers, h)
	}
}

// Publish stores a message for topic with the serialized payload in the
// application's transaction tx, and returns its id. The message is sent
// after tx commits, at least once, even if this process stops right after
// the commit; if tx rolls back, nothing is sent.
//
// A []byte payload is sent as is; anything else goes through the
// serializer (JSON by default).
func (o *Outbox[TTx]) Publish(ctx context.Context, tx TTx, topic string, payload any, opts ...PublishOption) (int64, error) {
	m, err := o.newMessage(topic, payload, opts)
	if err != nil {
		return 0, err
	}
	if err := o.driver.InsertPublishedTx(ctx, tx, []*storage.Message{m}); err != nil {
		return 0, fmt.Errorf("outbox: publish to %q: storing the message: %w", topic, err)
	}
	return m.ID, nil
}

// PublishWithoutTx stores a message in a transaction of its own and returns
// its id: use it where no business data has to commit with the message.
func (o *Outbox[TTx]) PublishWithoutTx(ctx context.Context, topic string, payload any, opts ...PublishOption) (int64, error) {
	m, err := o.newMessage(topic, payload, opts)
	if err != nil {
		return 0, err
	}
	if err := o.store.InsertPublished(ctx, []*storage.Message{m}); err != nil {
		return 0, fmt.Errorf("outbox: publish to %q: storing the message: %w", topic, err)
	}
	o.publisher.Wake()
	return m.ID, nil
}

func (e *engine) newMessage(name string, payload any, opts []PublishOption) (*storage.Message, error) {
	if e.isClosed() {
		return nil, fmt.Errorf("outbox: publish to %q: %w", name, ErrClosed)
	}
	if err := topic.Validate(name); err != nil {
		return nil, fmt.Errorf("outbox: publish: %w", err)
	}
	if topic.HasWildcard(name) {
		return nil, fmt.Errorf("outbox: publish: topic %q: wildcards are for subscriptions, not for publishing", name)
	}
	var body []byte
	typ := ""
	switch p := payload.(type) {
	case []byte:
		body = p // already serialized: its type says nothing
	default:
		typ = typeName(payload)
		b, err := e.opts.Serializer.Marshal(payload)
		if err != nil {
			return nil, fmt.Errorf("outbox: publish to %q: serializing the %T payload: %w", name, payload, err)
		}
		body = b
	}
	var cfg publishConfig
	for _, opt := range opts {
		opt(&cfg)
	}
	id := e.ids.Next()
	now := time.Now().UTC()
	sid := strconv.FormatInt(id, 10)
	headers := map[string]string{
		transport.HeaderCorrelationID:  sid,
		transport.HeaderCorrelationSeq: "0",
		transport.HeaderSentTime:       formatSentTime(now),
	}
	if typ != "" {
		headers[transport.HeaderMsgType] = typ
	}
	maps.Copy(headers, cfg.headers)
	headers[transport.HeaderMsgID] = sid
	headers[transport.HeaderMsgName] = name
	return &storage.Message{
		ID:            id,
		Kind:          storage.Published,
		MsgID:         sid,
		Name:          name,
		Headers:       headers,
		Body:          body,
		Status:        storage.StatusScheduled,
		Added:         now,
		NextAttemptAt: now,
	}, nil
}

// send is the publish side's attempt: ship one row over the transport.
func (e *engine) send(ctx context.Context, m *storage.Message) error {
	return e.transport.Send(ctx, m.Name, transport.Message{Headers: m.Headers, Body: m.Body})
}

// sendBatch is the publish side's batch attempt, for transports that
// send batches: ship claimed rows over the transport together.
func sendBatch(ctx context.Context, bs transport.BatchSender, ms []*storage.Message) []error {
	out := make([]transport.Outgoing, len(ms))
	for i, m := range ms {
		out[i] = transport.Outgoing{Topic: m.Name, Message: transport.Message{Headers: m.Headers, Body: m.Body}}
	}
	return bs.SendBatch(ctx, out)
}

// Store returns the storage the outbox uses, for the dashboard and for
// tools that inspect or repair messages.
func (e *engine) Store() storage.Store { return e.store }

// Wake tells this process's processor that rows of kind became due (after a
// commit on a storage without notifications, or a requeue), so it does not
// wait for its next poll.
func (e *engine) Wake(kind storage.Kind) {
	switch kind {
	case storage.Published:
		e.publisher.Wake()
	case storage.Received:
		e.receiver.Wake()
	}
}

func (e *engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// Close stops Run, if it is running, waits for it to return, and makes
// later Publish calls fail with ErrClosed. It does not close the storage
// or the transport, which the application owns.
func (e *engine) Close() error {
	e.mu.Lock()
	e.closed = true
	stop, stopped := e.stop, e.stopped
	e.mu.Unlock()
	if stop != nil {
		stop()
		<-stopped
	}
	return nil
}
