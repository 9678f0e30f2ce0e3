// Package mysql is gocap's MySQL and MariaDB storage, on database/sql with
// github.com/go-sql-driver/mysql.
//
// [New] returns a [Driver] that implements storage.Driver[*sql.Tx]: Publish
// takes the application's *sql.Tx. MySQL has no LISTEN/NOTIFY: use
// outbox.InTx, which wakes the processor right after the commit, or rely on
// the processor's polling (Options.PollInterval of the outbox).
//
// # Servers
//
// Claims use SELECT ... FOR UPDATE SKIP LOCKED in a short transaction that
// only sets the lease, so no transaction is open while a message is sent.
// The claim transaction runs at READ COMMITTED whatever the server default:
// at REPEATABLE READ its locking read takes gap locks on the claim index,
// and those deadlock with the inserts of concurrent publishes. A claim that
// still meets a deadlock or lock wait timeout is retried a few times. (A
// server logging with binlog_format=STATEMENT refuses writes at READ
// COMMITTED; ROW, the MySQL 8 default, and MIXED, MariaDB's, are fine.)
// SKIP LOCKED exists from MySQL 8.0.1 and MariaDB 10.6; on older servers the
// driver falls back to FOR UPDATE, where concurrent claimers wait for each
// other instead of skipping: still correct (a locking read sees the latest
// committed lease, so a row goes to one processor), only slower with many
// processors. The server version is read once, before the first claim.
//
// # MySQL 8 and MariaDB
//
// MariaDB 10.11 (tested here) and MySQL 8 run the same schema and
// statements; the SQL avoids what only one of them has or what behaves
// differently:
//
//   - SKIP LOCKED: MySQL 8.0.1+, MariaDB 10.6+ (see above).
//   - CREATE INDEX IF NOT EXISTS is MariaDB only, so indexes are declared
//     inside CREATE TABLE IF NOT EXISTS; an index added later needs a
//     migration of its own.
//   - UPDATE ... RETURNING exists on neither (MariaDB has INSERT/DELETE
//     RETURNING only): Fail reads the row back in its transaction, and
//     InsertReceived reads back the lease token of the (msg_id, grp) row.
//   - Row aliases in ON DUPLICATE KEY UPDATE (INSERT ... AS new) are MySQL
//     8.0.19+ only; VALUES() is used, which MySQL 8.0.20+ deprecates (a
//     warning) and MariaDB keeps.
//   - JSON is a binary type on MySQL and an alias of LONGTEXT on MariaDB:
//     headers are LONGTEXT on both.
//   - MariaDB's SIMULTANEOUS_ASSIGNMENT sql_mode makes every UPDATE SET
//     assignment read the old row, where MySQL reads columns already
//     assigned: no statement here reads a column assigned before it.
//   - NO_BACKSLASH_ESCAPES changes what '\\' means in SQL text: the LIKE of
//     the dashboard's content search escapes with '!' instead.
//   - MariaDB's default max_allowed_packet is 16 MiB, MySQL 8's 64 MiB (see
//     below).
//   - The transaction isolation variable is transaction_isolation on MySQL
//     8 and tx_isolation on MariaDB; the driver sets the claim's isolation
//     through database/sql and reads neither.
//
// # Connection settings
//
// Times are written and read as UTC DATETIME(6) text by the driver itself,
// so the DSN's parseTime and loc settings do not matter. A message must fit
// in one packet with its statement: raise the server's max_allowed_packet
// above your largest body (MariaDB's default, 16 MiB, is too small for a
// 16 MiB body; SET GLOBAL max_allowed_packet = 64*1024*1024, or the
// [mysqld] setting). go-sql-driver's own limit defaults to 64 MiB. Tables
// are utf8mb4 with binary collation. Larger batches are split into several
// INSERT statements (at most 1,000 rows or about 8 MiB of bodies each) in
// one transaction.
//
// interpolateParams=true in the DSN saves the prepare and close round trips
// that database/sql otherwise makes for every statement with arguments
// (about 15% of a one-message publish transaction on loopback; see
// BenchmarkInsertPublishedTx).
//
// # Schema
//
// Tables are named with Options.TablePrefix (default "gocap_"): published,
// received and instances. [Driver.Migrate] creates them under a GET_LOCK,
// so several instances may run it at once; [SchemaSQL] gives the DDL for
// teams that run their own migrations. QUERY_PLANS.md shows the plans of
// the background queries.
//
// Text that is longer than its VARCHAR column (name 255 characters, grp
// 200, the instance id and hostname 255) is cut to the column, on a
// character boundary, ending with "…[truncated]"; claims, dashboard
// filters and RemoveInstance cut the values they are given the same way,
// so they still match. Two groups that agree on their first 188
// characters are therefore one group here.
package mysql

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

