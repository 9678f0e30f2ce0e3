package outboxtest_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/mysql"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
)

// recorder is a testing.TB whose failures are recorded instead of failing
// the test: a Fatal ends the goroutine that called it, as testing's does.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	logs   []string
	failed bool
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
	r.failed = true
}

func (r *recorder) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) {
	r.Error(args...)
	runtime.Goexit()
}

func (r *recorder) Fail() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
}

func (r *recorder) FailNow() {
	r.Fail()
	runtime.Goexit()
}

func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// fails runs assert with a recorder and requires that it failed with a
// message holding every one of want.
func fails(t *testing.T, name string, assert func(tb testing.TB), want ...string) {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert(r)
	}()
	<-done
	msg := strings.Join(r.logs, "\n")
	if !r.Failed() {
		t.Errorf("%s: did not fail", name)
		return
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: the failure message does not say %q:\n%s", name, w, msg)
		}
	}
}

// passes runs assert with a recorder and requires that it did not fail.
func passes(t *testing.T, name string, assert func(tb testing.TB)) {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert(r)
	}()
	<-done
	if r.Failed() {
		t.Errorf("%s failed:\n%s", name, strings.Join(r.logs, "\n"))
	}
}

// env is an outbox on one storage, with the application's transactions.
type env[TTx any] struct {
	ob    *outbox.Outbox[TTx]
	begin func(t *testing.T) (tx TTx, commit, rollback func() error)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newOutbox[TTx any](t *testing.T, d storage.Driver[TTx], opts outbox.Options) *outbox.Outbox[TTx] {
	t.Helper()
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	opts.Logger = quiet()
	ob, err := outbox.New(d, memory.New(memory.Options{}), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	return ob
}

func sqliteEnv(t *testing.T, opts outbox.Options) env[*sql.Tx] {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return env[*sql.Tx]{
		ob:    newOutbox(t, sqlite.New(db, sqlite.Options{Logger: quiet()}), opts),
		begin: sqlBegin(db),
	}
}

func postgresEnv(t *testing.T, opts outbox.Options) env[pgx.Tx] {
	dsn := testenv.PostgresURL(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	schema := testenv.Name("gocap_otest")
	t.Cleanup(func() {
		pool.Exec(context.Background(), "drop schema if exists "+schema+" cascade")
		pool.Close()
	})
	return env[pgx.Tx]{
		ob: newOutbox(t, postgres.New(pool, postgres.Options{Schema: schema, Logger: quiet()}), opts),
		begin: func(t *testing.T) (pgx.Tx, func() error, func() error) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tx.Rollback(ctx) })
			return tx, func() error { return tx.Commit(ctx) }, func() error { return tx.Rollback(ctx) }
		},
	}
}

func mysqlEnv(t *testing.T, opts outbox.Options) env[*sql.Tx] {
	dsn := testenv.MySQLDSN(t)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	prefix := testenv.Name("gocap_otest") + "_"
	t.Cleanup(func() {
		for _, tb := range []string{"published", "received", "instances"} {
			db.Exec("drop table if exists " + prefix + tb)
		}
		db.Close()
	})
	return env[*sql.Tx]{
		ob:    newOutbox(t, mysql.New(db, mysql.Options{TablePrefix: prefix, Logger: quiet()}), opts),
		begin: sqlBegin(db),
	}
}

func sqlBegin(db *sql.DB) func(t *testing.T) (*sql.Tx, func() error, func() error) {
	return func(t *testing.T) (*sql.Tx, func() error, func() error) {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Rollback() })
		return tx, tx.Commit, tx.Rollback
	}
}
