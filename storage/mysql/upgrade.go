package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Columns added to the message tables since their first version (#13:
// delayed messages, retry policies and attempt histories), with their
// definitions in schema.sql. MySQL has no ADD COLUMN IF NOT EXISTS:
// upgradeTable adds those a table lacks.
var addedColumns = []struct{ name, def string }{
	{"policy", "TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT ('')"},
	{"attempts", "MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT ('[]')"},
	{"due_at", "DATETIME(6) AS (IF(status IN ('Scheduled', 'Delayed'), GREATEST(next_attempt_at, COALESCE(lease_until, next_attempt_at)), NULL)) VIRTUAL"},
	// --- version isolation (issue #17) ---
	{"version", "VARCHAR(20) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT ''"},
	// ordering keys (#18)
	{"ordering_key", "VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL"},
	{"key_held", "VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin AS (IF(status IN ('Scheduled', 'Delayed', 'Failed'), ordering_key, NULL)) VIRTUAL"},
}

// keyIndex is the definition of the *_key index of table (#18): a key's
// sequence is that of one version (issue #17).
func keyIndex(table string) string {
	if strings.HasSuffix(table, "received") {
		return "(key_held, grp, version, id)"
	}
	return "(key_held, version, id)"
}

// Statements of the upgrade.
const (
	columnsSQL = `SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`
	indexesSQL = `SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`
)

// upgradeTable brings a message table created by an earlier schema to the
// current one: the columns of addedColumns it lacks, the *_pending_version
// index on (version, due_at) and the *_key index of ordering keys, and
// without the *_pending index on due_at and the *_due index on (status,
// next_attempt_at) that *_pending_version replaces. A table that is
// current is left alone. It runs
// under Migrate's lock, so two processes never alter one table at once.
//
// The changes are three ALTER TABLE statements, so that the server can
// make each without copying the table: the stored columns (instant on
// MySQL 8 and MariaDB 10.3+), the virtual column (instant only when it is
// the statement's only change, on MariaDB), and the indexes (built
// online, writes go on).
func upgradeTable(ctx context.Context, conn *sql.Conn, table string) error {
	cols, err := names(ctx, conn, columnsSQL, table)
	if err != nil {
		return fmt.Errorf("reading the columns of %s: %w", table, err)
	}
	idx, err := names(ctx, conn, indexesSQL, table)
	if err != nil {
		return fmt.Errorf("reading the indexes of %s: %w", table, err)
	}
	var stored, virtual, indexes []string
	for _, c := range addedColumns {
		if cols[c.name] {
			continue
		}
		if strings.HasSuffix(c.def, " VIRTUAL") {
			virtual = append(virtual, "ADD COLUMN "+c.name+" "+c.def)
		} else {
			stored = append(stored, "ADD COLUMN "+c.name+" "+c.def)
		}
	}
	// --- version isolation (issue #17): *_pending_version replaces
	// *_pending (due_at), which replaced *_due.
	if !idx[table+"_pending_version"] {
		indexes = append(indexes, "ADD KEY `"+table+"_pending_version` (version, due_at)")
	}
	if idx[table+"_pending"] {
		indexes = append(indexes, "DROP KEY `"+table+"_pending`")
	}
	// --- end version isolation ---
	if !idx[table+"_key"] {
		indexes = append(indexes, "ADD KEY `"+table+"_key` "+keyIndex(table))
	}
	if idx[table+"_due"] {
		indexes = append(indexes, "DROP KEY `"+table+"_due`")
	}
	for _, changes := range [][]string{stored, virtual, indexes} {
		if len(changes) == 0 {
			continue
		}
		stmt := "ALTER TABLE `" + table + "` " + strings.Join(changes, ", ")
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("upgrading %s: %w\n%s", table, err, stmt)
		}
	}
	return nil
}

// names runs query, which selects one text column, with table, and
// returns the values as a set.
func names(ctx context.Context, conn *sql.Conn, query, table string) (map[string]bool, error) {
	rows, err := conn.QueryContext(ctx, query, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out[n] = true
	}
	return out, rows.Err()
}
