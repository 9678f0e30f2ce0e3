package mysql

import (
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"strconv"
	"strings"
)

//go:embed schema.sql
var schemaSQL string

// DefaultTablePrefix names the tables when Options.TablePrefix is empty.
const DefaultTablePrefix = "gocap_"

// SchemaSQL returns the DDL that Migrate runs, for prefix (empty =
// "gocap_"), as separate statements.
func SchemaSQL(prefix string) []string {
	if prefix == "" {
		prefix = DefaultTablePrefix
	}
	var out []string
	for _, stmt := range strings.Split(strings.ReplaceAll(schemaSQL, "{{prefix}}", prefix), ";\n") {
		var lines []string
		for _, l := range strings.Split(stmt, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "--") {
				lines = append(lines, l)
			}
		}
		if s := strings.TrimSpace(strings.Join(lines, "\n")); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Migrate creates the tables if they do not exist, and upgrades tables of
// an earlier schema (see upgradeTable).
func (d *Driver) Migrate(ctx context.Context) error {
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("mysql: migrate: %w", classify(err))
	}
	defer conn.Close()
	lock := "gocap.migrate." + d.opts.TablePrefix
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, getLockSQL, lock).Scan(&got); err != nil {
		return fmt.Errorf("mysql: migrate: taking lock %q: %w", lock, classify(err))
	}
	if got.Int64 != 1 {
		return fmt.Errorf("mysql: migrate: taking lock %q: GET_LOCK returned %v", lock, got)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), releaseLockSQL, lock)
	for _, stmt := range SchemaSQL(d.opts.TablePrefix) {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("mysql: migrate: %w\n%s", classify(err), stmt)
		}
	}
	for _, t := range []*tableQueries{&d.q.Published, &d.q.Received} {
		if err := upgradeTable(ctx, conn, t.table); err != nil {
			return fmt.Errorf("mysql: migrate: %w", classify(err))
		}
	}
	return nil
}

// lockClause returns " SKIP LOCKED" if the server supports it. The server
// version is read once; a failed read is tried again on the next call.
func (d *Driver) lockClause(ctx context.Context) (string, error) {
	if err := d.readVersion(ctx); err != nil {
		return "", err
	}
	return d.skipLocked, nil
}

// insertReturns tells whether the server has INSERT ... RETURNING
// (MariaDB 10.5+; no MySQL has it), reading its version first if needed.
func (d *Driver) insertReturns(ctx context.Context) (bool, error) {
	if err := d.readVersion(ctx); err != nil {
		return false, err
	}
	return d.returning, nil
}

// readVersion reads the server version once, and what it supports.
func (d *Driver) readVersion(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.versionRead {
		return nil
	}
	var version string
	if err := d.db.QueryRowContext(ctx, versionSQL).Scan(&version); err != nil {
		return fmt.Errorf("mysql: reading the server version: %w", classify(err))
	}
	d.versionRead = true
	if supportsSkipLocked(version) {
		d.skipLocked = skipLockedSQL
	} else {
		d.opts.Logger.Warn("gocap: this MySQL server has no SKIP LOCKED; claims wait for each other", "version", version)
	}
	d.returning = supportsInsertReturning(version)
	return nil
}

// supportsSkipLocked reads a VERSION() string: MariaDB 10.6+, MySQL 8.0.1+.
func supportsSkipLocked(version string) bool {
	major, minor, patch, mariadb := parseVersion(version)
	if mariadb {
		return major > 10 || (major == 10 && minor >= 6)
	}
	return major > 8 || (major == 8 && (minor > 0 || patch >= 1))
}

// supportsInsertReturning reads a VERSION() string: MariaDB 10.5+.
func supportsInsertReturning(version string) bool {
	major, minor, _, mariadb := parseVersion(version)
	return mariadb && (major > 10 || (major == 10 && minor >= 5))
}

// parseVersion reads a VERSION() string: its first three numbers, and
// whether it is MariaDB's.
func parseVersion(version string) (major, minor, patch int, mariadb bool) {
	nums := strings.SplitN(strings.SplitN(version, "-", 2)[0], ".", 3)
	part := func(i int) int {
		if i >= len(nums) {
			return 0
		}
		n, _ := strconv.Atoi(nums[i])
		return n
	}
	return part(0), part(1), part(2), strings.Contains(strings.ToLower(version), "mariadb")
}
