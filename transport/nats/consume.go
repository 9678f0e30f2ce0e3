package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gocap/gocap/internal/backoff"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/internal/adapter"
	"github.com/gocap/gocap/wire"
)

// Consume consumes group's durable pull consumers of the subjects of
// topics (see transport.Receiver and the package documentation), handing
// Config.Concurrency deliveries at once to h. A delivery whose handler
// fails comes again after Config.RequeueDelay; one whose handler discards
// it never does. Consume is ConsumeBatch with batches of one delivery.
func (t *Transport) Consume(ctx context.Context, group string, topics []string, h transport.Handler) error {
	return t.consume(ctx, group, topics, 1, 0, func(ctx context.Context, ds []transport.Delivery) []error {
		return []error{h(ctx, ds[0])}
	})
}

// ConsumeBatch consumes as Consume does and hands deliveries to h in
// batches (see transport.BatchReceiver): up to max (max ≤ 0 means
// Config.FetchBatch) of what the pull consumers fetched, handed over as
// soon as the batch is full, else once no further delivery is waiting,
// after waiting for more up to linger after the first arrived.
// Config.Concurrency batches are in the handler at once. Each delivery is
// then settled by its own result: acknowledged (nil), nakked with a delay
// (an error), or terminated (an error wrapping transport.ErrDiscard).
func (t *Transport) ConsumeBatch(ctx context.Context, group string, topics []string, max int, linger time.Duration, h transport.BatchHandler) error {
	return t.consume(ctx, group, topics, adapter.BatchSize(max, t.cfg.FetchBatch), linger, h)
}

// subscription is one durable consumer of a group: a filter subject in
// its stream.
type subscription struct {
	stream, subject string
}

// subscriptions returns the consumers that topics need, each once.
func (t *Transport) subscriptions(topics []string) ([]subscription, error) {
	var subs []subscription
	for _, topic := range topics {
		stream, err := t.streamOf(topic)
		if err != nil {
			return nil, err
		}
		subjects, err := t.filterSubjects(topic)
		if err != nil {
			return nil, err
		}
		for _, s := range subjects {
			if sub := (subscription{stream, s}); !slices.Contains(subs, sub) {
				subs = append(subs, sub)
			}
		}
	}
	return subs, nil
}

// consume runs consumeOnce, again after a backoff when it fails, until
// ctx ends or the server refuses the request as invalid.
func (t *Transport) consume(ctx context.Context, group string, topics []string, max int, linger time.Duration, h transport.BatchHandler) error {
	if err := adapter.CheckConsume("nats", group, topics); err != nil {
		return err
	}
	subs, err := t.subscriptions(topics)
	if err != nil {
		return fmt.Errorf("nats: consume for group %q: %w", group, err)
	}
	ctx, cancel := adapter.UntilClosed(ctx, t.closed)
	defer cancel()
	wait := backoff.New(t.cfg.ReconnectMin, t.cfg.ReconnectMax)
	w := &worker{t: t, max: max, linger: linger, h: h}
	for {
		err := t.consumeOnce(ctx, group, subs, w, wait.Reset)
		if ctx.Err() != nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code == 400 {
			return fmt.Errorf("nats: consume for group %q: %w", group, err)
		}
		d := wait.Next()
		t.log.Warn("gocap: NATS consumer stopped; starting it again", "group", group, "err", err, "retry_in", d)
		if !backoff.Sleep(ctx, d) {
			return nil
		}
	}
}

// consumeOnce sets up group's streams and consumers, and hands their
// deliveries to Config.Concurrency workers until a consumer fails or ctx
// ends. nats.go resumes the pull consumers after a reconnection by itself.
func (t *Transport) consumeOnce(ctx context.Context, group string, subs []subscription, w *worker, started func()) error {
	byStream := map[string][]string{}
	for _, s := range subs {
		byStream[s.stream] = append(byStream[s.stream], s.subject)
	}
	for stream, subjects := range byStream {
		if err := t.streams.ensure(ctx, stream, subjects); err != nil {
			return err
		}
	}
	var iters []jetstream.MessagesContext
	defer func() {
		for _, it := range iters {
			it.Stop()
		}
	}()
	for _, s := range subs {
		name := consumerName(group, s.subject)
		c, err := t.js.CreateOrUpdateConsumer(ctx, s.stream, jetstream.ConsumerConfig{
			Durable:       name,
			FilterSubject: s.subject,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       t.cfg.AckWait,
			MaxDeliver:    t.cfg.MaxDeliver,
			DeliverPolicy: jetstream.DeliverNewPolicy,
		})
		if err != nil {
			return fmt.Errorf("creating consumer %q of stream %q for %q: %w", name, s.stream, s.subject, err)
		}
		it, err := c.Messages(jetstream.PullMaxMessages(t.cfg.FetchBatch))
		if err != nil {
			return fmt.Errorf("pulling from consumer %q of stream %q: %w", name, s.stream, err)
		}
		iters = append(iters, it)
	}
	started()

	pulling, stop := context.WithCancel(ctx)
	defer stop()
	in := make(chan jetstream.Msg)
	ended := make(chan error, len(iters))
	var pumps, workers sync.WaitGroup
	for _, it := range iters {
		pumps.Go(func() { ended <- t.pump(pulling, it, in) })
	}
	for range t.cfg.Concurrency {
		workers.Go(func() { w.run(ctx, in) })
	}
	var result error
	select {
	case <-ctx.Done():
	case result = <-ended:
	}
	stop()
	for _, it := range iters {
		it.Stop()
	}
	pumps.Wait()
	close(in)
	workers.Wait() // they finish the batches in hand: a NATS ack needs no iterator
	return result
}

