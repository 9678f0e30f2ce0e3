package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

var _ storage.NextClaimer = (*Driver)(nil)

// SucceedClaimNext marks done Succeeded and claims the next row of each
// of their ordering keys in one transaction (see storage.NextClaimer):
// Succeed's statement for each row, then nextCandidatesSQL, a read of
// the heads of those keys only, and leaseSQL, as Claim does, with the
// heads' runs when req.Run asks for them (runSQL, runLeaseSQL). Under
// SQLite's one writer, a turn of a key takes one write transaction
// instead of two (a Succeed, then a claim).
func (d *Driver) SucceedClaimNext(ctx context.Context, kind storage.Kind, done []storage.Completed, expiresAt time.Time, req storage.ClaimRequest) (int64, []*storage.Message, error) {
	t, err := d.table(kind)
	if err != nil {
		return 0, nil, err
	}
	if err := sqlstore.CheckClaim(req); err != nil {
		return 0, nil, d.base.Wrap(err)
	}
	if len(done) == 0 {
		return 0, nil, nil
	}
	groups, claims := claimGroups(kind, req)
	stmts, err := d.st.all(ctx, t.succeed, t.nextCandidatesSQL(len(groups), req.FailedHoldsKey), t.leaseSQL(req.FailedHoldsKey),
		t.runSQL(req.FailedHoldsKey), t.runLeaseSQL())
	var n int64
	var next []*storage.Message
	if err == nil {
		err = sqlstore.InTx(ctx, d.db, nil, func(tx *sql.Tx) error {
			exp := us(expiresAt)
			var err error
			n, err = perRowStmt(ctx, tx.StmtContext(ctx, stmts[0]), len(done), func(i int) []any {
				return []any{exp, sqlstore.AttemptJSON(done[i].Attempt), done[i].ID, done[i].Token}
			})
			if err != nil || !claims {
				return err
			}
			doneIDs := make([]int64, len(done))
			for i, c := range done {
				doneIDs[i] = c.ID
			}
			ids, err := candidates(ctx, tx.StmtContext(ctx, stmts[1]), claimArgs(req, doneIDs, groups))
			if err != nil || len(ids) == 0 {
				return err
			}
			if next, err = leased(ctx, tx.StmtContext(ctx, stmts[2]), kind, req, ids); err != nil {
				return err
			}
			more, err := runs(ctx, tx.StmtContext(ctx, stmts[3]), tx.StmtContext(ctx, stmts[4]), kind, req, next)
			next = append(next, more...)
			return err
		})
	}
	if err != nil {
		return 0, nil, fmt.Errorf("sqlite: marking %d %s messages succeeded and claiming the next of their keys: %w", len(done), kind, classify(err))
	}
	return n, next, nil
}