//go:embed schema.sql
var schemaSQL string

// DefaultTablePrefix names the tables when Options.TablePrefix is empty.
const DefaultTablePrefix = "gocap_"

// SchemaSQL returns the DDL that Migrate runs, for prefix (empty =
// "gocap_"), as separate statements.
func SchemaSQL(prefix string) []string {
	if prefix == "" {
		prefix = DefaultTablePrefix
	}
	var out []string
	for _, stmt := range strings.Split(strings.ReplaceAll(schemaSQL, "{{prefix}}", prefix), ";\n") {
		var lines []string
		for _, l := range strings.Split(stmt, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "--") {
				lines = append(lines, l)
			}
		}
		if s := strings.TrimSpace(strings.Join(lines, "\n")); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Options configure a [Driver].
type Options struct {
	// TablePrefix is put before the table names. Empty means "gocap_".
	TablePrefix string
	// Logger receives the driver's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// Driver is the MySQL storage. It is safe for concurrent use.
type Driver struct {
	db   *sql.DB
	opts Options
	q    queries

	mu          sync.Mutex // guards the two fields below
	versionRead bool       // the server version has been read
	skipLocked  string     // " SKIP LOCKED" where the server has it
}

var _ storage.Driver[*sql.Tx] = (*Driver)(nil)

var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9_]{0,40}$`)

// New returns a driver on db. It panics if opts.TablePrefix has characters
// other than letters, digits and underscores.
func New(db *sql.DB, opts Options) *Driver {
	if opts.TablePrefix == "" {
		opts.TablePrefix = DefaultTablePrefix
	}
	if !prefixPattern.MatchString(opts.TablePrefix) {
		panic(fmt.Sprintf("mysql: table prefix %q is not a plain identifier", opts.TablePrefix))
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Driver{db: db, opts: opts, q: newQueries(opts.TablePrefix)}
}

// Migrate creates the tables if they do not exist.
func (d *Driver) Migrate(ctx context.Context) error {
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("mysql: migrate: %w", classify(err))
	}
	defer conn.Close()
	lock := "gocap.migrate." + d.opts.TablePrefix
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 60)", lock).Scan(&got); err != nil || got.Int64 != 1 {
		return fmt.Errorf("mysql: migrate: taking lock %q: %v (result %v)", lock, err, got)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK(?)", lock)
	for _, stmt := range SchemaSQL(d.opts.TablePrefix) {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("mysql: migrate: %w\n%s", classify(err), stmt)
		}
	}
	return nil
}

// lockClause returns " SKIP LOCKED" if the server supports it. The server
// version is read once; a failed read is tried again on the next call.
func (d *Driver) lockClause(ctx context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.versionRead {
		return d.skipLocked, nil
	}
	var version string
	if err := d.db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return "", fmt.Errorf("mysql: reading the server version: %w", classify(err))
	}
	d.versionRead = true
	if supportsSkipLocked(version) {
		d.skipLocked = " SKIP LOCKED"
	} else {
		d.opts.Logger.Warn("gocap: this MySQL server has no SKIP LOCKED; claims wait for each other", "version", version)
	}
	return d.skipLocked, nil
}

// supportsSkipLocked reads a VERSION() string: MariaDB 10.6+, MySQL 8.0.1+.
func supportsSkipLocked(version string) bool {
	nums := strings.SplitN(strings.SplitN(version, "-", 2)[0], ".", 3)
	part := func(i int) int {
		if i >= len(nums) {
			return 0
		}
		n, _ := strconv.Atoi(nums[i])
		return n
	}
	major, minor, patch := part(0), part(1), part(2)
	if strings.Contains(strings.ToLower(version), "mariadb") {
		return major > 10 || (major == 10 && minor >= 6)
	}
	return major > 8 || (major == 8 && (minor > 0 || patch >= 1))
}

// dbTime formats t for a DATETIME(6) column, in UTC.
func dbTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000") }

// nullTime formats t, or NULL when t is zero.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return dbTime(t)
}

// timeCol scans a DATETIME column whatever the DSN's parseTime setting.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.t = time.Time{}
	case time.Time:
		// parseTime=true: the driver read it in the DSN's loc; the wall
		// clock is UTC.
		*c.t = time.Date(x.Year(), x.Month(), x.Day(), x.Hour(), x.Minute(), x.Second(), x.Nanosecond(), time.UTC)
	case []byte:
		return c.parse(string(x))
	case string:
		return c.parse(x)
	default:
		return fmt.Errorf("mysql: cannot scan %T into a time", v)
	}
	return nil
}

func (c timeCol) parse(s string) error {
	t, err := time.ParseInLocation("2006-01-02 15:04:05.999999", s, time.UTC)
	if err != nil {
		return fmt.Errorf("mysql: reading time %q: %w", s, classify(err))
	}
	*c.t = t
	return nil
}

// maxErrorBytes bounds LastError (and the reason of a Release) below the
// 65,535 bytes of a TEXT column: storage.TruncateText cuts it there.
const maxErrorBytes = 16 << 10

// Sizes, in characters, of the VARCHAR columns that hold text given by
// the application or read from the wire (see schema.sql). Longer text is
// cut with sqlstore.FitChars; a received message id is never cut, but made
// at most storage.MaxMsgIDBytes long by storage.StorableMsgID.
const (
	nameChars     = 255 // name
	groupChars    = 200 // grp
	instanceChars = 255 // instances.id and instances.hostname
)

// classify returns err wrapped with storage.ErrPermanent when the server
// (or the client library) refused the statement for a reason that running
// it again cannot fix:
//
//   - the data: 1048 a NULL in a NOT NULL column, 1264 and 1690 out of
//     range, 1265 data truncated, 1292 incorrect value, 1300 invalid
//     character string, 1364 no default value, 1366 incorrect string value
//     (invalid UTF-8), 1406 data too long, 3140 invalid JSON, 3819 and
//     4025 check constraint;
//   - integrity: 1062 duplicate key (a published id stored already; the
//     received duplicates the driver expects are resolved by ON DUPLICATE
//     KEY UPDATE and raise none), 1451 and 1452 foreign key;
//   - size: 1153 packet bigger than max_allowed_packet, and
//     mysql.ErrPktTooLarge, the client's own refusal;
//   - the statement: 1054 unknown column, 1064 syntax error, 1146 no such
//     table (a bug or a missing migration).
//
// Every other error is returned as it is, as transient: 1213 deadlock,
// 1205 lock wait timeout, a lost or closed connection (driver.ErrBadConn,
// mysql.ErrInvalidConn, 2006 gone away, 2013 lost during query), network
// and context errors, and any code not listed.
func classify(err error) error {
	if errors.Is(err, mysql.ErrPktTooLarge) {
		return sqlstore.Permanent(err)
	}
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return err
	}
	switch me.Number {
	case 1048, 1264, 1265, 1292, 1300, 1364, 1366, 1406, 1690, 3140, 3819, 4025,
		1062, 1451, 1452,
		1153,
		1054, 1064, 1146:
		return sqlstore.Permanent(err)
	}
	return err
}

// execer is what *sql.DB and *sql.Tx have in common.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// InsertPublishedTx inserts msgs with the application's transaction.
func (d *Driver) InsertPublishedTx(ctx context.Context, tx *sql.Tx, msgs []*storage.Message) error {
	if tx == nil {
		return errors.New("mysql: insert published: transaction is nil")
	}
	return d.insertPublished(ctx, tx, msgs)
}

// InsertPublished inserts msgs in a transaction of its own: one statement
// in autocommit when they fit in one, else a transaction around several.
func (d *Driver) InsertPublished(ctx context.Context, msgs []*storage.Message) error {
	if len(insertBatches(msgs)) <= 1 {
		return d.insertPublished(ctx, d.db, msgs)
	}
	return d.inTx(ctx, func(tx *sql.Tx) error { return d.insertPublished(ctx, tx, msgs) })
}

// Limits of one multi-row INSERT: rows (6 placeholders each; a prepared
// statement takes at most 65,535), and body bytes after which a statement
// is cut so that a batch of large messages does not outgrow
// max_allowed_packet (a single message larger than it cannot be stored).
const (
	insertBatchRows  = 1000
	insertBatchBytes = 8 << 20
)

// insertBatches cuts msgs into the rows of successive INSERT statements.
func insertBatches(msgs []*storage.Message) [][]*storage.Message {
	var out [][]*storage.Message
	start, size := 0, 0
	for i, m := range msgs {
		if i > start && (i-start >= insertBatchRows || size+len(m.Body) > insertBatchBytes) {
			out = append(out, msgs[start:i])
			start, size = i, 0
		}
		size += len(m.Body)
	}
	if start < len(msgs) {
		out = append(out, msgs[start:])
	}
	return out
}

func (d *Driver) insertPublished(ctx context.Context, e execer, msgs []*storage.Message) error {
	for _, batch := range insertBatches(msgs) {
		var sb strings.Builder
		sb.WriteString(d.q.insertPublished)
		args := make([]any, 0, 6*len(batch))
		for i, m := range batch {
			h, err := sqlstore.HeadersJSON(m)
			if err != nil {
				return err
			}
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString("(?, ?, ?, ?, 'Scheduled', 0, '', ?, ?)")
			args = append(args, m.ID, sqlstore.FitChars(m.Name, nameChars), h, sqlstore.NonNil(m.Body), dbTime(m.Added), dbTime(m.NextAttemptAt))
		}
		if _, err := e.ExecContext(ctx, sb.String(), args...); err != nil {
			return fmt.Errorf("mysql: inserting %d published messages: %w", len(batch), classify(err))
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
	msgID, group := storage.StorableMsgID(m.MsgID), sqlstore.FitChars(m.Group, groupChars)
	_, err = d.db.ExecContext(ctx, d.q.insertReceived,
		m.ID, msgID, group, sqlstore.FitChars(m.Name, nameChars), h, sqlstore.NonNil(m.Body), dbTime(m.Added), dbTime(m.Added), token, dbTime(leaseUntil))
	if err != nil {
		return 0, false, fmt.Errorf("mysql: storing received message %q for group %q: %w", msgID, group, classify(err))
	}
	var id int64
	var got sql.NullInt64
	if err := d.db.QueryRowContext(ctx, d.q.receivedToken, msgID, group).Scan(&id, &got); err != nil {
		return 0, false, fmt.Errorf("mysql: reading back received message %q for group %q: %w", msgID, group, classify(err))
	}
	if !got.Valid || got.Int64 != token {
		return 0, false, nil // a duplicate that was not Failed
	}
	return id, true, nil
}

// Claim leases due Scheduled rows (see storage.Store).
func (d *Driver) Claim(ctx context.Context, kind storage.Kind, req storage.ClaimRequest) ([]*storage.Message, error) {
	t, err := d.q.table(kind)
	if err != nil {
		return nil, err
	}
	if req.Limit <= 0 || req.Token == 0 {
		return nil, fmt.Errorf("mysql: claim: limit %d and token %d must be positive", req.Limit, req.Token)
	}
	lock, err := d.lockClause(ctx)
	if err != nil {
		return nil, err
	}
	now := dbTime(req.Now)
	query := t.selectAll + ` WHERE status = 'Scheduled' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)`
	args := []any{now, now}
	if kind == storage.Received && req.Groups != nil {
		if len(req.Groups) == 0 {
			return nil, nil
		}
		query += ` AND grp IN (` + sqlstore.Placeholders(len(req.Groups)) + `)`
		for _, g := range req.Groups {
			args = append(args, sqlstore.FitChars(g, groupChars))
		}
	}
	query += ` ORDER BY next_attempt_at LIMIT ? FOR UPDATE` + lock
	args = append(args, req.Limit)

	var msgs []*storage.Message
	err = d.claimTx(ctx, func(tx *sql.Tx) error {
		msgs = nil
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		msgs, err = scanMessages(rows, kind)
		if err != nil || len(msgs) == 0 {
			return err
		}
		ids := make([]any, 0, len(msgs)+2)
		ids = append(ids, dbTime(req.LeaseUntil), req.Token)
		for _, m := range msgs {
			ids = append(ids, m.ID)
		}
		_, err = tx.ExecContext(ctx, t.lease+sqlstore.Placeholders(len(msgs))+`)`, ids...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mysql: claiming %s messages: %w", kind, classify(err))
	}
	for _, m := range msgs {
		m.LeaseToken, m.LeaseUntil = req.Token, req.LeaseUntil.UTC()
	}
	return msgs, nil
}

// claimTx runs a claim transaction at READ COMMITTED, where a locking read
// takes no gap locks: at REPEATABLE READ those of the claim index range
// deadlock with concurrent publishers' inserts. The rare deadlock that
// remains (two claimers' lease updates on the same index pages) is retried
// a few times.
func (d *Driver) claimTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	const attempts = 4
	var err error
	for i := range attempts {
		if i > 0 {
			d.opts.Logger.Debug("mysql: retrying a claim after a lock conflict", "err", err, "attempt", i+1)
			select {
			case <-ctx.Done():
				return err
			case <-time.After(time.Duration(i) * 10 * time.Millisecond):
			}
		}
		tx, berr := d.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
		if berr != nil {
			return berr
		}
		if err = f(tx); err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if !lockConflict(err) {
			return err
		}
	}
	return err
}

// lockConflict reports a deadlock (1213) or a lock wait timeout (1205).
func lockConflict(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
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

// Succeed marks leased rows Succeeded (see storage.Store).
func (d *Driver) Succeed(ctx context.Context, kind storage.Kind, leases []storage.Lease, now, expiresAt time.Time) (int64, error) {
	t, err := d.q.table(kind)
	if err != nil {
		return 0, err
	}
	if len(leases) == 0 {
		return 0, nil
	}
	args := make([]any, 0, 1+2*len(leases))
	args = append(args, dbTime(expiresAt))
	for _, l := range leases {
		args = append(args, l.ID, l.Token)
	}
	pairs := strings.TrimSuffix(strings.Repeat("(?, ?), ", len(leases)), ", ")
	res, err := d.db.ExecContext(ctx, t.succeed+pairs+`)`, args...)
	if err != nil {
		return 0, fmt.Errorf("mysql: marking %d %s messages succeeded: %w", len(leases), kind, classify(err))
	}
	return res.RowsAffected()
}

// Release gives up leases without counting an attempt (see storage.Store).
func (d *Driver) Release(ctx context.Context, kind storage.Kind, leases []storage.Lease, next time.Time, reason string) (int64, error) {
	t, err := d.q.table(kind)
	if err != nil {
		return 0, err
	}
	if len(leases) == 0 {
		return 0, nil
	}
	args := make([]any, 0, 2+2*len(leases))
	args = append(args, dbTime(next), storage.TruncateText(reason, maxErrorBytes))
	for _, l := range leases {
		args = append(args, l.ID, l.Token)
	}
	pairs := strings.TrimSuffix(strings.Repeat("(?, ?), ", len(leases)), ", ")
	res, err := d.db.ExecContext(ctx, t.release+pairs+`)`, args...)
	if err != nil {
		return 0, fmt.Errorf("mysql: releasing %d %s messages: %w", len(leases), kind, classify(err))
	}
	return res.RowsAffected()
}

// Fail records a failed attempt (see storage.Store).
func (d *Driver) Fail(ctx context.Context, kind storage.Kind, lease storage.Lease, f storage.Failure) (storage.FailResult, error) {
	t, err := d.q.table(kind)
	if err != nil {
		return storage.FailResult{}, err
	}
	var res storage.FailResult
	lost := false
	err = d.inTx(ctx, func(tx *sql.Tx) error {
		final := []any{f.Permanent, f.MaxAttempts, f.MaxAttempts}
		args := append([]any{storage.TruncateText(f.Error, maxErrorBytes)}, final...)
		args = append(append(args, dbTime(f.ExpiresAt)), final...)
		args = append(append(args, dbTime(f.NextAttemptAt)), final...)
		r, err := tx.ExecContext(ctx, t.fail, append(args, lease.ID, lease.Token)...)
		if err != nil {
			return err
		}
		if n, err := r.RowsAffected(); err != nil || n == 0 {
			lost = true
			return err
		}
		var status string
		if err := tx.QueryRowContext(ctx, t.failResult, lease.ID).Scan(&res.Retries, &status); err != nil {
			return err
		}
		res.Status = storage.Status(status)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("mysql: recording failure of %s message %d: %w", kind, lease.ID, classify(err))
	}
	if lost {
		return res, fmt.Errorf("mysql: recording failure of %s message %d: %w", kind, lease.ID, storage.ErrLeaseLost)
	}
	return res, nil
}

// Get returns one row (see storage.Store).
func (d *Driver) Get(ctx context.Context, kind storage.Kind, id int64) (*storage.Message, error) {
	t, err := d.q.table(kind)
	if err != nil {
		return nil, err
	}
	rows, err := d.db.QueryContext(ctx, t.selectAll+` WHERE id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("mysql: reading %s message %d: %w", kind, id, classify(err))
	}
	msgs, err := scanMessages(rows, kind)
	if err != nil {
		return nil, fmt.Errorf("mysql: reading %s message %d: %w", kind, id, classify(err))
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("mysql: %s message %d: %w", kind, id, storage.ErrNotFound)
	}
	return msgs[0], nil
}

