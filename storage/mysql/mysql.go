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
//   - CREATE INDEX IF NOT EXISTS and ADD COLUMN IF NOT EXISTS are MariaDB
//     only, so indexes are declared inside CREATE TABLE IF NOT EXISTS, and
//     Migrate upgrades tables of an earlier schema after reading
//     information_schema (see upgrade.go).
//   - Neither has partial indexes: claims and NextDue read an index on
//     due_at, a STORED generated column that is next_attempt_at for
//     Scheduled and Delayed rows and NULL for the others (see schema.sql:
//     not VIRTUAL, whose index entries InnoDB's purge left behind on
//     MariaDB, so that a claim read more of them with every message
//     completed).
//   - UPDATE ... RETURNING exists on neither (MariaDB has INSERT/DELETE
//     RETURNING only): Fail reads the row back in its transaction. On
//     MySQL, InsertReceived reads back the lease token of the (msg_id,
//     grp) row, and InsertReceivedBatch those of its batch, in its
//     transaction; on MariaDB (10.5+: the version read before the first
//     claim or insert) their INSERT returns them (one round trip fewer).
//   - Row aliases in ON DUPLICATE KEY UPDATE (INSERT ... AS new) are MySQL
//     8.0.19+ only; VALUES() is used, which MySQL 8.0.20+ deprecates (a
//     warning) and MariaDB keeps.
//   - JSON is a binary type on MySQL and an alias of LONGTEXT on MariaDB:
//     headers are LONGTEXT and the attempt history MEDIUMTEXT on both,
//     changed with JSON_ARRAY_APPEND and JSON_REMOVE, which both have.
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
// The session must be utf8mb4 too: leave charset out of the DSN
// (go-sql-driver's default collation, utf8mb4_general_ci, is utf8mb4) or
// set charset=utf8mb4. With charset=utf8 (utf8mb3, as in the common
// "charset=utf8&parseTime=True&loc=Local") the server refuses every text
// with a 4-byte character, an emoji in a header say, and reads such
// characters back as '?'. The driver cannot change the session of a
// pool's connections itself (a SET NAMES reaches one connection only), so
// it checks: on first use (Migrate, the first insert or claim) it reads
// character_set_client, character_set_connection and
// character_set_results on a connection, and if one is not utf8mb4,
// Migrate, inserts and claims return an error that says so and names the
// DSN parameter to fix.
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
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

// Options configure a [Driver].
type Options struct {
	// TablePrefix is put before the table names. Empty means "gocap_".
	TablePrefix string
	// Logger receives the driver's logs. Nil means slog.Default().
	Logger *slog.Logger
	// ExactCountLimit is the number of rows of a table up to which
	// BoundedCounts, the dashboard's counts, counts Succeeded rows
	// exactly; above it, they are estimated (see [Driver.BoundedCounts]).
	// The number compared is InnoDB's own estimate of the table's rows.
	// Zero means 1,000,000; a negative value estimates always.
	ExactCountLimit int64
}

// Driver is the MySQL storage. It is safe for concurrent use.
type Driver struct {
	db   *sql.DB
	opts Options
	q    queries
	base sqlstore.Base

	mu          sync.Mutex // guards the four fields below
	versionRead bool       // the server version has been read
	charsetErr  error      // the session's character set is not utf8mb4 (checkCharset)
	skipLocked  string     // skipLockedSQL where the server has it
	returning   bool       // the server has INSERT ... RETURNING (MariaDB)
}

var (
	_ storage.Driver[*sql.Tx] = (*Driver)(nil)
	_ storage.BoundedCounter  = (*Driver)(nil)
	_ storage.KeyInspector    = (*Driver)(nil)
)

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
	return &Driver{db: db, opts: opts, q: newQueries(opts.TablePrefix),
		base: sqlstore.Base{Name: "mysql", Query: sqlstore.QueryDB(db), Classify: classify, TimeDest: timeDest}}
}

