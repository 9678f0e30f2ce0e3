package outbox_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
)

func hostPort(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// postgresBackend puts each test in a schema of its own.
var postgresBackend = backend[pgx.Tx]{
	name: "postgres",
	open: func(t *testing.T) dbEnv[pgx.Tx] {
		dsn := testenv.PostgresURL(t)
		schema := testenv.Name("gocap_ob")
		pool := pgPool(t, dsn)
		d := postgres.New(pool, postgres.Options{Schema: schema, Logger: quietLogger()})
		if err := d.Migrate(context.Background()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		if _, err := pool.Exec(context.Background(), "create table "+schema+".orders (note text)"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			p, err := pgxpool.New(context.Background(), dsn)
			if err == nil {
				p.Exec(context.Background(), "drop schema "+schema+" cascade")
				p.Close()
			}
		})
		return dbEnv[pgx.Tx]{
			name: schema,
			dsn:  dsn,
			driver: func(t *testing.T) storage.Driver[pgx.Tx] {
				return postgres.New(pgPool(t, dsn), postgres.Options{Schema: schema, Logger: quietLogger()})
			},
			begin: func(t *testing.T) (pgx.Tx, func() error, func() error) {
				ctx := context.Background()
				tx, err := pool.Begin(ctx)
				if err != nil {
					t.Fatalf("begin: %v", err)
				}
				t.Cleanup(func() { tx.Rollback(ctx) })
				return tx, func() error { return tx.Commit(ctx) }, func() error { return tx.Rollback(ctx) }
			},
			exec: func(t *testing.T, tx pgx.Tx, note string) {
				if _, err := tx.Exec(context.Background(), "insert into "+schema+".orders (note) values ($1)", note); err != nil {
					t.Fatal(err)
				}
			},
		}
	},
	attach: func(dsn, name string) (storage.Driver[pgx.Tx], func(), error) {
		pool, err := pgxpool.New(context.Background(), dsn)
		if err != nil {
			return nil, nil, err
		}
		return postgres.New(pool, postgres.Options{Schema: name, Logger: quietLogger()}), pool.Close, nil
	},
}

func pgPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatalf("pgxpool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestPostgres(t *testing.T) { runCore(t, postgresBackend) }
