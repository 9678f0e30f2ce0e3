package outbox

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/gocap/gocap/storage"
)

// WithOrderingKey puts the message in the ordered sequence of key: the
// messages published with one key are sent one at a time, in publish
// order, and each consumer group of a receiving gocap handles them one at
// a time in that order, in every process, across restarts and with
// several instances. Messages without a key keep full concurrency, and a
// slow key does not hold up the others. A message of a key that is
// retrying holds the key until it succeeds; one that becomes Failed holds
// it too under Options.OrderingFailure's default (BlockKey). A delayed
// message of a key holds the key until it is sent.
//
// Publish order is the order of the message ids, which grow with each
// publish of one process: publish a key's messages from one process, one
// after the other (one transaction after another). Messages of one key
// published by concurrent transactions have no order between them.
//
// Where a key has messages waiting, a storage that supports it (SQLite,
// MySQL/MariaDB) hands a key's next messages, up to 16, to one worker
// together: it sends or handles them one after the other and records
// them with one write; after one fails, it gives the rest back
// untouched, to go after it.
// Should the process die in the middle, the run's messages that were
// already sent or handled are sent or handled again (at least once, as
// always), in order.
//
// The key travels in the gocap-ordering-key header; the Kafka transport
// also makes it the record key, so that a key's messages share a
// partition. On the receive side, order also needs the broker to hand a
// key's messages over in order (see the transports' documentation:
// Kafka by partition; RabbitMQ with a single active consumer).
//
// The key must be non-empty valid UTF-8 without NUL, of at most
// storage.MaxOrderingKeyBytes (200) bytes.
func WithOrderingKey(key string) PublishOption {
	return func(c *publishConfig) {
		switch {
		case key == "":
			c.err = fmt.Errorf("WithOrderingKey: the key is empty")
		case len(key) > storage.MaxOrderingKeyBytes:
			c.err = fmt.Errorf("WithOrderingKey: the key is %d bytes long, more than %d", len(key), storage.MaxOrderingKeyBytes)
		case !utf8.ValidString(key):
			c.err = fmt.Errorf("WithOrderingKey(%q): the key is not valid UTF-8", key)
		case strings.ContainsRune(key, 0):
			c.err = fmt.Errorf("WithOrderingKey(%q): the key holds a NUL character", key)
		default:
			c.key = key
		}
	}
}

// OrderingFailure is the policy for the messages of an ordering key after
// one of them becomes Failed (see Options.OrderingFailure).
type OrderingFailure int

const (
	// BlockKey, the default, keeps the key's later messages waiting while
	// its Failed message is Failed: order is never broken, and the
	// dashboard shows the blocked key with the number of messages waiting;
	// requeueing the Failed message (once the cause is fixed) or deleting
	// it lets the key go on. The cost: one bad message stops its key until
	// a person acts. It is the default because a key exists to say that
	// the order matters (an update must not overtake the create it
	// follows).
	BlockKey OrderingFailure = iota
	// SkipKey lets the key's next message go once a message becomes
	// Failed: the key never stalls, but a message that fails for good is
	// overtaken by the ones after it (and, requeued later, arrives after
	// them).
	SkipKey
)

// String returns "block" or "skip".
func (f OrderingFailure) String() string {
	switch f {
	case BlockKey:
		return "block"
	case SkipKey:
		return "skip"
	default:
		return fmt.Sprintf("OrderingFailure(%d)", int(f))
	}
}

func (f OrderingFailure) check() error {
	if f != BlockKey && f != SkipKey {
		return fmt.Errorf("outbox: Options.OrderingFailure %d is neither BlockKey nor SkipKey", int(f))
	}
	return nil
}
