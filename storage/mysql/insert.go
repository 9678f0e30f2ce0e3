package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

// InsertPublishedTx inserts msgs with the application's transaction.
// MySQL has no notifications: opts.Notify is ignored.
func (d *Driver) InsertPublishedTx(ctx context.Context, tx *sql.Tx, msgs []*storage.Message, _ storage.InsertOptions) error {
	if err := sqlstore.CheckTx(tx); err != nil {
		return d.base.Wrap(err)
	}
	return d.insertPublished(ctx, tx, msgs)
}

// InsertPublished inserts msgs in a transaction of its own: one statement
// in autocommit when they fit in one, else a transaction around several.
// opts.Notify is ignored.
func (d *Driver) InsertPublished(ctx context.Context, msgs []*storage.Message, _ storage.InsertOptions) error {
	if len(insertBatches(msgs)) <= 1 {
		return d.insertPublished(ctx, d.db, msgs)
	}
	return sqlstore.InTx(ctx, d.db, nil, func(tx *sql.Tx) error { return d.insertPublished(ctx, tx, msgs) })
}

// Limits of one multi-row INSERT: rows (8 placeholders each; a prepared
// statement takes at most 65,535), and body bytes after which a statement
// is cut so that a batch of large messages does not outgrow
// max_allowed_packet (a single message larger than it cannot be stored).
const (
	insertBatchRows  = 1000
	insertBatchBytes = 8 << 20
)

// insertBatches cuts msgs into the rows of successive INSERT statements.
func insertBatches(msgs []*storage.Message) [][]*storage.Message {
	var out [][]*storage.Message
	start, size := 0, 0
	for i, m := range msgs {
		if i > start && (i-start >= insertBatchRows || size+len(m.Body) > insertBatchBytes) {
			out = append(out, msgs[start:i])
			start, size = i, 0
		}
		size += len(m.Body)
	}
	if start < len(msgs) {
		out = append(out, msgs[start:])
	}
	return out
}

func (d *Driver) insertPublished(ctx context.Context, e sqlstore.Execer, msgs []*storage.Message) error {
	for _, batch := range insertBatches(msgs) {
		var sb strings.Builder
		sb.WriteString(d.q.insertPublished)
		args := make([]any, 0, 8*len(batch))
		for i, m := range batch {
			h, err := sqlstore.HeadersJSON(m)
			if err != nil {
				return d.base.Wrap(err)
			}
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(insertValues)
			args = append(args, m.ID, fitName(m.Name), h, sqlstore.NonNil(m.Body), sqlstore.InsertStatus(m),
				dbTime(m.Added), dbTime(m.NextAttemptAt), storage.ValidText(m.Policy))
		}
		if _, err := e.ExecContext(ctx, sb.String(), args...); err != nil {
			return fmt.Errorf("mysql: inserting %d published messages: %w", len(batch), classify(err))
		}
	}
	return nil
}

// InsertReceived stores a received message claimed under a lease, or
// reports a duplicate (see storage.Store). MySQL has no UPDATE ...
// RETURNING: the row's lease token, read back, tells whether this call
// holds its lease.
func (d *Driver) InsertReceived(ctx context.Context, m *storage.Message, token int64, leaseUntil time.Time) (storage.ReceivedInsert, error) {
	if err := sqlstore.CheckReceivedToken(token); err != nil {
		return storage.ReceivedInsert{}, d.base.Wrap(err)
	}
	h, err := sqlstore.HeadersJSON(m)
	if err != nil {
		return storage.ReceivedInsert{}, d.base.Wrap(err)
	}
	msgID, group := storage.StorableMsgID(m.MsgID), fitGroup(m.Group)
	_, err = d.db.ExecContext(ctx, d.q.insertReceived,
		m.ID, msgID, group, fitName(m.Name), h, sqlstore.NonNil(m.Body), dbTime(m.Added), dbTime(m.Added), token, dbTime(leaseUntil),
		storage.ValidText(m.Policy))
	if err != nil {
		return storage.ReceivedInsert{}, fmt.Errorf("mysql: storing received message %q for group %q: %w", msgID, group, classify(err))
	}
	var id int64
	var got sql.NullInt64
	if err := d.db.QueryRowContext(ctx, d.q.receivedToken, msgID, group).Scan(&id, &got); err != nil {
		return storage.ReceivedInsert{}, fmt.Errorf("mysql: reading back received message %q for group %q: %w", msgID, group, classify(err))
	}
	if !got.Valid || got.Int64 != token {
		return storage.ReceivedInsert{ID: id}, nil // a duplicate that was not Failed
	}
	// The row is the message's, or a Failed one that was reset.
	return storage.ReceivedInsert{ID: id, Claimed: true, Reset: id != m.ID}, nil
}
