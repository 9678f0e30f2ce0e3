package postgres_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/storage/storagetest"
)

// The publish-cost benchmarks compare what Publish adds to an application
// transaction with a plain INSERT of the same row. Every iteration is one
// application transaction: begin, insert one row, commit.
//
//	go test -run '^$' -bench 'InsertPublishedTx|PlainInsert' -benchtime 3000x -count 5 ./storage/postgres/
//
// BenchmarkInsertPublishedTx     the driver without Notify: INSERT into
//                                published (with its indexes), as most
//                                publishes are once the outbox coalesces
//                                notifications
// BenchmarkInsertPublishedTxNotify  the driver with Notify on every
//                                transaction: INSERT and pg_notify in one
//                                statement, the worst case
// BenchmarkPlainInsert           the same row into a table of the same
//                                columns with only a primary key: what the
//                                application would pay without an outbox
// BenchmarkPlainInsertIndexed    the same row into a copy of published with
//                                all of its indexes, no notify: isolates the
//                                cost of the NOTIFY
//
// Each has a Serial and a Parallel (GOMAXPROCS goroutines) variant: NOTIFY
// serialises commits on a database-wide lock, which only concurrency shows.

// benchSetup returns a pool and a migrated driver on a schema of their own,
// dropped when the benchmark ends.
func benchSetup(b *testing.B) (*pgxpool.Pool, *postgres.Driver, string) {
	b.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.PostgresURL(b))
	if err != nil {
		b.Fatal(err)
	}
	schema := testenv.Name("gocap_bench")
	b.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			b.Errorf("dropping schema %s: %v", schema, err)
		}
		pool.Close()
	})
	d := postgres.New(pool, postgres.Options{Schema: schema})
	if err := d.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	return pool, d, schema
}

// benchMessage is the row every benchmark inserts: a typical small event.
func benchMessage(id int64) *storage.Message {
	now := time.Now().UTC()
	return &storage.Message{
		ID:   id,
		Name: "order.paid",
		Headers: map[string]string{
			"cap-msg-id":    "0",
			"cap-msg-name":  "order.paid",
			"cap-senttime":  now.Format(time.RFC3339Nano),
			"cap-corr-id":   "0",
			"cap-corr-seq":  "0",
			"cap-msg-type":  "main.OrderPaid",
			"cap-callback":  "",
			"content-type":  "application/json",
			"traceparent":   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"cap-exception": "",
		},
		Body:          []byte(`{"order_id":12345,"customer":"c-987","amount_cents":4999,"currency":"EUR"}`),
		Added:         now,
		NextAttemptAt: now,
	}
}

// runTxBench runs insert once per iteration inside its own transaction,
// serially or from GOMAXPROCS goroutines.
func runTxBench(b *testing.B, pool *pgxpool.Pool, insert func(ctx context.Context, tx pgx.Tx, id int64) error) {
	ctx := context.Background()
	var next atomic.Int64
	next.Store(time.Now().UnixNano()) // ids unique across runs of the same schema
	one := func() error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		if err := insert(ctx, tx, next.Add(1)); err != nil {
			_ = tx.Rollback(ctx)
			return err
		}
		return tx.Commit(ctx)
	}
	// Warm the pool's connections and statement caches outside the timing.
	for range 20 {
		if err := one(); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Serial", func(b *testing.B) {
		for b.Loop() {
			if err := one(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := one(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkInsertPublishedTx(b *testing.B) {
	pool, d, _ := benchSetup(b)
	runTxBench(b, pool, func(ctx context.Context, tx pgx.Tx, id int64) error {
		return d.InsertPublishedTx(ctx, tx, []*storage.Message{benchMessage(id)}, storage.InsertOptions{})
	})
}

func BenchmarkInsertPublishedTxNotify(b *testing.B) {
	pool, d, _ := benchSetup(b)
	runTxBench(b, pool, func(ctx context.Context, tx pgx.Tx, id int64) error {
		return d.InsertPublishedTx(ctx, tx, []*storage.Message{benchMessage(id)}, storage.InsertOptions{Notify: true})
	})
}

// plainInsert inserts the same values InsertPublishedTx does, with a plain
// INSERT into table.
func plainInsert(table string) func(ctx context.Context, tx pgx.Tx, id int64) error {
	sql := `INSERT INTO ` + table + ` (id, name, headers, body, status, added, next_attempt_at)
		VALUES ($1, $2, $3::jsonb, $4, 'Scheduled', $5, $6)`
	return func(ctx context.Context, tx pgx.Tx, id int64) error {
		m := benchMessage(id)
		h, err := json.Marshal(m.Headers)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, sql, m.ID, m.Name, string(h), m.Body, m.Added, m.NextAttemptAt)
		return err
	}
}

func BenchmarkPlainInsert(b *testing.B) {
	pool, _, schema := benchSetup(b)
	table := pgx.Identifier{schema, "plain"}.Sanitize()
	// Same columns, defaults and NOT NULLs, primary key only.
	_, err := pool.Exec(context.Background(), `CREATE TABLE `+table+` (LIKE `+
		pgx.Identifier{schema, "published"}.Sanitize()+` INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (id))`)
	if err != nil {
		b.Fatal(err)
	}
	runTxBench(b, pool, plainInsert(table))
}

func BenchmarkPlainInsertIndexed(b *testing.B) {
	pool, _, schema := benchSetup(b)
	table := pgx.Identifier{schema, "plain_indexed"}.Sanitize()
	// A copy of published with all of its indexes and storage parameters.
	_, err := pool.Exec(context.Background(), `CREATE TABLE `+table+` (LIKE `+
		pgx.Identifier{schema, "published"}.Sanitize()+` INCLUDING ALL) WITH (fillfactor = 80)`)
	if err != nil {
		b.Fatal(err)
	}
	runTxBench(b, pool, plainInsert(table))
}

// InsertReceivedBatch of 100 messages against 100 InsertReceived calls
// (msgs/s):
//
//	go test -run '^$' -bench ReceivedBatch -count 3 ./storage/postgres/
func BenchmarkReceivedBatch(b *testing.B) {
	_, d, _ := benchSetup(b)
	storagetest.BenchReceivedBatch(b, d, 100)
}

// A claim of 100 unkeyed rows out of 100,000 due ones, and their release
// (claims/s): what ordering keys must not slow down.
//
//	go test -run '^$' -bench Claim -count 3 ./storage/postgres/
func BenchmarkClaim(b *testing.B) {
	_, d, _ := benchSetup(b)
	storagetest.BenchClaim(b, d, 100_000)
}

// The failed attempts of 100 leased rows recorded with one FailBatch
// against 100 Fail calls (fails/s; ns/op per 100 failures):
//
//	go test -run '^$' -bench FailBatch -count 5 ./storage/postgres/
func BenchmarkFailBatch(b *testing.B) {
	_, d, _ := benchSetup(b)
	storagetest.BenchFailBatch(b, d, 100)
}
