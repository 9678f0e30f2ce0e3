package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

var _ storage.ReceivedBatchInserter = (*Driver)(nil)

// receivedArgs appends the arguments of r's VALUES row (receivedValues)
// to args; a keyed row is leased only if head (the head of its key, #18).
func receivedArgs(args []any, r *sqlstore.ReceivedRow, token int64, leaseUntil time.Time, head bool) []any {
	var until any // NULL for a keyed row stored for a claim
	if r.OrderingKey == nil || head {
		until = dbTime(leaseUntil)
	}
	return append(args, r.ID, r.MsgID, r.Group, r.Name, r.Headers, r.Body, dbTime(r.Added), dbTime(r.Added), token,
		until, r.Policy, r.OrderingKey, r.Version)
}

// InsertReceived stores a received message claimed under a lease, or
// reports a duplicate (see storage.Store). MySQL has no UPDATE ...
// RETURNING: the row's lease token, read back, tells whether this call
// holds its lease (MariaDB's INSERT returns it). A keyed message is stored as a batch of one, under
// the lock of its key (see heads).
func (d *Driver) InsertReceived(ctx context.Context, m *storage.Message, token int64, leaseUntil time.Time) (storage.ReceivedInsert, error) {
	if m != nil && m.OrderingKey != "" {
		res, err := d.InsertReceivedBatch(ctx, []*storage.Message{m}, token, leaseUntil)
		if err != nil {
			return storage.ReceivedInsert{}, err
		}
		return res[0], nil
	}
	r, err := d.base.ReceivedRow(m, token, fitGroup, fitName)
	if err != nil {
		return storage.ReceivedInsert{}, err
	}
	returns, err := d.insertReturns(ctx)
	if err != nil {
		return storage.ReceivedInsert{}, err
	}
	if returns {
		// MariaDB: the INSERT returns the row as it left it.
		var id int64
		var key sqlstore.ReceivedKey
		var got sql.NullInt64
		var leased bool
		err := d.db.QueryRowContext(ctx, d.q.insertReceived+receivedReturning, receivedArgs(nil, &r, token, leaseUntil, false)...).
			Scan(&id, &key.MsgID, &key.Group, &got, &leased)
		if err != nil {
			return storage.ReceivedInsert{}, fmt.Errorf("mysql: storing received message %q for group %q: %w", r.MsgID, r.Group, classify(err))
		}
		if padKey(key) != padKey(r.Key()) {
			return storage.ReceivedInsert{}, fmt.Errorf("mysql: %w", errIDOfAnother(&r))
		}
		return r.Result(id, got.Valid && got.Int64 == token, false), nil
	}
	if _, err = d.db.ExecContext(ctx, d.q.insertReceived, receivedArgs(nil, &r, token, leaseUntil, false)...); err != nil {
		return storage.ReceivedInsert{}, fmt.Errorf("mysql: storing received message %q for group %q: %w", r.MsgID, r.Group, classify(err))
	}
	var id int64
	var got sql.NullInt64
	err = d.db.QueryRowContext(ctx, d.q.receivedToken, r.MsgID, r.Group).Scan(&id, &got)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.ReceivedInsert{}, fmt.Errorf("mysql: %w", errIDOfAnother(&r))
	}
	if err != nil {
		return storage.ReceivedInsert{}, fmt.Errorf("mysql: reading back received message %q for group %q: %w", r.MsgID, r.Group, classify(err))
	}
	// The row is the message's or a Failed one that was reset when it
	// holds the token, which is the caller's alone; else a duplicate that
	// was not Failed.
	return r.Result(id, got.Valid && got.Int64 == token, false), nil
}

// InsertReceivedBatch stores received messages claimed under one lease
// (see storage.ReceivedBatchInserter) in one transaction at READ
// COMMITTED: a multi-row INSERT ... ON DUPLICATE KEY UPDATE of the
// batch's distinct (msg_id, grp), sorted, then one SELECT of their lease
// tokens. The INSERT locks every row of the batch, inserted or not, until
// the commit, so the SELECT reads what the INSERT left: a row holding the
// caller's token, which no other caller has, was inserted or reset by
// it. On MariaDB, whose INSERT has a RETURNING clause (one row for each
// VALUES row: the stored row as the statement left it, inserted, reset
// or not changed), the INSERT returns them itself: one round trip (two
// with prepared statements) fewer for each batch. A deadlock with a concurrent batch is retried. A batch larger than
// one statement takes several, in the same transaction. Keyed rows are
// stored leased only as the head of their key, decided under the locks
// of their keys (see heads).
func (d *Driver) InsertReceivedBatch(ctx context.Context, msgs []*storage.Message, token int64, leaseUntil time.Time) ([]storage.ReceivedInsert, error) {
	returns, err := d.insertReturns(ctx)
	if err != nil {
		return nil, err
	}
	return d.base.InsertReceivedBatch(msgs, token, fitGroup, fitName, func(b *sqlstore.ReceivedBatch, res []storage.ReceivedInsert) error {
		index := padIndex(b)
		return d.retryKeyLockedTx(ctx, "batch of received messages", func(tx *sql.Tx, l *keyLocker) error {
			clear(res)
			head, err := d.heads(ctx, tx, l, b)
			if err != nil {
				return err
			}
			from := 0
			for _, chunk := range batches(b.Rows, func(r sqlstore.ReceivedRow) int { return len(r.Body) }) {
				args := make([]any, 0, 12*len(chunk))
				keys := make([]any, 0, 2*len(chunk))
				for i := range chunk {
					args = receivedArgs(args, &chunk[i], token, leaseUntil, head[from+i])
					keys = append(keys, chunk[i].MsgID, chunk[i].Group)
				}
				to := from + len(chunk)
				if returns {
					// MariaDB: the INSERT returns each row as it left it.
					if err := d.readTokens(ctx, tx, insertReceivedSQL(d.q.received, len(chunk))+receivedReturning, args, token, b, index, from, to, res); err != nil {
						return err
					}
					from = to
					continue
				}
				if _, err := tx.ExecContext(ctx, insertReceivedSQL(d.q.received, len(chunk)), args...); err != nil {
					return err
				}
				if err := d.readTokens(ctx, tx, d.q.receivedTokensSQL(len(chunk)), keys, token, b, index, from, to, res); err != nil {
					return err
				}
				from = to
			}
			return nil
		})
	})
}

