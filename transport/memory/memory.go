// Package memory is an in-process gocap transport: a broker that lives in
// the application's memory, for the quickstart, for tests, and for programs
// whose publishers and subscribers run in one process.
//
// It routes like a RabbitMQ topic exchange: each consumer group has one
// queue, created by the first Consume of the group and kept after its
// consumers stop (messages sent meanwhile wait for it), bound to the
// group's topic patterns ('*' one word, '#' any number of words). Every
// group receives every message of its topics; the consumers of one group
// share its queue; while one of them holds messages of an ordering key
// (wire.OrderingKey, set by outbox.WithOrderingKey) that it has not
// finished, the others pass over the key's next messages, so a key's
// messages reach the handlers one batch after another, in queue order.
// A handler error hands the message back to the head of the queue after
// Options.RequeueDelay, with the other failed messages of its batch, in
// their order; until then its key stays held, and the consumer handles
// the following messages of other keys. A handler error wrapping
// transport.ErrDiscard (see transport.Discard) drops the message. Nothing
// survives the process: it is no substitute for a broker between
// services.
//
// Several [Transport] values made by one [Broker] share its queues, so two
// "services" in one process can talk through it.
package memory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/gocap/gocap/internal/topic"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/internal/adapter"
	"github.com/gocap/gocap/wire"
)

// ErrUnroutable is returned by Send for a topic no group is bound to.
var ErrUnroutable = errors.New("memory: message is unroutable: no group is bound for its topic")

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("memory: transport closed")

// ErrQueueFull is returned by Send when a group's queue holds
// Options.MaxQueued messages.
var ErrQueueFull = errors.New("memory: queue full")

// Options configure a [Broker].
type Options struct {
	// AcceptUnroutable counts a message that no group receives as sent
	// (and drops it). By default Send returns ErrUnroutable, as the
	// RabbitMQ transport does.
	AcceptUnroutable bool
	// MaxQueued bounds each group's queue; Send returns ErrQueueFull when
	// a queue is full. Zero means 100,000.
	MaxQueued int
	// RequeueDelay is how long a message whose handler failed waits before
	// it is delivered again. Zero means 100ms.
	RequeueDelay time.Duration
}

// Broker is an in-process broker. It is safe for concurrent use.
type Broker struct {
	opts Options

	mu     sync.Mutex
	queues map[string]*queue
}

type queue struct {
	patterns map[string]bool
	msgs     []transport.Delivery
	ready    chan struct{} // signalled when msgs grows
	// held counts, per ordering key (wire.OrderingKey), the messages of
	// the key that a consumer has taken and not finished (or that wait to
	// be requeued): no other consumer takes the key's next messages
	// meanwhile, so they reach the handlers in queue order.
	held map[string]int
}

// NewBroker returns an empty broker.
func NewBroker(opts Options) *Broker {
	if opts.MaxQueued <= 0 {
		opts.MaxQueued = 100_000
	}
	if opts.RequeueDelay <= 0 {
		opts.RequeueDelay = 100 * time.Millisecond
	}
	return &Broker{opts: opts, queues: map[string]*queue{}}
}

// New returns a transport on a broker of its own.
func New(opts Options) *Transport { return NewBroker(opts).Transport() }

// Transport returns a new handle on b. Closing it does not affect other
// handles or the queues.
func (b *Broker) Transport() *Transport {
	return &Transport{b: b, closed: make(chan struct{})}
}

// Transport is a handle on a [Broker]; it implements transport.Transport.
type Transport struct {
	b      *Broker
	once   sync.Once
	closed chan struct{}
}

var (
	_ transport.Transport     = (*Transport)(nil)
	_ transport.BatchReceiver = (*Transport)(nil)
)

func (t *Transport) isClosed() bool {
	select {
	case <-t.closed:
		return true
	default:
		return false
	}
}

