package postgres

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

//go:embed schema.sql
var schemaSQL string

// SchemaSQL returns the DDL that Migrate runs, for schema (empty = "gocap").
// Migrate runs it in a transaction with lock_timeout = 5s (see
// [Driver.Migrate]); give your own migration tool's transaction a
// lock_timeout too.
func SchemaSQL(schema string) string {
	if schema == "" {
		schema = DefaultSchema
	}
	return strings.ReplaceAll(schemaSQL, "{{schema}}", pgx.Identifier{schema}.Sanitize())
}

// DefaultSchema is the schema of the tables when Options.Schema is empty.
const DefaultSchema = "gocap"

// Options configure a [Driver].
type Options struct {
	// Schema holds the tables. Empty means "gocap".
	Schema string
	// Logger receives the driver's logs. Nil means slog.Default().
	Logger *slog.Logger
	// DisableNotify turns off NOTIFY, whatever storage.InsertOptions ask;
	// processors then find new messages by polling.
	DisableNotify bool
	// ExactCountLimit is the number of rows of a table up to which
	// BoundedCounts, the dashboard's counts, counts Succeeded rows
	// exactly; above it, they are estimated (see [Driver.BoundedCounts]).
	// The number compared is PostgreSQL's own estimate of the table's
	// rows. Zero means 1,000,000; a negative value estimates always.
	ExactCountLimit int64
	// DurableBookkeeping makes Claim, Succeed, Fail, FailBatch and Release wait for
	// the WAL flush like the inserts. Off, they commit with
	// synchronous_commit off: a database crash may then lose their last
	// commits, so that rows are sent or handled again (duplicates, never a
	// loss) and, around such a crash, a key's rows may be in flight
	// together (out of order); see "Durability of the bookkeeping" in the
	// package doc.
	DurableBookkeeping bool
}

// Driver is the PostgreSQL storage. It is safe for concurrent use.
type Driver struct {
	pool    *pgxpool.Pool
	opts    Options
	channel string
	q       queries
	base    sqlstore.Base
	book    bookkeeper    // runs Claim, Succeed, Fail, FailBatch and Release
	bookQ   sqlstore.Base // base, with its queries run by book
}

var (
	_ storage.Driver[pgx.Tx] = (*Driver)(nil)
	_ storage.Listener       = (*Driver)(nil)
	_ storage.BoundedCounter = (*Driver)(nil)
	_ storage.KeyInspector   = (*Driver)(nil)
)

var schemaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// New returns a driver on pool. It panics if opts.Schema is not a plain
// SQL identifier (letters, digits and underscores).
func New(pool *pgxpool.Pool, opts Options) *Driver {
	if opts.Schema == "" {
		opts.Schema = DefaultSchema
	}
	if !schemaName.MatchString(opts.Schema) {
		panic(fmt.Sprintf("postgres: schema name %q is not a plain identifier", opts.Schema))
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &Driver{pool: pool, opts: opts, channel: notifyChannel(opts.Schema)}
	d.q = newQueries(opts.Schema, d.channel)
	d.base = sqlstore.Base{Name: "postgres", Query: d.query, Classify: classify, TimeDest: timeDest}
	d.book = bookkeeper{pool: pool, async: !opts.DurableBookkeeping}
	d.bookQ = d.base
	d.bookQ.Query = d.book.query
	return d
}

// maxIdentifier is the longest name PostgreSQL keeps (NAMEDATALEN - 1
// bytes): LISTEN truncates a longer channel name, pg_notify refuses it.
const maxIdentifier = 63

// notifyChannel is the channel the publishes to schema notify on:
// schema + "_published", or, for a schema too long for that to be a
// name, the schema's start, a hash of the whole and "_published", so
// that it stays a valid name and one of its own.
func notifyChannel(schema string) string {
	const suffix = "_published"
	if len(schema)+len(suffix) <= maxIdentifier {
		return schema + suffix
	}
	h := fnv.New32a()
	h.Write([]byte(schema))
	hash := fmt.Sprintf("_%08x", h.Sum32())
	return schema[:maxIdentifier-len(hash)-len(suffix)] + hash + suffix
}

// table returns the statements of kind's table.
func (d *Driver) table(kind storage.Kind) (*tableQueries, error) {
	t, err := d.q.For(kind)
	if err != nil {
		return nil, d.base.Wrap(err)
	}
	return t, nil
}

// migrateLockTimeout is the lock_timeout of Migrate's DDL: the longest it
// waits for each lock on a table that an upgrade needs.
const migrateLockTimeout = 5 * time.Second

// Migrate creates the schema, tables and indexes if they do not exist, and
// upgrades the tables of an earlier gocap (SchemaSQL, in one transaction).
// Migrations of one schema run one at a time, across processes: Migrate
// waits for an advisory lock as long as ctx allows.
//
// On tables that are current Migrate takes no lock on them, so a process
// starting beside running ones holds up none of their queries. An upgrade
// (a column or index to add, an index to drop) locks the table it
// changes, and waits at most 5 s (lock_timeout) for each such lock: a
// lock request waiting behind an open transaction on the table would
// hold up every later query on it. When the wait runs out Migrate
// changes nothing and returns an error that says so (SQLSTATE 55P03,
// not storage.ErrPermanent); run it again once the transaction holding
// the table has ended, or at a quieter time.
func (d *Driver) Migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		// One migration at a time per schema, across processes.
		if _, err := tx.Exec(ctx, d.q.migrateLock, "gocap.migrate."+d.opts.Schema); err != nil {
			return err
		}
		// After the advisory lock, which may be held by a long upgrade.
		if _, err := tx.Exec(ctx, d.q.migrateLockTimeout); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, d.q.schema)
		return err
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "55P03" { // lock_not_available
		return fmt.Errorf("postgres: migrating schema %q: the upgrade of its tables waited more than %v for a lock on one "+
			"and gave up, changing nothing, rather than hold up every query on the table behind its wait: another "+
			"transaction holds the table (an open transaction that wrote it, a long query; see pg_stat_activity); "+
			"run Migrate again once that has ended, or at a quieter time: %w", d.opts.Schema, migrateLockTimeout, err)
	}
	if err != nil {
		return fmt.Errorf("postgres: migrating schema %q: %w", d.opts.Schema, classify(err))
	}
	return nil
}

// querier runs the statements of an insert of published rows: on the
// application's transaction (a pgx.Tx or a *sql.Tx) or on the pool.
type querier interface {
	// exec runs sql and returns how many rows it affected or returned.
	exec(ctx context.Context, sql string, args ...any) (int64, error)
	// inTx reports whether the statements run in the application's
	// transaction, which an error must not abort.
	inTx() bool
}

// pgxQuerier runs statements on a pgx.Tx (tx true) or on the pool.
type pgxQuerier struct {
	q interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	}
	tx bool
}

func (p pgxQuerier) exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := p.q.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

func (p pgxQuerier) inTx() bool { return p.tx }

// InsertPublishedTx inserts msgs with the application's transaction, in one
// round trip that also notifies the processors (delivered on commit) when
// opts.Notify asks for it.
func (d *Driver) InsertPublishedTx(ctx context.Context, tx pgx.Tx, msgs []*storage.Message, opts storage.InsertOptions) error {
	if err := sqlstore.CheckTx(tx); err != nil {
		return d.base.Wrap(err)
	}
	return d.insertPublished(ctx, pgxQuerier{q: tx, tx: true}, msgs, opts)
}

// InsertPublished inserts msgs in a transaction of its own.
func (d *Driver) InsertPublished(ctx context.Context, msgs []*storage.Message, opts storage.InsertOptions) error {
	return d.insertPublished(ctx, pgxQuerier{q: d.pool}, msgs, opts)
}

