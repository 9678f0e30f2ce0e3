package storage

import "context"

// TxReader is implemented by a Driver that can read published rows inside
// the application's transaction, of type TTx: the rows that transaction
// inserted and has not committed yet, as well as the committed ones it
// sees. Test helpers (package outboxtest) use it to assert what a
// transaction published before, or instead of, committing it. The drivers
// of this module implement it.
type TxReader[TTx any] interface {
	// ListPublishedTx returns one page of the published rows that tx sees
	// matching f, newest first, as List does. f.Kind must be Published
	// (or zero, which means Published). A nil tx is an error.
	ListPublishedTx(ctx context.Context, tx TTx, f Filter) ([]*Message, error)
}
