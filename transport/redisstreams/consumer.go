package redisstreams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gocap/gocap/internal/backoff"
	"github.com/gocap/gocap/internal/topic"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/internal/adapter"
)

// Consume reads the streams of topics as a consumer of group (see
// transport.Receiver and the package documentation) and calls h for each
// entry, one at a time, in the order one XREADGROUP returned them. Topic
// patterns with '*' or '#' are refused: Redis Streams have no wildcards.
//
// Consume is ConsumeBatch with batches of one, reading Config.BatchSize
// entries of each stream at a time.
func (t *Transport) Consume(ctx context.Context, group string, topics []string, h transport.Handler) error {
	return t.consume(ctx, group, topics, 1, int64(t.cfg.BatchSize), 0, func(ctx context.Context, ds []transport.Delivery) []error {
		return []error{h(ctx, ds[0])}
	})
}

// ConsumeBatch reads the streams of topics as Consume does and hands the
// entries to h in batches of up to max (max ≤ 0: Config.BatchSize), see
// transport.BatchReceiver. A batch is what one XREADGROUP (COUNT max)
// returned, with what further reads return until it is full or linger has
// passed since the first read returned. Each entry is acknowledged (XACK)
// or left pending for a retry by its own result.
func (t *Transport) ConsumeBatch(ctx context.Context, group string, topics []string, max int, linger time.Duration, h transport.BatchHandler) error {
	size := adapter.BatchSize(max, t.cfg.BatchSize)
	return t.consume(ctx, group, topics, size, int64(size), linger, h)
}

// consume runs sessions of a consumer, reconnecting with backoff, until
// ctx ends, the transport closes, or Redis refuses the consumer.
func (t *Transport) consume(ctx context.Context, group string, topics []string, size int, count int64, linger time.Duration, h transport.BatchHandler) error {
	if err := adapter.CheckConsume("redisstreams", group, topics); err != nil {
		return err
	}
	for _, tp := range topics {
		if tp == "" {
			return fmt.Errorf("redisstreams: consume for group %q: a topic is empty", group)
		}
		if topic.HasWildcard(tp) {
			return fmt.Errorf("redisstreams: consume for group %q: topic pattern %q has a wildcard; Redis Streams have none (one stream per topic, as CAP): subscribe to concrete topics", group, tp)
		}
	}
	t.mu.Lock()
	if t.isClosed() {
		t.mu.Unlock()
		return ErrClosed
	}
	t.consumers.Add(1)
	t.mu.Unlock()
	defer t.consumers.Done()

	ctx, cancel := adapter.UntilClosed(ctx, t.closed)
	defer cancel()
	name, release := t.consumerName(group)
	defer release()
	c := &consumer{
		t: t, group: group, name: name, size: size, count: count, linger: linger, h: h,
		topics: map[string]string{}, pending: map[string]bool{}, cursor: map[string]string{},
	}
	for _, tp := range topics {
		k := t.Stream(tp)
		if _, dup := c.topics[k]; !dup {
			c.streams = append(c.streams, k)
			c.topics[k] = tp
		}
	}
	defer c.leave()
	wait := backoff.New(t.cfg.ReconnectMin, t.cfg.ReconnectMax)
	for {
		err := c.session(ctx, wait.Reset)
		if ctx.Err() != nil {
			return nil
		}
		if refused(err) {
			return fmt.Errorf("redisstreams: consuming %v as %q of group %q: %w", c.streams, name, group, err)
		}
		d := wait.Next()
		t.log.Warn("gocap: Redis consumer disconnected; reconnecting", "group", group, "consumer", name, "err", err, "retry_in", d)
		if !backoff.Sleep(ctx, d) {
			return nil
		}
	}
}

// refused reports whether err is Redis's refusal of a consumer's command
// that reconnecting does not fix (a key of another type, CROSSSLOT, a
// missing permission). A missing group (NOGROUP: the stream or group was
// deleted) is not: the next session creates it again; nor is a cluster's
// redirect (MOVED, ASK) left after the client's redirects: slots move,
// and the next session finds them.
func refused(err error) bool {
	return err != nil && reachable(err) && !redis.HasErrorPrefix(err, "NOGROUP") &&
		!redis.HasErrorPrefix(err, "MOVED") && !redis.HasErrorPrefix(err, "ASK")
}

