package storage_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/gocap/gocap/storage"
)

// MemStore reads inside its transactions too, for test helpers such as
// package outboxtest.
var _ storage.TxReader[*Tx] = (*MemStore)(nil)

// ListPublishedTx returns a page of the published rows tx sees — the
// committed ones and those tx inserted and has not committed — matching
// f, newest first, as List does.
func (s *MemStore) ListPublishedTx(ctx context.Context, tx *Tx, f storage.Filter) ([]*storage.Message, error) {
	if tx == nil {
		return nil, errors.New("memstore: list published: transaction is nil")
	}
	if tx.store != s {
		return nil, errors.New("memstore: list published: transaction of another store")
	}
	switch f.Kind {
	case 0:
		f.Kind = storage.Published
	case storage.Published:
	default:
		return nil, fmt.Errorf("memstore: list published: the filter is of kind %s", f.Kind)
	}
	return s.list(ctx, f, tx)
}
