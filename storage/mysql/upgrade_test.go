package mysql_test

import (
	"context"
	"database/sql"
	_ "embed"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage/mysql"
	"github.com/gocap/gocap/storage/storagetest"
)

// schemaV1 is the schema before delayed messages and attempt histories
// (#13), as git show 15587df:storage/mysql/schema.sql gives it.
//
//go:embed testdata/schema_v1.sql
var schemaV1 string

// schemaV2 is the schema before version isolation (#17), with the
// *_pending indexes it replaces, as git show 98966c8:storage/mysql/schema.sql
// gives it.
//
//go:embed testdata/schema_v2.sql
var schemaV2 string

// schemaV3 is the schema with due_at and key_held VIRTUAL, before they
// were made STORED (InnoDB's purge left the delete-marked entries of their
// indexes in place on MariaDB), as git show 44b399d:storage/mysql/schema.sql
// gives it.
//
//go:embed testdata/schema_v3.sql
var schemaV3 string

// Migrate upgrades tables made by the previous schema, with rows in them:
// several processes at once, then again; the rows read back with the new
// columns' defaults and follow the new contract.
func TestMigrateUpgradesPreviousSchema(t *testing.T) {
	t.Run("v1", func(t *testing.T) { testUpgradeFrom(t, schemaV1) })
	t.Run("v2", func(t *testing.T) { testUpgradeFrom(t, schemaV2) })
	t.Run("v3", func(t *testing.T) { testUpgradeFrom(t, schemaV3) })
}

// testUpgradeFrom runs the upgrade test from the schema schemaOld.
func testUpgradeFrom(t *testing.T, schemaOld string) {
	ctx := context.Background()
	db, err := sql.Open("mysql", testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	prefix := testenv.Name("gocap_up") + "_"
	t.Cleanup(func() {
		for _, tb := range []string{"published", "received", "instances"} {
			db.Exec("DROP TABLE IF EXISTS `" + prefix + tb + "`")
		}
		db.Close()
	})
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(schemaOld, "{{prefix}}", prefix), "\n") {
		if !strings.HasPrefix(l, "--") {
			lines = append(lines, l)
		}
	}
	for _, stmt := range strings.Split(strings.Join(lines, "\n"), ";\n") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				t.Fatalf("creating the previous schema: %v", err)
			}
		}
	}
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	old := t0.Add(-time.Second).Format("2006-01-02 15:04:05.000000")
	if _, err := db.ExecContext(ctx, "INSERT INTO `"+prefix+"published` (id, name, headers, body, status, last_error, added, next_attempt_at) VALUES (1, 'old', '{\"k\":\"v\"}', 'body', 'Scheduled', '', ?, ?)", old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO `"+prefix+"received` (id, msg_id, grp, name, headers, body, status, last_error, added, next_attempt_at) VALUES (2, 'm', 'g', 'old', '{}', 'body', 'Scheduled', '', ?, ?)", old, old); err != nil {
		t.Fatal(err)
	}
	d := mysql.New(db, mysql.Options{TablePrefix: prefix})
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- mysql.New(db, mysql.Options{TablePrefix: prefix}).Migrate(ctx) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("Migrate of the previous schema: %v", err)
		}
	}
	if err := d.Migrate(ctx); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	tables := []any{prefix + "published", prefix + "received"}
	idx := schemaFacts(t, db, prefix, `SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (?, ?) AND (INDEX_NAME LIKE '%due' OR INDEX_NAME LIKE '%pending%')
		ORDER BY INDEX_NAME`, tables...)
	if want := "published_pending_version,received_pending_version"; strings.Join(idx, ",") != want {
		t.Errorf("due indexes after the upgrade: %v; want the two pending_version ones only", idx)
	}
	cols := schemaFacts(t, db, prefix, `SELECT TABLE_NAME, COLUMN_NAME, EXTRA FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (?, ?) AND EXTRA LIKE '%GENERATED%' ORDER BY TABLE_NAME, COLUMN_NAME`, tables...)
	if want := "published due_at STORED GENERATED,published key_held STORED GENERATED," +
		"received due_at STORED GENERATED,received key_held STORED GENERATED"; strings.Join(cols, ",") != want {
		t.Errorf("generated columns after the upgrade: %v; want %s", cols, want)
	}
	keys := schemaFacts(t, db, prefix, `SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (?, ?) AND INDEX_NAME LIKE '%key' GROUP BY INDEX_NAME ORDER BY INDEX_NAME`, tables...)
	if want := "published_key key_held,version,id;received_key key_held,grp,version,id"; strings.Join(keys, ";") != want {
		t.Errorf("key indexes after the upgrade: %v; want %s", keys, want)
	}
	storagetest.CheckUpgraded(t, d, t0)
}

// schemaFacts runs query, which reads information_schema, and returns its
// rows, each as its text columns without prefix, joined by spaces.
func schemaFacts(t *testing.T, db *sql.DB, prefix, query string, args ...any) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals := make([]string, len(names))
		dest := make([]any, len(names))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			vals[i] = strings.TrimPrefix(v, prefix)
		}
		out = append(out, strings.Join(vals, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
