package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gocap/gocap/internal/backoff"
	"github.com/gocap/gocap/internal/topic"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/internal/adapter"
	"github.com/gocap/gocap/wire"
)

// Consume reads the topics as consumer group group and commits each
// offset after h returned nil (see transport.Receiver). It is ConsumeBatch
// with batches of one record.
func (t *Transport) Consume(ctx context.Context, group string, topics []string, h transport.Handler) error {
	return t.consume(ctx, group, topics, 1, 0, func(ctx context.Context, ds []transport.Delivery) []error {
		return []error{h(ctx, ds[0])}
	})
}

// DefaultBatch is the batch size of ConsumeBatch for a max ≤ 0: what the
// reader holds fetched ahead (kafka-go's default QueueCapacity), so that a
// batch is what one fetch brought and the next is fetched meanwhile.
const DefaultBatch = 100

// gatherGrace is how long ConsumeBatch waits for one more record after
// the linger passed: records the reader already fetched come within
// microseconds, so a record that takes longer is not waiting.
const gatherGrace = time.Millisecond

// ConsumeBatch reads the topics as consumer group group, as Consume does,
// and hands records to h in batches of up to max (max ≤ 0 means
// DefaultBatch), see transport.BatchReceiver. A batch is handed over as
// soon as it is full; otherwise once no further record is waiting, after
// waiting for more up to linger after the first was fetched (linger ≤ 0:
// no wait).
//
// Offsets are committed only after h returned: in each partition, up to
// the first record whose result is a plain error. A discarded record
// counts as done and is committed. The failed records are handed to h
// again, alone, after Config.RequeueDelay, until each is accepted or
// discarded; only then is the rest of the batch committed and the next
// batch fetched, so that no batch is handed over before the one before it
// is done (a record after a failed one in its partition, already accepted,
// is not handed again).
func (t *Transport) ConsumeBatch(ctx context.Context, group string, topics []string, max int, linger time.Duration, h transport.BatchHandler) error {
	return t.consume(ctx, group, topics, adapter.BatchSize(max, DefaultBatch), linger, h)
}

func (t *Transport) consume(ctx context.Context, group string, topics []string, max int, linger time.Duration, h transport.BatchHandler) error {
	if err := adapter.CheckConsume("kafka", group, topics); err != nil {
		return err
	}
	full := make([]string, len(topics))
	for i, tp := range topics {
		if topic.HasWildcard(tp) {
			return fmt.Errorf("kafka: consume for group %q: topic %q: Kafka has no topic wildcards; subscribe to each topic", group, tp)
		}
		full[i] = t.cfg.TopicPrefix + tp
	}
	ctx, cancel := adapter.UntilClosed(ctx, t.closed)
	defer cancel()
	if err := t.checkAuth(ctx); err != nil {
		return fmt.Errorf("kafka: consume for group %q: %w", group, err)
	}
	if err := t.ensureTopics(ctx, full...); err != nil {
		return err
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:        t.cfg.Brokers,
		Dialer:         t.conns.dialer,
		GroupID:        t.cfg.GroupPrefix + group,
		GroupTopics:    full,
		MinBytes:       1,
		MaxBytes:       64 << 20,
		MaxWait:        100 * time.Millisecond,
		StartOffset:    kafkago.FirstOffset,
		CommitInterval: 0, // synchronous commits
		ErrorLogger:    kafkago.LoggerFunc(func(f string, a ...any) { t.log.Warn("gocap: kafka reader: " + fmt.Sprintf(f, a...)) }),
	})
	defer r.Close()
	c := &batchConsumer{t: t, r: r, group: group, h: h}
	wait := backoff.New(100*time.Millisecond, 30*time.Second)
	batch := make([]kafkago.Message, 0, max)
	for {
		var err error
		batch, err = c.fetch(ctx, batch[:0], max, linger)
		if len(batch) == 0 {
			if ctx.Err() != nil {
				return nil
			}
			d := wait.Next()
			t.log.Warn("gocap: kafka fetch failed; retrying", "group", group, "err", err, "retry_in", d)
			if !backoff.Sleep(ctx, d) {
				return nil
			}
			continue
		}
		wait.Reset()
		if !c.handle(ctx, batch) {
			return nil
		}
	}
}

// batchConsumer hands the records of one reader to a BatchHandler and
// commits them.
type batchConsumer struct {
	t     *Transport
	r     *kafkago.Reader
	group string
	h     transport.BatchHandler
}

