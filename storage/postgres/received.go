package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

var _ storage.ReceivedBatchInserter = (*Driver)(nil)

// InsertReceived stores a received message claimed under a lease, or
// reports a duplicate (see storage.Store): one INSERT ... ON CONFLICT DO
// UPDATE ... WHERE status = 'Failed', which returns the row it inserted
// or reset and nothing for a duplicate it left alone (whose ID it
// therefore reports as zero).
func (d *Driver) InsertReceived(ctx context.Context, m *storage.Message, token int64, leaseUntil time.Time) (storage.ReceivedInsert, error) {
	r, err := d.base.ReceivedRow(m, token, storage.ValidText, storage.ValidText)
	if err != nil {
		return storage.ReceivedInsert{}, err
	}
	var id int64
	var leased bool
	args := []any{r.ID, r.MsgID, r.Group, r.Name, r.Headers, r.Body, r.Added, leaseUntil.UTC(), token, r.Policy, r.OrderingKey, r.Version}
	if r.OrderingKey == nil {
		err = d.pool.QueryRow(ctx, d.q.insertReceived, args...).Scan(&id, &leased)
	} else {
		// Under the lock of its key, in one implicit transaction (see
		// keyLock), so that the check of the head holds until it commits.
		var b pgx.Batch
		b.Queue(d.q.lockKey, r.Group, r.Version, *r.OrderingKey)
		b.Queue(d.q.insertReceived, args...).QueryRow(func(row pgx.Row) error { return row.Scan(&id, &leased) })
		err = d.pool.SendBatch(ctx, &b).Close()
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.ReceivedInsert{}, nil // a duplicate that is not Failed
	}
	if err != nil {
		return storage.ReceivedInsert{}, fmt.Errorf("postgres: storing received message %q for group %q: %w", r.MsgID, r.Group, classify(err))
	}
	return r.Result(id, true, leased), nil
}

// InsertReceivedBatch stores received messages claimed under one lease
// (see storage.ReceivedBatchInserter) in one statement, the batch form
// of InsertReceived: INSERT ... SELECT FROM unnest(...) ON CONFLICT DO
// UPDATE ... RETURNING, of the batch's distinct (msg_id, grp), sorted.
// The rows returned are those it inserted or reset, told apart by their
// ids; a duplicate left alone returns none, and is reported with ID zero.
func (d *Driver) InsertReceivedBatch(ctx context.Context, msgs []*storage.Message, token int64, leaseUntil time.Time) ([]storage.ReceivedInsert, error) {
	return d.base.InsertReceivedBatch(msgs, token, storage.ValidText, storage.ValidText, func(b *sqlstore.ReceivedBatch, res []storage.ReceivedInsert) error {
		n := len(b.Rows)
		ids, added := make([]int64, n), make([]time.Time, n)
		msgIDs, groups, names, headers, policies := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		bodies := make([][]byte, n)
		keys := make([]*string, n)
		versions := make([]string, n)
		lead := b.Heads()
		keyed := false
		for i, r := range b.Rows {
			ids[i], msgIDs[i], groups[i], names[i], headers[i], bodies[i], added[i], policies[i], keys[i] =
				r.ID, r.MsgID, r.Group, r.Name, r.Headers, r.Body, r.Added, r.Policy, r.OrderingKey
			versions[i] = r.Version
			keyed = keyed || r.OrderingKey != nil
		}
		// With keyed rows, under the locks of their keys, in one implicit
		// transaction (see keyLock).
		var batch pgx.Batch
		if keyed {
			batch.Queue(d.q.lockKeys, groups, versions, keys)
		}
		index := b.Index()
		batch.Queue(d.q.insertReceivedBatch, ids, msgIDs, groups, names, headers, bodies, added, leaseUntil.UTC(), token, policies,
			keys, versions, lead).Query(func(rows pgx.Rows) error {
			var id int64
			var key sqlstore.ReceivedKey
			var leased bool
			_, err := pgx.ForEachRow(rows, []any{&id, &key.MsgID, &key.Group, &leased}, func() error {
				i, ok := index[key]
				if !ok {
					return fmt.Errorf("returned a row (%q, %q) that is not of the batch", key.MsgID, key.Group)
				}
				res[i] = b.Rows[i].Result(id, true, leased)
				return nil
			})
			return err
		})
		return d.pool.SendBatch(ctx, &batch).Close()
	})
}
