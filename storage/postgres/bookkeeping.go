package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/sqlstore"
)

// The bookkeeping statements (Claim, Succeed, Fail, FailBatch, Release) without
// waiting for the WAL flush: see "Durability of the bookkeeping" in the
// package doc.

// setAsyncCommit sets synchronous_commit off for the current transaction
// only: pipelined before a statement in one batch (one Sync), it shares
// that statement's implicit transaction.
const setAsyncCommit = `SELECT set_config('synchronous_commit', 'off', true)`

// bookkeeper runs the bookkeeping statements, each in a transaction of its
// own: with setAsyncCommit before it in one round trip when async.
type bookkeeper struct {
	pool  *pgxpool.Pool
	async bool
}

// Exec runs sql, which returns no rows.
func (b bookkeeper) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if !b.async {
		return b.pool.Exec(ctx, sql, args...)
	}
	var batch pgx.Batch
	batch.Queue(setAsyncCommit)
	batch.Queue(sql, args...)
	br := b.pool.SendBatch(ctx, &batch)
	_, err := br.Exec()
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = br.Exec()
	}
	return tag, errors.Join(err, br.Close())
}

// Query runs sql, which returns rows; closing them ends the round trip.
func (b bookkeeper) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if !b.async {
		return b.pool.Query(ctx, sql, args...)
	}
	var batch pgx.Batch
	batch.Queue(setAsyncCommit)
	batch.Queue(sql, args...)
	br := b.pool.SendBatch(ctx, &batch)
	if _, err := br.Exec(); err != nil {
		return nil, errors.Join(err, br.Close())
	}
	rows, err := br.Query()
	if err != nil {
		return nil, errors.Join(err, br.Close())
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// QueryRow runs sql, which returns at most one row.
func (b bookkeeper) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if !b.async {
		return b.pool.QueryRow(ctx, sql, args...)
	}
	rows, err := b.Query(ctx, sql, args...)
	return oneRow{rows: rows, err: err}
}

// batchRows are the rows of a batch's last statement: once they are read
// or closed, the batch is closed too, and its error (the commit's, say)
// is the rows' error.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
}

// Next advances to the next row; after the last it closes the batch.
func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

// Close closes the rows and the batch.
func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = errors.Join(r.Rows.Err(), r.br.Close())
}

// Err returns the error of the rows or, once closed, of the batch.
func (r *batchRows) Err() error {
	if r.closed {
		return r.err
	}
	return r.Rows.Err()
}

// oneRow is the pgx.Row of QueryRow.
type oneRow struct {
	rows pgx.Rows
	err  error
}

// Scan reads the first row into dest, as pgx.Row does: pgx.ErrNoRows if
// there is none.
func (r oneRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}

// query is Query as a sqlstore.Query.
func (b bookkeeper) query(ctx context.Context, sql string, args ...any) (sqlstore.Rows, func(), error) {
	rows, err := b.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, err
	}
	return rows, rows.Close, nil
}