// likeEscaper makes a LIKE pattern match its text literally. The escape
// character is '!', not the backslash, whose meaning in a string literal
// depends on the NO_BACKSLASH_ESCAPES sql_mode.
var likeEscaper = strings.NewReplacer(`!`, `!!`, `%`, `!%`, `_`, `!_`)

// List returns a page of rows matching f, newest first (see storage.Store).
func (d *Driver) List(ctx context.Context, f storage.Filter) ([]*storage.Message, error) {
	t, err := d.q.table(f.Kind)
	if err != nil {
		return nil, err
	}
	// Names, groups and ids are matched in the form they are stored in.
	f.Name, f.Group = sqlstore.FitChars(f.Name, nameChars), sqlstore.FitChars(f.Group, groupChars)
	if f.Kind == storage.Received && f.MsgID != "" {
		f.MsgID = storage.StorableMsgID(f.MsgID)
	}
	where, args, limit, ok := sqlstore.ListWhere(f, `body LIKE ? ESCAPE '!'`, func(text string) any { return []byte("%" + likeEscaper.Replace(text) + "%") })
	if !ok {
		return nil, nil // no published id is not a number
	}
	query := t.selectAll
	if f.Status != "" && f.MsgID == "" {
		// Pages by status walk the (status, id) index backwards. Left to
		// itself the optimizer prefers a backward scan of the primary key
		// once the page has an id bound, which reads every newer row of
		// other statuses: a million rows for a page of old Failed ones.
		query += " FORCE INDEX (`" + d.opts.TablePrefix + f.Kind.String() + "_status`)"
	}
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := d.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("mysql: listing %s messages: %w", f.Kind, classify(err))
	}
	msgs, err := scanMessages(rows, f.Kind)
	if err != nil {
		return nil, fmt.Errorf("mysql: listing %s messages: %w", f.Kind, classify(err))
	}
	return msgs, nil
}

