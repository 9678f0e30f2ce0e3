package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
)

// errNumber returns the server's error number in err, or 0.
func errNumber(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

func openDB(t *testing.T, params string) *sql.DB {
	t.Helper()
	dsn := testenv.MySQLDSN(t)
	if params != "" {
		if strings.Contains(dsn, "?") {
			dsn += "&" + params
		} else {
			dsn += "?" + params
		}
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestClassify provokes real errors from the server and the client library
// and checks which ones classify marks permanent.
func TestClassify(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "")
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exec := func(q string, args ...any) error {
		_, err := conn.ExecContext(ctx, q, args...)
		return err
	}
	for _, q := range []string{
		`SET SESSION sql_mode = 'STRICT_ALL_TABLES'`,
		`CREATE TEMPORARY TABLE t (id INT PRIMARY KEY, s VARCHAR(5) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
			n TINYINT NOT NULL DEFAULT 0, d DATETIME NULL, j JSON NULL)`,
		`INSERT INTO t (id) VALUES (1)`,
	} {
		if err := exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	packetDB := openDB(t, "maxAllowedPacket=1024")
	_, pktErr := packetDB.ExecContext(ctx, `SELECT '`+strings.Repeat("x", 4096)+`'`)

	for _, c := range []struct {
		name    string
		err     error
		numbers []uint16 // accepted server error numbers; none when the error is not the server's
		perm    bool
	}{
		{"data too long", exec(`INSERT INTO t (id, s) VALUES (2, 'toolong')`), []uint16{1406}, true},
		{"invalid UTF-8", exec(`INSERT INTO t (id, s) VALUES (3, ?)`, "a\xffb"), []uint16{1366}, true},
		{"out of range", exec(`INSERT INTO t (id, n) VALUES (4, 300)`), []uint16{1264}, true},
		{"null", exec(`INSERT INTO t (id, s) VALUES (5, NULL)`), []uint16{1048}, true},
		{"incorrect datetime", exec(`INSERT INTO t (id, d) VALUES (6, 'not a date')`), []uint16{1292}, true},
		{"invalid JSON", exec(`INSERT INTO t (id, j) VALUES (7, '{not json')`), []uint16{3140, 4025}, true}, // MySQL, MariaDB
		{"duplicate key", exec(`INSERT INTO t (id) VALUES (1)`), []uint16{1062}, true},
		{"syntax error", exec(`SELEC 1`), []uint16{1064}, true},
		{"no such table", exec(`SELECT * FROM no_such_table_gocap`), []uint16{1146}, true},
		{"unknown column", exec(`SELECT no_such_column FROM t`), []uint16{1054}, true},
		{"packet too large (client)", pktErr, nil, true},
		{"deadlock", deadlock(t, db), []uint16{1213}, false},
		{"lock wait timeout", lockWaitTimeout(t, db), []uint16{1205}, false},
		{"killed connection", killedConn(t, db), nil, false},
		{"no server", noServer(), nil, false},
	} {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		n := errNumber(c.err)
		if (n == 0) != (len(c.numbers) == 0) || (n != 0 && !contains(c.numbers, n)) {
			t.Errorf("%s: error number %d, want one of %v (%v)", c.name, n, c.numbers, c.err)
		}
		got := classify(c.err)
		if errors.Is(got, storage.ErrPermanent) != c.perm {
			t.Errorf("%s: classify(%v) permanent = %v, want %v", c.name, c.err, !c.perm, c.perm)
		}
		if !errors.Is(got, c.err) {
			t.Errorf("%s: classify lost the error", c.name)
		}
	}
	// Errors the server sends on a connection that is gone: the client
	// library reports them, they cannot be provoked here reliably.
	for _, err := range []error{driver.ErrBadConn, mysql.ErrInvalidConn,
		&mysql.MySQLError{Number: 2006, Message: "MySQL server has gone away"},
		&mysql.MySQLError{Number: 2013, Message: "Lost connection to MySQL server during query"}} {
		if errors.Is(classify(err), storage.ErrPermanent) {
			t.Errorf("classify(%v) is permanent", err)
		}
	}
	if !errors.Is(classify(&mysql.MySQLError{Number: 1153, Message: "Got a packet bigger than 'max_allowed_packet' bytes"}), storage.ErrPermanent) {
		t.Error("1153 is not permanent")
	}
}

func contains(ns []uint16, n uint16) bool {
	for _, x := range ns {
		if x == n {
			return true
		}
	}
	return false
}

func twoRowTable(t *testing.T, db *sql.DB) string {
	t.Helper()
	table := "`" + testenv.Name("gocap_cl") + "`"
	if _, err := db.Exec(`CREATE TABLE ` + table + ` (id INT PRIMARY KEY, v INT) ENGINE=InnoDB`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec(`DROP TABLE IF EXISTS ` + table) })
	if _, err := db.Exec(`INSERT INTO ` + table + ` VALUES (1, 0), (2, 0)`); err != nil {
		t.Fatal(err)
	}
	return table
}

// deadlock makes two transactions lock two rows in opposite orders and
// returns the error of the one InnoDB rolls back.
func deadlock(t *testing.T, db *sql.DB) error {
	ctx := context.Background()
	table := twoRowTable(t, db)
	upd := `UPDATE ` + table + ` SET v = v + 1 WHERE id = ?`
	a, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Rollback()
	b, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Rollback()
	if _, err := a.Exec(upd, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(upd, 2); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() { _, err := a.Exec(upd, 2); errs <- err }()
	time.Sleep(50 * time.Millisecond) // a waits for b's lock first
	go func() { _, err := b.Exec(upd, 1); errs <- err }()
	e1 := <-errs
	if e1 == nil {
		e1 = <-errs
	}
	a.Rollback()
	b.Rollback()
	return e1
}

func lockWaitTimeout(t *testing.T, db *sql.DB) error {
	ctx := context.Background()
	table := twoRowTable(t, db)
	holder, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()
	if _, err := holder.Exec(`SELECT * FROM ` + table + ` WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SET SESSION innodb_lock_wait_timeout = 1`); err != nil {
		t.Fatal(err)
	}
	_, err = conn.ExecContext(ctx, `UPDATE `+table+` SET v = 1 WHERE id = 1`)
	return err
}

// killedConn returns the error of a query on a connection the server
// killed.
func killedConn(t *testing.T, db *sql.DB) error {
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var id int64
	if err := conn.QueryRowContext(ctx, `SELECT CONNECTION_ID()`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `KILL ?`, id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	_, err = conn.ExecContext(ctx, `SELECT 1`)
	t.Logf("killed connection: %v", err)
	return err
}

func noServer() error {
	db, err := sql.Open("mysql", "root@tcp(127.0.0.1:1)/test?timeout=2s")
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Ping()
}
