package mysql

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

var _ storage.FailBatcher = (*Driver)(nil)

// failBatchRows is the most rows one statement of a FailBatch reads or
// updates: 7 placeholders each in the update, far below the 65,535 of a
// prepared statement.
const failBatchRows = 1000

// FailBatch records failed attempts of leased rows in one transaction of
// two statements per failBatchRows rows (see storage.FailBatcher): a
// locking read of the rows by primary key, which tells the rows still
// under their lease and their retry counts, then one UPDATE of those
// rows joined with a derived table of their failures (MariaDB has no
// UPDATE ... RETURNING). Whether a row becomes Failed is decided from
// the retry count read under the row's lock, by Fail's rule; the count is
// incremented in SQL.
func (d *Driver) FailBatch(ctx context.Context, kind storage.Kind, rows []storage.FailedAttempt) ([]storage.FailOutcome, error) {
	t, err := d.table(kind)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	if _, err := storage.FailBatchIDs(rows); err != nil {
		return nil, fmt.Errorf("mysql: recording %d failures of %s messages: %w", len(rows), kind, err)
	}
	out := make([]storage.FailOutcome, len(rows))
	err = sqlstore.InTx(ctx, d.db, nil, func(tx *sql.Tx) error {
		for start := 0; start < len(rows); start += failBatchRows {
			end := min(start+failBatchRows, len(rows))
			if err := d.failChunk(ctx, tx, t, rows[start:end], out[start:end]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mysql: recording %d failures of %s messages: %w", len(rows), kind, classify(err))
	}
	return out, nil
}

// failChunk records the failures of rows in tx and sets their outcomes.
func (d *Driver) failChunk(ctx context.Context, tx *sql.Tx, t *tableQueries, rows []storage.FailedAttempt, out []storage.FailOutcome) error {
	byID := make(map[int64]int, len(rows))
	ids := make([]any, len(rows))
	for i, r := range rows {
		byID[r.ID], ids[i] = i, r.ID
	}
	held := make([]bool, len(rows))
	retries := make([]int, len(rows))
	q, err := tx.QueryContext(ctx, t.failLockSQL(len(rows)), ids...)
	if err != nil {
		return err
	}
	defer q.Close()
	for q.Next() {
		var id int64
		var token sql.NullInt64
		var status string
		var n int
		if err := q.Scan(&id, &token, &status, &n); err != nil {
			return err
		}
		i := byID[id]
		held[i] = token.Valid && token.Int64 == rows[i].Token && status == string(storage.StatusScheduled)
		retries[i] = n
	}
	if err := q.Err(); err != nil {
		return err
	}
	q.Close()

	args := make([]any, 0, 7*len(rows))
	matched := 0
	for i, r := range rows {
		if !held[i] {
			out[i] = storage.FailOutcome{LeaseLost: true}
			continue
		}
		f := r.Failure
		final := f.Permanent || (f.MaxAttempts > 0 && retries[i]+1 >= f.MaxAttempts)
		out[i].Retries, out[i].Status = retries[i]+1, storage.StatusScheduled
		if final {
			out[i].Status = storage.StatusFailed
		}
		args = append(args, r.ID, r.Token, storage.TruncateText(f.Error, maxErrorBytes), final,
			dbTime(f.ExpiresAt), dbTime(f.NextAttemptAt), sqlstore.AttemptJSON(sqlstore.FailedAttempt(f)))
		matched++
	}
	if matched == 0 {
		return nil
	}
	res, err := tx.ExecContext(ctx, t.failBatchSQL(matched), args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n != int64(matched) {
		// Cannot happen under the rows' locks; nothing is committed if it does.
		return fmt.Errorf("%d of the %d rows read under their lease were updated", n, matched)
	}
	return nil
}