// Counts returns the number of rows in each status (see storage.Store).
func (d *Driver) Counts(ctx context.Context, kind storage.Kind) (map[storage.Status]int64, error) {
	t, err := d.q.table(kind)
	if err != nil {
		return nil, err
	}
	rows, err := d.db.QueryContext(ctx, t.counts)
	if err != nil {
		return nil, fmt.Errorf("mysql: counting %s messages: %w", kind, classify(err))
	}
	counts, err := sqlstore.ScanCounts(rows)
	if err != nil {
		return nil, fmt.Errorf("mysql: counting %s messages: %w", kind, classify(err))
	}
	return counts, nil
}

// Histogram counts rows by status and time bucket (see storage.Store).
func (d *Driver) Histogram(ctx context.Context, kind storage.Kind, since time.Time, bucket time.Duration, epochMillis int64) ([]storage.HistogramBucket, error) {
	t, err := d.q.table(kind)
	if err != nil {
		return nil, err
	}
	bms := bucket.Milliseconds()
	if bms <= 0 {
		return nil, fmt.Errorf("mysql: histogram: bucket %v is shorter than a millisecond", bucket)
	}
	minID := sqlstore.MinID(since, epochMillis)
	rows, err := d.db.QueryContext(ctx, t.histogram, bms, minID)
	if err != nil {
		return nil, fmt.Errorf("mysql: %s histogram: %w", kind, classify(err))
	}
	out, err := sqlstore.ScanHistogram(rows, bms, epochMillis)
	if err != nil {
		return nil, fmt.Errorf("mysql: %s histogram: %w", kind, classify(err))
	}
	return out, nil
}

