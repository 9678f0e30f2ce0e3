package sqlite_test

import (
	"context"
	_ "embed"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/storage/storagetest"
)

// schemaV1 is the schema before delayed messages and attempt histories
// (#13), as git show 15587df:storage/sqlite/schema.sql gives it.
//
//go:embed testdata/schema_v1.sql
var schemaV1 string

// schemaV2 is the schema before version isolation (#17), with the
// *_pending indexes it replaces, as git show 98966c8:storage/sqlite/schema.sql
// gives it.
//
//go:embed testdata/schema_v2.sql
var schemaV2 string

// schemaV3 is the schema before the claim read the heads of ordering keys
// (#18), with *_pending_version for every pending row, as git show
// 4c26371:storage/sqlite/schema.sql gives it.
//
//go:embed testdata/schema_v3.sql
var schemaV3 string

// Migrate upgrades tables made by the previous schema, with rows in them:
// several connections at once, then again; the rows read back with the
// new columns' defaults and follow the new contract.
func TestMigrateUpgradesPreviousSchema(t *testing.T) {
	t.Run("v1", func(t *testing.T) { testUpgradeFrom(t, schemaV1) })
	t.Run("v2", func(t *testing.T) { testUpgradeFrom(t, schemaV2) })
	t.Run("v3", func(t *testing.T) { testUpgradeFrom(t, schemaV3) })
}

// testUpgradeFrom runs the upgrade test from the schema schemaOld.
func testUpgradeFrom(t *testing.T, schemaOld string) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "old.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.ExecContext(ctx, strings.ReplaceAll(schemaOld, "{{prefix}}", "gocap_")); err != nil {
		t.Fatalf("creating the previous schema: %v", err)
	}
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	old := t0.Add(-time.Second).UnixMicro()
	if _, err := db.ExecContext(ctx, `INSERT INTO gocap_published (id, name, headers, body, status, retries, last_error, added, next_attempt_at)
		VALUES (1, 'old', '{"k":"v"}', 'body', 'Scheduled', 0, '', ?, ?)`, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO gocap_received (id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at)
		VALUES (2, 'm', 'g', 'old', '{}', 'body', 'Scheduled', 0, '', ?, ?)`, old, old); err != nil {
		t.Fatal(err)
	}
	d := sqlite.New(db, sqlite.Options{})
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- d.Migrate(ctx) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("Migrate of the previous schema: %v", err)
		}
	}
	if err := d.Migrate(ctx); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'index' AND (name LIKE '%due' OR name LIKE '%pending%') ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var idx []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		idx = append(idx, n)
	}
	if rows.Err() != nil || strings.Join(idx, ",") != "gocap_published_pending_keyed,gocap_published_pending_unkeyed,gocap_received_pending_keyed,gocap_received_pending_unkeyed" {
		t.Errorf("due indexes after the upgrade: %v %v; want the pending_keyed and pending_unkeyed ones only", idx, rows.Err())
	}
	storagetest.CheckUpgraded(t, d, t0)
}
