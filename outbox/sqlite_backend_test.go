package outbox_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
)

// sqliteBackend puts each test in a database file of its own.
var sqliteBackend = backend[*sql.Tx]{
	name: "sqlite",
	open: func(t *testing.T) dbEnv[*sql.Tx] {
		path := filepath.Join(t.TempDir(), "gocap.db")
		db := sqliteDB(t, path)
		d := sqlite.New(db, sqlite.Options{Logger: quietLogger()})
		if err := d.Migrate(context.Background()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		if _, err := db.Exec("create table orders (note text)"); err != nil {
			t.Fatal(err)
		}
		return dbEnv[*sql.Tx]{
			name: "gocap_",
			dsn:  path,
			driver: func(t *testing.T) storage.Driver[*sql.Tx] {
				return sqlite.New(sqliteDB(t, path), sqlite.Options{Logger: quietLogger()})
			},
			begin: func(t *testing.T) (*sql.Tx, func() error, func() error) {
				tx, err := db.Begin()
				if err != nil {
					t.Fatalf("begin: %v", err)
				}
				t.Cleanup(func() { tx.Rollback() })
				return tx, tx.Commit, tx.Rollback
			},
			exec: func(t *testing.T, tx *sql.Tx, note string) {
				if _, err := tx.Exec("insert into orders (note) values (?)", note); err != nil {
					t.Fatal(err)
				}
			},
		}
	},
}

func sqliteDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("sqlite: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestSQLite runs the reliability, delay and retry-policy cases on
// SQLite; the core cases run on it through the quickstart example and the
// storage suite.
func TestSQLite(t *testing.T) {
	runReliability(t, sqliteBackend)
	runDelays(t, sqliteBackend)
	runBatches(t, sqliteBackend)
}
