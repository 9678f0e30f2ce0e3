package rabbitmq

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/gocap/gocap/transport"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Queue types of Config.QueueType.
const (
	// QueueClassic is RabbitMQ's classic queue, the default.
	QueueClassic = "classic"
	// QueueQuorum is a replicated quorum queue (RabbitMQ ≥ 3.8; message
	// TTL ≥ 3.10). Quorum queues are durable, not exclusive and not
	// auto-deleted, as every group queue of the transport is.
	QueueQuorum = "quorum"
)

// CAPMessageTTL is the x-message-ttl, in milliseconds (10 days), that
// DotNetCore.CAP declares every queue with unless configured otherwise
// (RabbitMQOptions.QueueArguments.MessageTTL). A queue CAP declared is
// consumed with
//
//	Config{QueueArguments: amqp.Table{"x-message-ttl": rabbitmq.CAPMessageTTL}}
const CAPMessageTTL = 864000000

// ErrQueueMismatch marks the broker's refusal (PRECONDITION_FAILED) to
// declare a group's queue as the transport declares it: the queue exists
// with other arguments (Config.QueueArguments, Config.QueueType) or
// properties, or an argument is invalid. Retrying does not fix it: the
// configuration or the queue must change. Consume and ConsumeBatch return
// an error wrapping it (and transport.ErrMisconfigured), which names the queue, the argument and the Config
// field to set, at once and not after retries.
var ErrQueueMismatch = fmt.Errorf("rabbitmq: the broker refused to declare the queue (%w)", transport.ErrMisconfigured)

// Value kinds of the queue arguments that New checks.
type argKind int

const (
	argString argKind = iota
	argNonNegative
	argPositive
	argBool
)

// knownArgs are the queue arguments whose value type New checks, with the
// values allowed for a string where RabbitMQ has a fixed set.
var knownArgs = map[string]struct {
	kind   argKind
	values []string
}{
	"x-message-ttl":               {kind: argNonNegative},
	"x-expires":                   {kind: argPositive},
	"x-max-length":                {kind: argNonNegative},
	"x-max-length-bytes":          {kind: argNonNegative},
	"x-max-priority":              {kind: argNonNegative},
	"x-delivery-limit":            {kind: argNonNegative},
	"x-quorum-initial-group-size": {kind: argPositive},
	"x-dead-letter-exchange":      {kind: argString},
	"x-dead-letter-routing-key":   {kind: argString},
	"x-overflow":                  {kind: argString, values: []string{"drop-head", "reject-publish", "reject-publish-dlx"}},
	"x-queue-mode":                {kind: argString, values: []string{"default", "lazy"}},
	"x-dead-letter-strategy":      {kind: argString, values: []string{"at-most-once", "at-least-once"}},
	"x-single-active-consumer":    {kind: argBool},
}

// queueArguments checks cfg.QueueType and cfg.QueueArguments and returns
// the arguments every group queue is declared with: a copy of
// QueueArguments, its Go ints as 64-bit integers (amqp091-go would
// truncate them to 32 bits), and x-queue-type for a QueueType other than
// the default. It returns nil when there are none.
func queueArguments(cfg Config) (amqp.Table, error) {
	switch cfg.QueueType {
	case "", QueueClassic, QueueQuorum:
	case "stream":
		return nil, errors.New(`rabbitmq: Config.QueueType "stream" is not supported: every consumer of a stream reads every message and an AMQP 0-9-1 consumer keeps no offset, so a group would get duplicates and, after a restart, miss messages; use "quorum" for a replicated queue`)
	default:
		return nil, fmt.Errorf("rabbitmq: Config.QueueType %q is unknown: use %q (the default) or %q", cfg.QueueType, QueueClassic, QueueQuorum)
	}
	if len(cfg.QueueArguments) == 0 && cfg.QueueType == "" {
		return nil, nil
	}
	args := make(amqp.Table, len(cfg.QueueArguments)+1)
	for _, name := range slices.Sorted(maps.Keys(cfg.QueueArguments)) {
		v := cfg.QueueArguments[name]
		if name == "x-queue-type" {
			return nil, errors.New(`rabbitmq: Config.QueueArguments["x-queue-type"]: set the queue type with Config.QueueType`)
		}
		if n, ok := v.(int); ok {
			v = int64(n)
		}
		if err := (amqp.Table{name: v}).Validate(); err != nil {
			return nil, fmt.Errorf("rabbitmq: Config.QueueArguments[%q]: %w", name, err)
		}
		if err := checkArg(name, v); err != nil {
			return nil, fmt.Errorf("rabbitmq: Config.QueueArguments[%q]: %w", name, err)
		}
		args[name] = v
	}
	if _, ok := args["x-dead-letter-routing-key"]; ok {
		if _, ok := args["x-dead-letter-exchange"]; !ok {
			return nil, errors.New(`rabbitmq: Config.QueueArguments: "x-dead-letter-routing-key" is set without "x-dead-letter-exchange"`)
		}
	}
	if cfg.QueueType != "" {
		args["x-queue-type"] = cfg.QueueType
	}
	return args, nil
}

