package storage

import (
	"context"
	"time"
)

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

// NextClaimer is implemented by a Store that hands a key's next row on in
// the transaction that ends its predecessor: the Succeed of a row of an
// ordering key makes the next row of its sequence due, and a Store that
// claims that row in the same transaction saves a claim, and a turn of
// the database's writer, for every message of a key. The processor uses
// it for batches of successes that hold rows of ordering keys, and starts
// the rows it returns at once. The conformance suite checks it when a
// Store has it.
type NextClaimer interface {
	// SucceedClaimNext marks done Succeeded as Succeed does, with
	// expiresAt, and in the same transaction claims, under req as Claim
	// does (due at req.Now, of req.Version and, for received rows, of
	// one of req.Groups when they are given; leased until
	// req.LeaseUntil under req.Token; a Failed row holding its key when
	// req.FailedHoldsKey), the rows that are then the heads of the
	// sequences of the rows of done that have an ordering key: each such
	// sequence's first row that holds the key, if it is due and no row
	// of the sequence is in flight. Nothing else is claimed: not rows
	// without a key, nor the heads of other sequences; at most
	// req.Limit heads, which must be positive, the earliest due first,
	// each with its run when req.Run asks for runs (see ClaimRequest.Run).
	// It returns the number of rows marked Succeeded and the rows claimed.
	// On an error nothing is marked and nothing is claimed.
	SucceedClaimNext(ctx context.Context, kind Kind, done []Completed, expiresAt time.Time, req ClaimRequest) (int64, []*Message, error)
}