func (d *Driver) insertPublished(ctx context.Context, q querier, msgs []*storage.Message, opts storage.InsertOptions) error {
	if len(msgs) == 0 {
		return nil
	}
	n := len(msgs)
	ids := make([]int64, n)
	names := make([]string, n)
	headers := make([]string, n)
	bodies := make([][]byte, n)
	added := make([]time.Time, n)
	next := make([]time.Time, n)
	statuses := make([]string, n)
	policies := make([]string, n)
	keys := make([]*string, n) // ordering keys (#18), NULL for none
	versions := make([]string, n)
	for i, m := range msgs {
		h, err := sqlstore.HeadersJSON(m)
		if err != nil {
			return d.base.Wrap(err)
		}
		if versions[i], err = sqlstore.MessageVersion(m); err != nil {
			return d.base.Wrap(err)
		}
		ids[i], names[i], headers[i], bodies[i] = m.ID, storage.ValidText(m.Name), h, sqlstore.NonNil(m.Body)
		added[i], next[i] = m.Added.UTC(), m.NextAttemptAt.UTC()
		statuses[i], policies[i] = sqlstore.InsertStatus(m), storage.ValidText(m.Policy)
		keys[i] = sqlstore.OrderingKey(m)
	}
	insertOne, insertMany := d.q.insertOne, d.q.insertMany
	if opts.Notify && !d.opts.DisableNotify {
		insertOne, insertMany = d.q.insertOneNotify, d.q.insertManyNotify
	}
	if n == 1 {
		// ON CONFLICT (id) DO NOTHING: an id stored already inserts no
		// row instead of aborting the application's transaction.
		inserted, err := q.exec(ctx, insertOne, ids[0], names[0], headers[0], bodies[0], added[0], next[0], statuses[0], policies[0], keys[0], versions[0])
		if err == nil && inserted == 0 {
			err = sqlstore.IDTaken(fmt.Errorf("id %d is stored already", ids[0]))
		}
		if err != nil {
			return fmt.Errorf("postgres: inserting published message %d: %w", ids[0], classify(err))
		}
		return nil
	}
	insert := func() error {
		_, err := q.exec(ctx, insertMany, ids, names, headers, bodies, added, next, statuses, policies, keys, versions)
		return err
	}
	var err error
	if q.inTx() {
		// A taken id fails the statement (an insert of several rows takes
		// all of them or none): under a savepoint, so that it does not
		// abort the application's transaction.
		err = sqlstore.Savepoint(ctx, func(ctx context.Context, query string) error {
			_, err := q.exec(ctx, query)
			return err
		}, insert)
	} else {
		err = insert()
	}
	if err != nil {
		return fmt.Errorf("postgres: inserting %d published messages: %w", n, classify(err))
	}
	return nil
}

// Claim leases due Scheduled and Delayed rows (see storage.Store).
func (d *Driver) Claim(ctx context.Context, kind storage.Kind, req storage.ClaimRequest) ([]*storage.Message, error) {
	t, err := d.table(kind)
	if err != nil {
		return nil, err
	}
	if err := sqlstore.CheckClaim(req); err != nil {
		return nil, d.base.Wrap(err)
	}
	query, args := t.claim, []any{req.Now.UTC(), req.Limit, req.LeaseUntil.UTC(), req.Token, req.Version}
	if kind == storage.Received && req.Groups != nil {
		query, args = t.claimGroups, append(args, sqlstore.ValidTexts(req.Groups))
	}
	args = append(args, req.FailedHoldsKey, req.DueFrom.UTC())
	msgs, err := d.bookQ.Messages(ctx, kind, query, args, "claiming %s messages", kind)
	if err != nil {
		return nil, err
	}
	if msgs, err = d.unclaim(ctx, t, msgs, req); err != nil {
		return nil, d.base.Err(err, "checking the ordering keys of claimed %s messages", kind)
	}
	return msgs, nil
}

// BlockedKeys lists the ordering keys whose head row is Failed (see
// storage.KeyInspector).
func (d *Driver) BlockedKeys(ctx context.Context, kind storage.Kind, limit int) ([]storage.BlockedKey, error) {
	t, err := d.table(kind)
	if err != nil {
		return nil, err
	}
	return d.base.BlockedKeys(ctx, kind, t.blockedKeys, limit)
}

// Succeed marks leased rows Succeeded and appends their attempts, in one
// statement (see storage.Store).
func (d *Driver) Succeed(ctx context.Context, kind storage.Kind, done []storage.Completed, expiresAt time.Time) (int64, error) {
	t, err := d.table(kind)
	if err != nil || len(done) == 0 {
		return 0, err
	}
	ids, tokens := sqlstore.CompletedArrays(done)
	tag, err := d.book.Exec(ctx, t.succeed, ids, tokens, expiresAt.UTC(), sqlstore.AttemptJSONs(done))
	if err != nil {
		return 0, fmt.Errorf("postgres: marking %d %s messages succeeded: %w", len(done), kind, classify(err))
	}
	return tag.RowsAffected(), nil
}