// table returns the statements of kind's table.
func (d *Driver) table(kind storage.Kind) (*tableQueries, error) {
	t, err := d.q.For(kind)
	if err != nil {
		return nil, d.base.Wrap(err)
	}
	return t, nil
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

// fitGroup is a consumer group as the grp column stores it.
func fitGroup(g string) string { return sqlstore.FitChars(g, groupChars) }

// fitName is a name as the name column stores it.
func fitName(n string) string { return sqlstore.FitChars(n, nameChars) }

// BlockedKeys lists the ordering keys whose head row is Failed (see
// storage.KeyInspector).
func (d *Driver) BlockedKeys(ctx context.Context, kind storage.Kind, limit int) ([]storage.BlockedKey, error) {
	t, err := d.table(kind)
	if err != nil {
		return nil, err
	}
	return d.base.BlockedKeys(ctx, kind, t.blockedKeys, limit)
}

// Succeed marks leased rows Succeeded and appends their attempts (see
// storage.Store): one statement per batch of at most succeedBatch rows.
func (d *Driver) Succeed(ctx context.Context, kind storage.Kind, done []storage.Completed, expiresAt time.Time) (int64, error) {
	t, err := d.table(kind)
	if err != nil || len(done) == 0 {
		return 0, err
	}
	var total int64
	for start := 0; start < len(done); start += succeedBatch {
		batch := done[start:min(start+succeedBatch, len(done))]
		query, args := t.succeedStatement(batch, dbTime(expiresAt))
		res, err := d.db.ExecContext(ctx, query, args...)
		n, err := d.base.Affected(res, err, "marking %d %s messages succeeded", len(batch), kind)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// succeedBatch is the most rows one Succeed statement marks: 3
// placeholders each, far below the 65,535 of a prepared statement.
const succeedBatch = 1000

// Release gives up leases without counting an attempt (see storage.Store).
func (d *Driver) Release(ctx context.Context, kind storage.Kind, leases []storage.Lease, next time.Time, reason string) (int64, error) {
	t, err := d.table(kind)
	if err != nil || len(leases) == 0 {
		return 0, err
	}
	res, err := d.db.ExecContext(ctx, t.releaseSQL(len(leases)),
		sqlstore.LeaseArgs(leases, dbTime(next), storage.TruncateText(reason, maxErrorBytes))...)
	return d.base.Affected(res, err, "releasing %d %s messages", len(leases), kind)
}

// Fail records a failed attempt (see storage.Store).
func (d *Driver) Fail(ctx context.Context, kind storage.Kind, lease storage.Lease, f storage.Failure) (storage.FailResult, error) {
	t, err := d.table(kind)
	if err != nil {
		return storage.FailResult{}, err
	}
	var res storage.FailResult
	lost := false
	err = sqlstore.InTx(ctx, d.db, nil, func(tx *sql.Tx) error {
		final := []any{f.Permanent, f.MaxAttempts, f.MaxAttempts}
		args := append([]any{storage.TruncateText(f.Error, maxErrorBytes)}, final...)
		args = append(append(args, dbTime(f.ExpiresAt)), final...)
		args = append(append(args, dbTime(f.NextAttemptAt)), final...)
		args = append(args, sqlstore.AttemptJSON(sqlstore.FailedAttempt(f)))
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

// NextDue returns the earliest NextAttemptAt after req.After of a
// Scheduled or Delayed row of req.Version, or the zero time (see
// storage.Store).
func (d *Driver) NextDue(ctx context.Context, kind storage.Kind, req storage.DueRequest) (time.Time, error) {
	t, err := d.table(kind)
	if err != nil {
		return time.Time{}, err
	}
	if err := sqlstore.CheckDue(req); err != nil {
		return time.Time{}, d.base.Wrap(err)
	}
	var next time.Time
	err = d.db.QueryRowContext(ctx, t.nextDue, dbTime(req.After), req.Version).Scan(timeDest(&next))
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, fmt.Errorf("mysql: next due %s message: %w", kind, classify(err))
	}
	return next, nil
}

// Get returns one row (see storage.Store).
func (d *Driver) Get(ctx context.Context, kind storage.Kind, id int64) (*storage.Message, error) {
	t, err := d.table(kind)
	if err != nil {
		return nil, err
	}
	return d.base.Get(ctx, kind, t.get, id)
}

// likeEscaper makes a LIKE pattern match its text literally. The escape
// character is '!', not the backslash, whose meaning in a string literal
// depends on the NO_BACKSLASH_ESCAPES sql_mode.
var likeEscaper = strings.NewReplacer(`!`, `!!`, `%`, `!%`, `_`, `!_`)

// list is the dashboard's filter in MySQL's terms: names and groups are
// matched in the form they are stored in.
var list = sqlstore.List{
	Placeholder: sqlstore.Question,
	Name:        fitName,
	Group:       fitGroup,
	Content: func(ph, text string) (string, any) {
		return "body LIKE " + ph + " ESCAPE '!'", []byte("%" + likeEscaper.Replace(text) + "%")
	},
}

// List returns a page of rows matching f, newest first (see storage.Store).
func (d *Driver) List(ctx context.Context, f storage.Filter) ([]*storage.Message, error) {
	t, err := d.table(f.Kind)
	if err != nil {
		return nil, err
	}
	// Pages by status walk the (status, id) index backwards. Left to
	// itself the optimizer prefers a backward scan of the primary key
	// once the page has an id bound, which reads every newer row of
	// other statuses: a million rows for a page of old Failed ones.
	force := ""
	if f.Status != "" && f.MsgID == "" {
		force = t.statusIndex
	}
	return d.base.List(ctx, list, t.selectAll, force, f)
}

// Counts returns the number of rows in each status (see storage.Store).
func (d *Driver) Counts(ctx context.Context, kind storage.Kind) (map[storage.Status]int64, error) {
	t, err := d.table(kind)
	if err != nil {
		return nil, err
	}
	return d.base.Counts(ctx, kind, t.counts)
}

// Histogram counts rows by status and time bucket (see storage.Store).
func (d *Driver) Histogram(ctx context.Context, kind storage.Kind, since time.Time, bucket time.Duration) ([]storage.HistogramBucket, error) {
	t, err := d.table(kind)
	if err != nil {
		return nil, err
	}
	return d.base.Histogram(ctx, kind, t.histogram, since, bucket)
}

// Requeue makes rows Scheduled and due at now (see storage.Store).
func (d *Driver) Requeue(ctx context.Context, kind storage.Kind, ids []int64, now time.Time) (int64, error) {
	t, err := d.table(kind)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	at := dbTime(now)
	res, err := d.db.ExecContext(ctx, t.requeueSQL(len(ids)), sqlstore.IDArgs(ids, at, at)...)
	return d.base.Affected(res, err, "requeueing %d %s messages", len(ids), kind)
}

// Delete removes rows (see storage.Store).
func (d *Driver) Delete(ctx context.Context, kind storage.Kind, ids []int64) (int64, error) {
	t, err := d.table(kind)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	res, err := d.db.ExecContext(ctx, t.deleteSQL(len(ids)), sqlstore.IDArgs(ids)...)
	return d.base.Affected(res, err, "deleting %d %s messages", len(ids), kind)
}

// DeleteExpired removes up to limit expired rows (see storage.Store).
func (d *Driver) DeleteExpired(ctx context.Context, kind storage.Kind, now time.Time, limit int) (int64, error) {
	t, err := d.table(kind)
	if err != nil {
		return 0, err
	}
	if err := sqlstore.CheckDeleteExpired(limit); err != nil {
		return 0, d.base.Wrap(err)
	}
	res, err := d.db.ExecContext(ctx, t.deleteExpired, dbTime(now), limit)
	return d.base.Affected(res, err, "deleting expired %s messages", kind)
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
	return d.base.Instances(ctx, d.q.instances, dbTime(since))
}

// RemoveInstance forgets a processor, and those not seen since olderThan
// (see storage.Store).
func (d *Driver) RemoveInstance(ctx context.Context, id string, olderThan time.Time) error {
	if _, err := d.db.ExecContext(ctx, d.q.removeInstance, sqlstore.FitChars(id, instanceChars), nullTime(olderThan)); err != nil {
		return fmt.Errorf("mysql: removing processor %q: %w", id, classify(err))
	}
	return nil
}
