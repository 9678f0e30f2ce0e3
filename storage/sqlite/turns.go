package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"time"
)

// SQLite has one writer, and a connection that finds the database locked
// waits in its busy handler, which sleeps and tries again (1, 2, 5, 10 ms,
// up to 100 ms a time): a writer that just arrived takes the lock from
// one that has waited for a while, and a processor's few writes starve
// behind an application's many. In examples/ordering, 8 publishers held
// the outbox's claims and Succeeds off for seconds, and a whole round's
// handling waited for the publishing to end.
//
// Open's *sql.DB makes the write transactions of its connections take
// turns instead (turns): a transaction waits for the one before it to
// end, and then takes SQLite's lock at once. A statement outside a
// transaction does not take a turn: it meets in the busy handler the one
// transaction that holds the turn, if any, and so in effect goes first.
// The processor's claim is such a statement (its lease, one UPDATE): with
// the lease in a turn, unordered rounds of examples/ordering ran at ~80 %
// of their rate, ordered ones no faster. Writers in other *sql.DBs or
// processes meet in the busy handler, as before.

// busyTimeout is how long a write waits for SQLite's lock (busy_timeout)
// and for its turn.
const busyTimeout = 10 * time.Second

// errNoTurn is the error of a write transaction that did not get its turn
// within busyTimeout: the database stayed locked, as SQLITE_BUSY says. It
// is transient (classify).
var errNoTurn = errors.New("database is locked: no turn to write within the busy timeout")

// turns hands the turn to write to one transaction at a time. It is a
// sync.Mutex, whose waiters are served in order once one has waited for
// over a millisecond (its starvation mode) and which otherwise lets a
// transaction that arrives as the turn ends take it without a switch of
// goroutines: a queue strict in every handoff (a channel's) cost a
// quarter of the throughput of unordered messages in examples/ordering.
type turns struct {
	mu   sync.Mutex
	wait time.Duration // the longest wait for the turn
}

func newTurns() *turns { return &turns{wait: busyTimeout} }

// take waits for the turn, at most t.wait, or until ctx ends. A wait
// that gives up leaves a goroutine in line, which gives the turn back as
// soon as it gets it.
func (t *turns) take(ctx context.Context) error {
	if t.mu.TryLock() {
		return nil
	}
	got := make(chan struct{})
	go func() {
		t.mu.Lock()
		close(got)
	}()
	timer := time.NewTimer(t.wait)
	defer timer.Stop()
	var err error
	select {
	case <-got:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = errNoTurn
	}
	go func() {
		<-got
		t.mu.Unlock()
	}()
	return err
}

// give ends the turn.
func (t *turns) give() { t.mu.Unlock() }

// connector opens connections of the registered SQLite driver that share
// one turns.
type connector struct {
	driver driver.Driver
	dsn    string
	turns  *turns
}

func (c *connector) Connect(context.Context) (driver.Conn, error) {
	inner, err := c.driver.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	sc, ok := inner.(sqliteConn)
	if !ok {
		inner.Close()
		return nil, fmt.Errorf("the SQLite driver's connection %T lacks a method database/sql uses", inner)
	}
	return &turnConn{sqliteConn: sc, turns: c.turns}, nil
}

func (c *connector) Driver() driver.Driver { return c.driver }

// sqliteConn is what modernc.org/sqlite's connection implements of
// database/sql/driver, which turnConn passes on as it is.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// turnConn is a connection whose write transactions take turns.
type turnConn struct {
	sqliteConn
	turns *turns
}

// Begin is BeginTx with the default options.
func (c *turnConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

// BeginTx begins a transaction; one that may write (BEGIN IMMEDIATE takes
// SQLite's lock at once) first waits for its turn, which it holds until it
// ends. A read-only one begins at once.
func (c *turnConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if opts.ReadOnly {
		return c.sqliteConn.BeginTx(ctx, opts)
	}
	if err := c.turns.take(ctx); err != nil {
		return nil, err
	}
	tx, err := c.sqliteConn.BeginTx(ctx, opts)
	if err != nil {
		c.turns.give()
		return nil, err
	}
	return &turnTx{Tx: tx, turns: c.turns}, nil
}

// turnTx gives its turn up when it ends.
type turnTx struct {
	driver.Tx
	turns *turns
	once  sync.Once
}

func (t *turnTx) Commit() error {
	defer t.end()
	return t.Tx.Commit()
}

func (t *turnTx) Rollback() error {
	defer t.end()
	return t.Tx.Rollback()
}

func (t *turnTx) end() { t.once.Do(t.turns.give) }

// registeredDriver returns the driver registered as "sqlite" (with the
// functions and hooks registered on it).
func registeredDriver() (driver.Driver, error) {
	db, err := sql.Open("sqlite", "")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return db.Driver(), nil
}
