package outboxtest

import (
	"context"

	"github.com/gocap/gocap/outbox"
)

// HandleOpts qualify the delivery that [Handle] makes.
type HandleOpts struct {
	// Group is the consumer group whose subscription handles the message,
	// as given to outbox.Group; empty means Options.DefaultGroup.
	Group string
	// Headers are added to the message as outbox.WithHeaders adds them to
	// a publish.
	Headers map[string]string
}

// Handle runs the handler that ob's subscription of topic (in the group
// of opts; nil: the default group) would run on value, and returns its
// error as the handler returned it. The message is the one a publish of
// value to topic would send — serialized by ob's serializer, with CAP's
// headers and opts' — delivered as a broker delivers it, through the same
// handler chain (panic recovery, handle middleware). Nothing is stored,
// sent or retried, no broker is needed and ob need not be running. A
// topic or value that Publish refuses (an empty topic, a wildcard) is
// Publish's error, and a topic that no subscription of the group matches
// is an error too. See [outbox.Outbox.HandleDirect].
func Handle[T any, TTx any](ctx context.Context, ob *outbox.Outbox[TTx], topic string, value T, opts *HandleOpts) error {
	var o HandleOpts
	if opts != nil {
		o = *opts
	}
	var popts []outbox.PublishOption
	if len(o.Headers) > 0 {
		popts = append(popts, outbox.WithHeaders(o.Headers))
	}
	return ob.HandleDirect(ctx, o.Group, topic, value, popts...)
}
