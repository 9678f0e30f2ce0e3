// Package sqlite is gocap's embedded storage, on the cgo-free SQLite driver
// modernc.org/sqlite: the default for the quickstart, for tests, and for
// single-node programs that want the outbox without a database server.
//
// [New] returns a [Driver] that implements storage.Driver[*sql.Tx]: Publish
// takes the application's *sql.Tx. Open the database with [Open], which
// sets WAL mode, a busy timeout and immediate write transactions.
//
// # What differs from PostgreSQL and MySQL
//
// SQLite has one writer at a time. A claim is a single UPDATE ... RETURNING
// statement, atomic under that writer, so concurrent claims from several
// goroutines (or processes on one machine) never return a row twice — but
// they wait for each other instead of skipping locked rows, and every write
// waits for the application's open write transactions. There is no
// LISTEN/NOTIFY: use outbox.InTx to wake the processor at commit, or rely on
// its polling. Keep the database on a local disk: SQLite's locking is not
// safe on network file systems. The conformance suite runs unchanged.
package sqlite

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

//go:embed schema.sql
var schemaSQL string

// DefaultTablePrefix names the tables when Options.TablePrefix is empty.
const DefaultTablePrefix = "gocap_"

// SchemaSQL returns the DDL that Migrate runs, for prefix (empty = "gocap_").
func SchemaSQL(prefix string) string {
	if prefix == "" {
		prefix = DefaultTablePrefix
	}
	return strings.ReplaceAll(schemaSQL, "{{prefix}}", prefix)
}

// Open opens the SQLite database file at path (created if missing) with
// the settings gocap needs: WAL journal (readers do not block the writer),
// busy_timeout 10s (writers wait for each other instead of failing with
// SQLITE_BUSY), synchronous NORMAL (durable in WAL mode up to the last
// checkpointed commit on power loss; use synchronous(FULL) in your own DSN
// for more), and BEGIN IMMEDIATE for transactions, so a transaction that
// reads then writes cannot deadlock on the lock upgrade.
func Open(ctx context.Context, path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: opening %s: %w", path, classify(err))
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: opening %s: %w", path, classify(err))
	}
	return db, nil
}