// Requeue makes rows Scheduled and due at now (see storage.Store).
func (d *Driver) Requeue(ctx context.Context, kind storage.Kind, ids []int64, now time.Time) (int64, error) {
	t, err := d.q.table(kind)
	if err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, nil
	}
	at := dbTime(now)
	res, err := d.db.ExecContext(ctx, t.requeue+sqlstore.Placeholders(len(ids))+`)`, sqlstore.IDArgs(ids, at, at)...)
	if err != nil {
		return 0, fmt.Errorf("mysql: requeueing %d %s messages: %w", len(ids), kind, classify(err))
	}
	return res.RowsAffected()
}

// Delete removes rows (see storage.Store).
func (d *Driver) Delete(ctx context.Context, kind storage.Kind, ids []int64) (int64, error) {
	t, err := d.q.table(kind)
	if err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, nil
	}
	res, err := d.db.ExecContext(ctx, t.delete+sqlstore.Placeholders(len(ids))+`)`, sqlstore.IDArgs(ids)...)
	if err != nil {
		return 0, fmt.Errorf("mysql: deleting %d %s messages: %w", len(ids), kind, classify(err))
	}
	return res.RowsAffected()
}

// DeleteExpired removes up to limit expired rows (see storage.Store).
func (d *Driver) DeleteExpired(ctx context.Context, kind storage.Kind, now time.Time, limit int) (int64, error) {
	t, err := d.q.table(kind)
	if err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, fmt.Errorf("mysql: delete expired: limit %d must be positive", limit)
	}
	res, err := d.db.ExecContext(ctx, t.deleteExpired, dbTime(now), limit)
	if err != nil {
		return 0, fmt.Errorf("mysql: deleting expired %s messages: %w", kind, classify(err))
	}
	return res.RowsAffected()
}