// checkArg checks the value type of a well-known queue argument.
func checkArg(name string, v any) error {
	known, ok := knownArgs[name]
	if !ok {
		return nil
	}
	switch known.kind {
	case argString:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%v (%T) is not a string", v, v)
		}
		if known.values != nil && !slices.Contains(known.values, s) {
			return fmt.Errorf("%q is not one of %s", s, strings.Join(known.values, ", "))
		}
	case argBool:
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%v (%T) is not a bool", v, v)
		}
	default:
		n, ok := integer(v)
		if !ok {
			return fmt.Errorf("%v (%T) is not an integer", v, v)
		}
		if n < 0 || known.kind == argPositive && n == 0 {
			return fmt.Errorf("%d is out of range: it must be %s", n, map[argKind]string{argNonNegative: "≥ 0", argPositive: "> 0"}[known.kind])
		}
		if name == "x-max-priority" && n > math.MaxUint8 {
			return fmt.Errorf("%d is out of range: it must be at most 255", n)
		}
	}
	return nil
}

// integer returns v as an int64 if it is an integer of a type amqp091-go
// encodes.
func integer(v any) (int64, bool) {
	switch n := v.(type) {
	case int8:
		return int64(n), true
	case uint8:
		return int64(n), true
	case int16:
		return int64(n), true
	case uint16:
		return int64(n), true
	case int32:
		return int64(n), true
	case uint32:
		return int64(n), true
	case int64:
		return n, true
	case int:
		return int64(n), true
	}
	return 0, false
}

// inequivalent parses RabbitMQ's text for a queue declared with other
// arguments than the existing queue, as in "PRECONDITION_FAILED -
// inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received
// none but current is the value '60000' of type 'long'".
var inequivalent = regexp.MustCompile(`(inequivalent|invalid) arg '([^']*)' for queue '(?:[^']*)' in vhost '(?:[^']*)': (.*)$`)

// queueDeclareError explains the broker's refusal to declare queue: for
// PRECONDITION_FAILED, an error wrapping ErrQueueMismatch (and the
// broker's error) that names the argument and the Config field to set, as
// far as the broker's text tells; any other error as it is.
func queueDeclareError(queue string, err error) error {
	var aerr *amqp.Error
	if !errors.As(err, &aerr) || aerr.Code != amqp.PreconditionFailed {
		return fmt.Errorf("declaring queue %q: %w", queue, err)
	}
	m := inequivalent.FindStringSubmatch(aerr.Reason)
	if m == nil {
		return fmt.Errorf("%w %q: check Config.QueueArguments and Config.QueueType (%w)", ErrQueueMismatch, queue, aerr)
	}
	kind, arg, detail := m[1], m[2], m[3]
	var field string
	switch arg {
	case "x-queue-type":
		field = "set Config.QueueType to the queue's type"
	case "durable", "exclusive", "auto_delete":
		field = "gocap declares group queues durable, not exclusive and not auto-deleted: delete the queue, or use another Config.QueuePrefix"
	default:
		if kind == "invalid" {
			field = fmt.Sprintf("correct Config.QueueArguments[%q]", arg)
		} else {
			field = fmt.Sprintf("set Config.QueueArguments[%q] to the queue's value, or delete the queue", arg)
		}
	}
	if kind == "invalid" {
		return fmt.Errorf("%w %q: invalid argument %q: %s; %s (%w)", ErrQueueMismatch, queue, arg, detail, field, aerr)
	}
	// detail: "received <what the transport declared> but current is <the queue's>".
	if declared, current, ok := strings.Cut(strings.TrimPrefix(detail, "received "), " but current is "); ok {
		return fmt.Errorf("%w %q: the queue exists with %s = %s, the transport declares %s; %s (%w)", ErrQueueMismatch, queue, arg, current, declared, field, aerr)
	}
	return fmt.Errorf("%w %q: argument %q differs from the existing queue's: %s; %s (%w)", ErrQueueMismatch, queue, arg, detail, field, aerr)
}