// Options configure a [Driver].
type Options struct {
	// TablePrefix is put before the table names. Empty means "gocap_".
	TablePrefix string
	// Logger receives the driver's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// Driver is the SQLite storage. It is safe for concurrent use.
type Driver struct {
	db     *sql.DB
	opts   Options
	pub    table
	rec    table
	insts  string
	prefix string
}

var _ storage.Driver[*sql.Tx] = (*Driver)(nil)

var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9_]{0,40}$`)

type table struct {
	name, cols string
}

// New returns a driver on db (see [Open]). It panics if opts.TablePrefix
// has characters other than letters, digits and underscores.
func New(db *sql.DB, opts Options) *Driver {
	if opts.TablePrefix == "" {
		opts.TablePrefix = DefaultTablePrefix
	}
	if !prefixPattern.MatchString(opts.TablePrefix) {
		panic(fmt.Sprintf("sqlite: table prefix %q is not a plain identifier", opts.TablePrefix))
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	rest := `name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at, lease_token, lease_until`
	return &Driver{
		db: db, opts: opts, prefix: opts.TablePrefix,
		pub:   table{opts.TablePrefix + "published", `id, CAST(id AS TEXT), '', ` + rest},
		rec:   table{opts.TablePrefix + "received", `id, msg_id, grp, ` + rest},
		insts: opts.TablePrefix + "instances",
	}
}

func (d *Driver) table(kind storage.Kind) (table, error) {
	switch kind {
	case storage.Published:
		return d.pub, nil
	case storage.Received:
		return d.rec, nil
	}
	return table{}, fmt.Errorf("sqlite: unknown message kind %d", kind)
}

// Migrate creates the tables and indexes if they do not exist.
func (d *Driver) Migrate(ctx context.Context) error {
	err := d.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, SchemaSQL(d.prefix))
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", classify(err))
	}
	return nil
}

func (d *Driver) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// us is a time as Unix microseconds; zero time is NULL.
func us(t time.Time) int64 { return t.UTC().UnixMicro() }

func nullUs(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return us(t)
}

func fromUs(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// InsertPublishedTx inserts msgs with the application's transaction.
func (d *Driver) InsertPublishedTx(ctx context.Context, tx *sql.Tx, msgs []*storage.Message) error {
	if tx == nil {
		return errors.New("sqlite: insert published: transaction is nil")
	}
	return d.insertPublished(ctx, tx, msgs)
}

// InsertPublished inserts msgs in a transaction of its own.
func (d *Driver) InsertPublished(ctx context.Context, msgs []*storage.Message) error {
	return d.inTx(ctx, func(tx *sql.Tx) error { return d.insertPublished(ctx, tx, msgs) })
}

func (d *Driver) insertPublished(ctx context.Context, e execer, msgs []*storage.Message) error {
	q := `INSERT INTO ` + d.pub.name + ` (id, name, headers, body, status, retries, last_error, added, next_attempt_at)
		VALUES (?, ?, ?, ?, 'Scheduled', 0, '', ?, ?)`
	for _, m := range msgs {
		h, err := sqlstore.HeadersJSON(m)
		if err != nil {
			return err
		}
		if _, err := e.ExecContext(ctx, q, m.ID, storage.ValidText(m.Name), h, sqlstore.NonNil(m.Body), us(m.Added), us(m.NextAttemptAt)); err != nil {
			return fmt.Errorf("sqlite: inserting published message %d: %w", m.ID, classify(err))
		}
	}
	return nil
}

// InsertReceived stores a received message claimed under a lease, or
// reports a duplicate (see storage.Store).
func (d *Driver) InsertReceived(ctx context.Context, m *storage.Message, token int64, leaseUntil time.Time) (int64, bool, error) {
	h, err := sqlstore.HeadersJSON(m)
	if err != nil {
		return 0, false, err
	}
	msgID, group := storage.StorableMsgID(m.MsgID), storage.ValidText(m.Group)
	var id int64
	err = d.db.QueryRowContext(ctx, `INSERT INTO `+d.rec.name+`
		(id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at, lease_token, lease_until)
		VALUES (?, ?, ?, ?, ?, ?, 'Scheduled', 0, '', ?, ?, ?, ?)
		ON CONFLICT (msg_id, grp) DO UPDATE SET status = 'Scheduled', retries = 0, last_error = '', expires_at = NULL,
			next_attempt_at = excluded.next_attempt_at, lease_token = excluded.lease_token, lease_until = excluded.lease_until
		WHERE status = 'Failed'
		RETURNING id`,
		m.ID, msgID, group, storage.ValidText(m.Name), h, sqlstore.NonNil(m.Body), us(m.Added), us(m.Added), token, us(leaseUntil)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("sqlite: storing received message %q for group %q: %w", msgID, group, classify(err))
	}
	return id, true, nil
}

// Claim leases due Scheduled rows in one UPDATE ... RETURNING statement
// (see storage.Store).
func (d *Driver) Claim(ctx context.Context, kind storage.Kind, req storage.ClaimRequest) ([]*storage.Message, error) {
	t, err := d.table(kind)
	if err != nil {
		return nil, err
	}
	if req.Limit <= 0 || req.Token == 0 {
		return nil, fmt.Errorf("sqlite: claim: limit %d and token %d must be positive", req.Limit, req.Token)
	}
	now := us(req.Now)
	args := []any{us(req.LeaseUntil), req.Token, now, now}
	groups := ""
	if kind == storage.Received && req.Groups != nil {
		if len(req.Groups) == 0 {
			return nil, nil
		}
		groups = ` AND grp IN (` + sqlstore.Placeholders(len(req.Groups)) + `)`
		for _, g := range req.Groups {
			args = append(args, storage.ValidText(g))
		}
	}
	args = append(args, req.Limit)
	rows, err := d.db.QueryContext(ctx, `UPDATE `+t.name+` SET lease_until = ?, lease_token = ?
		WHERE id IN (SELECT id FROM `+t.name+`
			WHERE status = 'Scheduled' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)`+groups+`
			ORDER BY next_attempt_at LIMIT ?)
		RETURNING `+t.cols, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: claiming %s messages: %w", kind, classify(err))
	}
	msgs, err := scanMessages(rows, kind)
	if err != nil {
		return nil, fmt.Errorf("sqlite: claiming %s messages: %w", kind, classify(err))
	}
	return msgs, nil
}

// Succeed marks leased rows Succeeded (see storage.Store).
func (d *Driver) Succeed(ctx context.Context, kind storage.Kind, leases []storage.Lease, now, expiresAt time.Time) (int64, error) {
	t, err := d.table(kind)
	if err != nil {
		return 0, err
	}
	var total int64
	err = d.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE `+t.name+` SET status = 'Succeeded', expires_at = ?, lease_token = NULL, lease_until = NULL
			WHERE id = ? AND lease_token = ? AND status = 'Scheduled'`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, l := range leases {
			res, err := stmt.ExecContext(ctx, us(expiresAt), l.ID, l.Token)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: marking %d %s messages succeeded: %w", len(leases), kind, classify(err))
	}
	return total, nil
}