// pump passes the deliveries of it to in until it fails or ctx ends.
func (t *Transport) pump(ctx context.Context, it jetstream.MessagesContext, in chan<- jetstream.Msg) error {
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("pulling: %w", err)
		}
		select {
		case in <- m:
		case <-ctx.Done():
			if err := m.Nak(); err != nil {
				t.log.Debug("gocap: handing back an unhandled delivery failed; the server delivers it again after the ack wait", "err", err)
			}
			return ctx.Err()
		}
	}
}

// gatherGrace is how long a worker waits for one more delivery, after the
// linger, before it hands a batch over: deliveries the pull consumers
// already hold come within microseconds (see adapter.Gather).
const gatherGrace = time.Millisecond

// worker gathers deliveries into batches, hands them to the handler, and
// settles them by its results.
type worker struct {
	t      *Transport
	max    int
	linger time.Duration
	h      transport.BatchHandler
}

// run handles batches from in until it is closed.
func (w *worker) run(ctx context.Context, in <-chan jetstream.Msg) {
	batch := make([]jetstream.Msg, 0, w.max)
	ds := make([]transport.Delivery, 0, w.max)
	for {
		first, ok := <-in
		if !ok {
			return
		}
		batch, ok = adapter.Gather(in, append(batch[:0], first), w.max, time.Now().Add(w.linger), gatherGrace)
		ds = ds[:0]
		for _, m := range batch {
			ds = append(ds, w.t.delivery(m))
		}
		w.settle(batch, w.handle(ctx, batch, ds))
		if !ok {
			return
		}
	}
}

// handle calls the handler with ds, telling the server every third of
// the ack wait that batch is still in progress.
func (w *worker) handle(ctx context.Context, batch []jetstream.Msg, ds []transport.Delivery) []error {
	done := make(chan struct{})
	var progress sync.WaitGroup
	progress.Go(func() {
		tick := time.NewTicker(max(w.t.cfg.AckWait/3, time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				for _, m := range batch {
					if err := m.InProgress(); err != nil {
						w.t.log.Debug("gocap: telling NATS a delivery is in progress failed", "err", err)
					}
				}
			}
		}
	})
	errs := adapter.Results(w.h(ctx, ds), len(ds))
	close(done)
	progress.Wait()
	return errs
}

// settle acknowledges, naks with a delay or terminates each delivery of
// batch by its result in errs.
func (w *worker) settle(batch []jetstream.Msg, errs []error) {
	log := w.t.log
	for i, m := range batch {
		switch err := errs[i]; {
		case err == nil:
			if err := m.Ack(); err != nil {
				log.Warn("gocap: acknowledging a delivery failed; the server delivers it again after the ack wait", "subject", m.Subject(), "err", err)
			}
		case errors.Is(err, transport.ErrDiscard):
			log.Warn("gocap: discarding a delivery at the handler's request", "subject", m.Subject(), "err", err)
			if err := m.Term(); err != nil {
				log.Warn("gocap: discarding a delivery failed; the server delivers it again after the ack wait", "subject", m.Subject(), "err", err)
			}
		default:
			log.Warn("gocap: handling a delivery failed; the server delivers it again after a pause", "subject", m.Subject(), "err", err, "pause", w.t.cfg.RequeueDelay)
			if err := m.NakWithDelay(w.t.cfg.RequeueDelay); err != nil {
				log.Warn("gocap: handing a delivery back failed; the server delivers it again after the ack wait", "subject", m.Subject(), "err", err)
			}
		}
	}
}

// delivery converts m: its headers, several values joined with ", ",
// without a Nats-Msg-Id equal to cap-msg-id; its subject without
// Config.SubjectPrefix as the topic.
func (t *Transport) delivery(m jetstream.Msg) transport.Delivery {
	hs := m.Headers()
	headers := make(map[string]string, len(hs))
	for k, vs := range hs {
		headers[k] = strings.Join(vs, ", ")
	}
	if id, ok := headers[jetstream.MsgIDHeader]; ok && id == headers[wire.MsgID] {
		delete(headers, jetstream.MsgIDHeader)
	}
	return transport.Delivery{
		Message: transport.Message{Headers: headers, Body: m.Data()},
		Topic:   strings.TrimPrefix(m.Subject(), t.cfg.SubjectPrefix),
	}
}
