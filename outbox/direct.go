package outbox

import (
	"context"

	"github.com/gocap/gocap/transport"
)

// HandleDirect runs the handler that the subscription of group matching
// topic would run on the message that Publish(ctx, tx, topic, payload,
// opts...) would send, as if a broker had delivered it to that group: with
// the same headers (CAP's, those of opts, and those a delivery gets), the
// body the serializer makes, and through the same handler chain (panic
// recovery, the instrumentation and other handle middleware). An empty
// group means Options.DefaultGroup; Options.GroupPrefix, Options.Version
// and Options.TopicPrefix apply as Subscribe and Publish apply them.
//
// Nothing is stored, sent or retried, and no broker or Run is needed: it
// returns the handler's error as the handler returned it (a panic as an
// error, a body that does not decode as a Permanent error), or an error
// if no subscription of group matches topic or the publish is not valid. It is meant for tests (see
// package outboxtest); call it after Subscribe, not concurrently with it.
func (o *Outbox[TTx]) HandleDirect(ctx context.Context, group, topic string, payload any, opts ...PublishOption) error {
	m, err := o.newMessage(topic, payload, opts)
	if err != nil {
		return err
	}
	if group == "" {
		group = o.opts.DefaultGroup
	}
	d := transport.Delivery{Topic: m.Name, Message: transport.Message{Headers: m.Headers, Body: m.Body}}
	return o.e.HandleDirect(ctx, o.opts.groupName(group), d)
}

// Serializer returns the serializer the outbox encodes payloads and
// decodes bodies with (Options.Serializer, JSON by default), for tools and
// tests that read stored bodies (see package outboxtest).
func (o *Outbox[TTx]) Serializer() Serializer { return o.opts.Serializer }
