package mysql

import (
	"context"
	"database/sql"
	"slices"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

// Claim leases due Scheduled and Delayed rows, making them Scheduled (see
// storage.Store).
func (d *Driver) Claim(ctx context.Context, kind storage.Kind, req storage.ClaimRequest) ([]*storage.Message, error) {
	t, err := d.table(kind)
	if err != nil {
		return nil, err
	}
	if err := sqlstore.CheckClaim(req); err != nil {
		return nil, d.base.Wrap(err)
	}
	lock, err := d.lockClause(ctx)
	if err != nil {
		return nil, err
	}
	now := dbTime(req.Now)
	args := []any{now, now, req.Version}
	groups := 0
	if kind == storage.Received && req.Groups != nil {
		if len(req.Groups) == 0 {
			return nil, nil
		}
		groups = len(req.Groups)
		for _, g := range req.Groups {
			args = append(args, fitGroup(g))
		}
	}
	query := t.claimSQL(groups, lock, req.FailedHoldsKey)
	// now again: the end of the leases that hold a key (headFree).
	args = append(args, now, req.Limit)

	var msgs []*storage.Message
	err = d.retryKeyLockedTx(ctx, "claim", func(tx *sql.Tx, l *keyLocker) error {
		msgs = nil
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		msgs, err = sqlstore.ScanMessages(rows, kind, timeDest)
		if err != nil || len(msgs) == 0 {
			return err
		}
		ids := make([]int64, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		if _, err = tx.ExecContext(ctx, t.leaseSQL(len(ids)), sqlstore.IDArgs(ids, dbTime(req.LeaseUntil), req.Token)...); err != nil {
			return err
		}
		msgs, err = d.unclaim(ctx, tx, l, t, msgs, req)
		return err
	})
	if err != nil {
		return nil, d.base.Err(err, "claiming %s messages", kind)
	}
	for _, m := range msgs {
		// The lease update made a claimed Delayed row Scheduled.
		m.LeaseToken, m.LeaseUntil, m.Status = req.Token, req.LeaseUntil.UTC(), storage.StatusScheduled
	}
	return msgs, nil
}

// unclaim checks the keyed rows of msgs, just leased in tx, again under
// the locks of their keys (see keyLockName), which it only tries (see
// keylock.go): those of a key whose lock another session holds, and those
// of a key with another row in flight, lose their lease, and msgs without
// them is returned.
func (d *Driver) unclaim(ctx context.Context, tx *sql.Tx, l *keyLocker, t *tableQueries, msgs []*storage.Message, req storage.ClaimRequest) ([]*storage.Message, error) {
	names := map[int64]string{}
	var all []string
	for _, m := range msgs {
		if m.OrderingKey != "" {
			names[m.ID] = keyLockName(t.table, m)
			all = append(all, names[m.ID])
		}
	}
	if len(names) == 0 {
		return msgs, nil
	}
	busy, err := l.tryLock(ctx, tx, all)
	if err != nil {
		return nil, err
	}
	var dropped, check []int64
	for id, name := range names {
		if busy[name] {
			dropped = append(dropped, id)
		} else {
			check = append(check, id)
		}
	}
	if len(check) > 0 {
		rows, err := tx.QueryContext(ctx, t.unclaimable+sqlstore.Placeholders(len(check))+`)`, sqlstore.IDArgs(check, dbTime(req.Now))...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			dropped = append(dropped, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	if len(dropped) == 0 {
		return msgs, nil
	}
	if _, err := tx.ExecContext(ctx, t.unclaim+sqlstore.Placeholders(len(dropped))+`)`, sqlstore.IDArgs(dropped, req.Token)...); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(msgs, func(m *storage.Message) bool { return slices.Contains(dropped, m.ID) }), nil
}
