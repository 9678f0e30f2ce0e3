// Package postgres is gocap's PostgreSQL storage, on pgx/v5.
//
// [New] returns a [Driver] that implements storage.Driver[pgx.Tx]: Publish
// takes the application's pgx.Tx, so the message row commits or rolls back
// with the business data. The insert also issues a NOTIFY on the same
// transaction; PostgreSQL delivers it only on commit, and the processor,
// which LISTENs on a connection of its own, sends the message within
// milliseconds. PostgreSQL commits notifying transactions one at a time, so
// a driver notifies at most once per Options.NotifyInterval (2 ms): a
// transaction close after a notified one skips its NOTIFY, and the processor,
// which polls every NotifyInterval for a while after a notification, finds
// its rows as promptly. Polling at Options.PollInterval of the outbox
// remains as the fallback, so nothing depends on a notification arriving.
//
// # Schema
//
// The tables live in their own schema (Options.Schema, default "gocap"):
// published, received and instances. [Driver.Migrate] creates them; it is
// idempotent and serialized by an advisory lock, so several instances may
// run it at once. Teams that run their own migrations apply [SchemaSQL]
// instead. Every background query is an index scan: see QUERY_PLANS.md.
//
// Claims use UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) in
// one statement, so no transaction stays open while a message is sent.
package postgres

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync/atomic"
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
	// DisableNotify turns off NOTIFY on publish; processors then find new
	// messages by polling.
	DisableNotify bool
	// NotifyInterval is the least time between two publishing transactions
	// of this driver that send a NOTIFY; a transaction within it of the
	// last one does not notify, and processors find its rows by polling
	// every NotifyInterval after a notification. PostgreSQL commits the
	// transactions that sent a NOTIFY one at a time (it locks the database
	// for that), without group commit, so notifying from every transaction
	// would cap concurrent publishers at one commit per WAL flush. Should
	// the notified transaction roll back, or commit long after the others,
	// their rows wait at most for the next notification or the outbox's
	// PollInterval. Zero means DefaultNotifyInterval; a negative value
	// notifies from every transaction.
	NotifyInterval time.Duration
}

// DefaultNotifyInterval is Options.NotifyInterval when zero.
const DefaultNotifyInterval = 2 * time.Millisecond

// Driver is the PostgreSQL storage. It is safe for concurrent use.
type Driver struct {
	pool    *pgxpool.Pool
	opts    Options
	channel string
	q       queries

	lastNotify atomic.Int64 // when a transaction last sent a NOTIFY, in Unix nanoseconds
}

var (
	_ storage.Driver[pgx.Tx] = (*Driver)(nil)
	_ storage.Listener       = (*Driver)(nil)
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
	switch {
	case opts.NotifyInterval == 0:
		opts.NotifyInterval = DefaultNotifyInterval
	case opts.NotifyInterval < 0:
		opts.NotifyInterval = 0
	}
	d := &Driver{pool: pool, opts: opts, channel: opts.Schema + "_published"}
	d.q = newQueries(opts.Schema, d.channel)
	return d
}

// Migrate creates the schema, tables and indexes if they do not exist.
func (d *Driver) Migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		// One migration at a time per schema, across processes.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "gocap.migrate."+d.opts.Schema); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, SchemaSQL(d.opts.Schema))
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: migrating schema %q: %w", d.opts.Schema, classify(err))
	}
	return nil
}

// querier is what pgx.Tx and *pgxpool.Pool have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// InsertPublishedTx inserts msgs with the application's transaction, in one
// round trip that also notifies the processors (delivered on commit).
func (d *Driver) InsertPublishedTx(ctx context.Context, tx pgx.Tx, msgs []*storage.Message) error {
	if tx == nil {
		return errors.New("postgres: insert published: transaction is nil")
	}
	return d.insertPublished(ctx, tx, msgs)
}

// InsertPublished inserts msgs in a transaction of its own.
func (d *Driver) InsertPublished(ctx context.Context, msgs []*storage.Message) error {
	return d.insertPublished(ctx, d.pool, msgs)
}

