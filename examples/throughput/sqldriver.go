package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport/rabbitmq"
)

// latencyOutbox starts a processor on fresh tables with the driver named
// and returns a function that publishes one message in a transaction of
// its own and commits it, and a function that stops the processor. pgx:
// postgres.New, a pgx.Tx. sql: postgres.NewSQL, a *sql.Tx of a *sql.DB on
// the same pool through pgx's stdlib driver, begun and committed as GORM
// or sqlx do it, so only the NOTIFY committed with it wakes the processor
// (outbox.InTx would wake it in process). The application and the
// processor share the pool in both.
func (b *bench) latencyOutbox(ctx context.Context, driver string) (publish func(payload any) (int64, error), stop func(), err error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr, err := rabbitmq.New(rabbitmq.Config{URL: b.amqpURL, Exchange: b.exchange, Logger: quiet})
	if err != nil {
		return nil, nil, err
	}
	b.runs++
	opts := postgres.Options{Schema: b.schema + "_" + strconv.Itoa(b.runs), Logger: quiet}
	var run func(context.Context) error
	closeDB := func() {}
	switch driver {
	case "pgx":
		d := postgres.New(b.pool, opts)
		err = d.Migrate(ctx)
		var ob *outbox.Outbox[pgx.Tx]
		if err == nil {
			ob, err = outbox.New(d, tr, outbox.Options{Logger: quiet})
		}
		if err == nil {
			run = ob.Run
			publish = func(payload any) (id int64, err error) {
				err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
					id, err = ob.Publish(ctx, tx, "bench.latency", payload)
					return err
				})
				return id, err
			}
		}
	case "sql":
		d := postgres.NewSQL(b.pool, opts)
		db := stdlib.OpenDBFromPool(b.pool)
		closeDB = func() { db.Close() }
		err = d.Migrate(ctx)
		var ob *outbox.Outbox[*sql.Tx]
		if err == nil {
			ob, err = outbox.New(d, tr, outbox.Options{Logger: quiet})
		}
		if err == nil {
			run = ob.Run
			publish = func(payload any) (int64, error) {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					return 0, err
				}
				id, err := ob.Publish(ctx, tx, "bench.latency", payload)
				if err != nil {
					tx.Rollback()
					return 0, err
				}
				return id, tx.Commit()
			}
		}
	default:
		err = fmt.Errorf("-driver %q: pgx or sql", driver)
	}
	if err != nil {
		closeDB()
		tr.Close()
		return nil, nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(runCtx)
	}()
	return publish, func() { cancel(); <-done; closeDB(); tr.Close() }, nil
}

// latencyByDriver runs rounds pairs of latency runs, pgx and sql, the
// order alternating from round to round, and prints each round's
// percentiles and the medians.
func (b *bench) latencyByDriver(ctx context.Context, rate int, d time.Duration, rounds int) error {
	p50s := map[string][]float64{}
	p99s := map[string][]float64{}
	for round := 1; round <= rounds; round++ {
		order := []string{"pgx", "sql"}
		if round%2 == 0 {
			order = []string{"sql", "pgx"}
		}
		for _, driver := range order {
			p50, p99, count, err := b.latency(ctx, driver, rate, d)
			if err != nil {
				return fmt.Errorf("%s: %w", driver, err)
			}
			b.deleteQueues()
			p50s[driver] = append(p50s[driver], float64(p50))
			p99s[driver] = append(p99s[driver], float64(p99))
			fmt.Printf("round %d: %s driver, %d msgs: commit -> broker -> consumer p50 %v, p99 %v\n",
				round, driver, count, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond))
		}
	}
	ms := func(x float64) time.Duration { return time.Duration(x).Round(10 * time.Microsecond) }
	fmt.Printf("PostgreSQL -> RabbitMQ at %d msg/s, one publish per transaction, over %v, medians of %d rounds:\n", rate, d, rounds)
	for _, driver := range []string{"pgx", "sql"} {
		name := map[string]string{"pgx": "pgx.Tx  (postgres.New)   ", "sql": "*sql.Tx (postgres.NewSQL)"}[driver]
		fmt.Printf("  %s commit -> consumer p50 %v, p99 %v\n", name, ms(median(p50s[driver])), ms(median(p99s[driver])))
	}
	fmt.Printf("  ratio sql/pgx: p50 %.2f, p99 %.2f\n", median(p50s["sql"])/median(p50s["pgx"]), median(p99s["sql"])/median(p99s["pgx"]))
	return nil
}