// Release gives up leases without counting an attempt (see storage.Store).
func (d *Driver) Release(ctx context.Context, kind storage.Kind, leases []storage.Lease, next time.Time, reason string) (int64, error) {
	t, err := d.table(kind)
	if err != nil {
		return 0, err
	}
	if len(leases) == 0 {
		return 0, nil
	}
	reason = storage.TruncateText(reason, maxErrorBytes)
	var total int64
	err = d.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE `+t.name+` SET next_attempt_at = ?, last_error = ?, lease_token = NULL, lease_until = NULL
			WHERE id = ? AND lease_token = ? AND status = 'Scheduled'`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, l := range leases {
			res, err := stmt.ExecContext(ctx, us(next), reason, l.ID, l.Token)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: releasing %d %s messages: %w", len(leases), kind, classify(err))
	}
	return total, nil
}

// maxErrorBytes bounds a stored error text (LastError, and the reason of
// a Release). SQLite's TEXT has no size of its own below a gigabyte; the
// bound keeps one error from filling the dashboard and the database.
const maxErrorBytes = 16 << 10

// Fail records a failed attempt (see storage.Store).
func (d *Driver) Fail(ctx context.Context, kind storage.Kind, lease storage.Lease, f storage.Failure) (storage.FailResult, error) {
	t, err := d.table(kind)
	if err != nil {
		return storage.FailResult{}, err
	}
	final := `(?1 OR (?2 > 0 AND retries + 1 >= ?2))`
	var res storage.FailResult
	var status string
	err = d.db.QueryRowContext(ctx, `UPDATE `+t.name+` SET
			retries = retries + 1,
			last_error = ?3,
			status = CASE WHEN `+final+` THEN 'Failed' ELSE 'Scheduled' END,
			expires_at = CASE WHEN `+final+` THEN ?4 END,
			next_attempt_at = CASE WHEN `+final+` THEN next_attempt_at ELSE ?5 END,
			lease_token = NULL, lease_until = NULL
		WHERE id = ?6 AND lease_token = ?7 AND status = 'Scheduled'
		RETURNING retries, status`,
		f.Permanent, f.MaxAttempts, storage.TruncateText(f.Error, maxErrorBytes), us(f.ExpiresAt), us(f.NextAttemptAt), lease.ID, lease.Token).Scan(&res.Retries, &status)
	if errors.Is(err, sql.ErrNoRows) {
		return res, fmt.Errorf("sqlite: recording failure of %s message %d: %w", kind, lease.ID, storage.ErrLeaseLost)
	}
	if err != nil {
		return res, fmt.Errorf("sqlite: recording failure of %s message %d: %w", kind, lease.ID, classify(err))
	}
	res.Status = storage.Status(status)
	return res, nil
}

// Get returns one row (see storage.Store).
func (d *Driver) Get(ctx context.Context, kind storage.Kind, id int64) (*storage.Message, error) {
	t, err := d.table(kind)
	if err != nil {
		return nil, err
	}
	rows, err := d.db.QueryContext(ctx, `SELECT `+t.cols+` FROM `+t.name+` WHERE id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("sqlite: reading %s message %d: %w", kind, id, classify(err))
	}
	msgs, err := scanMessages(rows, kind)
	if err != nil {
		return nil, fmt.Errorf("sqlite: reading %s message %d: %w", kind, id, classify(err))
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("sqlite: %s message %d: %w", kind, id, storage.ErrNotFound)
	}
	return msgs[0], nil
}