func (d *Driver) insertPublished(ctx context.Context, q querier, msgs []*storage.Message) error {
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
	for i, m := range msgs {
		h, err := sqlstore.HeadersJSON(m)
		if err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		ids[i], names[i], headers[i], bodies[i] = m.ID, storage.ValidText(m.Name), h, sqlstore.NonNil(m.Body)
		added[i], next[i] = m.Added.UTC(), m.NextAttemptAt.UTC()
	}
	insertOne, insertMany := d.q.insertOne, d.q.insertMany
	if d.shouldNotify() {
		insertOne, insertMany = d.q.insertOneNotify, d.q.insertManyNotify
	}
	if n == 1 {
		_, err := q.Exec(ctx, insertOne, ids[0], names[0], headers[0], bodies[0], added[0], next[0])
		if err != nil {
			return fmt.Errorf("postgres: inserting published message %d: %w", ids[0], classify(err))
		}
		return nil
	}
	if _, err := q.Exec(ctx, insertMany, ids, names, headers, bodies, added, next); err != nil {
		return fmt.Errorf("postgres: inserting %d published messages: %w", n, classify(err))
	}
	return nil
}

// shouldNotify reports whether a publishing transaction is to send a
// NOTIFY: when notifications are on and none was sent within
// NotifyInterval. Of concurrent callers, one wins.
func (d *Driver) shouldNotify() bool {
	if d.opts.DisableNotify {
		return false
	}
	now := time.Now().UnixNano()
	last := d.lastNotify.Load()
	if now-last < int64(d.opts.NotifyInterval) {
		return false
	}
	return d.lastNotify.CompareAndSwap(last, now)
}

// NotifyInterval returns Options.NotifyInterval (see storage.Listener).
func (d *Driver) NotifyInterval() time.Duration { return d.opts.NotifyInterval }

// InsertReceived stores a received message claimed under a lease, or
// reports a duplicate (see storage.Store).
func (d *Driver) InsertReceived(ctx context.Context, m *storage.Message, token int64, leaseUntil time.Time) (int64, bool, error) {
	h, err := sqlstore.HeadersJSON(m)
	if err != nil {
		return 0, false, fmt.Errorf("postgres: %w", err)
	}
	msgID, group := storage.StorableMsgID(m.MsgID), storage.ValidText(m.Group)
	var id int64
	err = d.pool.QueryRow(ctx, d.q.insertReceived,
		m.ID, msgID, group, storage.ValidText(m.Name), h, sqlstore.NonNil(m.Body), m.Added.UTC(), leaseUntil.UTC(), token,
	).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil // a duplicate that is not Failed
	}
	if err != nil {
		return 0, false, fmt.Errorf("postgres: storing received message %q for group %q: %w", msgID, group, classify(err))
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
		return nil, fmt.Errorf("postgres: claim: limit %d and token %d must be positive", req.Limit, req.Token)
	}
	var rows pgx.Rows
	if kind == storage.Received && req.Groups != nil {
		rows, err = d.pool.Query(ctx, t.claimGroups, req.Now.UTC(), req.Limit, req.LeaseUntil.UTC(), req.Token, validTexts(req.Groups))
	} else {
		rows, err = d.pool.Query(ctx, t.claim, req.Now.UTC(), req.Limit, req.LeaseUntil.UTC(), req.Token)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: claiming %s messages: %w", kind, classify(err))
	}
	msgs, err := scanMessages(rows, kind)
	if err != nil {
		return nil, fmt.Errorf("postgres: claiming %s messages: %w", kind, classify(err))
	}
	return msgs, nil
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
	ids := make([]int64, len(leases))
	tokens := make([]int64, len(leases))
	for i, l := range leases {
		ids[i], tokens[i] = l.ID, l.Token
	}
	tag, err := d.pool.Exec(ctx, t.succeed, ids, tokens, expiresAt.UTC())
	if err != nil {
		return 0, fmt.Errorf("postgres: marking %d %s messages succeeded: %w", len(leases), kind, classify(err))
	}
	return tag.RowsAffected(), nil
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
	ids := make([]int64, len(leases))
	tokens := make([]int64, len(leases))
	for i, l := range leases {
		ids[i], tokens[i] = l.ID, l.Token
	}
	tag, err := d.pool.Exec(ctx, t.release, ids, tokens, next.UTC(), storage.TruncateText(reason, maxErrorBytes))
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
	t, err := d.q.table(kind)
	if err != nil {
		return storage.FailResult{}, err
	}
	var res storage.FailResult
	var status string
	err = d.pool.QueryRow(ctx, t.fail, lease.ID, lease.Token, storage.TruncateText(f.Error, maxErrorBytes), f.MaxAttempts, f.Permanent,
		f.ExpiresAt.UTC(), f.NextAttemptAt.UTC()).Scan(&res.Retries, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return res, fmt.Errorf("postgres: recording failure of %s message %d: %w", kind, lease.ID, storage.ErrLeaseLost)
	}
	if err != nil {
		return res, fmt.Errorf("postgres: recording failure of %s message %d: %w", kind, lease.ID, classify(err))
	}
	res.Status = storage.Status(status)
	return res, nil
}

