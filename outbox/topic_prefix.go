package outbox

import (
	"fmt"

	"github.com/gocap/gocap/internal/topic"
)

// topicName is the name of topic (or pattern) on the wire: with
// Options.TopicPrefix and a dot before it, as DotNetCore.CAP's
// TopicNamePrefix (src/DotNetCore.CAP/CAP.Options.cs) is applied by its
// publisher (src/DotNetCore.CAP/Internal/ICapPublisher.Default.cs,
// PublishInternalAsync: name = $"{TopicNamePrefix}.{name}") and to its
// subscriptions (src/DotNetCore.CAP/Internal/ConsumerExecutorDescriptor.cs,
// TopicName, set from the options in IConsumerServiceSelector.Default.cs).
func (o *Outbox[TTx]) topicName(topic string) string {
	if o.opts.TopicPrefix == "" {
		return topic
	}
	return o.opts.TopicPrefix + "." + topic
}

// TopicName returns the name a message published to topic is stored and
// sent under, and a subscription to the pattern topic subscribes to: topic
// itself, or with Options.TopicPrefix and a dot before it.
func (o *Outbox[TTx]) TopicName(topic string) string { return o.topicName(topic) }

// prefixed returns topicName(t), or an error if the prefix makes it longer
// than a topic may be (topic.MaxLen): a longer name would be cut by a
// storage (MySQL's name column) and refused by a broker (RabbitMQ's
// routing key), so a message would be sent under a name nobody subscribed
// to, or not at all.
func (o *Outbox[TTx]) prefixed(t string) (string, error) {
	name := o.topicName(t)
	if len(name) > topic.MaxLen {
		return "", fmt.Errorf("topic %q is %d bytes long with Options.TopicPrefix %q: at most %d fit a routing key and the storage's name column",
			t, len(name), o.opts.TopicPrefix, topic.MaxLen)
	}
	return name, nil
}