// consumer is one Consume's state.
type consumer struct {
	t       *Transport
	group   string
	name    string
	streams []string          // stream keys, in the order of the topics
	topics  map[string]string // topic by stream key
	size    int               // largest batch handed to h
	count   int64             // COUNT of a read
	linger  time.Duration
	h       transport.BatchHandler

	pending   map[string]bool   // streams on which this consumer may hold entries to retry
	cursor    map[string]string // XAUTOCLAIM's next start, by stream
	nextRetry time.Time
	nextClaim time.Time
}

// entry is a stream entry read by the consumer.
type entry struct {
	stream string
	msg    redis.XMessage
}

// session creates the groups and reads, retries and claims entries until
// a command fails or ctx ends.
func (c *consumer) session(ctx context.Context, connected func()) error {
	client := c.t.client
	for _, k := range c.streams {
		if err := client.XGroupCreateMkStream(ctx, k, c.group, "$").Err(); err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			return fmt.Errorf("creating group %q on stream %q: %w", c.group, k, err)
		}
		c.pending[k] = true // entries left from before: a stable Config.Consumer, or a lost ack
	}
	connected()
	c.nextRetry = time.Time{}
	for ctx.Err() == nil {
		if !time.Now().Before(c.nextRetry) {
			if err := c.retry(ctx); err != nil {
				return err
			}
			c.nextRetry = time.Now().Add(max(c.t.cfg.RetryDelay/2, time.Millisecond))
		}
		if !time.Now().Before(c.nextClaim) {
			if err := c.claim(ctx); err != nil {
				return err
			}
			c.nextClaim = time.Now().Add(max(c.t.cfg.ClaimIdle/2, time.Millisecond))
		}
		block := min(c.t.cfg.Block, time.Until(c.nextClaim))
		if c.anyPending() {
			block = min(block, time.Until(c.nextRetry))
		}
		es, err := c.read(ctx, c.count, max(block, time.Millisecond))
		if err != nil {
			return err
		}
		if len(es) == 0 {
			continue
		}
		if es, err = c.fill(ctx, es); err != nil {
			return err
		}
		if err := c.handle(ctx, es); err != nil {
			return err
		}
	}
	return nil
}

func (c *consumer) anyPending() bool {
	for _, p := range c.pending {
		if p {
			return true
		}
	}
	return false
}

// read reads new entries (XREADGROUP ... >), at most count of each stream,
// waiting up to block for one. It returns none when the wait ended empty.
func (c *consumer) read(ctx context.Context, count int64, block time.Duration) ([]entry, error) {
	streams := make([]string, 0, 2*len(c.streams))
	streams = append(streams, c.streams...)
	for range c.streams {
		streams = append(streams, ">")
	}
	res, err := c.t.client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: c.group, Consumer: c.name, Streams: streams, Count: count, Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) || (err != nil && ctx.Err() != nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading streams %v: %w", c.streams, err)
	}
	var es []entry
	for _, s := range res {
		for _, m := range s.Messages {
			es = append(es, entry{stream: s.Stream, msg: m})
		}
	}
	return es, nil
}

// fill reads more entries into es until it holds a batch or the linger
// has passed since es was read.
func (c *consumer) fill(ctx context.Context, es []entry) ([]entry, error) {
	deadline := time.Now().Add(c.linger)
	for len(es) < c.size {
		wait := time.Until(deadline)
		if wait < time.Millisecond {
			break
		}
		more, err := c.read(ctx, int64(c.size-len(es)), wait)
		if err != nil {
			return es, err
		}
		if len(more) == 0 {
			break
		}
		es = append(es, more...)
	}
	return es, nil
}

// retry claims again the entries of this consumer that have been pending
// Config.RetryDelay (their handler failed, or their ack was lost) and
// hands them over.
func (c *consumer) retry(ctx context.Context) error {
	client, delay := c.t.client, c.t.cfg.RetryDelay
	for _, k := range c.streams {
		if !c.pending[k] {
			continue
		}
		ps, err := client.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: k, Group: c.group, Start: "-", End: "+", Count: max(c.count, 1000), Consumer: c.name,
		}).Result()
		if err != nil {
			return fmt.Errorf("listing the pending entries of stream %q: %w", k, err)
		}
		if len(ps) == 0 {
			c.pending[k] = false
			continue
		}
		var ids []string
		for _, p := range ps {
			if p.Idle >= delay && len(ids) < int(c.count) {
				ids = append(ids, p.ID)
			}
		}
		if len(ids) == 0 {
			continue
		}
		msgs, err := client.XClaim(ctx, &redis.XClaimArgs{
			Stream: k, Group: c.group, Consumer: c.name, MinIdle: delay, Messages: ids,
		}).Result()
		if err != nil {
			return fmt.Errorf("claiming failed entries of stream %q again: %w", k, err)
		}
		if err := c.handle(ctx, entries(k, msgs)); err != nil {
			return err
		}
	}
	return nil
}

