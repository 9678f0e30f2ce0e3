package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	_ "github.com/go-sql-driver/mysql" // the "mysql" database/sql driver
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/mysql"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport"
)

// processor is what the service needs of an outbox, whatever the type of
// its database's transactions (*sql.Tx for SQLite and MySQL, pgx.Tx for
// PostgreSQL). *outbox.Outbox satisfies it, and it is a dashboard.Source.
type processor interface {
	PublishWithoutTx(ctx context.Context, topic string, payload any, opts ...outbox.PublishOption) (int64, error)
	Store() storage.Store
	Wake(kind storage.Kind)
	Run(ctx context.Context) error
	Close() error
}

// database is an open database and a constructor of the outbox on it.
type database struct {
	// newOutbox makes the outbox on the database's migrated storage.
	newOutbox func(tr transport.Transport, opts outbox.Options) (processor, error)
	// close closes the connections.
	close func()
}

// openDatabase opens kind ("sqlite", "postgres" or "mysql") and migrates
// gocap's tables. An empty sqlitePath means callbackcenter.db in the
// working directory.
func openDatabase(ctx context.Context, kind, sqlitePath string, logger *slog.Logger) (*database, error) {
	switch kind {
	case "sqlite", "":
		if sqlitePath == "" {
			sqlitePath = "callbackcenter.db"
		}
		if dir := filepath.Dir(sqlitePath); dir != "." {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("sqlite: %w", err)
			}
		}
		db, err := sqlite.Open(ctx, sqlitePath)
		if err != nil {
			return nil, fmt.Errorf("sqlite %s: %w", sqlitePath, err)
		}
		return migrated(ctx, sqlite.New(db, sqlite.Options{Logger: logger}), func() { db.Close() })
	case "postgres":
		pool, err := pgxpool.New(ctx, envOr("GOCAP_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"))
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("postgres: %w", err)
		}
		return migrated(ctx, postgres.New(pool, postgres.Options{Logger: logger}), pool.Close)
	case "mysql":
		db, err := sql.Open("mysql", envOr("GOCAP_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/test"))
		if err != nil {
			return nil, fmt.Errorf("mysql: %w", err)
		}
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("mysql: %w", err)
		}
		return migrated(ctx, mysql.New(db, mysql.Options{Logger: logger}), func() { db.Close() })
	}
	return nil, fmt.Errorf("-db %q: want sqlite, postgres or mysql", kind)
}

// migrated creates gocap's tables with driver and returns the database.
func migrated[TTx any](ctx context.Context, driver storage.Driver[TTx], closeDB func()) (*database, error) {
	if err := driver.Migrate(ctx); err != nil {
		closeDB()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return &database{
		newOutbox: func(tr transport.Transport, opts outbox.Options) (processor, error) {
			ob, err := outbox.New(driver, tr, opts)
			if err != nil {
				return nil, fmt.Errorf("outbox: %w", err)
			}
			return ob, nil
		},
		close: closeDB,
	}, nil
}

// envOr returns the environment variable key, or def when it is unset or empty.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
