// Package adapter holds what gocap's broker transports (transport/rabbitmq,
// transport/kafka, transport/memory) do alike around the transport
// contract: the checks of Consume's arguments, a consumer's context that
// ends with the transport, the classification of a send error as
// transport.ErrUnavailable, one send error for a whole batch, and [Later],
// which hands failed deliveries back after a delay without holding a
// worker. Each transport names itself in its errors with a prefix such as
// "rabbitmq".
package adapter

import (
	"context"
	"errors"
	"fmt"

	"github.com/gocap/gocap/transport"
)

// CheckConsume returns the error Consume gives for arguments no broker
// accepts: an empty group, or no topics.
func CheckConsume(prefix, group string, topics []string) error {
	if group == "" {
		return fmt.Errorf("%s: consume: group is empty", prefix)
	}
	if len(topics) == 0 {
		return fmt.Errorf("%s: consume for group %q: no topics", prefix, group)
	}
	return nil
}

// UntilClosed returns a context that ends when ctx ends or closed (a
// transport's close signal) is closed. Call cancel when done with it.
func UntilClosed(ctx context.Context, closed <-chan struct{}) (_ context.Context, cancel context.CancelFunc) {
	ctx, cancel = context.WithCancel(ctx)
	go func() {
		select {
		case <-closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Unavailable wraps err with transport.ErrUnavailable when down reports
// that it means the broker could not be reached or could not take the
// message now. nil, an error that already wraps transport.ErrUnavailable,
// and the caller's context ending (context.Canceled,
// context.DeadlineExceeded) are returned as they are, without asking down.
func Unavailable(err error, down func(error) bool) error {
	if err == nil || errors.Is(err, transport.ErrUnavailable) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || !down(err) {
		return err
	}
	return fmt.Errorf("%w: %w", transport.ErrUnavailable, err)
}

// SendError is the error of a send of one message to topic.
func SendError(prefix, topic string, err error) error {
	return fmt.Errorf("%s: send to %q: %w", prefix, topic, err)
}

// FailBatch returns the errors of a SendBatch of msgs that failed as a
// whole with err: the SendError of each message, its topic named as the
// broker knows it, with topicPrefix before it.
func FailBatch(prefix, topicPrefix string, msgs []transport.Outgoing, err error) []error {
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		errs[i] = SendError(prefix, topicPrefix+m.Topic, err)
	}
	return errs
}