// claim takes over the entries of any consumer of the group that have
// been pending Config.ClaimIdle (XAUTOCLAIM: their consumer is presumed
// dead), one page of each stream per call, and hands them over.
func (c *consumer) claim(ctx context.Context) error {
	for _, k := range c.streams {
		start := c.cursor[k]
		if start == "" {
			start = "0-0"
		}
		msgs, next, err := c.t.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: k, Group: c.group, Consumer: c.name, MinIdle: c.t.cfg.ClaimIdle, Start: start, Count: c.count,
		}).Result()
		if err != nil {
			return fmt.Errorf("claiming idle entries of stream %q: %w", k, err)
		}
		c.cursor[k] = next
		if len(msgs) > 0 {
			c.t.log.Info("gocap: took over entries idle longer than ClaimIdle from another consumer", "stream", k, "group", c.group, "count", len(msgs))
			if err := c.handle(ctx, entries(k, msgs)); err != nil {
				return err
			}
		}
	}
	return nil
}

func entries(stream string, msgs []redis.XMessage) []entry {
	es := make([]entry, len(msgs))
	for i, m := range msgs {
		es[i] = entry{stream: stream, msg: m}
	}
	return es
}

// handle hands es to the handler in batches of at most c.size, and
// acknowledges each entry whose result is nil or a discard.
func (c *consumer) handle(ctx context.Context, es []entry) error {
	log := c.t.log
	ds := make([]transport.Delivery, 0, min(len(es), c.size))
	for len(es) > 0 {
		batch := es[:min(len(es), c.size)]
		es = es[len(batch):]
		ds = ds[:0]
		for _, e := range batch {
			ds = append(ds, delivery(c.topics[e.stream], e.msg.Values))
		}
		errs := adapter.Results(c.h(ctx, ds), len(ds))
		acks := map[string][]string{}
		for i, e := range batch {
			switch err := errs[i]; {
			case err == nil:
				acks[e.stream] = append(acks[e.stream], e.msg.ID)
			case errors.Is(err, transport.ErrDiscard):
				log.Warn("gocap: discarding a stream entry at the handler's request", "stream", e.stream, "id", e.msg.ID, "group", c.group, "err", err)
				acks[e.stream] = append(acks[e.stream], e.msg.ID)
			default:
				log.Warn("gocap: handling a stream entry failed; it stays pending and comes again after the retry delay",
					"stream", e.stream, "id", e.msg.ID, "group", c.group, "err", err, "retry_delay", c.t.cfg.RetryDelay)
				c.pending[e.stream] = true
			}
		}
		if err := c.ack(ctx, acks); err != nil {
			return err
		}
	}
	return nil
}

// ack acknowledges ids, by stream, in one round trip. It does not end with
// ctx: the handler has done its work, and an entry not acknowledged would
// be handled again.
func (c *consumer) ack(ctx context.Context, ids map[string][]string) error {
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := c.t.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, list := range ids {
			p.XAck(ctx, k, c.group, list...)
		}
		return nil
	})
	if err != nil {
		for k := range ids {
			c.pending[k] = true
		}
		return fmt.Errorf("acknowledging entries (they come again): %w", err)
	}
	return nil
}

// leave removes this consumer from its groups when it holds no pending
// entry, so that consumer names of stopped processes do not pile up. A
// consumer with pending entries stays: deleting it would drop them.
func (c *consumer) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, k := range c.streams {
		ps, err := c.t.client.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: k, Group: c.group, Start: "-", End: "+", Count: 1, Consumer: c.name,
		}).Result()
		if err != nil || len(ps) > 0 {
			continue
		}
		if err := c.t.client.XGroupDelConsumer(ctx, k, c.group, c.name).Err(); err != nil {
			c.t.log.Debug("gocap: removing a stopped consumer from its group failed", "stream", k, "group", c.group, "consumer", c.name, "err", err)
		}
	}
}