// Heartbeat records that a processor is alive (see storage.Store).
func (d *Driver) Heartbeat(ctx context.Context, inst storage.Instance) error {
	_, err := d.db.ExecContext(ctx, d.q.heartbeat, sqlstore.FitChars(inst.ID, instanceChars), sqlstore.FitChars(inst.Hostname, instanceChars), inst.PID, dbTime(inst.Started), dbTime(inst.LastSeen))
	if err != nil {
		return fmt.Errorf("mysql: heartbeat of %s: %w", inst.ID, classify(err))
	}
	return nil
}

// Instances lists processors seen after since (see storage.Store).
func (d *Driver) Instances(ctx context.Context, since time.Time) ([]storage.Instance, error) {
	rows, err := d.db.QueryContext(ctx, d.q.instances, dbTime(since))
	if err != nil {
		return nil, fmt.Errorf("mysql: listing processors: %w", classify(err))
	}
	defer rows.Close()
	var out []storage.Instance
	for rows.Next() {
		var inst storage.Instance
		if err := rows.Scan(&inst.ID, &inst.Hostname, &inst.PID, timeCol{&inst.Started}, timeCol{&inst.LastSeen}); err != nil {
			return nil, fmt.Errorf("mysql: listing processors: %w", classify(err))
		}
		out = append(out, inst)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mysql: listing processors: %w", classify(err))
	}
	return out, nil
}