// fetch appends records to batch: one, waiting as long as it takes, then
// more until batch holds max, none is waiting, and linger since the first
// passed. It returns no records and the error if the first fetch failed.
func (c *batchConsumer) fetch(ctx context.Context, batch []kafkago.Message, max int, linger time.Duration) ([]kafkago.Message, error) {
	m, err := c.r.FetchMessage(ctx)
	if err != nil {
		return batch, err
	}
	batch = append(batch, m)
	deadline := time.Now().Add(linger)
	for len(batch) < max {
		// A cancelled FetchMessage takes no record: it is safe to bound.
		fctx, cancel := context.WithDeadline(ctx, later(deadline, time.Now().Add(gatherGrace)))
		m, err := c.r.FetchMessage(fctx)
		cancel()
		if err != nil {
			break // none waiting; a reader error comes again at the next fetch or was logged
		}
		batch = append(batch, m)
	}
	return batch, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// handle hands batch to the handler until every record is accepted or
// discarded, committing each partition's offsets up to its first record
// not done after each round. It returns false if ctx ended first.
func (c *batchConsumer) handle(ctx context.Context, batch []kafkago.Message) bool {
	todo := make([]int, len(batch)) // indexes in batch of the records to hand over
	ds := make([]transport.Delivery, len(batch))
	for i, m := range batch {
		todo[i] = i
		ds[i] = c.delivery(m)
	}
	done := make([]bool, len(batch))
	committed := map[partition]int64{}
	sub := make([]transport.Delivery, 0, len(batch))
	for {
		sub = sub[:0]
		for _, i := range todo {
			sub = append(sub, ds[i])
		}
		errs := adapter.Results(c.h(ctx, sub), len(sub))
		failed := todo[:0]
		for k, i := range todo {
			m := batch[i]
			switch err := errs[k]; {
			case err == nil:
				done[i] = true
			case errors.Is(err, transport.ErrDiscard):
				c.t.log.Warn("gocap: discarding a kafka record at the handler's request", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
				done[i] = true
			default:
				c.t.log.Warn("gocap: handling a kafka record failed; handing it again", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
				failed = append(failed, i)
			}
		}
		if !c.commit(ctx, batch, done, committed) {
			return false
		}
		if len(failed) == 0 {
			return true
		}
		// Until h accepts the records (stores them) or discards them, hand
		// them again; their offsets stay uncommitted meanwhile.
		if !backoff.Sleep(ctx, c.t.cfg.RequeueDelay) {
			return false
		}
		todo = failed
	}
}

type partition struct {
	topic string
	n     int
}

// commit commits, in each partition of batch, the offset after its last
// record that is preceded in the partition only by records done, if
// committed does not hold it yet. It retries until the commit succeeds,
// and returns false if ctx ended first.
func (c *batchConsumer) commit(ctx context.Context, batch []kafkago.Message, done []bool, committed map[partition]int64) bool {
	last := map[partition]int{} // index in batch of the last committable record
	blocked := map[partition]bool{}
	for i, m := range batch {
		p := partition{m.Topic, m.Partition}
		switch {
		case blocked[p]:
		case !done[i]:
			blocked[p] = true
		default:
			last[p] = i
		}
	}
	var msgs []kafkago.Message
	for p, i := range last {
		if off, ok := committed[p]; !ok || off < batch[i].Offset {
			msgs = append(msgs, batch[i])
		}
	}
	if len(msgs) == 0 {
		return true
	}
	for {
		err := c.r.CommitMessages(ctx, msgs...)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		c.t.log.Warn("gocap: committing kafka offsets failed; retrying (the records may be redelivered)", "group", c.group, "err", err)
		if !backoff.Sleep(ctx, time.Second) {
			return false
		}
	}
	for _, m := range msgs {
		committed[partition{m.Topic, m.Partition}] = m.Offset
	}
	return true
}

// delivery converts a record: its headers become strings and its topic
// loses Config.TopicPrefix.
func (c *batchConsumer) delivery(m kafkago.Message) transport.Delivery {
	d := transport.Delivery{
		Message: transport.Message{Headers: make(map[string]string, len(m.Headers)), Body: m.Value},
		Topic:   strings.TrimPrefix(m.Topic, c.t.cfg.TopicPrefix),
	}
	for _, hd := range m.Headers {
		d.Headers[hd.Key] = wire.HeaderValue(hd.Value)
	}
	return d
}
