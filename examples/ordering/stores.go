package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/mysql"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/storage/sqlite"
)

// name is a fresh table prefix or schema name for a round.
func name(round int) string {
	return "gocap_ordering_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + "_" + strconv.Itoa(round)
}

// postgresTables puts each round in a schema of its own, dropped after it.
func postgresTables(url string) tables[pgx.Tx] {
	return func(ctx context.Context, round int) (storage.Driver[pgx.Tx], storage.Driver[pgx.Tx], func(), error) {
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			return nil, nil, nil, err
		}
		schema := name(round)
		a := postgres.New(pool, postgres.Options{Schema: schema})
		if err := a.Migrate(ctx); err != nil {
			pool.Close()
			return nil, nil, nil, fmt.Errorf("postgres at %s: %w", url, err)
		}
		cleanup := func() {
			pool.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			pool.Close()
		}
		return a, postgres.New(pool, postgres.Options{Schema: schema}), cleanup, nil
	}
}

// mysqlTables puts each round in tables of a prefix of its own, dropped
// after it.
func mysqlTables(dsn string) tables[*sql.Tx] {
	return func(ctx context.Context, round int) (storage.Driver[*sql.Tx], storage.Driver[*sql.Tx], func(), error) {
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return nil, nil, nil, err
		}
		db.SetMaxOpenConns(64)
		prefix := name(round) + "_"
		a := mysql.New(db, mysql.Options{TablePrefix: prefix})
		if err := a.Migrate(ctx); err != nil {
			db.Close()
			return nil, nil, nil, fmt.Errorf("mysql at %s: %w", dsn, err)
		}
		cleanup := func() {
			for _, t := range []string{"published", "received", "instances"} {
				db.Exec("DROP TABLE IF EXISTS " + prefix + t)
			}
			db.Close()
		}
		return a, mysql.New(db, mysql.Options{TablePrefix: prefix}), cleanup, nil
	}
}

// sqliteTables puts each round in a database file of its own, removed
// after it.
func sqliteTables() tables[*sql.Tx] {
	return func(ctx context.Context, round int) (storage.Driver[*sql.Tx], storage.Driver[*sql.Tx], func(), error) {
		dir, err := os.MkdirTemp("", "gocap-ordering-")
		if err != nil {
			return nil, nil, nil, err
		}
		db, err := sqlite.Open(ctx, filepath.Join(dir, "gocap.db"))
		if err != nil {
			os.RemoveAll(dir)
			return nil, nil, nil, err
		}
		a := sqlite.New(db, sqlite.Options{})
		if err := a.Migrate(ctx); err != nil {
			db.Close()
			os.RemoveAll(dir)
			return nil, nil, nil, err
		}
		cleanup := func() {
			db.Close()
			os.RemoveAll(dir)
		}
		return a, sqlite.New(db, sqlite.Options{}), cleanup, nil
	}
}