// RemoveInstance forgets a processor, and those not seen since olderThan
// (see storage.Store).
func (d *Driver) RemoveInstance(ctx context.Context, id string, olderThan time.Time) error {
	if _, err := d.db.ExecContext(ctx, d.q.removeInstance, sqlstore.FitChars(id, instanceChars), nullTime(olderThan)); err != nil {
		return fmt.Errorf("mysql: removing processor %q: %w", id, classify(err))
	}
	return nil
}

func scanMessages(rows *sql.Rows, kind storage.Kind) ([]*storage.Message, error) {
	defer rows.Close()
	var out []*storage.Message
	for rows.Next() {
		m := &storage.Message{Kind: kind}
		var headers []byte
		var status string
		var token sql.NullInt64
		if err := rows.Scan(&m.ID, &m.MsgID, &m.Group, &m.Name, &headers, &m.Body, &status, &m.Retries,
			&m.LastError, timeCol{&m.Added}, timeCol{&m.NextAttemptAt}, timeCol{&m.ExpiresAt}, &token,
			timeCol{&m.LeaseUntil}); err != nil {
			return nil, err
		}
		m.Status = storage.Status(status)
		m.LeaseToken = token.Int64
		if err := json.Unmarshal(headers, &m.Headers); err != nil {
			return nil, fmt.Errorf("decoding headers of message %d: %w", m.ID, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
