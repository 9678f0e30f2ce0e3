package outbox_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
)

// postgresSQLBackend is PostgreSQL with database/sql transactions (pgx's
// stdlib driver, postgres.NewSQL), each test in a schema of its own.
var postgresSQLBackend = backend[*sql.Tx]{
	name: "postgres-sql",
	open: func(t *testing.T) dbEnv[*sql.Tx] {
		dsn := testenv.PostgresURL(t)
		schema := testenv.Name("gocap_obs")
		pool := pgPool(t, dsn)
		d := postgres.NewSQL(pool, postgres.Options{Schema: schema, Logger: quietLogger()})
		if err := d.Migrate(context.Background()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		db := stdlib.OpenDBFromPool(pool)
		t.Cleanup(func() { db.Close() })
		if _, err := db.Exec("create table " + schema + ".orders (note text)"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			p, err := pgxpool.New(context.Background(), dsn)
			if err == nil {
				p.Exec(context.Background(), "drop schema "+schema+" cascade")
				p.Close()
			}
		})
		return dbEnv[*sql.Tx]{
			name: schema,
			dsn:  dsn,
			driver: func(t *testing.T) storage.Driver[*sql.Tx] {
				return postgres.NewSQL(pgPool(t, dsn), postgres.Options{Schema: schema, Logger: quietLogger()})
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
				if _, err := tx.Exec("insert into "+schema+".orders (note) values ($1)", note); err != nil {
					t.Fatal(err)
				}
			},
		}
	},
	attach: func(dsn, name string) (storage.Driver[*sql.Tx], func(), error) {
		pool, err := pgxpool.New(context.Background(), dsn)
		if err != nil {
			return nil, nil, err
		}
		return postgres.NewSQL(pool, postgres.Options{Schema: name, Logger: quietLogger()}), pool.Close, nil
	},
}

func TestPostgresSQL(t *testing.T) { runCore(t, postgresSQLBackend) }
