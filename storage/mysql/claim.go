package mysql

import (
	"context"
	"database/sql"
	"slices"
	"strings"

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
		more, err := d.runs(ctx, tx, t, kind, msgs, req, lock)
		if err != nil {
			return err
		}
		msgs, err = d.unclaim(ctx, tx, l, t, append(msgs, more...), req)
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

// runs leases, in tx, after the heads of msgs were leased under req, the
// rows that follow each keyed head in its sequence, up to req.Run rows
// with the head (storage.ClaimRequest.Run), and returns them. A head's
// run ends at the first following row that is not due and free, or that
// another session holds locked (SKIP LOCKED): its rows are consecutive.
// unclaim then checks them with their heads: a key that loses its head
// loses its run.
func (d *Driver) runs(ctx context.Context, tx *sql.Tx, t *tableQueries, kind storage.Kind, msgs []*storage.Message, req storage.ClaimRequest, lock string) ([]*storage.Message, error) {
	if req.Run < 2 {
		return nil, nil
	}
	query := strings.Replace(t.runRows, holding, sqlstore.HoldingStatuses(req.FailedHoldsKey), 1)
	now := dbTime(req.Now)
	var seqs [][]int64 // the candidate rows of each run, in id order
	var all []int64
	for _, h := range msgs {
		if h.OrderingKey == "" {
			continue
		}
		args := []any{now, now, h.OrderingKey}
		if kind == storage.Received {
			args = append(args, h.Group)
		}
		rows, err := tx.QueryContext(ctx, query, append(args, h.Version, h.ID, req.Run-1)...)
		if err != nil {
			return nil, err
		}
		var seq []int64
		for rows.Next() {
			var id int64
			var joins bool
			if err := rows.Scan(&id, &joins); err != nil {
				rows.Close()
				return nil, err
			}
			if !joins {
				break
			}
			seq = append(seq, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if len(seq) > 0 {
			seqs, all = append(seqs, seq), append(all, seq...)
		}
	}
	if len(all) == 0 {
		return nil, nil
	}
	rows, err := tx.QueryContext(ctx, t.runLockSQL(len(all), lock), sqlstore.IDArgs(all, now, now)...)
	if err != nil {
		return nil, err
	}
	locked, err := sqlstore.ScanMessages(rows, kind, timeDest)
	rows.Close()
	if err != nil {
		return nil, err
	}
	byID := make(map[int64]*storage.Message, len(locked))
	for _, m := range locked {
		byID[m.ID] = m
	}
	var run []*storage.Message
	var ids []int64
	for _, seq := range seqs {
		for _, id := range seq {
			m := byID[id]
			if m == nil {
				break // taken or changed since the read: the run ends before it
			}
			run, ids = append(run, m), append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	if _, err := tx.ExecContext(ctx, t.leaseSQL(len(ids)), sqlstore.IDArgs(ids, dbTime(req.LeaseUntil), req.Token)...); err != nil {
		return nil, err
	}
	return run, nil
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
		rows, err := tx.QueryContext(ctx, t.unclaimable+sqlstore.Placeholders(len(check))+`)`, sqlstore.IDArgs(check, req.Token, dbTime(req.Now))...)
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