// Send copies msg into the queue of every group bound to topic.
func (t *Transport) Send(ctx context.Context, name string, msg transport.Message) error {
	if t.isClosed() {
		return fmt.Errorf("memory: send to %q: %w", name, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: send to %q: %w", name, err)
	}
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	var targets []*queue
	for _, q := range b.queues {
		for p := range q.patterns {
			if topic.Match(p, name) {
				targets = append(targets, q)
				break
			}
		}
	}
	if len(targets) == 0 {
		if b.opts.AcceptUnroutable {
			return nil
		}
		return fmt.Errorf("memory: send to %q: %w", name, ErrUnroutable)
	}
	for _, q := range targets {
		if len(q.msgs) >= b.opts.MaxQueued {
			return fmt.Errorf("memory: send to %q: %w (%d messages)", name, ErrQueueFull, len(q.msgs))
		}
	}
	for _, q := range targets {
		q.msgs = append(q.msgs, transport.Delivery{
			Message: transport.Message{Headers: maps.Clone(msg.Headers), Body: slices.Clone(msg.Body)},
			Topic:   name,
		})
		signal(q.ready)
	}
	return nil
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Consume binds group to topics and hands its messages to h, one at a
// time per Consume call, until ctx ends or the transport is closed. It is
// ConsumeBatch with batches of one message.
func (t *Transport) Consume(ctx context.Context, group string, topics []string, h transport.Handler) error {
	return t.consume(ctx, group, topics, 1, 0, func(ctx context.Context, ds []transport.Delivery) []error {
		return []error{h(ctx, ds[0])}
	})
}

// DefaultBatch is the batch size of ConsumeBatch for a max ≤ 0.
const DefaultBatch = 100

// ConsumeBatch binds group to topics, as Consume does, and hands its
// messages to h in batches of up to max (max ≤ 0 means DefaultBatch), one
// batch at a time per ConsumeBatch call (see transport.BatchReceiver). A
// batch is handed over as soon as it is full; otherwise once the queue is
// empty, after waiting for more up to linger after the first message was
// taken (linger ≤ 0: no wait). The messages of a batch are taken from the
// queue meanwhile. Each message then gets its own result: a failed one goes
// back to the head of the queue after Options.RequeueDelay, a discarded
// one is dropped.
func (t *Transport) ConsumeBatch(ctx context.Context, group string, topics []string, max int, linger time.Duration, h transport.BatchHandler) error {
	return t.consume(ctx, group, topics, adapter.BatchSize(max, DefaultBatch), linger, h)
}

func (t *Transport) consume(ctx context.Context, group string, topics []string, max int, linger time.Duration, h transport.BatchHandler) error {
	if err := adapter.CheckConsume("memory", group, topics); err != nil {
		return err
	}
	for _, p := range topics {
		if err := topic.Validate(p); err != nil {
			return fmt.Errorf("memory: consume for group %q: %w", group, err)
		}
	}
	b := t.b
	b.mu.Lock()
	q := b.queues[group]
	if q == nil {
		q = &queue{patterns: map[string]bool{}, ready: make(chan struct{}, 1), held: map[string]int{}}
		b.queues[group] = q
	}
	for _, p := range topics {
		q.patterns[p] = true
	}
	b.mu.Unlock()
	signal(q.ready)

	// Messages whose handler failed wait on timers, not in this loop; when
	// Consume returns, those still waiting go back to the queue at once.
	later := &requeuer{b: b, q: q, later: adapter.NewLater(b.opts.RequeueDelay)}
	defer later.stop()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	batch := make([]transport.Delivery, 0, max)
	var deadline time.Time
	for {
		batch = b.take(q, batch, max)
		if len(batch) > 0 && deadline.IsZero() {
			deadline = time.Now().Add(linger)
		}
		wait := time.Until(deadline)
		if len(batch) == 0 || (len(batch) < max && wait > 0) {
			var expired <-chan time.Time
			if len(batch) > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				expired = timer.C
			}
			select {
			case <-q.ready:
				continue
			case <-expired:
			case <-ctx.Done():
				later.putBack(batch)
				return nil
			case <-t.closed:
				later.putBack(batch)
				return nil
			}
		}
		if len(batch) == 0 {
			continue
		}
		errs := adapter.Results(h(ctx, batch), len(batch))
		var done, failed []transport.Delivery
		for i, err := range errs {
			if err != nil && !errors.Is(err, transport.ErrDiscard) {
				failed = append(failed, batch[i])
			} else {
				done = append(done, batch[i])
			}
		}
		// Not acknowledged: back to the head of the queue after a pause,
		// together and in their order; their keys stay held until then.
		later.schedule(failed)
		b.release(q, done)
		batch, deadline = make([]transport.Delivery, 0, max), time.Time{}
	}
}

// take moves messages from the head of q to batch until batch holds max,
// passing over those of an ordering key that another consumer holds.
func (b *Broker) take(q *queue, batch []transport.Delivery, max int) []transport.Delivery {
	b.mu.Lock()
	defer b.mu.Unlock()
	from := len(batch)
	if len(q.held) == 0 {
		n := min(max-len(batch), len(q.msgs))
		batch = append(batch, q.msgs[:n]...)
		q.msgs = q.msgs[n:]
	} else {
		mine := map[string]bool{}
		for _, d := range batch {
			mine[d.Headers[wire.OrderingKey]] = true
		}
		var rest []transport.Delivery
		for i, d := range q.msgs {
			if len(batch) >= max {
				rest = append(rest, q.msgs[i:]...)
				break
			}
			if k := d.Headers[wire.OrderingKey]; k != "" && q.held[k] > 0 && !mine[k] {
				rest = append(rest, d)
				continue
			}
			batch = append(batch, d)
		}
		q.msgs = rest
	}
	for _, d := range batch[from:] {
		if k := d.Headers[wire.OrderingKey]; k != "" {
			q.held[k]++
		}
	}
	if len(q.msgs) > 0 {
		signal(q.ready) // another consumer of the group may take the next
	}
	return batch
}

// release gives up the ordering keys of ds, messages taken from q and
// finished (or put back).
func (b *Broker) release(q *queue, ds []transport.Delivery) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range ds {
		if k := d.Headers[wire.OrderingKey]; k != "" {
			if q.held[k]--; q.held[k] <= 0 {
				delete(q.held, k)
			}
		}
	}
	signal(q.ready)
}

