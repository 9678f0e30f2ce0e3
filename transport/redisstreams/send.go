package redisstreams

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/internal/adapter"
)

// Send adds msg to topic's stream (XADD, see the package documentation)
// and returns nil once Redis answered with the entry's id.
func (t *Transport) Send(ctx context.Context, topic string, msg transport.Message) error {
	return t.SendBatch(ctx, []transport.Outgoing{{Topic: topic, Message: msg}})[0]
}

// SendBatch adds msgs to their streams, in order, with one pipeline of
// XADDs, and returns each one's outcome (see transport.BatchSender). A
// message that cannot be encoded (an empty topic, a header that is not
// valid UTF-8) fails alone, before anything is sent.
func (t *Transport) SendBatch(ctx context.Context, msgs []transport.Outgoing) []error {
	errs := make([]error, len(msgs))
	if len(msgs) == 0 {
		return errs
	}
	if t.isClosed() {
		return adapter.FailBatch("redisstreams", t.cfg.StreamPrefix, msgs, ErrClosed)
	}
	args := make([]*redis.XAddArgs, len(msgs))
	n := 0
	for i, m := range msgs {
		if m.Topic == "" {
			errs[i] = adapter.SendError("redisstreams", "", errors.New("the topic is empty"))
			continue
		}
		values, err := entryValues(m.Message)
		if err != nil {
			errs[i] = adapter.SendError("redisstreams", t.Stream(m.Topic), err)
			continue
		}
		args[i] = &redis.XAddArgs{Stream: t.Stream(m.Topic), ID: "*", Values: values}
		if t.cfg.MaxLen > 0 {
			args[i].MaxLen, args[i].Approx = t.cfg.MaxLen, true
		}
		n++
	}
	if n == 0 {
		return errs
	}
	cmds := make([]*redis.StringCmd, len(msgs))
	_, err := t.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, a := range args {
			if a != nil {
				cmds[i] = p.XAdd(ctx, a)
			}
		}
		return nil
	})
	for i, cmd := range cmds {
		if cmd == nil {
			continue
		}
		cerr := cmd.Err()
		if cerr == nil && err != nil && !reachable(err) {
			cerr = err // the pipeline broke; a command without its own error has no reply
		}
		if cerr != nil {
			errs[i] = adapter.SendError("redisstreams", args[i].Stream, unavailable(cerr))
		}
	}
	return errs
}
