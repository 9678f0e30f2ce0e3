package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/gocap/gocap/storage"
)

// QueryTx is the Query of a database/sql transaction.
func QueryTx(tx *sql.Tx) Query {
	return func(ctx context.Context, query string, args ...any) (Rows, func(), error) {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, nil, err
		}
		return rows, func() { rows.Close() }, nil
	}
}

// ListPublishedTx runs storage.TxReader.ListPublishedTx as List runs
// storage.Store.List — the same statement, selectPublished (every column
// of the published table) and l's filter — with query, which runs it in
// the application's transaction. f.Kind must be Published, or zero for
// Published. The caller checks that the transaction is not nil.
func (b *Base) ListPublishedTx(ctx context.Context, query Query, l List, selectPublished string, f storage.Filter) ([]*storage.Message, error) {
	switch f.Kind {
	case 0:
		f.Kind = storage.Published
	case storage.Published:
	default:
		return nil, b.Wrap(fmt.Errorf("listing published messages in a transaction: the filter is of kind %s, not published", f.Kind))
	}
	inTx := *b
	inTx.Query = query
	return inTx.List(ctx, l, selectPublished, "", f)
}
