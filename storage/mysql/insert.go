package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

// InsertPublishedTx inserts msgs with the application's transaction.
// MySQL has no notifications: opts.Notify is ignored.
func (d *Driver) InsertPublishedTx(ctx context.Context, tx *sql.Tx, msgs []*storage.Message, _ storage.InsertOptions) error {
	if err := sqlstore.CheckTx(tx); err != nil {
		return d.base.Wrap(err)
	}
	if err := d.readVersion(ctx, tx); err != nil {
		return err
	}
	batches := insertBatches(msgs)
	if len(batches) > 1 {
		// A statement that fails (a taken id, see storage.ErrIDTaken) is
		// undone by itself, but not the statements before it: those are
		// undone with the savepoint, and tx stays usable.
		return sqlstore.TxSavepoint(ctx, tx, classify, func() error { return d.insertPublished(ctx, tx, batches) })
	}
	return d.insertPublished(ctx, tx, batches)
}

// InsertPublished inserts msgs in a transaction of its own: one statement
// in autocommit when they fit in one, else a transaction around several.
// opts.Notify is ignored.
func (d *Driver) InsertPublished(ctx context.Context, msgs []*storage.Message, _ storage.InsertOptions) error {
	if err := d.readVersion(ctx, d.db); err != nil {
		return err
	}
	batches := insertBatches(msgs)
	if len(batches) <= 1 {
		return d.insertPublished(ctx, d.db, batches)
	}
	return sqlstore.InTx(ctx, d.db, nil, func(tx *sql.Tx) error { return d.insertPublished(ctx, tx, batches) })
}

// Limits of one multi-row INSERT: rows (10 placeholders each; a prepared
// statement takes at most 65,535), and body bytes after which a statement
// is cut so that a batch of large messages does not outgrow
// max_allowed_packet (a single message larger than it cannot be stored).
const (
	insertBatchRows  = 1000
	insertBatchBytes = 8 << 20
)

// insertBatches cuts msgs into the rows of successive INSERT statements.
func insertBatches(msgs []*storage.Message) [][]*storage.Message {
	return batches(msgs, func(m *storage.Message) int { return len(m.Body) })
}

// batches cuts rows, whose bodies are of the sizes that bodyLen tells,
// into those of successive INSERT statements.
func batches[T any](rows []T, bodyLen func(T) int) [][]T {
	var out [][]T
	start, size := 0, 0
	for i, r := range rows {
		if i > start && (i-start >= insertBatchRows || size+bodyLen(r) > insertBatchBytes) {
			out = append(out, rows[start:i])
			start, size = i, 0
		}
		size += bodyLen(r)
	}
	if start < len(rows) {
		out = append(out, rows[start:])
	}
	return out
}

// insertPublished runs one INSERT per batch of insertBatches on e.
func (d *Driver) insertPublished(ctx context.Context, e sqlstore.Execer, batches [][]*storage.Message) error {
	for _, batch := range batches {
		var sb strings.Builder
		sb.WriteString(d.q.insertPublished)
		args := make([]any, 0, 10*len(batch))
		for i, m := range batch {
			h, err := sqlstore.HeadersJSON(m)
			if err != nil {
				return d.base.Wrap(err)
			}
			version, err := sqlstore.MessageVersion(m)
			if err != nil {
				return d.base.Wrap(err)
			}
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(insertValues)
			args = append(args, m.ID, fitName(m.Name), h, sqlstore.NonNil(m.Body), sqlstore.InsertStatus(m),
				dbTime(m.Added), dbTime(m.NextAttemptAt), storage.ValidText(m.Policy), sqlstore.OrderingKey(m), version)
		}
		if _, err := e.ExecContext(ctx, sb.String(), args...); err != nil {
			return fmt.Errorf("mysql: inserting %d published messages: %w", len(batch), classify(err))
		}
	}
	return nil
}
