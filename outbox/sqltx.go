package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/gocap/gocap/storage"
)

// InTx runs fn in a transaction of db, commits it if fn returns nil (else
// rolls it back), and after the commit wakes o's processor, so messages
// published in fn are sent at once. Storages without commit notifications
// (MySQL, SQLite) otherwise see them at the next poll.
func InTx(ctx context.Context, db *sql.DB, o *Outbox[*sql.Tx], fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("outbox: beginning a transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			return errors.Join(err, fmt.Errorf("outbox: rolling back: %w", rbErr))
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("outbox: committing: %w", err)
	}
	o.Wake(storage.Published)
	return nil
}
