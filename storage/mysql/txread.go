package mysql

import (
	"context"
	"database/sql"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

var _ storage.TxReader[*sql.Tx] = (*Driver)(nil)

// ListPublishedTx returns a page of the published rows that tx sees
// matching f, newest first, its own uncommitted rows included (see
// storage.TxReader), with List's statement.
func (d *Driver) ListPublishedTx(ctx context.Context, tx *sql.Tx, f storage.Filter) ([]*storage.Message, error) {
	if err := sqlstore.CheckTx(tx); err != nil {
		return nil, d.base.Wrap(err)
	}
	return d.base.ListPublishedTx(ctx, sqlstore.QueryTx(tx), list, d.q.Published.selectAll, f)
}