// errIDOfAnother is the error of a received row that was not stored: its
// id is that of a stored row of another key, which ON DUPLICATE KEY
// UPDATE took for its duplicate (and left alone: see insertReceivedSQL).
// It is storage.ErrIDTaken.
func errIDOfAnother(r *sqlstore.ReceivedRow) error {
	return sqlstore.IDTaken(fmt.Errorf("received message %q for group %q was not stored: its id %d is that of another stored row", r.MsgID, r.Group, r.ID))
}

// padKey is k as the unique key on (msg_id, grp) compares it: utf8mb4_bin
// is a PAD SPACE collation, so "a" and "a " are one key.
func padKey(k sqlstore.ReceivedKey) sqlstore.ReceivedKey {
	return sqlstore.ReceivedKey{MsgID: strings.TrimRight(k.MsgID, " "), Group: strings.TrimRight(k.Group, " ")}
}

// padIndex returns the index in b.Rows of the first row of each key as
// the unique key compares it (padKey): of rows that are one key, the
// first one the INSERT meets inserts, resets or leaves alone the stored
// row, and the others meet it as a duplicate that is not Failed.
func padIndex(b *sqlstore.ReceivedBatch) map[sqlstore.ReceivedKey]int {
	idx := make(map[sqlstore.ReceivedKey]int, len(b.Rows))
	for i := range b.Rows {
		k := padKey(b.Rows[i].Key())
		if _, ok := idx[k]; !ok {
			idx[k] = i
		}
	}
	return idx
}

// readTokens runs query, the read of the rows of b.Rows[from:to] (a
// SELECT of their keys, or their INSERT ... RETURNING),
// and sets res[i], the result of b.Rows[i], for each row it reads (index
// is padIndex(b)). The results of the rows that are not the first of
// their key (padIndex), duplicates of another row of the batch, stay
// zero: not claimed. A first row that is not read back was not stored:
// its id is that of a stored row of another key, which ON DUPLICATE KEY
// UPDATE took for its duplicate; that is an error, permanent, and the
// caller rolls the batch back.
func (d *Driver) readTokens(ctx context.Context, tx *sql.Tx, query string, keys []any, token int64,
	b *sqlstore.ReceivedBatch, index map[sqlstore.ReceivedKey]int, from, to int, res []storage.ReceivedInsert) error {
	rows, err := tx.QueryContext(ctx, query, keys...)
	if err != nil {
		return err
	}
	defer rows.Close()
	read := map[int]bool{}
	for rows.Next() {
		var id int64
		var key sqlstore.ReceivedKey
		var got sql.NullInt64
		var leased bool
		if err := rows.Scan(&id, &key.MsgID, &key.Group, &got, &leased); err != nil {
			return err
		}
		if i, ok := index[padKey(key)]; ok {
			res[i], read[i] = b.Rows[i].Result(id, got.Valid && got.Int64 == token, leased), true
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i := from; i < to; i++ {
		if r := &b.Rows[i]; index[padKey(r.Key())] == i && !read[i] {
			return errIDOfAnother(r)
		}
	}
	return nil
}

// heads returns, for each row of b, whether it is stored leased as the
// head of its ordering key (#18): the batch's first row of its key
// (ReceivedBatch.Heads) when the key has no row stored that is not
// Succeeded. It takes the locks of the batch's keys first (see
// keyLockName), and reads the stored rows in a statement of its own, so
// that it sees every head stored and every claim committed before.
func (d *Driver) heads(ctx context.Context, tx *sql.Tx, l *keyLocker, b *sqlstore.ReceivedBatch) ([]bool, error) {
	heads := b.Heads()
	var names []string
	var args []any
	for i, r := range b.Rows {
		if heads[i] {
			names = append(names, keyLockName(d.q.Received.table, &storage.Message{Group: r.Group, Version: r.Version, OrderingKey: *r.OrderingKey}))
			args = append(args, *r.OrderingKey, r.Group, r.Version)
		}
	}
	if len(names) == 0 {
		return heads, nil
	}
	if err := l.lock(ctx, tx, names); err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, d.q.busyKeys+strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", len(names)), ", ")+`)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	// As the PAD SPACE collation compares keys and groups (see padKey).
	type sequence struct{ key, group, version string }
	seq := func(key, group, version string) sequence {
		return sequence{strings.TrimRight(key, " "), strings.TrimRight(group, " "), version}
	}
	busy := map[sequence]bool{}
	for rows.Next() {
		var key, group, version string
		if err := rows.Scan(&key, &group, &version); err != nil {
			return nil, err
		}
		busy[seq(key, group, version)] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	first := map[sequence]int{} // of keys that differ only in trailing spaces, one head
	for i, r := range b.Rows {
		if !heads[i] {
			continue
		}
		k := seq(*r.OrderingKey, r.Group, r.Version)
		if j, ok := first[k]; busy[k] || ok && b.Rows[j].ID < r.ID {
			heads[i] = false
			continue
		} else if ok {
			heads[j] = false
		}
		first[k] = i
	}
	return heads, nil
}
