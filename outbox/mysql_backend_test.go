package outbox_test

import (
	"context"
	"database/sql"
	"testing"

	_ "github.com/go-sql-driver/mysql"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/mysql"
)

// mysqlBackend puts each test in tables with a prefix of its own.
var mysqlBackend = backend[*sql.Tx]{
	name: "mysql",
	open: func(t *testing.T) dbEnv[*sql.Tx] {
		dsn := testenv.MySQLDSN(t)
		prefix := testenv.Name("gocap_ob") + "_"
		db := sqlDB(t, dsn)
		d := mysql.New(db, mysql.Options{TablePrefix: prefix, Logger: quietLogger()})
		if err := d.Migrate(context.Background()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		if _, err := db.Exec("create table " + prefix + "orders (note text)"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			db, err := sql.Open("mysql", dsn)
			if err == nil {
				for _, tb := range []string{"orders", "published", "received", "instances"} {
					db.Exec("drop table if exists " + prefix + tb)
				}
				db.Close()
			}
		})
		return dbEnv[*sql.Tx]{
			name: prefix,
			dsn:  dsn,
			driver: func(t *testing.T) storage.Driver[*sql.Tx] {
				return mysql.New(sqlDB(t, dsn), mysql.Options{TablePrefix: prefix, Logger: quietLogger()})
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
				if _, err := tx.Exec("insert into "+prefix+"orders (note) values (?)", note); err != nil {
					t.Fatal(err)
				}
			},
		}
	},
	attach: func(dsn, name string) (storage.Driver[*sql.Tx], func(), error) {
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return nil, nil, err
		}
		return mysql.New(db, mysql.Options{TablePrefix: name, Logger: quietLogger()}), func() { db.Close() }, nil
	},
}

func sqlDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestMySQL(t *testing.T) { runCore(t, mysqlBackend) }
