package mysql

import (
	"context"
	"database/sql"
	"testing"

	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/storagetest"
)

func TestSupportsSkipLocked(t *testing.T) {
	for v, want := range map[string]bool{
		"10.11.19-MariaDB-0+deb12u1": true,
		"10.6.0-MariaDB":             true,
		"10.5.23-MariaDB-log":        false,
		"5.5.5-10.4.1-MariaDB":       false, // old MariaDB behind the 5.5.5- replication prefix
		"11.4.2-MariaDB":             true,
		"8.0.36":                     true,
		"8.0.1":                      true,
		"8.0.0-dmr":                  false,
		"5.7.44-log":                 false,
		"9.1.0":                      true,
	} {
		if got := supportsSkipLocked(v); got != want {
			t.Errorf("supportsSkipLocked(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestSupportsInsertReturning(t *testing.T) {
	for v, want := range map[string]bool{
		"10.11.19-MariaDB-0+deb12u1": true,
		"10.5.23-MariaDB-log":        true,
		"10.4.32-MariaDB":            false,
		"5.5.5-10.4.1-MariaDB":       false,
		"11.4.2-MariaDB":             true,
		"8.0.36":                     false,
		"9.1.0":                      false,
	} {
		if got := supportsInsertReturning(v); got != want {
			t.Errorf("supportsInsertReturning(%q) = %v, want %v", v, got, want)
		}
	}
}

// On a server without SKIP LOCKED, claims use a plain FOR UPDATE: claimers
// wait for each other, and still never get the same row. The whole
// conformance suite runs on that path (its ConcurrentClaims case is the
// one that matters here), and without INSERT ... RETURNING, as on MySQL:
// received rows are read back with a SELECT.
func TestConformanceWithoutSkipLocked(t *testing.T) {
	dbs := map[storage.Driver[*sql.Tx]]*sql.DB{}
	storagetest.Run(t, storagetest.Harness[*sql.Tx]{
		New: func(t *testing.T) storage.Driver[*sql.Tx] {
			db, prefix := openTestTables(t, "gocap_fb")
			d := New(db, Options{TablePrefix: prefix})
			d.versionRead = true // as if VERSION() said 5.7: no SKIP LOCKED, no RETURNING
			ctx := context.Background()
			if err := d.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if lock, err := d.lockClause(ctx); err != nil || lock != "" {
				t.Fatalf("lock clause %q, %v; want the fallback", lock, err)
			}
			if returns, err := d.insertReturns(ctx); err != nil || returns {
				t.Fatalf("insert returns %v, %v; want the SELECT", returns, err)
			}
			dbs[d] = db
			return d
		},
		Begin: func(ctx context.Context, t *testing.T, d storage.Driver[*sql.Tx]) (*sql.Tx, func() error, func() error) {
			tx, err := dbs[d].BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			return tx, tx.Commit, tx.Rollback
		},
	})
}
