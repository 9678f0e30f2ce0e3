package sqlite

import (
	"context"
	"database/sql"

	"github.com/gocap/gocap/storage"
)

// runs leases, after the keyed rows of heads were leased under req, the
// rows that follow each of them in its sequence, up to req.Run rows with
// the head (storage.ClaimRequest.Run), and returns them: find is the
// statement of runSQL, lease that of runLeaseSQL. A head's run ends at
// the first following row that is not pending, due and free. Under
// SQLite's one writer the rows cannot change between the read and the
// lease but by their holder, and the leased head keeps every other
// claim away from its sequence.
func runs(ctx context.Context, find, lease *sql.Stmt, kind storage.Kind, req storage.ClaimRequest, heads []*storage.Message) ([]*storage.Message, error) {
	if req.Run < 2 {
		return nil, nil
	}
	now := us(req.Now)
	var ids []int64
	for _, h := range heads {
		if h.OrderingKey == "" {
			continue
		}
		more, err := runOf(ctx, find, h.ID, req.Token, req.Run-1, now)
		if err != nil {
			return nil, err
		}
		ids = append(ids, more...)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return leased(ctx, lease, kind, req, ids)
}

// runOf returns the ids of up to n rows that may join the run of the head
// id, leased under token, at now (Unix microseconds).
func runOf(ctx context.Context, find *sql.Stmt, id, token int64, n int, now int64) ([]int64, error) {
	rows, err := find.QueryContext(ctx, id, token, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var (
			rid        int64
			status     string
			next       int64
			leaseUntil sql.NullInt64
		)
		if err := rows.Scan(&rid, &status, &next, &leaseUntil); err != nil {
			return nil, err
		}
		pending := status == string(storage.StatusScheduled) || status == string(storage.StatusDelayed)
		if !pending || next > now || leaseUntil.Valid && leaseUntil.Int64 > now {
			break // the run ends before the first row that cannot join it
		}
		ids = append(ids, rid)
	}
	return ids, rows.Err()
}
