package mysql

// Locks of ordering keys (#18): a claim that leased keyed rows checks,
// under the named locks of their keys (GET_LOCK), that no other row of
// those keys is in flight, and clears the lease of the rows that fail
// the check, before it commits. A consistent read at READ COMMITTED
// takes its snapshot at its start, so the check, a statement after the
// locks are taken, sees every lease that a claim holding such a lock
// committed before releasing it: two claims never both lease a row of
// one key. Publishers take no lock. Named locks belong to the session,
// not to the transaction: they are released on the claim's own
// connection after the commit, and a connection whose locks could not be
// released is closed, which releases them.
//
// InnoDB's deadlock detector does not see named locks, so no transaction
// waits for one while it holds row locks: a claim, which has locked and
// leased its rows by then, only tries the locks of its keys, and gives
// up the rows of a key whose lock another session holds (they are
// claimed later); a batch of received messages waits for the locks of its
// keys first, before its INSERT takes any row lock. A claim that waited
// instead made a cycle with a batch holding such a lock and waiting, in
// its INSERT, for a row lock of a Succeed that waited for the claim's
// rows: each of the claim's locks ended the wait after keyLockWait, and
// with tens of keys a round of MariaDB's ordering example stood still
// for ten seconds and more (BENCHMARKS.md, "A stall of MariaDB's ordered
// rounds").

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gocap/gocap/storage"
)

// keyLockWait bounds, in seconds, the wait of a batch of received
// messages for each lock of its keys; the first lock it does not get
// ends the batch's attempt. A holder runs two short statements and
// commits.
const keyLockWait = 2

// keyLockName is the name of the lock of an ordering key of a table: a
// hash of table, group, version and key, within MySQL's 64 characters;
// the group and key without trailing spaces, as the PAD SPACE collation
// of their columns compares them (see padKey). A collision of two keys
// only serializes their claims.
func keyLockName(table string, m *storage.Message) string {
	group, key := strings.TrimRight(m.Group, " "), strings.TrimRight(m.OrderingKey, " ")
	h := sha256.Sum256([]byte(table + "\x00" + group + "\x00" + m.Version + "\x00" + key))
	return "gocap-key:" + hex.EncodeToString(h[:20])
}

// errKeyLockTimeout is a lock of ordering keys not obtained in time: the
// batch is retried, as after a lock conflict.
var errKeyLockTimeout = errors.New("mysql: timed out waiting for the lock of an ordering key")

// keyLocker takes named locks on one connection and releases them.
type keyLocker struct {
	conn  *sql.Conn
	names []string
}

// lockArgs sorts and compacts names, records them for release, and
// returns them with their statement arguments.
func (l *keyLocker) lockArgs(names []string) ([]string, []any) {
	names = slices.Compact(slices.Sorted(slices.Values(names)))
	l.names = append(l.names, names...)
	args := make([]any, len(names))
	for i, n := range names {
		args[i] = n
	}
	return names, args
}

// lock takes the locks of names within tx, which runs on l's connection
// and holds no row lock yet: in sorted order, so that two sessions never
// wait for each other, each waiting up to keyLockWait seconds, and none
// after the first it does not get (AND stops there; with "+", as before,
// every lock waited its time in turn).
func (l *keyLocker) lock(ctx context.Context, tx *sql.Tx, names []string) error {
	names, args := l.lockArgs(names)
	query := `SELECT ` + strings.TrimSuffix(strings.Repeat(fmt.Sprintf("GET_LOCK(?, %d) AND ", keyLockWait), len(names)), " AND ")
	var got sql.NullInt64
	if err := tx.QueryRowContext(ctx, query, args...).Scan(&got); err != nil {
		return err
	}
	if !got.Valid || got.Int64 != 1 {
		return errKeyLockTimeout
	}
	return nil
}

// tryLock takes, without waiting, the locks of names that no other
// session holds, within tx on l's connection, and returns the names it
// did not get.
func (l *keyLocker) tryLock(ctx context.Context, tx *sql.Tx, names []string) (map[string]bool, error) {
	names, args := l.lockArgs(names)
	query := `SELECT ` + strings.TrimSuffix(strings.Repeat("GET_LOCK(?, 0), ", len(names)), ", ")
	got := make([]sql.NullInt64, len(names))
	dest := make([]any, len(names))
	for i := range got {
		dest[i] = &got[i]
	}
	if err := tx.QueryRowContext(ctx, query, args...).Scan(dest...); err != nil {
		return nil, err
	}
	var busy map[string]bool
	for i, g := range got {
		if !g.Valid || g.Int64 != 1 {
			if busy == nil {
				busy = map[string]bool{}
			}
			busy[names[i]] = true
		}
	}
	return busy, nil
}

// release releases the locks taken, after the transaction ended; if it
// cannot, it closes the connection, which releases them.
func (l *keyLocker) release() {
	if len(l.names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names := slices.Compact(slices.Sorted(slices.Values(l.names)))
	l.names = nil
	args := make([]any, len(names))
	for i, n := range names {
		args[i] = n
	}
	query := `DO ` + strings.TrimSuffix(strings.Repeat("RELEASE_LOCK(?), ", len(names)), ", ")
	if _, err := l.conn.ExecContext(ctx, query, args...); err != nil {
		// Closed instead of returned to the pool with the locks.
		_ = l.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
}

// retryKeyLockedTx runs f in a transaction at READ COMMITTED, where a
// locking read takes no gap locks: at REPEATABLE READ those of the claim
// index range deadlock with concurrent publishers' inserts. The rare
// deadlock that remains (two claimers' lease updates on the same index
// pages, two batches of received messages inserting the same keys), and
// a batch's locks of ordering keys not obtained in time, are retried a few times;
// what names the transaction in the log. It runs on one connection, with
// a keyLocker whose locks are released after each attempt's transaction
// ends.
func (d *Driver) retryKeyLockedTx(ctx context.Context, what string, f func(tx *sql.Tx, l *keyLocker) error) error {
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	l := &keyLocker{conn: conn}
	const attempts = 4
	for i := range attempts {
		if i > 0 {
			d.opts.Logger.Debug("mysql: retrying a "+what+" after a lock conflict", "err", err, "attempt", i+1)
			select {
			case <-ctx.Done():
				return err
			case <-time.After(time.Duration(i) * 10 * time.Millisecond):
			}
		}
		err = d.keyLockedTx(ctx, l, f)
		if !lockConflict(err) && !errors.Is(err, errKeyLockTimeout) {
			return err
		}
	}
	return err
}

// keyLockedTx runs f in a transaction at READ COMMITTED on l's
// connection, then releases the locks f took.
func (d *Driver) keyLockedTx(ctx context.Context, l *keyLocker, f func(tx *sql.Tx, l *keyLocker) error) error {
	defer l.release()
	tx, err := l.conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	if err := f(tx, l); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
