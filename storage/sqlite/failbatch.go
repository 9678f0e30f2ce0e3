package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

var _ storage.FailBatcher = (*Driver)(nil)

// FailBatch records failed attempts of leased rows in one transaction:
// Fail's statement, prepared once, run for each row (see
// storage.FailBatcher). SQLite runs in the process: what a batch saves is
// the commit of each row, not round trips.
func (d *Driver) FailBatch(ctx context.Context, kind storage.Kind, rows []storage.FailedAttempt) ([]storage.FailOutcome, error) {
	t, err := d.table(kind)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	if _, err := storage.FailBatchIDs(rows); err != nil {
		return nil, fmt.Errorf("sqlite: recording %d failures of %s messages: %w", len(rows), kind, err)
	}
	out := make([]storage.FailOutcome, len(rows))
	fail, err := d.st.get(ctx, t.fail)
	if err == nil {
		err = sqlstore.InTx(ctx, d.db, nil, func(tx *sql.Tx) error {
			stmt := tx.StmtContext(ctx, fail)
			for i, r := range rows {
				var status string
				err := stmt.QueryRowContext(ctx, failArgs(r.Lease, r.Failure)...).Scan(&out[i].Retries, &status)
				switch {
				case errors.Is(err, sql.ErrNoRows):
					out[i] = storage.FailOutcome{LeaseLost: true}
				case err != nil:
					return err
				default:
					out[i].Status = storage.Status(status)
				}
			}
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: recording %d failures of %s messages: %w", len(rows), kind, classify(err))
	}
	return out, nil
}
