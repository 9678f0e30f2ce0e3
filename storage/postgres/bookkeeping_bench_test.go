package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
)

// BenchmarkBookkeeping times the processor's cycle under a sustained load:
// a Claim of up to 10 due rows, then one Succeed of them, with the
// bookkeeping's commits not waiting for the WAL flush (async, the default)
// or waiting for it (durable, Options.DurableBookkeeping); ns/op is one
// cycle. Each iteration first publishes 10 rows (untimed). Run both
// together, alternated by -count:
//
//	go test -run '^$' -bench Bookkeeping -benchtime 300x -count 5 ./storage/postgres/
func BenchmarkBookkeeping(b *testing.B) {
	for _, durable := range []bool{false, true} {
		b.Run(map[bool]string{false: "async", true: "durable"}[durable], func(b *testing.B) {
			ctx := context.Background()
			pool, err := pgxpool.New(ctx, testenv.PostgresURL(b))
			if err != nil {
				b.Fatal(err)
			}
			schema := testenv.Name("gocap_bk")
			b.Cleanup(func() {
				pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
				pool.Close()
			})
			d := postgres.New(pool, postgres.Options{Schema: schema, DurableBookkeeping: durable})
			if err := d.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			var id int64
			var cycle time.Duration
			for i := range b.N {
				ms := make([]*storage.Message, 10)
				for j := range ms {
					id++
					ms[j] = benchMessage(id)
				}
				if err := d.InsertPublished(ctx, ms, storage.InsertOptions{}); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				now := start.UTC()
				got, err := d.Claim(ctx, storage.Published, storage.ClaimRequest{Now: now, LeaseUntil: now.Add(time.Minute), Token: int64(i + 1), Limit: 10})
				if err != nil || len(got) != 10 {
					b.Fatalf("claimed %d rows: %v", len(got), err)
				}
				done := make([]storage.Completed, len(got))
				for j, m := range got {
					done[j] = storage.Completed{Lease: storage.Lease{ID: m.ID, Token: m.LeaseToken}, Attempt: storage.Attempt{At: now, Duration: time.Millisecond}}
				}
				if n, err := d.Succeed(ctx, storage.Published, done, now.Add(time.Hour)); err != nil || n != 10 {
					b.Fatalf("succeeded %d rows: %v", n, err)
				}
				cycle += time.Since(start)
			}
			b.ReportMetric(float64(cycle.Nanoseconds())/float64(b.N), "ns/cycle")
		})
	}
}