// List returns a page of rows matching f, newest first (see storage.Store).
func (d *Driver) List(ctx context.Context, f storage.Filter) ([]*storage.Message, error) {
	t, err := d.table(f.Kind)
	if err != nil {
		return nil, err
	}
	// Names, groups and ids are matched in the form they are stored in.
	f.Name, f.Group = storage.ValidText(f.Name), storage.ValidText(f.Group)
	if f.Kind == storage.Received && f.MsgID != "" {
		f.MsgID = storage.StorableMsgID(f.MsgID)
	}
	where, args, limit, ok := sqlstore.ListWhere(f, "instr(body, ?) > 0", func(text string) any { return []byte(text) })
	if !ok {
		return nil, nil // no published id is not a number
	}
	q := `SELECT ` + t.cols + ` FROM ` + t.name
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	rows, err := d.db.QueryContext(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: listing %s messages: %w", f.Kind, classify(err))
	}
	msgs, err := scanMessages(rows, f.Kind)
	if err != nil {
		return nil, fmt.Errorf("sqlite: listing %s messages: %w", f.Kind, classify(err))
	}
	return msgs, nil
}

// Counts returns the number of rows in each status (see storage.Store).
func (d *Driver) Counts(ctx context.Context, kind storage.Kind) (map[storage.Status]int64, error) {
	t, err := d.table(kind)
	if err != nil {
		return nil, err
	}
	rows, err := d.db.QueryContext(ctx, `SELECT status, COUNT(*) FROM `+t.name+` GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: counting %s messages: %w", kind, classify(err))
	}
	counts, err := sqlstore.ScanCounts(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlite: counting %s messages: %w", kind, classify(err))
	}
	return counts, nil
}

// Histogram counts rows by status and time bucket (see storage.Store).
func (d *Driver) Histogram(ctx context.Context, kind storage.Kind, since time.Time, bucket time.Duration, epochMillis int64) ([]storage.HistogramBucket, error) {
	t, err := d.table(kind)
	if err != nil {
		return nil, err
	}
	bms := bucket.Milliseconds()
	if bms <= 0 {
		return nil, fmt.Errorf("sqlite: histogram: bucket %v is shorter than a millisecond", bucket)
	}
	minID := sqlstore.MinID(since, epochMillis)
	rows, err := d.db.QueryContext(ctx, `SELECT (id >> 22) / ? AS bucket, status, COUNT(*) FROM `+t.name+`
		WHERE id >= ? GROUP BY bucket, status ORDER BY bucket, status`, bms, minID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s histogram: %w", kind, classify(err))
	}
	out, err := sqlstore.ScanHistogram(rows, bms, epochMillis)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s histogram: %w", kind, classify(err))
	}
	return out, nil
}

// Requeue makes rows Scheduled and due at now (see storage.Store).
func (d *Driver) Requeue(ctx context.Context, kind storage.Kind, ids []int64, now time.Time) (int64, error) {
	t, err := d.table(kind)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	res, err := d.db.ExecContext(ctx, `UPDATE `+t.name+` SET status = 'Scheduled', retries = 0, last_error = '',
			expires_at = NULL, lease_token = NULL, lease_until = NULL, next_attempt_at = ?
		WHERE (status <> 'Scheduled' OR lease_until IS NULL OR lease_until <= ?) AND id IN (`+sqlstore.Placeholders(len(ids))+`)`,
		sqlstore.IDArgs(ids, us(now), us(now))...)
	if err != nil {
		return 0, fmt.Errorf("sqlite: requeueing %d %s messages: %w", len(ids), kind, classify(err))
	}
	return res.RowsAffected()
}

// Delete removes rows (see storage.Store).
func (d *Driver) Delete(ctx context.Context, kind storage.Kind, ids []int64) (int64, error) {
	t, err := d.table(kind)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	res, err := d.db.ExecContext(ctx, `DELETE FROM `+t.name+` WHERE id IN (`+sqlstore.Placeholders(len(ids))+`)`, sqlstore.IDArgs(ids)...)
	if err != nil {
		return 0, fmt.Errorf("sqlite: deleting %d %s messages: %w", len(ids), kind, classify(err))
	}
	return res.RowsAffected()
}

// DeleteExpired removes up to limit expired rows (see storage.Store).
func (d *Driver) DeleteExpired(ctx context.Context, kind storage.Kind, now time.Time, limit int) (int64, error) {
	t, err := d.table(kind)
	if err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, fmt.Errorf("sqlite: delete expired: limit %d must be positive", limit)
	}
	res, err := d.db.ExecContext(ctx, `DELETE FROM `+t.name+` WHERE id IN (
		SELECT id FROM `+t.name+` WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?)`, us(now), limit)
	if err != nil {
		return 0, fmt.Errorf("sqlite: deleting expired %s messages: %w", kind, classify(err))
	}
	return res.RowsAffected()
}

// Heartbeat records that a processor is alive (see storage.Store).
func (d *Driver) Heartbeat(ctx context.Context, inst storage.Instance) error {
	_, err := d.db.ExecContext(ctx, `INSERT INTO `+d.insts+` (id, hostname, pid, started, last_seen) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen`,
		storage.ValidText(inst.ID), storage.ValidText(inst.Hostname), inst.PID, us(inst.Started), us(inst.LastSeen))
	if err != nil {
		return fmt.Errorf("sqlite: heartbeat of %s: %w", inst.ID, classify(err))
	}
	return nil
}

// Instances lists processors seen after since (see storage.Store).
func (d *Driver) Instances(ctx context.Context, since time.Time) ([]storage.Instance, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT id, hostname, pid, started, last_seen FROM `+d.insts+`
		WHERE last_seen > ? ORDER BY started, id`, us(since))
	if err != nil {
		return nil, fmt.Errorf("sqlite: listing processors: %w", classify(err))
	}
	defer rows.Close()
	var out []storage.Instance
	for rows.Next() {
		var inst storage.Instance
		var started, seen sql.NullInt64
		if err := rows.Scan(&inst.ID, &inst.Hostname, &inst.PID, &started, &seen); err != nil {
			return nil, fmt.Errorf("sqlite: listing processors: %w", classify(err))
		}
		inst.Started, inst.LastSeen = fromUs(started), fromUs(seen)
		out = append(out, inst)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: listing processors: %w", classify(err))
	}
	return out, nil
}

