package outbox

import (
	"fmt"

	"github.com/gocap/gocap/internal/topic"
)

// handlerDefaults checks and defaults the options of handler calls and
// topic names; Lease has its default already.
func (o *Options) handlerDefaults() error {
	switch {
	case o.HandlerTimeout == 0:
		o.HandlerTimeout = o.Lease / 2
	case o.HandlerTimeout < 0:
		return fmt.Errorf("outbox: Options.HandlerTimeout %v must not be negative", o.HandlerTimeout)
	case o.HandlerTimeout >= o.Lease:
		return fmt.Errorf("outbox: Options.HandlerTimeout %v must be below Options.Lease (%v), so that no message is handled after its lease ended",
			o.HandlerTimeout, o.Lease)
	}
	for i, m := range o.Middleware {
		if m == nil {
			return fmt.Errorf("outbox: Options.Middleware[%d] is nil", i)
		}
	}
	if o.TopicPrefix != "" {
		if err := topic.Validate(o.TopicPrefix); err != nil {
			return fmt.Errorf("outbox: Options.TopicPrefix: %w", err)
		}
		if topic.HasWildcard(o.TopicPrefix) {
			return fmt.Errorf("outbox: Options.TopicPrefix %q: wildcards are not allowed in a prefix", o.TopicPrefix)
		}
		if len(o.TopicPrefix)+2 > topic.MaxLen {
			return fmt.Errorf("outbox: Options.TopicPrefix %q is %d bytes long: with its dot and a topic it must fit %d",
				o.TopicPrefix, len(o.TopicPrefix), topic.MaxLen)
		}
	}
	return nil
}
