package outbox

import (
	"context"
	"fmt"
	"strconv"

	"github.com/gocap/gocap/internal/topic"
	"github.com/gocap/gocap/wire"
)

// Replies, as DotNetCore.CAP has them: a publisher names a callback topic
// in the header cap-callback-name (CAP: the callbackName argument of
// ICapPublisher.PublishAsync, src/DotNetCore.CAP/Internal/ICapPublisher.Default.cs),
// and the subscriber that handles the message publishes its result to that
// topic, with cap-corr-id = the message's id and cap-corr-seq = the
// message's cap-corr-seq + 1, 1 when it has none
// (src/DotNetCore.CAP/Internal/ISubscribeExector.Default.cs,
// InvokeConsumerMethodAsync; Message.GetCorrelationSequence in
// src/DotNetCore.CAP/Messages/Message.cs reads an absent sequence as 0).
// CAP publishes the reply through its publisher, so the replier's
// TopicNamePrefix is put before the callback name, and so does gocap.

// WithCallback asks the subscriber of the message for a reply on topic
// name: it sets cap-callback-name, as CAP's PublishAsync(name, value,
// callbackName) does. A gocap subscriber registered with [SubscribeReply]
// publishes its result there (with [Subscribe], an empty body, as CAP does
// for a subscriber method without a result); so does a CAP subscriber.
// Subscribe to name to receive the reply: its cap-corr-id is the id this
// Publish returns, its cap-corr-seq one more than this message's. The
// replying side puts its own Options.TopicPrefix before name, as CAP does.
// name must be a topic without wildcards.
func WithCallback(name string) PublishOption {
	return func(c *publishConfig) {
		if err := validCallback(name); err != nil {
			c.err = fmt.Errorf("WithCallback: %w", err)
			return
		}
		WithHeader(wire.CallbackName, name)(c)
	}
}

func validCallback(name string) error {
	if err := topic.Validate(name); err != nil {
		return err
	}
	if topic.HasWildcard(name) {
		return fmt.Errorf("callback topic %q has a wildcard", name)
	}
	return nil
}

// SubscribeReply registers h for the messages of topicPattern as
// [Subscribe] does, and publishes h's result as the reply to each message
// that asks for one (cap-callback-name, see [WithCallback]): a published
// message like any other (stored in the published table, sent at least
// once, retried, on the dashboard), on the callback topic, with the
// correlation headers CAP gives a reply. A message that asks for none
// gets none.
//
// The reply row is stored before the received message is marked
// Succeeded, so once it is Succeeded its reply cannot be lost; should the
// process stop between the two, the message is handled again and replied
// to again: replies are at least once, like every delivery. A reply that
// cannot be stored fails the attempt, which is retried. A callback name
// that is no valid topic (see Publish; too long with Options.TopicPrefix,
// say), or a cap-corr-seq that is not a number, fails the message at once
// (CAP fails it too).
func SubscribeReply[T, R any, TTx any](o *Outbox[TTx], topicPattern string, h func(ctx context.Context, m Received[T]) (R, error), opts ...SubscribeOption) error {
	if h == nil {
		return fmt.Errorf("outbox: subscribe to %q: handler is nil", topicPattern)
	}
	ser := o.opts.Serializer
	return subscribe(o, topicPattern, opts, func(ctx context.Context, m *Message) error {
		r, err := receivedOf[T](ser, m)
		if err != nil {
			return err
		}
		reply, err := h(ctx, r)
		if err != nil {
			return err
		}
		return o.reply(ctx, m, reply)
	})
}

// reply publishes payload as the reply to m, if m asks for one.
func (o *Outbox[TTx]) reply(ctx context.Context, m *Message, payload any) error {
	callback := m.Headers[wire.CallbackName]
	if callback == "" {
		return nil
	}
	if err := validCallback(callback); err != nil {
		return Permanent(fmt.Errorf("replying to message %s: %s: %w", m.ID, wire.CallbackName, err))
	}
	if _, err := o.prefixed(callback); err != nil { // Publish would refuse it on every attempt
		return Permanent(fmt.Errorf("replying to message %s: %s: %w", m.ID, wire.CallbackName, err))
	}
	seq := 0
	if s, ok := m.Headers[wire.CorrelationSeq]; ok {
		n, err := strconv.Atoi(s)
		if err != nil {
			return Permanent(fmt.Errorf("replying to message %s: %s %q is not a number", m.ID, wire.CorrelationSeq, s))
		}
		seq = n
	}
	_, err := o.PublishWithoutTx(ctx, callback, payload, WithHeaders(map[string]string{
		wire.CorrelationID:  m.ID,
		wire.CorrelationSeq: strconv.Itoa(seq + 1),
	}))
	if err != nil {
		return fmt.Errorf("replying to message %s on %q: %w", m.ID, callback, err)
	}
	return nil
}
