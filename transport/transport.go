// Package transport defines the contract between gocap's processor and a
// message broker. A broker adapter lives in a sub-package
// (transport/rabbitmq, transport/kafka, transport/memory) and implements
// [Transport]; the conformance suite in transport/transporttest checks it.
//
// A transport moves [Message] values: a set of string headers and an opaque
// body. gocap puts DotNetCore.CAP's headers on every message it sends, and
// leaves the body exactly as the application serialized it, so CAP services
// and programs in other languages that set the same headers interoperate.
// Package github.com/gocap/gocap/wire holds that format: CAP's header names
// (wire.MsgID, wire.MsgName, ...), the headers of a published message, and
// how a binary header value becomes text (wire.HeaderValue).
package transport

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrUnavailable marks a send that failed because the transport cannot
// reach its broker now: it is not connected, is reconnecting, or the
// connection broke before the broker confirmed the message. A transport
// wraps such errors so that errors.Is(err, ErrUnavailable) holds. Such a
// send is not an attempt of the message: the processor does not count it
// against the message's retry policy, pauses dispatch and tries again as
// soon as the transport can reach the broker. Every other send error
// but [ErrBusy] counts as a failed attempt.
var ErrUnavailable = errors.New("transport: broker unavailable")

// ErrBusy marks a send that the transport did not make because a limit
// of its own on the message's destination was reached — the webhook
// transport's requests in flight and waiting sends of one host, say — or
// because ctx ended while the send waited for such a limit: the message
// never left the process. A transport wraps such errors so that
// errors.Is(err, ErrBusy) holds. Like a send that failed with
// [ErrUnavailable], it is not an attempt of the message: the processor
// gives the row's lease back without counting it, and the row is due
// again a moment later. Unlike it, it pauses nothing: messages to other
// destinations go on.
var ErrBusy = errors.New("transport: destination busy, not sent")

// ErrMisconfigured marks an error of Consume (or ConsumeBatch) that no
// retry can fix while the configuration stays as it is: the broker refused
// the transport's credentials, or a queue it declares exists with other
// arguments. A transport wraps such errors so that errors.Is(err,
// ErrMisconfigured) holds; the processor keeps consuming again with its
// longest pause, logs that the configuration must change, and reports the
// group's consumer as misconfigured in the readiness report.
var ErrMisconfigured = errors.New("transport: the broker refuses the configuration")

// ErrDiscard marks a handler error that asks the transport not to deliver
// the message again: see [Discard].
var ErrDiscard = errors.New("transport: delivery discarded")

// Discard wraps err so that, returned from a [Handler], the transport
// acknowledges the delivery without handling it (RabbitMQ: rejected
// without requeue, so a dead-letter exchange receives it if the queue has
// one; Kafka: its offset is committed) instead of delivering it again.
// gocap's processor discards only a delivery it could neither store nor
// record as Failed, after logging it whole. Discard(nil) is nil.
func Discard(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrDiscard, err)
}

// Message is what travels over a broker.
type Message struct {
	// Headers are sent as broker headers (AMQP headers, Kafka record headers).
	Headers map[string]string
	// Body is sent untouched.
	Body []byte
}

// Delivery is a message received from a broker.
type Delivery struct {
	Message
	// Topic is the broker-side topic or routing key the message arrived
	// with. It stands in for cap-msg-name when a foreign publisher did not
	// set that header.
	Topic string
}

// Sender sends messages to a broker.
type Sender interface {
	// Send publishes msg to topic and returns nil only once the broker has
	// accepted responsibility for it (publisher confirm, acks=all). Send is
	// safe for concurrent use, and implementations pipeline concurrent
	// calls instead of serializing them, so a caller reaches the broker's
	// throughput by calling Send from many goroutines.
	Send(ctx context.Context, topic string, msg Message) error
}

// Outgoing is a message and the topic it is sent to.
type Outgoing struct {
	// Topic is the topic Message is sent to.
	Topic string
	Message
}

// BatchSender is implemented by transports that send many messages in one
// call more cheaply than by as many concurrent Send calls: they write the
// whole batch, then wait for the broker's confirmations together. The
// processor uses it when the transport has it, and Send otherwise.
type BatchSender interface {
	// SendBatch publishes msgs, in order, and waits until the broker has
	// accepted or refused each of them. It returns one error per message,
	// in msgs' order: nil for a message the broker accepted (as Send's nil
	// means), the reason otherwise. A message whose error is not nil may
	// still have reached the broker, as with Send.
	SendBatch(ctx context.Context, msgs []Outgoing) []error
}

// Handler is called for every delivery. Returning nil acknowledges the
// delivery to the broker (ack, offset commit); returning an error leaves it
// unacknowledged, so the broker delivers it again, after a pause and
// without holding up other deliveries while it waits; returning an error
// that wraps [ErrDiscard] drops it (see [Discard]).
type Handler func(ctx context.Context, d Delivery) error

// BatchHandler is called with several deliveries at once and returns one
// error per delivery, in order, each with the meaning of a Handler's
// result: nil acknowledges it, an error has it delivered again later, an
// error wrapping ErrDiscard drops it.
type BatchHandler func(ctx context.Context, ds []Delivery) []error

// BatchReceiver is implemented by transports that can hand deliveries
// over in batches (RabbitMQ: what the prefetch window holds, acknowledged
// with one multiple ack; Kafka: a fetched batch, its offsets committed
// after it). The processor uses it, when the transport has it, to store a
// batch of deliveries with one statement.
type BatchReceiver interface {
	// ConsumeBatch is Consume with deliveries handed to h in batches of up
	// to max (max ≤ 0: the transport's natural size, such as the prefetch),
	// until ctx ends: a batch is handed over as soon as it is full, else
	// when linger has passed since its first delivery arrived (linger ≤ 0:
	// at once with what is there). Deliveries are
	// acknowledged only after h returns, each by its own result.
	ConsumeBatch(ctx context.Context, group string, topics []string, max int, linger time.Duration, h BatchHandler) error
}

// Receiver consumes messages from a broker.
type Receiver interface {
	// Consume subscribes group to topics (topic patterns with AMQP-style
	// '*' and '#' wildcards where the broker supports them) and calls h for
	// each delivery, until ctx ends. Consumers sharing a group share the
	// work; each group gets every message. Consume survives connection loss
	// by reconnecting with backoff; it returns when ctx ends, or with an
	// error that retrying cannot fix (such as an invalid configuration).
	Consume(ctx context.Context, group string, topics []string, h Handler) error
}

// Transport is a broker adapter: it sends and receives, and is closed when
// the application stops.
type Transport interface {
	Sender
	Receiver
	// Close releases the broker connections. Sends and consumes in progress
	// fail or end.
	Close() error
}
