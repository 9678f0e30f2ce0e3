package storage

import "context"

// Ordering keys (see "Ordering keys" in the package doc).

// MaxOrderingKeyBytes bounds Message.OrderingKey, so that it fits in an
// index of every backend.
const MaxOrderingKeyBytes = 200

// BlockedKey is an ordering key whose sequence waits behind a Failed row
// (see [KeyInspector]).
type BlockedKey struct {
	// Group is the consumer group of received rows; empty for published.
	Group string
	// Version is the version of the key's rows (Message.Version): a key's
	// sequence is that of one version (issue #17).
	Version string
	// OrderingKey is the key.
	OrderingKey string
	// Head is the Failed row with the smallest id of the key: requeueing
	// it (once it succeeds) or deleting it releases the key.
	Head *Message
	// Waiting counts the key's Scheduled and Delayed rows after Head.
	Waiting int64
}

// KeyInspector is implemented by a Store that can list the ordering keys
// whose head row is Failed; the dashboard shows them. The conformance
// suite checks it when a Store has it.
type KeyInspector interface {
	// BlockedKeys returns up to limit keys of kind (limit < 1: 50) whose
	// smallest-id row that is not Succeeded is Failed, with the number of
	// Scheduled and Delayed rows of the key after it; by the head row's
	// id, oldest first. A key is one of a group and a version: the keys
	// of every version are listed.
	BlockedKeys(ctx context.Context, kind Kind, limit int) ([]BlockedKey, error)
}
