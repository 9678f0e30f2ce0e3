package postgres

import (
	"database/sql"

	"context"

	"github.com/jackc/pgx/v5"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

var _ storage.TxReader[pgx.Tx] = (*Driver)(nil)

// ListPublishedTx returns a page of the published rows that tx sees
// matching f, newest first, its own uncommitted rows included (see
// storage.TxReader), with List's statement.
func (d *Driver) ListPublishedTx(ctx context.Context, tx pgx.Tx, f storage.Filter) ([]*storage.Message, error) {
	if err := sqlstore.CheckTx(tx); err != nil {
		return nil, d.base.Wrap(err)
	}
	query := func(ctx context.Context, sql string, args ...any) (sqlstore.Rows, func(), error) {
		rows, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return nil, nil, err
		}
		return rows, rows.Close, nil
	}
	return d.base.ListPublishedTx(ctx, query, list, d.q.Published.selectAll, f)
}

var _ storage.TxReader[*sql.Tx] = (*SQLDriver)(nil)

// ListPublishedTx returns a page of the published rows that the
// application's *sql.Tx sees matching f, newest first, its own
// uncommitted rows included (see storage.TxReader), with List's statement.
func (d *SQLDriver) ListPublishedTx(ctx context.Context, tx *sql.Tx, f storage.Filter) ([]*storage.Message, error) {
	if err := sqlstore.CheckTx(tx); err != nil {
		return nil, d.base.Wrap(err)
	}
	return d.base.ListPublishedTx(ctx, sqlstore.QueryTx(tx), list, d.q.Published.selectAll, f)
}
