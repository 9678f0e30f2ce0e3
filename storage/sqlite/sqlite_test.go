package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/storage/storagetest"
)

// newDriver returns a migrated driver on a database file in a temporary
// directory, closed when the test ends.
func newDriver(tb testing.TB) (*sqlite.Driver, *sql.DB) {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "gocap.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	d := sqlite.New(db, sqlite.Options{})
	if err := d.Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return d, db
}

func TestConformance(t *testing.T) {
	dbs := map[storage.Driver[*sql.Tx]]*sql.DB{}
	storagetest.Run(t, storagetest.Harness[*sql.Tx]{
		New: func(t *testing.T) storage.Driver[*sql.Tx] {
			d, db := newDriver(t)
			if err := d.Migrate(context.Background()); err != nil {
				t.Fatalf("second Migrate: %v", err)
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
		LargeBody: 16 << 20,
	})
}
