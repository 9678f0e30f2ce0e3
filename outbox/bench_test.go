package outbox_test

import (
	"context"
	"encoding/json"
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
//	go test -run '^$' -bench 'Publish|PlainInsert' -benchtime 5000x ./outbox/

func BenchmarkPublishTx(b *testing.B) {
	env, ob := benchOutbox(b)
	ctx := context.Background()
	payload := orderPaid{ID: 7, Amount: "9.90"}
	b.ResetTimer()
	for b.Loop() {
		err := pgx.BeginFunc(ctx, env.pool, func(tx pgx.Tx) error {
			_, err := ob.Publish(ctx, tx, "order.paid", payload)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlainInsertTx(b *testing.B) {
	env, _ := benchOutbox(b)
	ctx := context.Background()
	gen, _ := ids.NewGenerator(1)
	payload := orderPaid{ID: 7, Amount: "9.90"}
	sql := `INSERT INTO ` + env.schema + `.published (id, name, headers, body, status, added, next_attempt_at)
		VALUES ($1, $2, $3::jsonb, $4, 'Scheduled', $5, $6)`
	b.ResetTimer()
	for b.Loop() {
		// The same work a hand-rolled outbox does: an id, the body, the headers.
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
			b.Fatal(err)
		}
	}
}

// benchOutbox returns an outbox on a fresh schema, with the pool that
// holds the application's transactions. No processor runs: only the cost
// of the write is measured.
func benchOutbox(b *testing.B) (benchDB, *outbox.Outbox[pgx.Tx]) {
	b.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.PostgresURL(b))
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
