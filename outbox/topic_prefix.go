package outbox

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
