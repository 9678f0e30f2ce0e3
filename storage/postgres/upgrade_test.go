package postgres_test

import (
	"context"
	_ "embed"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
)

// schemaV1 is the schema before delayed messages and attempt histories
// (#13), as git show 15587df:storage/postgres/schema.sql gives it.
//
//go:embed testdata/schema_v1.sql
var schemaV1 string

// Migrate upgrades tables made by the previous schema, with rows in them:
// several processes at once, then again; the rows read back with the new
// columns' defaults and follow the new contract.
func TestMigrateUpgradesPreviousSchema(t *testing.T) {
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
	if _, err := pool.Exec(ctx, strings.ReplaceAll(schemaV1, "{{schema}}", schema)); err != nil {
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
		WHERE schemaname = $1 AND (indexname LIKE '%due_idx' OR indexname LIKE '%pending_idx') ORDER BY 1`, schema)
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
	if rows.Err() != nil || strings.Join(idx, ",") != "published_pending_idx,received_pending_idx" {
		t.Errorf("due indexes after the upgrade: %v %v; want the two pending ones only", idx, rows.Err())
	}
	checkUpgraded(t, d, t0)
}

// checkUpgraded checks the rows 1 (published) and 2 (received) of a
// previous schema after an upgrade.
func checkUpgraded(t *testing.T, d storage.Store, t0 time.Time) {
	t.Helper()
	ctx := context.Background()
	for _, k := range []struct {
		kind storage.Kind
		id   int64
	}{{storage.Published, 1}, {storage.Received, 2}} {
		m, err := d.Get(ctx, k.kind, k.id)
		if err != nil {
			t.Fatalf("Get of an old %s row: %v", k.kind, err)
		}
		if m.Policy != "" || len(m.Attempts) != 0 || m.Status != storage.StatusScheduled || string(m.Body) != "body" {
			t.Errorf("old %s row: policy %q attempts %v status %s body %q", k.kind, m.Policy, m.Attempts, m.Status, m.Body)
		}
		c, err := d.Claim(ctx, k.kind, storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: 7, Limit: 10})
		if err != nil || len(c) != 1 {
			t.Fatalf("claim of the old %s row: %d rows, %v", k.kind, len(c), err)
		}
		a := storage.Attempt{At: t0, Duration: time.Millisecond, Error: "first"}
		if _, err := d.Fail(ctx, k.kind, storage.Lease{ID: k.id, Token: 7}, storage.Failure{Error: "first", Now: t0, NextAttemptAt: t0, Attempt: a}); err != nil {
			t.Fatal(err)
		}
		if m, err := d.Get(ctx, k.kind, k.id); err != nil || len(m.Attempts) != 1 || m.Attempts[0].Error != "first" {
			t.Errorf("old %s row after Fail: %+v %v", k.kind, m, err)
		}
	}
	if next, err := d.NextDue(ctx, storage.Published, t0.Add(-time.Hour)); err != nil || !next.Equal(t0) {
		t.Errorf("NextDue: %v %v, want %v", next, err, t0)
	}
}
