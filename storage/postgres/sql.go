package postgres

import (
	"context"
	"database/sql"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

// SQLDriver is the PostgreSQL storage for applications whose transactions
// are database/sql's *sql.Tx — GORM, sqlx, ent, bun, or plain
// database/sql over pgx's stdlib driver (github.com/jackc/pgx/v5/stdlib).
// It implements storage.Driver[*sql.Tx], storage.Listener,
// storage.BoundedCounter and storage.ReceivedBatchInserter.
//
// It is a [Driver] in everything but InsertPublishedTx: the processor's
// work (claims, outcomes, the dashboard's queries, LISTEN) runs on the
// driver's pgxpool.Pool, with the same statements and schema, and
// InsertPublishedTx runs the same INSERT as [Driver.InsertPublishedTx],
// NOTIFY included, on the application's *sql.Tx, so the message row and
// its notification commit or roll back with the business data.
//
// The *sql.Tx must be a transaction on the same database, opened through
// pgx's stdlib driver: stdlib.OpenDBFromPool(pool) gives a *sql.DB on the
// driver's own pool (one pool for the application and gocap), and GORM's
// gorm.io/driver/postgres and sqlx.Open("pgx", dsn) use that driver too.
// (Another PostgreSQL driver, such as lib/pq, stores single publishes but
// cannot bind the arrays of a multi-message insert.) A *sql.DB from
// OpenDBFromPool keeps the connections it holds idle (2 by default, see
// sql.DB.SetMaxIdleConns) out of the pool: size the pool
// (pool_max_conns) for the application and the processor, which holds
// one connection for LISTEN.
type SQLDriver struct {
	// Driver is the same storage with pgx.Tx transactions; every method
	// but InsertPublishedTx is its own.
	*Driver
}

var (
	_ storage.Driver[*sql.Tx]       = (*SQLDriver)(nil)
	_ storage.Listener              = (*SQLDriver)(nil)
	_ storage.BoundedCounter        = (*SQLDriver)(nil)
	_ storage.ReceivedBatchInserter = (*SQLDriver)(nil)
)

// NewSQL returns a driver on pool whose InsertPublishedTx takes a
// *sql.Tx (see [SQLDriver]). The pool is the processor's: it claims,
// records outcomes and holds the LISTEN connection; the application's
// transactions come from any *sql.DB on the same database opened through
// pgx's stdlib driver, such as stdlib.OpenDBFromPool(pool). It panics, as
// [New] does, if opts.Schema is not a plain SQL identifier.
func NewSQL(pool *pgxpool.Pool, opts Options) *SQLDriver {
	return &SQLDriver{Driver: New(pool, opts)}
}

// InsertPublishedTx inserts msgs with the application's *sql.Tx, with the
// statement of [Driver.InsertPublishedTx]: one round trip that also
// notifies the processors (delivered on commit) when opts.Notify asks for
// it.
func (d *SQLDriver) InsertPublishedTx(ctx context.Context, tx *sql.Tx, msgs []*storage.Message, opts storage.InsertOptions) error {
	if err := sqlstore.CheckTx(tx); err != nil {
		return d.base.Wrap(err)
	}
	return d.insertPublished(ctx, sqlTx{tx}, msgs, opts)
}

// sqlTx runs the driver's statements on a *sql.Tx, as a querier.
type sqlTx struct{ tx *sql.Tx }

// exec runs sql on the transaction and returns how many rows it
// affected (for a SELECT through pgx's stdlib driver: returned).
func (s sqlTx) exec(ctx context.Context, sql string, args ...any) (int64, error) {
	res, err := s.tx.ExecContext(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// inTx reports that the statements run in the application's transaction.
func (sqlTx) inTx() bool { return true }