// Get returns one row (see storage.Store).
func (d *Driver) Get(ctx context.Context, kind storage.Kind, id int64) (*storage.Message, error) {
	t, err := d.q.table(kind)
	if err != nil {
		return nil, err
	}
	rows, err := d.pool.Query(ctx, t.get, id)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading %s message %d: %w", kind, id, classify(err))
	}
	msgs, err := scanMessages(rows, kind)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading %s message %d: %w", kind, id, classify(err))
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("postgres: %s message %d: %w", kind, id, storage.ErrNotFound)
	}
	return msgs[0], nil
}

// List returns a page of rows matching f, newest first (see storage.Store).
func (d *Driver) List(ctx context.Context, f storage.Filter) ([]*storage.Message, error) {
	t, err := d.q.table(f.Kind)
	if err != nil {
		return nil, err
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Status != "" {
		add("status = $%d", string(f.Status))
	}
	// Names, groups and ids are matched in the form they are stored in.
	if f.Name != "" {
		add("name = $%d", storage.ValidText(f.Name))
	}
	if f.Group != "" && f.Kind == storage.Received {
		add("grp = $%d", storage.ValidText(f.Group))
	}
	if f.MsgID != "" {
		if f.Kind == storage.Received {
			add("msg_id = $%d", storage.StorableMsgID(f.MsgID))
		} else {
			add("id::text = $%d", f.MsgID)
		}
	}
	if f.Content != "" {
		add("position($%d::bytea in body) > 0", []byte(f.Content))
	}
	if f.BeforeID > 0 {
		add("id < $%d", f.BeforeID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	sql := t.selectAll
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	sql += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))
	rows, err := d.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: listing %s messages: %w", f.Kind, classify(err))
	}
	msgs, err := scanMessages(rows, f.Kind)
	if err != nil {
		return nil, fmt.Errorf("postgres: listing %s messages: %w", f.Kind, classify(err))
	}
	return msgs, nil
}