// RemoveInstance forgets a processor, and those not seen since olderThan
// (see storage.Store).
func (d *Driver) RemoveInstance(ctx context.Context, id string, olderThan time.Time) error {
	if _, err := d.db.ExecContext(ctx, `DELETE FROM `+d.insts+` WHERE id = ? OR last_seen < ?`, storage.ValidText(id), nullUs(olderThan)); err != nil {
		return fmt.Errorf("sqlite: removing processor %q: %w", id, classify(err))
	}
	return nil
}

// classify returns err wrapped with storage.ErrPermanent when SQLite
// refused the statement for a reason that running it again cannot fix,
// judged by the primary result code: SQLITE_TOOBIG (a value over
// SQLITE_LIMIT_LENGTH), SQLITE_MISMATCH (a value of the wrong type for an
// INTEGER PRIMARY KEY), SQLITE_CONSTRAINT (a published id stored already;
// the received duplicates the driver expects are resolved by ON CONFLICT
// and raise none).
//
// Every other error is returned as it is, as transient: SQLITE_BUSY and
// SQLITE_LOCKED (another writer, past the busy timeout), SQLITE_IOERR,
// SQLITE_FULL, and the generic SQLITE_ERROR, whose causes (a syntax error,
// a missing table, but also others) its code does not tell apart.
func classify(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff { // the primary code of an extended one
	case sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_CONSTRAINT:
		return sqlstore.Permanent(err)
	}
	return err
}

func scanMessages(rows *sql.Rows, kind storage.Kind) ([]*storage.Message, error) {
	defer rows.Close()
	var out []*storage.Message
	for rows.Next() {
		m := &storage.Message{Kind: kind}
		var headers, status string
		var added, next, expires, token, leaseUntil sql.NullInt64
		if err := rows.Scan(&m.ID, &m.MsgID, &m.Group, &m.Name, &headers, &m.Body, &status, &m.Retries,
			&m.LastError, &added, &next, &expires, &token, &leaseUntil); err != nil {
			return nil, err
		}
		m.Status = storage.Status(status)
		m.Added, m.NextAttemptAt, m.ExpiresAt, m.LeaseUntil = fromUs(added), fromUs(next), fromUs(expires), fromUs(leaseUntil)
		m.LeaseToken = token.Int64
		if m.Body == nil {
			m.Body = []byte{}
		}
		if err := json.Unmarshal([]byte(headers), &m.Headers); err != nil {
			return nil, fmt.Errorf("decoding headers of message %d: %w", m.ID, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
