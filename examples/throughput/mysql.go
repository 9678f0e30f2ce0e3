package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/mysql"
	"github.com/gocap/gocap/transport/rabbitmq"
)

// mysqlBench runs the dispatch rounds on MySQL/MariaDB instead of
// PostgreSQL, beside the same raw amqp091-go runs.
type mysqlBench struct {
	*bench
	db       *sql.DB
	prefixes []string
}

func newMySQLBench(b *bench, dsn string) (*mysqlBench, error) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, err
	}
	if err := db.Ping(); err != nil {
		return nil, fmt.Errorf("mysql at %s: %w", dsn, err)
	}
	return &mysqlBench{bench: b, db: db}, nil
}

func (m *mysqlBench) close() {
	for _, p := range m.prefixes {
		for _, t := range []string{"published", "received", "instances"} {
			m.db.Exec("DROP TABLE IF EXISTS " + p + t)
		}
	}
	m.db.Close()
}

// dispatchRate commits n messages while no processor runs (100 per
// transaction), then starts one and measures until none is Scheduled; it
// returns the dispatch rate and the rate of the publishes. With sdk, the
// outbox records its spans and metrics with the OpenTelemetry SDK.
func (m *mysqlBench) dispatchRate(ctx context.Context, n int, sdk bool) (float64, float64, error) {
	var tel *telemetry
	if sdk {
		tel = newTelemetry()
		defer tel.shutdown()
	}
	ch, err := m.conn.Channel()
	if err != nil {
		return 0, 0, err
	}
	defer ch.Close()
	if _, err := m.bindQueue(ch); err != nil {
		return 0, 0, err
	}
	defer m.deleteQueues()
	prefix := "gocap_bench_" + strconv.FormatInt(ids.Token()%1_000_000, 10) + "_"
	m.prefixes = append(m.prefixes, prefix)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := mysql.New(m.db, mysql.Options{TablePrefix: prefix, Logger: quiet})
	if err := d.Migrate(ctx); err != nil {
		return 0, 0, err
	}
	tr, err := rabbitmq.New(rabbitmq.Config{URL: m.amqpURL, Exchange: m.exchange, Logger: quiet})
	if err != nil {
		return 0, 0, err
	}
	defer tr.Close()
	ob, err := outbox.New(d, tr, tel.options(outbox.Options{Logger: quiet, ClaimBatch: claimBatch, SendConcurrency: sendConcurrency}))
	if err != nil {
		return 0, 0, err
	}
	payload := map[string]any{"id": 12345, "amount": "9.90", "currency": "EUR"}
	pubStart := time.Now()
	for i := 0; i < n; i += 100 {
		tx, err := m.db.BeginTx(ctx, nil)
		if err != nil {
			return 0, 0, err
		}
		for range min(100, n-i) {
			if _, err := ob.Publish(ctx, tx, "bench.dispatch", payload); err != nil {
				tx.Rollback()
				return 0, 0, err
			}
		}
		if err := tx.Commit(); err != nil {
			return 0, 0, err
		}
	}
	pubRate := float64(n) / time.Since(pubStart).Seconds()
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	cpuDone := cpuWindow("dispatch (mysql):")
	start := time.Now()
	go func() {
		defer wg.Done()
		ob.Run(runCtx)
	}()
	defer func() { stop(); wg.Wait() }()
	// The (status, id) index answers this at once, whatever the table holds.
	pending := "SELECT EXISTS (SELECT 1 FROM " + prefix + "published WHERE status = 'Scheduled')"
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var more bool
		if err := m.db.QueryRowContext(ctx, pending).Scan(&more); err != nil {
			return 0, 0, err
		}
		if !more {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("messages still Scheduled after 5 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rate := float64(n) / time.Since(start).Seconds()
	cpuDone(n)
	c, err := ob.Store().Counts(ctx, storage.Published)
	if err != nil {
		return 0, 0, err
	}
	if c[storage.StatusSucceeded] != int64(n) {
		return 0, 0, fmt.Errorf("%d of %d messages Succeeded (counts %v)", c[storage.StatusSucceeded], n, c)
	}
	return rate, pubRate, nil
}