// Release gives up leases without counting an attempt (see storage.Store).
func (d *Driver) Release(ctx context.Context, kind storage.Kind, leases []storage.Lease, next time.Time, reason string) (int64, error) {
	t, err := d.table(kind)
	if err != nil || len(leases) == 0 {
		return 0, err
	}
	ids, tokens := sqlstore.LeaseArrays(leases)
	tag, err := d.book.Exec(ctx, t.release, ids, tokens, next.UTC(), storage.TruncateText(reason, maxErrorBytes))
	if err != nil {
		return 0, fmt.Errorf("postgres: releasing %d %s messages: %w", len(leases), kind, classify(err))
	}
	return tag.RowsAffected(), nil
}

// maxErrorBytes bounds a stored error text (LastError, and the reason of
// a Release).
const maxErrorBytes = 4000

// Fail records a failed attempt (see storage.Store).
func (d *Driver) Fail(ctx context.Context, kind storage.Kind, lease storage.Lease, f storage.Failure) (storage.FailResult, error) {
	t, err := d.table(kind)
	if err != nil {
		return storage.FailResult{}, err
	}
	var res storage.FailResult
	var status string
	// MaxAttempts as an SQL integer, as FailBatch binds it: a larger value
	// is as good as no limit reached.
	maxAttempts := int32(min(max(f.MaxAttempts, math.MinInt32), math.MaxInt32))
	err = d.book.QueryRow(ctx, t.fail, lease.ID, lease.Token, storage.TruncateText(f.Error, maxErrorBytes), maxAttempts, f.Permanent,
		f.ExpiresAt.UTC(), f.NextAttemptAt.UTC(), sqlstore.AttemptJSON(sqlstore.FailedAttempt(f))).Scan(&res.Retries, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return res, fmt.Errorf("postgres: recording failure of %s message %d: %w", kind, lease.ID, storage.ErrLeaseLost)
	}
	if err != nil {
		return res, fmt.Errorf("postgres: recording failure of %s message %d: %w", kind, lease.ID, classify(err))
	}
	res.Status = storage.Status(status)
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
	err = d.pool.QueryRow(ctx, t.nextDue, req.After.UTC(), req.Version).Scan(timeDest(&next))
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, fmt.Errorf("postgres: next due %s message: %w", kind, classify(err))
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

// list is the dashboard's filter in PostgreSQL's terms.
var list = sqlstore.List{
	Placeholder: sqlstore.Dollar,
	Content: func(ph, text string) (string, any) {
		return "position(" + ph + "::bytea in body) > 0", []byte(text)
	},
}

// List returns a page of rows matching f, newest first (see storage.Store).
func (d *Driver) List(ctx context.Context, f storage.Filter) ([]*storage.Message, error) {
	t, err := d.table(f.Kind)
	if err != nil {
		return nil, err
	}
	return d.base.List(ctx, list, t.selectAll, "", f)
}

// Counts returns the number of rows in each status (see storage.Store).
func (d *Driver) Counts(ctx context.Context, kind storage.Kind) (map[storage.Status]int64, error) {
	t, err := d.table(kind)
	if err != nil {
		return nil, err
	}
	return d.base.Counts(ctx, kind, t.counts)
}

// BoundedCounts returns the number of rows of kind in each status (see
// storage.BoundedCounter) without reading the Succeeded rows of a large
// table. Delayed, Scheduled and Failed rows are counted exactly, by an
// index-only scan of the *_status_idx partial index, which holds only
// them. Succeeded rows are counted exactly too while PostgreSQL estimates
// the table at Options.ExactCountLimit rows or fewer; above that, their
// figure is the table's live rows by PostgreSQL's statistics
// (pg_stat_user_tables.n_live_tup, which every insert and delete updates
// within a second or so; pg_class.reltuples when it is zero) minus the
// other counts, marked estimated. The estimate drifts with dead rows not
// yet vacuumed and with the statistics' own sampling: on a table that
// autovacuum keeps up with, it is within a few percent.
func (d *Driver) BoundedCounts(ctx context.Context, kind storage.Kind) (storage.Counts, error) {
	t, err := d.table(kind)
	if err != nil {
		return storage.Counts{}, err
	}
	return d.base.BoundedCounts(ctx, kind, sqlstore.CountQueries{
		All:    t.counts,
		Others: t.countOthers,
		Rows: func(ctx context.Context) (n int64, err error) {
			err = d.pool.QueryRow(ctx, t.rowEstimate).Scan(&n)
			return n, err
		},
		ExactUpTo: sqlstore.ExactCountLimit(d.opts.ExactCountLimit),
	})
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
	if err != nil {
		return 0, err
	}
	tag, err := d.pool.Exec(ctx, t.requeue, ids, now.UTC())
	if err != nil {
		return 0, fmt.Errorf("postgres: requeueing %d %s messages: %w", len(ids), kind, classify(err))
	}
	if kind == storage.Published && tag.RowsAffected() > 0 && !d.opts.DisableNotify {
		if _, err := d.pool.Exec(ctx, d.q.notifyChannel); err != nil {
			d.opts.Logger.Warn("postgres: notifying processors of a requeue failed; they will poll", "err", err)
		}
	}
	return tag.RowsAffected(), nil
}

// Delete removes rows (see storage.Store).
func (d *Driver) Delete(ctx context.Context, kind storage.Kind, ids []int64) (int64, error) {
	t, err := d.table(kind)
	if err != nil {
		return 0, err
	}
	tag, err := d.pool.Exec(ctx, t.delete, ids)
	if err != nil {
		return 0, fmt.Errorf("postgres: deleting %d %s messages: %w", len(ids), kind, classify(err))
	}
	return tag.RowsAffected(), nil
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
	tag, err := d.pool.Exec(ctx, t.deleteExpired, now.UTC(), limit)
	if err != nil {
		return 0, fmt.Errorf("postgres: deleting expired %s messages: %w", kind, classify(err))
	}
	return tag.RowsAffected(), nil
}

// Heartbeat records that a processor is alive (see storage.Store).
func (d *Driver) Heartbeat(ctx context.Context, inst storage.Instance) error {
	_, err := d.pool.Exec(ctx, d.q.heartbeat, storage.ValidText(inst.ID), storage.ValidText(inst.Hostname), inst.PID, inst.Started.UTC(), inst.LastSeen.UTC())
	if err != nil {
		return fmt.Errorf("postgres: heartbeat of %s: %w", inst.ID, classify(err))
	}
	return nil
}

// Instances lists processors seen after since (see storage.Store).
func (d *Driver) Instances(ctx context.Context, since time.Time) ([]storage.Instance, error) {
	return d.base.Instances(ctx, d.q.instances, since.UTC())
}

// RemoveInstance forgets a processor, and those not seen since olderThan
// (see storage.Store).
func (d *Driver) RemoveInstance(ctx context.Context, id string, olderThan time.Time) error {
	var old *time.Time
	if !olderThan.IsZero() {
		u := olderThan.UTC()
		old = &u
	}
	if _, err := d.pool.Exec(ctx, d.q.removeInstance, storage.ValidText(id), old); err != nil {
		return fmt.Errorf("postgres: removing processor %q: %w", id, classify(err))
	}
	return nil
}

// query is the driver's sqlstore.Query.
func (d *Driver) query(ctx context.Context, sql string, args ...any) (sqlstore.Rows, func(), error) {
	rows, err := d.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, err
	}
	return rows, rows.Close, nil
}

// timeDest is the sqlstore.TimeDest of timestamptz columns.
func timeDest(t *time.Time) any { return pgTime{t} }

// pgTime scans a timestamptz column into a UTC time, NULL as the zero time.
type pgTime struct{ t *time.Time }

// Scan implements sql.Scanner, which pgx calls with a time.Time or nil.
func (c pgTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.t = time.Time{}
	case time.Time:
		*c.t = x.UTC()
	default:
		return fmt.Errorf("postgres: cannot scan %T into a time", v)
	}
	return nil
}
