package postgres

import (
	"context"
	"fmt"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

var _ storage.FailBatcher = (*Driver)(nil)

// FailBatch records failed attempts of leased rows in one statement, an
// UPDATE joined with the rows' arrays that returns the rows it recorded
// (see storage.FailBatcher).
func (d *Driver) FailBatch(ctx context.Context, kind storage.Kind, rows []storage.FailedAttempt) ([]storage.FailOutcome, error) {
	t, err := d.table(kind)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	ids, err := storage.FailBatchIDs(rows)
	if err != nil {
		return nil, fmt.Errorf("postgres: recording %d failures of %s messages: %w", len(rows), kind, err)
	}
	a := sqlstore.FailBatchColumns(rows, maxErrorBytes)
	res, err := d.book.Query(ctx, t.failBatch, a.IDs, a.Tokens, a.Errors, a.MaxAttempts, a.Permanent, a.ExpiresAt, a.Next, a.Attempts)
	if err != nil {
		return nil, fmt.Errorf("postgres: recording %d failures of %s messages: %w", len(rows), kind, classify(err))
	}
	defer res.Close()
	recorded := make(map[int64]storage.FailResult, len(rows))
	for res.Next() {
		var id int64
		var r storage.FailResult
		var status string
		if err := res.Scan(&id, &r.Retries, &status); err != nil {
			return nil, fmt.Errorf("postgres: reading the failures recorded of %d %s messages: %w", len(rows), kind, classify(err))
		}
		r.Status = storage.Status(status)
		recorded[id] = r
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("postgres: recording %d failures of %s messages: %w", len(rows), kind, classify(err))
	}
	return sqlstore.FailOutcomes(ids, recorded), nil
}
