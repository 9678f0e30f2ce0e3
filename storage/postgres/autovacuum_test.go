package postgres_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/storage/postgres"
)

// wantAutovacuum is what Migrate sets on the published and received
// tables (schema.sql, "Autovacuum of the queue tables").
var wantAutovacuum = map[string]string{
	"autovacuum_vacuum_scale_factor":        "0",
	"autovacuum_vacuum_threshold":           "10000",
	"autovacuum_vacuum_insert_scale_factor": "0",
	"autovacuum_vacuum_insert_threshold":    "10000",
	"vacuum_index_cleanup":                  "on",
}

// reloptions returns the storage parameters of schema.table, from
// pg_class.reloptions.
func reloptions(t *testing.T, pool *pgxpool.Pool, schema, table string) map[string]string {
	t.Helper()
	var opts []string
	err := pool.QueryRow(context.Background(), `SELECT coalesce(reloptions, '{}') FROM pg_class
		WHERE oid = to_regclass(quote_ident($1) || '.' || quote_ident($2))`, schema, table).Scan(&opts)
	if err != nil {
		t.Fatalf("reloptions of %s.%s: %v", schema, table, err)
	}
	m := map[string]string{}
	for _, o := range opts {
		k, v, _ := strings.Cut(o, "=")
		m[k] = v
	}
	return m
}

// checkAutovacuum fails the test unless both queue tables of schema carry
// want's autovacuum parameters (and fillfactor 80).
func checkAutovacuum(t *testing.T, pool *pgxpool.Pool, schema string, want map[string]string) {
	t.Helper()
	for _, table := range []string{"published", "received"} {
		got := reloptions(t, pool, schema, table)
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if got[k] != want[k] {
				t.Errorf("%s.%s: %s = %q, want %q (reloptions %v)", schema, table, k, got[k], want[k], got)
			}
		}
		if got["fillfactor"] != "80" {
			t.Errorf("%s.%s: fillfactor = %q, want 80 (reloptions %v)", schema, table, got["fillfactor"], got)
		}
	}
}

// Migrate sets the queue tables' autovacuum parameters on new tables,
// keeps an operator's own value of one on the next Migrate, and sets
// again one an operator RESET (documented).
func TestMigrateSetsAutovacuum(t *testing.T) {
	ctx := context.Background()
	d, pool, schema := newDriverWith(t, postgres.Options{})
	checkAutovacuum(t, pool, schema, wantAutovacuum)

	if _, err := pool.Exec(ctx, `ALTER TABLE `+schema+`.published SET (autovacuum_vacuum_threshold = 500, autovacuum_vacuum_cost_delay = 1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ALTER TABLE `+schema+`.received RESET (autovacuum_vacuum_scale_factor)`); err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	got := reloptions(t, pool, schema, "published")
	if got["autovacuum_vacuum_threshold"] != "500" || got["autovacuum_vacuum_cost_delay"] != "1" {
		t.Errorf("Migrate after the operator's ALTER TABLE ... SET: reloptions %v, want the operator's threshold 500 and cost delay 1 kept", got)
	}
	got["autovacuum_vacuum_threshold"] = wantAutovacuum["autovacuum_vacuum_threshold"]
	for k, v := range wantAutovacuum {
		if got[k] != v {
			t.Errorf("published: %s = %q after Migrate, want %q", k, got[k], v)
		}
	}
	checkAutovacuum(t, pool, schema, map[string]string{"autovacuum_vacuum_scale_factor": "0"})
}
