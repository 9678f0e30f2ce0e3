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
	{"due_at", "DATETIME(6) AS (IF(status IN ('Scheduled', 'Delayed'), GREATEST(next_attempt_at, COALESCE(lease_until, next_attempt_at)), NULL)) STORED"},
	// --- version isolation (issue #17) ---
	{"version", "VARCHAR(20) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT ''"},
	// ordering keys (#18)
	{"ordering_key", "VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL"},
	{"key_held", "VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin AS (IF(status IN ('Scheduled', 'Delayed', 'Failed'), ordering_key, NULL)) STORED"},
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
	// virtualSQL lists the VIRTUAL generated columns (EXTRA is 'VIRTUAL
	// GENERATED' on MySQL 8 and MariaDB 10.2+).
	virtualSQL = `SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND EXTRA LIKE 'VIRTUAL%'`
	indexesSQL = `SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`
)

// upgradeTable brings a message table created by an earlier schema to the
// current one: the columns of addedColumns it lacks, due_at and key_held
// STORED where they were VIRTUAL, the *_pending_version index on
// (version, due_at) and the *_key index of ordering keys, and without the
// *_pending index on due_at and the *_due index on (status,
// next_attempt_at) that *_pending_version replaces. A table that is
// current is left alone. It runs under Migrate's lock, so two processes
// never alter one table at once.
//
// The changes are up to three ALTER TABLE statements: the plain columns
// (instant on MySQL 8 and MariaDB 10.3+); the generated columns, added
// STORED or made STORED (dropped and added again, with the indexes on
// them: a VIRTUAL column cannot be made STORED in place), which copies
// the table once, blocking its writes meanwhile; and the other indexes
// (built online, writes go on).
func upgradeTable(ctx context.Context, conn *sql.Conn, table string) error {
	cols, err := names(ctx, conn, columnsSQL, table)
	if err != nil {
		return fmt.Errorf("reading the columns of %s: %w", table, err)
	}
	virtualCols, err := names(ctx, conn, virtualSQL, table)
	if err != nil {
		return fmt.Errorf("reading the virtual columns of %s: %w", table, err)
	}
	idx, err := names(ctx, conn, indexesSQL, table)
	if err != nil {
		return fmt.Errorf("reading the indexes of %s: %w", table, err)
	}
	// The indexes on the generated columns: a column made STORED loses
	// them, and gets the current ones back in the same statement.
	onGenerated := []struct{ name, column, def string }{
		{table + "_pending_version", "due_at", "(version, due_at)"},
		{table + "_pending", "due_at", ""}, // replaced by *_pending_version (#17)
		{table + "_key", "key_held", keyIndex(table)},
	}
	var plain, generated, indexes []string
	remade := map[string]bool{} // generated columns dropped and added again
	for _, c := range addedColumns {
		switch {
		case !strings.HasSuffix(c.def, " STORED"):
			if !cols[c.name] {
				plain = append(plain, "ADD COLUMN "+c.name+" "+c.def)
			}
		case virtualCols[c.name]:
			remade[c.name] = true
			for _, ix := range onGenerated {
				if ix.column == c.name && idx[ix.name] {
					generated = append(generated, "DROP KEY `"+ix.name+"`")
					idx[ix.name] = false
				}
			}
			generated = append(generated, "DROP COLUMN "+c.name, "ADD COLUMN "+c.name+" "+c.def)
		case !cols[c.name]:
			generated = append(generated, "ADD COLUMN "+c.name+" "+c.def)
		}
	}
	for _, ix := range onGenerated {
		switch {
		case ix.def == "" && idx[ix.name]:
			indexes = append(indexes, "DROP KEY `"+ix.name+"`")
		case ix.def != "" && !idx[ix.name] && remade[ix.column]:
			generated = append(generated, "ADD KEY `"+ix.name+"` "+ix.def)
		case ix.def != "" && !idx[ix.name]:
			indexes = append(indexes, "ADD KEY `"+ix.name+"` "+ix.def)
		}
	}
	if idx[table+"_due"] { // replaced by *_pending (#13)
		indexes = append(indexes, "DROP KEY `"+table+"_due`")
	}
	for _, changes := range [][]string{plain, generated, indexes} {
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
