package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gocap/gocap/storage"
)

// Query runs a statement that returns rows, and returns them with the
// function that closes them.
type Query func(ctx context.Context, query string, args ...any) (rows Rows, closeRows func(), err error)

// QueryDB is the Query of a database/sql storage.
func QueryDB(db *sql.DB) Query {
	return func(ctx context.Context, query string, args ...any) (Rows, func(), error) {
		rows, err := db.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, nil, err
		}
		return rows, func() { rows.Close() }, nil
	}
}

// Base is the part of a SQL storage that is the same in every driver:
// running the read-only queries of storage.Store and wrapping errors.
// Each driver fills one with what its database does differently, and
// passes it its statements.
type Base struct {
	// Name begins every error: "postgres", "mysql", "sqlite".
	Name string
	// Query runs a statement that returns rows.
	Query Query
	// Classify wraps the errors the database raises for the data itself
	// with storage.ErrPermanent.
	Classify func(error) error
	// TimeDest scans the database's time columns.
	TimeDest TimeDest
}

// Err returns err, classified, in context: "name: what: err", what made
// with fmt.Sprintf from format and args.
func (b *Base) Err(err error, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", b.Name, fmt.Sprintf(format, args...), b.Classify(err))
}

// Wrap returns err, which needs no classifying (an argument check, or an
// error already classified), prefixed with the driver's name.
func (b *Base) Wrap(err error) error {
	return fmt.Errorf("%s: %w", b.Name, err)
}

// Messages runs query, which selects the columns of ScanMessages from
// kind's table, and returns its rows; errors are in the context of
// format and args.
func (b *Base) Messages(ctx context.Context, kind storage.Kind, query string, args []any, format string, fargs ...any) ([]*storage.Message, error) {
	rows, closeRows, err := b.Query(ctx, query, args...)
	if err == nil {
		defer closeRows()
		var msgs []*storage.Message
		if msgs, err = ScanMessages(rows, kind, b.TimeDest); err == nil {
			return msgs, nil
		}
	}
	return nil, b.Err(err, format, fargs...)
}

// BlockedKeys runs storage.KeyInspector.BlockedKeys: query selects the
// columns of ScanMessages of each blocked key's head row and the count of
// the rows waiting behind it, and takes the limit as its one argument.
func (b *Base) BlockedKeys(ctx context.Context, kind storage.Kind, query string, limit int) ([]storage.BlockedKey, error) {
	if limit < 1 {
		limit = 50
	}
	rows, closeRows, err := b.Query(ctx, query, limit)
	if err != nil {
		return nil, b.Err(err, "listing blocked ordering keys of %s messages", kind)
	}
	defer closeRows()
	var out []storage.BlockedKey
	var waiting int64
	err = scanMessages(rows, kind, b.TimeDest, []any{&waiting}, func(m *storage.Message) {
		out = append(out, storage.BlockedKey{Group: m.Group, Version: m.Version, OrderingKey: m.OrderingKey, Head: m, Waiting: waiting})
	})
	if err != nil {
		return nil, b.Err(err, "listing blocked ordering keys of %s messages", kind)
	}
	return out, nil
}

// Get runs query, which selects the row of kind with id (its only
// argument), and returns it, or storage.ErrNotFound.
func (b *Base) Get(ctx context.Context, kind storage.Kind, query string, id int64) (*storage.Message, error) {
	msgs, err := b.Messages(ctx, kind, query, []any{id}, "reading %s message %d", kind, id)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("%s: %s message %d: %w", b.Name, kind, id, storage.ErrNotFound)
	}
	return msgs[0], nil
}

// List runs storage.Store.List: selectAll selects every column of
// f.Kind's table, and l builds the filter; force, when not empty, goes
// between the two (MySQL's index hint).
func (b *Base) List(ctx context.Context, l List, selectAll, force string, f storage.Filter) ([]*storage.Message, error) {
	clause, args, ok := l.Build(f)
	if !ok {
		return nil, nil // a published id that is not a number
	}
	return b.Messages(ctx, f.Kind, selectAll+force+clause, args, "listing %s messages", f.Kind)
}

// Counts runs query, which returns (status, count) rows of kind's table.
func (b *Base) Counts(ctx context.Context, kind storage.Kind, query string) (map[storage.Status]int64, error) {
	rows, closeRows, err := b.Query(ctx, query)
	if err == nil {
		defer closeRows()
		var counts map[storage.Status]int64
		if counts, err = ScanCounts(rows); err == nil {
			return counts, nil
		}
	}
	return nil, b.Err(err, "counting %s messages", kind)
}

// Histogram runs storage.Store.Histogram with query, which takes the
// bucket width in milliseconds and the least id (in this order) and
// returns the rows of ScanHistogram.
func (b *Base) Histogram(ctx context.Context, kind storage.Kind, query string, since time.Time, bucket time.Duration) ([]storage.HistogramBucket, error) {
	minID, bms, err := HistogramRange(since, bucket)
	if err != nil {
		return nil, b.Wrap(err)
	}
	rows, closeRows, err := b.Query(ctx, query, bms, minID)
	if err == nil {
		defer closeRows()
		var out []storage.HistogramBucket
		if out, err = ScanHistogram(rows, bms); err == nil {
			return out, nil
		}
	}
	return nil, b.Err(err, "%s histogram", kind)
}

// Instances runs query, which takes since in the database's form and
// returns the rows of ScanInstances.
func (b *Base) Instances(ctx context.Context, query string, since any) ([]storage.Instance, error) {
	rows, closeRows, err := b.Query(ctx, query, since)
	if err == nil {
		defer closeRows()
		var out []storage.Instance
		if out, err = ScanInstances(rows, b.TimeDest); err == nil {
			return out, nil
		}
	}
	return nil, b.Err(err, "listing processors")
}

// Affected returns the number of rows a database/sql statement changed,
// or its error in the context of format and args.
func (b *Base) Affected(res sql.Result, err error, format string, args ...any) (int64, error) {
	var n int64
	if err == nil {
		if n, err = res.RowsAffected(); err == nil {
			return n, nil
		}
	}
	return 0, b.Err(err, format, args...)
}

// Execer is what *sql.DB and *sql.Tx have in common: an insert runs on
// either, in the application's transaction or in autocommit.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Savepoint runs f under a savepoint of the transaction that exec runs
// statements on: rolled back to if f fails, so that a failed statement of
// f (a taken id, see storage.ErrIDTaken) undoes what f did without
// aborting the transaction, and released if f succeeds.
func Savepoint(ctx context.Context, exec func(ctx context.Context, query string) error, f func() error) error {
	if err := exec(ctx, "SAVEPOINT gocap_insert"); err != nil {
		return err
	}
	if err := f(); err != nil {
		if rerr := exec(ctx, "ROLLBACK TO SAVEPOINT gocap_insert"); rerr != nil {
			return errors.Join(err, fmt.Errorf("rolling back to the savepoint: %w", rerr))
		}
		return err
	}
	return exec(ctx, "RELEASE SAVEPOINT gocap_insert")
}

// TxSavepoint is Savepoint on tx, an application's *sql.Tx, with the
// errors of the savepoint's statements passed through classify (the
// driver's).
func TxSavepoint(ctx context.Context, tx *sql.Tx, classify func(error) error, f func() error) error {
	return Savepoint(ctx, func(ctx context.Context, query string) error {
		_, err := tx.ExecContext(ctx, query)
		return classify(err)
	}, f)
}

// InTx runs f in a transaction of db with options opts (nil: the
// defaults), committed if f returns nil and rolled back otherwise.
func InTx(ctx context.Context, db *sql.DB, opts *sql.TxOptions, f func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}
