package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
)

// incompressible returns n hex characters that TOAST cannot compress.
func incompressible(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		sum := sha256.Sum256([]byte(strconv.Itoa(i)))
		b.WriteString(hex.EncodeToString(sum[:]))
	}
	return b.String()[:n]
}

func testPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// sqlState returns the SQLSTATE of err, or "" when the server did not
// send one.
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestClassify provokes real errors from the server and checks which ones
// classify marks permanent.
func TestClassify(t *testing.T) {
	ctx := context.Background()
	pool := testPool(t)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE t (id int PRIMARY KEY, k text UNIQUE)`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO t VALUES (1, 'a')`); err != nil {
		t.Fatal(err)
	}
	exec := func(sql string, args ...any) error {
		_, err := conn.Exec(ctx, sql, args...)
		return err
	}
	for _, c := range []struct {
		name  string
		err   error
		state string // "" when the error is not the server's
		perm  bool
	}{
		{"invalid UTF-8", exec(`SELECT $1::text`, "a\xffb"), "22021", true},
		{"NUL in jsonb", exec(`SELECT $1::jsonb`, `{"a":"\u0000"}`), "22P05", true},
		{"out of range", exec(`SELECT 2147483647::int + 1`), "22003", true},
		{"btree row too large", exec(`INSERT INTO t VALUES (2, $1)`, incompressible(10000)), "54000", true},
		{"duplicate key", exec(`INSERT INTO t VALUES (1, 'b')`), "23505", true},
		{"not null", exec(`INSERT INTO t VALUES (NULL, 'c')`), "23502", true},
		{"syntax error", exec(`SELEC 1`), "42601", true},
		{"undefined table", exec(`SELECT * FROM no_such_table`), "42P01", true},
		{"statement timeout", exec(`SET statement_timeout = '20ms'; SELECT pg_sleep(1)`), "57014", false},
		{"serialization failure", serializationFailure(t, pool), "40001", false},
		{"deadlock", deadlock(t, pool), "40P01", false},
		{"no server", noServer(), "", false},
		{"context canceled", canceled(pool), "", false},
	} {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if got := sqlState(c.err); got != c.state {
			t.Errorf("%s: SQLSTATE %q, want %q (%v)", c.name, got, c.state, c.err)
		}
		got := classify(c.err)
		if errors.Is(got, storage.ErrPermanent) != c.perm {
			t.Errorf("%s: classify(%v) permanent = %v, want %v", c.name, c.err, !c.perm, c.perm)
		}
		if !errors.Is(got, c.err) {
			t.Errorf("%s: classify lost the error", c.name)
		}
	}
	if _, err := conn.Exec(ctx, `RESET statement_timeout`); err != nil {
		t.Fatal(err)
	}
}

// An administrator terminating the backend (57P01) is transient.
func TestClassifyAdminShutdown(t *testing.T) {
	ctx := context.Background()
	pool := testPool(t)
	victim, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Release()
	pid := victim.Conn().PgConn().PID()
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	_, err = victim.Exec(ctx, `SELECT 1`)
	if err == nil {
		t.Fatal("query on a terminated backend: no error")
	}
	t.Logf("terminated backend: SQLSTATE %q: %v", sqlState(err), err)
	if errors.Is(classify(err), storage.ErrPermanent) {
		t.Errorf("terminated backend (SQLSTATE %q): %v classified permanent", sqlState(err), err)
	}
}

func serializationFailure(t *testing.T, pool *pgxpool.Pool) error {
	ctx := context.Background()
	table := testenv.Name("gocap_ser")
	if _, err := pool.Exec(ctx, `CREATE TABLE `+table+` (id int PRIMARY KEY, v int); INSERT INTO `+table+` VALUES (1, 0)`); err != nil {
		t.Fatal(err)
	}
	defer pool.Exec(ctx, `DROP TABLE `+table)
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT v FROM `+table+` WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE `+table+` SET v = 1 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, `UPDATE `+table+` SET v = 2 WHERE id = 1`)
	return err
}

// deadlock makes two transactions lock two rows in opposite orders and
// returns the error of the one PostgreSQL aborts (after deadlock_timeout).
func deadlock(t *testing.T, pool *pgxpool.Pool) error {
	ctx := context.Background()
	table := testenv.Name("gocap_dl")
	if _, err := pool.Exec(ctx, `CREATE TABLE `+table+` (id int PRIMARY KEY, v int); INSERT INTO `+table+` VALUES (1, 0), (2, 0)`); err != nil {
		t.Fatal(err)
	}
	defer pool.Exec(ctx, `DROP TABLE `+table)
	a, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Rollback(ctx)
	b, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Rollback(ctx)
	upd := `UPDATE ` + table + ` SET v = v + 1 WHERE id = $1`
	if _, err := a.Exec(ctx, upd, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(ctx, upd, 2); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() { _, err := a.Exec(ctx, upd, 2); errs <- err }()
	go func() { _, err := b.Exec(ctx, upd, 1); errs <- err }()
	e1, e2 := <-errs, <-errs
	if e1 != nil {
		return e1
	}
	return e2
}

func noServer() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable")
	if err == nil {
		conn.Close(ctx)
	}
	return err
}

func canceled(pool *pgxpool.Pool) error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := pool.Exec(ctx, `SELECT 1`)
	return err
}

// A received message whose group is too long for the btree of the
// (msg_id, grp) index is refused for good: the error says so.
func TestInsertReceivedOverIndexLimitIsPermanent(t *testing.T) {
	ctx := context.Background()
	pool := testPool(t)
	schema := testenv.Name("gocap_cl")
	t.Cleanup(func() { pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })
	d := New(pool, Options{Schema: schema})
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	gen, _ := ids.NewGenerator(-1)
	m := &storage.Message{ID: gen.Next(), Kind: storage.Received, MsgID: "1", Group: incompressible(10000), Name: "n", Added: time.Now().UTC()}
	_, err := d.InsertReceived(ctx, m, ids.Token(), time.Now().Add(time.Minute))
	if !errors.Is(err, storage.ErrPermanent) || sqlState(err) != "54000" {
		t.Errorf("InsertReceived with a 10,000-character group: %.300v; want a permanent 54000", err)
	}
}
