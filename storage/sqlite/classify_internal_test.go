package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// code returns the primary SQLite result code in err, or -1.
func code(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff
	}
	return -1
}

// TestClassify provokes real errors from SQLite and checks which ones
// classify marks permanent.
func TestClassify(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "classify.db")
	db, err := sql.Open("sqlite", dsn(path)) // modernc's own connections: sqlite.Limit needs them
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // one connection: the limit below applies to every statement
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exec := func(q string, args ...any) error {
		_, err := conn.ExecContext(ctx, q, args...)
		return err
	}
	if err := exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL); INSERT INTO t VALUES (1, 'a')`); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_LENGTH, 1000); err != nil {
		t.Fatal(err)
	}
	tooBig := exec(`INSERT INTO t VALUES (2, ?)`, strings.Repeat("x", 2000))

	// A second connection that does not wait, while the first holds the
	// write lock.
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := exec(`BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	_, busy := other.ExecContext(ctx, `INSERT INTO t VALUES (3, 'c')`)
	if err := exec(`ROLLBACK`); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name string
		err  error
		code int
		perm bool
	}{
		{"too big", tooBig, sqlite3.SQLITE_TOOBIG, true},
		{"mismatch", exec(`INSERT INTO t VALUES ('abc', 'x')`), sqlite3.SQLITE_MISMATCH, true},
		{"primary key", exec(`INSERT INTO t VALUES (1, 'b')`), sqlite3.SQLITE_CONSTRAINT, true},
		{"not null", exec(`INSERT INTO t VALUES (4, NULL)`), sqlite3.SQLITE_CONSTRAINT, true},
		{"busy", busy, sqlite3.SQLITE_BUSY, false},
		{"generic error (syntax)", exec(`SELEC 1`), sqlite3.SQLITE_ERROR, false},
		{"canceled", canceled(db), -1, false},
	} {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if got := code(c.err); got != c.code {
			t.Errorf("%s: code %d, want %d (%v)", c.name, got, c.code, c.err)
		}
		got := classify(c.err)
		if errors.Is(got, storage.ErrPermanent) != c.perm {
			t.Errorf("%s: classify(%v) permanent = %v, want %v", c.name, c.err, !c.perm, c.perm)
		}
		if !errors.Is(got, c.err) {
			t.Errorf("%s: classify lost the error", c.name)
		}
	}
}

func canceled(db *sql.DB) error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := db.ExecContext(ctx, `SELECT 1`)
	return err
}

// A message over SQLite's length limit is refused for good, and the
// driver's error says so.
func TestInsertOverLengthLimitIsPermanent(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", dsn(filepath.Join(t.TempDir(), "limit.db"))) // modernc's own connections: sqlite.Limit needs them
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	d := New(db, Options{})
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_LENGTH, 1000); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	gen, _ := ids.NewGenerator(-1)
	now := time.Now().UTC()
	m := &storage.Message{ID: gen.Next(), Kind: storage.Published, Name: "n", Body: make([]byte, 2000), Added: now, NextAttemptAt: now}
	err = d.InsertPublished(ctx, []*storage.Message{m}, storage.InsertOptions{})
	if !errors.Is(err, storage.ErrPermanent) || code(err) != sqlite3.SQLITE_TOOBIG {
		t.Errorf("InsertPublished of a body over the length limit: %v; want a permanent SQLITE_TOOBIG", err)
	}
}
