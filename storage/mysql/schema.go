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
// an earlier schema (see upgradeTable). It first checks that the session's character set is utf8mb4 (see
// "Connection settings" in the package documentation).
func (d *Driver) Migrate(ctx context.Context) error {
	if err := d.readVersion(ctx, d.db); err != nil {
		return fmt.Errorf("mysql: migrate: %w", err)
	}
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
	if err := d.readVersion(ctx, d.db); err != nil {
		return "", err
	}
	return d.skipLocked, nil
}

// insertReturns tells whether the server has INSERT ... RETURNING
// (MariaDB 10.5+; no MySQL has it), reading its version first if needed.
func (d *Driver) insertReturns(ctx context.Context) (bool, error) {
	if err := d.readVersion(ctx, d.db); err != nil {
		return false, err
	}
	return d.returning, nil
}

// rowQuerier is what *sql.DB, *sql.Conn and *sql.Tx have to read a row.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readVersion reads, with q (the pool, or a caller's transaction, so
// that a caller holding the pool's last connection does not wait for
// another), the server version once, and what it supports, and checks
// the session's character set (checkCharset). A failed read is tried
// again on the next call; a wrong character set, which the DSN sets for
// every connection, is returned by every call.
func (d *Driver) readVersion(ctx context.Context, q rowQuerier) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.versionRead {
		return d.charsetErr
	}
	var version, client, conn string
	var results sql.NullString // NULL: no conversion of results
	if err := q.QueryRowContext(ctx, versionSQL).Scan(&version, &client, &conn, &results); err != nil {
		return fmt.Errorf("mysql: reading the server version: %w", classify(err))
	}
	d.versionRead = true
	d.charsetErr = checkCharset(client, conn, results)
	if supportsSkipLocked(version) {
		d.skipLocked = skipLockedSQL
	} else {
		d.opts.Logger.Warn("gocap: this MySQL server has no SKIP LOCKED; claims wait for each other", "version", version)
	}
	d.returning = supportsInsertReturning(version)
	return d.charsetErr
}

// checkCharset checks the session's character sets (the values of
// character_set_client, character_set_connection and
// character_set_results) against the tables' utf8mb4: a session in
// another character set, such as the utf8 (utf8mb3) of the common DSN
// "charset=utf8&parseTime=True&loc=Local", has the server refuse every
// value with a 4-byte character (an emoji in a header, say: error 1366)
// and read such characters back as '?'. The error names the DSN
// parameter to fix. It is not storage.ErrPermanent: no message is to be
// taken as unstorable for it, and a delivery goes back to the broker.
func checkCharset(client, conn string, results sql.NullString) error {
	ok := strings.EqualFold(client, "utf8mb4") && strings.EqualFold(conn, "utf8mb4") &&
		(!results.Valid || strings.EqualFold(results.String, "utf8mb4") || strings.EqualFold(results.String, "binary"))
	if ok {
		return nil
	}
	res := "NULL"
	if results.Valid {
		res = results.String
	}
	return fmt.Errorf("mysql: the connection's character set is not utf8mb4 (character_set_client %s, character_set_connection %s, character_set_results %s): "+
		"text with 4-byte characters, such as emoji, would be refused or read back as '?'; "+
		"set charset=utf8mb4 in the DSN (charset=utf8 is utf8mb3), or leave charset out (go-sql-driver's default collation, utf8mb4_general_ci, is utf8mb4)",
		client, conn, res)
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
