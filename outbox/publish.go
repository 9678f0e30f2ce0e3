package outbox

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/gocap/gocap/internal/topic"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/wire"
)

// PublishOption customizes one published message.
type PublishOption func(*publishConfig)

type publishConfig struct {
	headers map[string]string
	delay   time.Duration // > 0: delayed by this much
	at      time.Time     // not zero: due then
	retry   *RetryPolicy
	key     string // the ordering key (WithOrderingKey); empty: none
	err     error  // an option's bad input
}

// WithDelay makes the message due d after the publish: it commits with the
// transaction like any other, is stored as Delayed, and is sent when due
// (within about 100 ms with a processor running), with CAP's delayed
// headers (cap-delaytime, and cap-senttime = the due time). A negative d is
// an error; zero sends at once.
func WithDelay(d time.Duration) PublishOption {
	return func(c *publishConfig) {
		if d < 0 {
			c.err = fmt.Errorf("WithDelay(%v): a delay must not be negative", d)
			return
		}
		c.delay, c.at = d, time.Time{}
	}
}

// WithDeliverAt makes the message due at t, as WithDelay does; a t in the
// past sends it at once. A zero t is an error.
func WithDeliverAt(t time.Time) PublishOption {
	return func(c *publishConfig) {
		if t.IsZero() {
			c.err = fmt.Errorf("WithDeliverAt: the time is zero")
			return
		}
		c.at, c.delay = t, 0
	}
}

// WithRetry gives the message a retry policy of its own, stored with it
// (see RetryPolicy); its MaxAttempts must be at least 1.
func WithRetry(p RetryPolicy) PublishOption {
	return func(c *publishConfig) { c.retry = &p }
}

// WithHeader adds a transport header to the message. A header named like
// one of gocap's (cap-corr-id or cap-senttime, for example) replaces
// gocap's value, except where gocap's says what the message is:
// cap-msg-id and cap-msg-name are always gocap's; so are cap-delaytime and
// cap-senttime on a message that WithDelay or WithDeliverAt makes due
// later (its delay and its due time, as CAP's delayed publish writes
// them), and gocap-ordering-key on a message given WithOrderingKey (its
// key). A gocap-ordering-key header without WithOrderingKey is an error
// of Publish: the key is set with WithOrderingKey, which checks it.
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
//
// topic is words separated by dots, without wildcards; any text but white
// space and control characters, in valid UTF-8, of at most 255 bytes
// with Options.TopicPrefix and its dot (RabbitMQ's limit on a routing
// key; MySQL's name column holds 255 characters). Another topic is an
// error, and nothing is stored.
func (o *Outbox[TTx]) Publish(ctx context.Context, tx TTx, topic string, payload any, opts ...PublishOption) (int64, error) {
	m, err := o.newMessage(topic, payload, opts)
	if err != nil {
		return 0, err
	}
	ctx, end := o.tel.StartPublish(ctx, m)
	in := storage.InsertOptions{Notify: o.e.ShouldNotify()}
	msgs := []*storage.Message{m}
	err = o.e.InsertWithFreshIDs(msgs, reIDPublished, func() error {
		return o.driver.InsertPublishedTx(ctx, tx, msgs, in)
	})
	end(err)
	if err != nil {
		return 0, fmt.Errorf("outbox: publish to %q: storing the message: %w", topic, err)
	}
	if m.Status == storage.StatusDelayed {
		o.e.NoteDue(m.NextAttemptAt)
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
	ctx, end := o.tel.StartPublish(ctx, m)
	in := storage.InsertOptions{Notify: o.e.ShouldNotify()}
	msgs := []*storage.Message{m}
	err = o.e.InsertWithFreshIDs(msgs, reIDPublished, func() error {
		return o.driver.InsertPublished(ctx, msgs, in)
	})
	end(err)
	if err != nil {
		return 0, fmt.Errorf("outbox: publish to %q: storing the message: %w", topic, err)
	}
	if m.Status == storage.StatusDelayed {
		o.e.NoteDue(m.NextAttemptAt)
		return m.ID, nil
	}
	o.e.Wake(storage.Published)
	return m.ID, nil
}

// reIDPublished gives a published row, made by newMessage, a new id: its
// message id and cap-msg-id are the id, and so is cap-corr-id unless the
// publisher set it.
func reIDPublished(m *storage.Message, id int64) {
	old, sid := m.MsgID, strconv.FormatInt(id, 10)
	m.ID, m.MsgID, m.Headers[wire.MsgID] = id, sid, sid
	if m.Headers[wire.CorrelationID] == old {
		m.Headers[wire.CorrelationID] = sid
	}
}

// newMessage checks a publish and makes its row, with CAP's headers.
func (o *Outbox[TTx]) newMessage(name string, payload any, opts []PublishOption) (*storage.Message, error) {
	if o.e.Closed() {
		return nil, fmt.Errorf("outbox: publish to %q: %w", name, ErrClosed)
	}
	if err := topic.Validate(name); err != nil {
		return nil, fmt.Errorf("outbox: publish: %w", err)
	}
	if topic.HasWildcard(name) {
		return nil, fmt.Errorf("outbox: publish: topic %q: wildcards are for subscriptions, not for publishing", name)
	}
	name, err := o.prefixed(name)
	if err != nil {
		return nil, fmt.Errorf("outbox: publish: %w", err)
	}
	var body []byte
	typ := ""
	switch p := payload.(type) {
	case []byte:
		body = p // already serialized: its type says nothing
	default:
		typ = typeName(payload)
		b, err := o.opts.Serializer.Marshal(payload)
		if err != nil {
			return nil, fmt.Errorf("outbox: publish to %q: serializing the %T payload: %w", name, payload, err)
		}
		body = b
	}
	var cfg publishConfig
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.err != nil {
		return nil, fmt.Errorf("outbox: publish to %q: %w", name, cfg.err)
	}
	if _, ok := cfg.headers[wire.OrderingKey]; ok && cfg.key == "" {
		// A receiving gocap would order by it; the publishing one would not.
		return nil, fmt.Errorf("outbox: publish to %q: header %s is the ordering key: set it with WithOrderingKey, not WithHeader", name, wire.OrderingKey)
	}
	id := o.e.NextID()
	now := time.Now().UTC()
	m := &storage.Message{
		ID:            id,
		Kind:          storage.Published,
		MsgID:         strconv.FormatInt(id, 10),
		Name:          name,
		Headers:       wire.Published(id, name, typ, now, cfg.headers),
		Body:          body,
		Status:        storage.StatusScheduled,
		Added:         now,
		NextAttemptAt: now,
		Version:       o.opts.Version, // version isolation (issue #17)
	}
	if cfg.retry != nil {
		p, err := cfg.retry.policy(true)
		if err != nil {
			return nil, fmt.Errorf("outbox: publish to %q: WithRetry: %w", name, err)
		}
		m.Policy = p.Encode()
	}
	due := cfg.at
	if cfg.delay > 0 {
		due = now.Add(cfg.delay)
	}
	if due.After(now) {
		m.Status, m.NextAttemptAt = storage.StatusDelayed, due.UTC()
		m.Headers = wire.Delayed(m.Headers, due.Sub(now), due)
	}
	if cfg.key != "" {
		m.OrderingKey, m.Headers[wire.OrderingKey] = cfg.key, cfg.key
	}
	return m, nil
}
