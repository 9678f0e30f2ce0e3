package redisstreams

import (
	"context"
	"errors"
	"fmt"
	"strings"

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
			errs[i] = &RefusedError{Err: errors.New("the topic is empty")}
			continue
		}
		values, err := entryValues(m.Message)
		if err != nil {
			errs[i] = &RefusedError{Stream: t.Stream(m.Topic), Err: err}
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
			errs[i] = sendError(args[i].Stream, cerr)
		}
	}
	return errs
}

// sendError returns the error of an XADD to stream that failed with err:
// a *RefusedError if Redis refused the command for good (see refusedSend), an
// error wrapping transport.ErrUnavailable if Redis was not reached or
// cannot serve now (see reachable), else err naming the stream: a failed
// attempt.
func sendError(stream string, err error) error {
	if refusedSend(err) {
		return &RefusedError{Stream: stream, Err: err}
	}
	return adapter.SendError("redisstreams", stream, unavailable(err))
}

// retriedReplies are the prefixes of Redis's error replies that refuse a
// command for a reason that may pass with the message unchanged: no
// memory left under maxmemory with the noeviction policy (OOM: consumers
// acknowledging, trimming or an operator may free it), snapshots failing
// to persist (MISCONF), the connection's credentials or ACL permissions
// (NOAUTH, WRONGPASS, NOPERM: an operator's change fixes them, and every
// message would fail alike), a cluster's redirect (MOVED, ASK) left after
// the client's redirects — slots moving under a cluster client, which
// passes; or a plain client on one node of a cluster, which does not,
// and must end Failed rather than loop. A send refused so is a failed
// attempt, retried by the message's policy.
var retriedReplies = []string{"OOM ", "MISCONF ", "NOAUTH ", "WRONGPASS ", "NOPERM ", "MOVED ", "ASK "}

// refusedSend reports whether err is an error reply of Redis that refuses
// an XADD for good: neither transient (see reachable) nor one of
// retriedReplies. WRONGTYPE (the stream's key holds another type) and
// ERR replies are.
func refusedSend(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) || !reachable(err) {
		return false
	}
	msg := rerr.Error()
	for _, p := range retriedReplies {
		if strings.HasPrefix(msg, p) {
			return false
		}
	}
	return true
}

// RefusedError is the error of a send of a message that cannot be added
// to its stream, whose sending again cannot succeed: an empty topic, a
// header that is not valid UTF-8, or an XADD that Redis refused for good
// (WRONGTYPE: the stream's key holds a value of another type; an ERR
// reply). It is permanent: the outbox marks the message Failed at once.
type RefusedError struct {
	// Stream is the stream the message was sent to (its key); empty for
	// an empty topic.
	Stream string
	// Err is the reason.
	Err error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("redisstreams: send to %q refused: %v", e.Stream, e.Err)
}

// Unwrap returns the reason.
func (e *RefusedError) Unwrap() error { return e.Err }

// Permanent reports true: retrying cannot help.
func (e *RefusedError) Permanent() bool { return true }
