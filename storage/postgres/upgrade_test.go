package postgres_test

import (
	"context"
	_ "embed"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/storage/storagetest"
)

// schemaV1 is the schema before delayed messages and attempt histories
// (#13), as git show 15587df:storage/postgres/schema.sql gives it.
//
//go:embed testdata/schema_v1.sql
var schemaV1 string

// schemaV2 is the schema before version isolation (#17), with the
// *_pending indexes it replaces, as git show 98966c8:storage/postgres/schema.sql
// gives it.
//
//go:embed testdata/schema_v2.sql
var schemaV2 string

// schemaV3 is the schema before the queue tables' autovacuum parameters
// (#14, scale), as git show 5eb6cf3:storage/postgres/schema.sql gives it.
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
	pool, err := pgxpool.New(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	schema := testenv.Name("gocap_up")
	t.Cleanup(func() {
		pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		pool.Close()
	})
	if _, err := pool.Exec(ctx, strings.ReplaceAll(schemaOld, "{{schema}}", schema)); err != nil {
		t.Fatalf("creating the previous schema: %v", err)
	}
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	if _, err := pool.Exec(ctx, `INSERT INTO `+schema+`.published (id, name, headers, body, status, added, next_attempt_at)
		VALUES (1, 'old', '{"k":"v"}', 'body', 'Scheduled', $1, $1)`, t0.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO `+schema+`.received (id, msg_id, grp, name, headers, body, status, added, next_attempt_at)
		VALUES (2, 'm', 'g', 'old', '{}', 'body', 'Scheduled', $1, $1)`, t0.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"published", "received"} {
		if got := reloptions(t, pool, schema, table); got["autovacuum_vacuum_threshold"] != "" {
			t.Fatalf("%s of the previous schema already has autovacuum parameters: %v", table, got)
		}
	}
	d := postgres.New(pool, postgres.Options{Schema: schema})
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
	var idx []string
	rows, err := pool.Query(ctx, `SELECT indexname FROM pg_indexes
		WHERE schemaname = $1 AND (indexname LIKE '%due_idx' OR indexname LIKE '%pending%idx') ORDER BY 1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		idx = append(idx, n)
	}
	if rows.Err() != nil || strings.Join(idx, ",") != "published_pending_version_idx,received_pending_version_idx" {
		t.Errorf("due indexes after the upgrade: %v %v; want the two pending_version ones only", idx, rows.Err())
	}
	checkAutovacuum(t, pool, schema, wantAutovacuum)
	storagetest.CheckUpgraded(t, d, t0)
}