// Counts returns the number of rows in each status (see storage.Store).
func (d *Driver) Counts(ctx context.Context, kind storage.Kind) (map[storage.Status]int64, error) {
	t, err := d.q.table(kind)
	if err != nil {
		return nil, err
	}
	rows, err := d.pool.Query(ctx, t.counts)
	if err != nil {
		return nil, fmt.Errorf("postgres: counting %s messages: %w", kind, classify(err))
	}
	counts := map[storage.Status]int64{}
	for _, s := range storage.Statuses {
		counts[s] = 0
	}
	var status string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&status, &n}, func() error {
		counts[storage.Status(status)] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: counting %s messages: %w", kind, classify(err))
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
		return nil, fmt.Errorf("postgres: histogram: bucket %v is shorter than a millisecond", bucket)
	}
	minID := sqlstore.MinID(since, epochMillis)
	rows, err := d.pool.Query(ctx, t.histogram, minID, bms)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s histogram: %w", kind, classify(err))
	}
	var out []storage.HistogramBucket
	var b, n int64
	var status string
	_, err = pgx.ForEachRow(rows, []any{&b, &status, &n}, func() error {
		out = append(out, storage.HistogramBucket{
			Start:  time.UnixMilli(b*bms + epochMillis).UTC(),
			Status: storage.Status(status),
			Count:  n,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: %s histogram: %w", kind, classify(err))
	}
	return out, nil
}

// Requeue makes rows Scheduled and due at now (see storage.Store).
func (d *Driver) Requeue(ctx context.Context, kind storage.Kind, ids []int64, now time.Time) (int64, error) {
	t, err := d.q.table(kind)
	if err != nil {
		return 0, err
	}
	tag, err := d.pool.Exec(ctx, t.requeue, ids, now.UTC())
	if err != nil {
		return 0, fmt.Errorf("postgres: requeueing %d %s messages: %w", len(ids), kind, classify(err))
	}
	if kind == storage.Published && tag.RowsAffected() > 0 && !d.opts.DisableNotify {
		if _, err := d.pool.Exec(ctx, "SELECT pg_notify($1, '')", d.channel); err != nil {
			d.opts.Logger.Warn("postgres: notifying processors of a requeue failed; they will poll", "err", err)
		}
	}
	return tag.RowsAffected(), nil
}

// Delete removes rows (see storage.Store).
func (d *Driver) Delete(ctx context.Context, kind storage.Kind, ids []int64) (int64, error) {
	t, err := d.q.table(kind)
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
	t, err := d.q.table(kind)
	if err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, fmt.Errorf("postgres: delete expired: limit %d must be positive", limit)
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
	rows, err := d.pool.Query(ctx, d.q.instances, since.UTC())
	if err != nil {
		return nil, fmt.Errorf("postgres: listing processors: %w", classify(err))
	}
	var out []storage.Instance
	var inst storage.Instance
	_, err = pgx.ForEachRow(rows, []any{&inst.ID, &inst.Hostname, &inst.PID, &inst.Started, &inst.LastSeen}, func() error {
		inst.Started, inst.LastSeen = inst.Started.UTC(), inst.LastSeen.UTC()
		out = append(out, inst)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: listing processors: %w", classify(err))
	}
	return out, nil
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

// Listen calls notify whenever a transaction that published messages
// commits, until ctx ends (see storage.Listener). It holds one connection
// of the pool while it runs.
func (d *Driver) Listen(ctx context.Context, notify func()) error {
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: listen: acquiring a connection: %w", classify(err))
	}
	defer func() {
		// The connection has a LISTEN registered: do not return it to the pool.
		conn.Hijack().Close(context.Background())
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{d.channel}.Sanitize()); err != nil {
		return fmt.Errorf("postgres: listen on %q: %w", d.channel, classify(err))
	}
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("postgres: waiting for notifications on %q: %w", d.channel, classify(err))
		}
		notify()
	}
}

// validTexts returns the strings of ss as storage.ValidText makes them:
// ss itself when they are all valid already.
func validTexts(ss []string) []string {
	for i, s := range ss {
		if v := storage.ValidText(s); v != s {
			out := append([]string(nil), ss...)
			out[i] = v
			for j := i + 1; j < len(out); j++ {
				out[j] = storage.ValidText(out[j])
			}
			return out
		}
	}
	return ss
}

// classify returns err wrapped with storage.ErrPermanent when PostgreSQL
// refused the statement for a reason that running it again cannot fix,
// judged by the class of its SQLSTATE:
//
//   - 22 data exception (invalid UTF-8 22021, \u0000 in jsonb 22P05, a
//     value out of range);
//   - 23 integrity constraint violation (a published id stored already);
//     the conflicts the driver expects (a received duplicate, a heartbeat)
//     are resolved by ON CONFLICT and raise none;
//   - 42 syntax error or access rule violation (an undefined table or
//     column, a denied privilege: a bug or a missing migration);
//   - 54 program limit exceeded (an index row over the btree limit, 54000).
//
// Every other error is returned as it is, as transient: class 08
// (connection exception), 40 (serialization failure 40001, deadlock
// 40P01), 53 (insufficient resources), 57 (operator intervention: a
// cancelled statement 57014, admin shutdown 57P01), the other classes, and
// errors that do not come from the server (network, context).
func classify(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) < 2 {
		return err
	}
	switch pe.Code[:2] {
	case "22", "23", "42", "54":
		return sqlstore.Permanent(err)
	}
	return err
}

func scanMessages(rows pgx.Rows, kind storage.Kind) ([]*storage.Message, error) {
	defer rows.Close()
	var out []*storage.Message
	for rows.Next() {
		m := &storage.Message{Kind: kind}
		var headers []byte
		var expires *time.Time
		var token *int64
		var leaseUntil *time.Time
		var status string
		if err := rows.Scan(&m.ID, &m.MsgID, &m.Group, &m.Name, &headers, &m.Body, &status, &m.Retries,
			&m.LastError, &m.Added, &m.NextAttemptAt, &expires, &token, &leaseUntil); err != nil {
			return nil, err
		}
		m.Status = storage.Status(status)
		if err := json.Unmarshal(headers, &m.Headers); err != nil {
			return nil, fmt.Errorf("decoding headers of message %d: %w", m.ID, err)
		}
		m.Added, m.NextAttemptAt = m.Added.UTC(), m.NextAttemptAt.UTC()
		if expires != nil {
			m.ExpiresAt = expires.UTC()
		}
		if token != nil {
			m.LeaseToken = *token
		}
		if leaseUntil != nil {
			m.LeaseUntil = leaseUntil.UTC()
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
