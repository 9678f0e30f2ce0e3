package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/gocap/gocap/internal/sqlstore"
)

// Columns added to the message tables since their first version (#13:
// retry policies and attempt histories), as schema.sql declares them.
// SQLite has no ADD COLUMN IF NOT EXISTS: Migrate adds those a table
// lacks.
var addedColumns = []struct{ name, def string }{
	{"policy", "TEXT NOT NULL DEFAULT ''"},
	{"attempts", "TEXT NOT NULL DEFAULT '[]'"},
	{"ordering_key", "TEXT"}, // ordering keys (#18)
	// --- version isolation (issue #17) ---
	{"version", "TEXT NOT NULL DEFAULT ''"},
}

// columnSQL counts the columns of a table with a given name.
const columnSQL = `SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?`

// Migrate creates the tables and indexes if they do not exist, and
// upgrades tables of an earlier schema (added columns, swapped indexes),
// in one transaction: a concurrent Migrate waits for it, then finds
// nothing to do.
func (d *Driver) Migrate(ctx context.Context) error {
	err := sqlstore.InTx(ctx, d.db, nil, func(tx *sql.Tx) error {
		// The columns first: the schema's CREATE TABLE IF NOT EXISTS
		// leaves an old table as it is, and nothing in it reads them.
		for _, t := range []*tableQueries{&d.q.Published, &d.q.Received} {
			if err := addColumns(ctx, tx, t.name); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, d.q.schema); err != nil {
			return fmt.Errorf("running the schema: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", classify(err))
	}
	return nil
}

// addColumns adds the columns of addedColumns that table lacks; a table
// that does not exist yet is left to the schema.
func addColumns(ctx context.Context, tx *sql.Tx, table string) error {
	for _, c := range addedColumns {
		var n, exists int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, table).Scan(&exists); err != nil {
			return fmt.Errorf("looking for table %s: %w", table, err)
		}
		if exists == 0 {
			return nil
		}
		if err := tx.QueryRowContext(ctx, columnSQL, table, c.name).Scan(&n); err != nil {
			return fmt.Errorf("reading the columns of %s: %w", table, err)
		}
		if n == 0 {
			if _, err := tx.ExecContext(ctx, `ALTER TABLE `+table+` ADD COLUMN `+c.name+` `+c.def); err != nil {
				return fmt.Errorf("adding column %s to %s: %w", c.name, table, err)
			}
		}
	}
	return nil
}
