package outbox_test

import (
	"context"
	"encoding/json"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/postgres"
)

// The publish cost that gocap adds to an application's transaction, against
// the hand-rolled alternative: a plain INSERT of the same row into the same
// table. Each iteration is one transaction: begin, write, commit.
//
//	go test -run '^$' -bench 'PublishTx|PlainInsertTx' -count 6 ./outbox/

func BenchmarkPublishTx(b *testing.B) {
	publish := publishTx(b)
	for b.Loop() {
		publish()
	}
}

func BenchmarkPlainInsertTx(b *testing.B) {
	insert := plainInsertTx(b)
	for b.Loop() {
		insert()
	}
}

// The same, from 16 concurrent transactions: PostgreSQL serializes the
// commits of transactions that sent a NOTIFY, so this is where notifying
// on publish could cost most.
const benchWriters = 16

func BenchmarkPublishTxParallel(b *testing.B) {
	publish := publishTx(b)
	b.SetParallelism(benchWriters / runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			publish()
		}
	})
}

func BenchmarkPlainInsertTxParallel(b *testing.B) {
	insert := plainInsertTx(b)
	b.SetParallelism(benchWriters / runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			insert()
		}
	})
}

// publishTx returns a function that publishes one message in a
// transaction of its own.
func publishTx(b *testing.B) func() {
	env, ob := benchOutbox(b)
	ctx := context.Background()
	payload := orderPaid{ID: 7, Amount: "9.90"}
	return func() {
		err := pgx.BeginFunc(ctx, env.pool, func(tx pgx.Tx) error {
			_, err := ob.Publish(ctx, tx, "order.paid", payload)
			return err
		})
		if err != nil {
			b.Error(err)
		}
	}
}

// plainInsertTx returns a function that inserts the same row in a
// transaction of its own, doing the work a hand-rolled outbox does: an id,
// the body, the headers.
func plainInsertTx(b *testing.B) func() {
	env, _ := benchOutbox(b)
	ctx := context.Background()
	gen, _ := ids.NewGenerator(1)
	payload := orderPaid{ID: 7, Amount: "9.90"}
	sql := `INSERT INTO ` + env.schema + `.published (id, name, headers, body, status, added, next_attempt_at)
		VALUES ($1, $2, $3::jsonb, $4, 'Scheduled', $5, $6)`
	return func() {
		id := gen.Next()
		body, _ := json.Marshal(payload)
		now := time.Now().UTC()
		sid := strconv.FormatInt(id, 10)
		headers, _ := json.Marshal(map[string]string{
			"cap-msg-id": sid, "cap-msg-name": "order.paid", "cap-msg-type": "orderPaid",
			"cap-senttime": now.Format(time.RFC3339Nano), "cap-corr-id": sid, "cap-corr-seq": "0",
		})
		err := pgx.BeginFunc(ctx, env.pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, sql, id, "order.paid", string(headers), body, now, now)
			return err
		})
		if err != nil {
			b.Error(err)
		}
	}
}

// benchOutbox returns an outbox on a fresh schema, with the pool that
// holds the application's transactions. No processor runs: only the cost
// of the write is measured.
func benchOutbox(b *testing.B) (benchDB, *outbox.Outbox[pgx.Tx]) {
	b.Helper()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(testenv.PostgresURL(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = benchWriters
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	schema := testenv.Name("gocap_bench")
	b.Cleanup(func() {
		pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		pool.Close()
	})
	d := postgres.New(pool, postgres.Options{Schema: schema})
	if err := d.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	ob, err := outbox.New(d, rejectingSender{}, outbox.Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	return benchDB{pool: pool, schema: schema}, ob
}

type benchDB struct {
	pool   *pgxpool.Pool
	schema string
}
