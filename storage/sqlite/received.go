package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"slices"
	"time"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

var _ storage.ReceivedBatchInserter = (*Driver)(nil)

// queryRower is what *sql.DB, *sql.Tx and *sql.Stmt's QueryRowContext
// take: the statement, then its arguments.
type queryRower func(ctx context.Context, args ...any) *sql.Row

// insertReceived stores r with insert, the insertReceived statement (on
// the database, or prepared in a transaction), and returns its result;
// the caller puts an error in context. A keyed row is stored leased only
// if head (it may be the head of its key) and no row of its key is
// pending.
func insertReceived(ctx context.Context, insert queryRower, r *sqlstore.ReceivedRow, head bool, token int64, leaseUntil time.Time) (storage.ReceivedInsert, error) {
	var id int64
	var leased bool // a keyed row only as the head of its key (#18)
	err := insert(ctx, r.ID, r.MsgID, r.Group, r.Name, r.Headers, r.Body, us(r.Added), us(r.Added), token, us(leaseUntil), r.Policy, r.OrderingKey, r.Version, head).Scan(&id, &leased)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.ReceivedInsert{}, nil // a duplicate that is not Failed
	}
	if err != nil {
		return storage.ReceivedInsert{}, err
	}
	// The row returned is the message's, or a Failed one that was reset.
	return r.Result(id, true, leased), nil
}

// InsertReceived stores a received message claimed under a lease, or
// reports a duplicate (see storage.Store), with one INSERT ... ON
// CONFLICT DO UPDATE ... RETURNING. A duplicate left alone returns no
// row, and is reported with ID zero.
func (d *Driver) InsertReceived(ctx context.Context, m *storage.Message, token int64, leaseUntil time.Time) (storage.ReceivedInsert, error) {
	r, err := d.base.ReceivedRow(m, token, storage.ValidText, storage.ValidText)
	if err != nil {
		return storage.ReceivedInsert{}, err
	}
	insert, err := d.st.get(ctx, d.q.insertReceived)
	if err != nil {
		return storage.ReceivedInsert{}, d.base.Err(err, "storing received message %q for group %q", r.MsgID, r.Group)
	}
	res, err := insertReceived(ctx, insert.QueryRowContext, &r, true, token, leaseUntil)
	if err != nil {
		return res, d.base.Err(err, "storing received message %q for group %q", r.MsgID, r.Group)
	}
	return res, nil
}

// InsertReceivedBatch stores received messages claimed under one lease
// (see storage.ReceivedBatchInserter) in one transaction that runs
// InsertReceived's statement, prepared once, for each distinct (msg_id,
// grp) of the batch. SQLite has one writer, so the transaction is the
// whole cost of a batch: its commit is paid once instead of per message.
//
// The rows are inserted in id order, not in the batch's order by msg_id
// and grp (a lock order, which SQLite's one writer does not need): the
// insert of a keyed row sees the rows of its key inserted before it, so
// the head of a key, its smallest id, must go first. The key's other
// rows are never leased (ReceivedBatch.Heads), even where the head was
// not stored (a duplicate).
func (d *Driver) InsertReceivedBatch(ctx context.Context, msgs []*storage.Message, token int64, leaseUntil time.Time) ([]storage.ReceivedInsert, error) {
	return d.base.InsertReceivedBatch(msgs, token, storage.ValidText, storage.ValidText, func(b *sqlstore.ReceivedBatch, res []storage.ReceivedInsert) error {
		insert, err := d.st.get(ctx, d.q.insertReceived)
		if err != nil {
			return err
		}
		heads := b.Heads()
		order := make([]int, len(b.Rows))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(x, y int) int { return cmp.Compare(b.Rows[x].ID, b.Rows[y].ID) })
		return sqlstore.InTx(ctx, d.db, nil, func(tx *sql.Tx) error {
			stmt := tx.StmtContext(ctx, insert)
			for _, i := range order {
				if res[i], err = insertReceived(ctx, stmt.QueryRowContext, &b.Rows[i], heads[i], token, leaseUntil); err != nil {
					return err
				}
			}
			return nil
		})
	})
}