// requeuer puts the messages of one Consume call whose handler failed back
// at the head of their queue after Options.RequeueDelay.
type requeuer struct {
	b     *Broker
	q     *queue
	later *adapter.Later
}

// schedule puts ds, the failed messages of one batch, back at the head of
// the queue after the delay, in their order: as RabbitMQ requeues a nack's
// messages to their places, a key's messages come again in the order they
// came first, ahead of the key's later ones.
func (r *requeuer) schedule(ds []transport.Delivery) {
	if len(ds) > 0 {
		r.later.After(func() { r.putBack(ds) })
	}
}

// putBack puts ds, taken but not handled, back at the head of the queue,
// in order.
func (r *requeuer) putBack(ds []transport.Delivery) {
	if len(ds) == 0 {
		return
	}
	r.b.mu.Lock()
	r.q.msgs = append(append([]transport.Delivery(nil), ds...), r.q.msgs...)
	r.b.mu.Unlock()
	r.b.release(r.q, ds)
}

// stop puts the messages still waiting back at once, and waits for those
// being put back.
func (r *requeuer) stop() { r.later.Stop(true) }

// Close ends this handle's Consume calls and makes its Sends fail. The
// broker's queues stay.
func (t *Transport) Close() error {
	t.once.Do(func() { close(t.closed) })
	return nil
}

var _ transport.HealthChecker = (*Transport)(nil)

// Healthy returns nil until the handle is closed, and ErrClosed after.
func (t *Transport) Healthy(ctx context.Context) error {
	if t.isClosed() {
		return fmt.Errorf("memory: health: %w", ErrClosed)
	}
	return nil
}
