package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/examples/internal/interrupttest"
	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/outboxtest"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/wire"
)

func TestMain(m *testing.M) {
	interrupttest.Main(main)
	os.Exit(m.Run())
}

// A run interrupted midway (Ctrl-C), in its lateness run, removes its
// schemas and exchange (and queues) as a finished one does.
func TestInterruptCleansUp(t *testing.T) {
	pgURL, amqpURL := testenv.PostgresURL(t), testenv.AMQPURL(t)
	res := interrupttest.Interrupt(t, "lateness run: publishing", []string{
		testenv.PostgresEnv + "=" + pgURL, testenv.AMQPEnv + "=" + amqpURL,
	}, "-n", "100", "-window", "2s", "-delayed", "100", "-immediate", "100", "-rounds", "1")
	t.Logf("output:\n%s", res.Output)
	names := regexp.MustCompile(`working in schemas (\S+)_\* and on exchange (\S+),`).FindStringSubmatch(res.Output)
	if names == nil {
		t.Fatal("the run did not print its schemas and exchange")
	}
	prefix, exchange := names[1], names[2]
	interrupttest.RequireNoSchema(t, pgURL, prefix+"_*")
	interrupttest.RequireNoRabbitMQ(t, amqpURL, exchange)
}

// The lateness run's messages are Delayed rows of bench.delayed whose
// cap-senttime is their due time — what the run measures lateness from —
// and they commit with their transaction only.
func TestPublishDue(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	schema := testenv.Name("gocap_delayed")
	defer func() {
		pool.Exec(context.Background(), "drop schema if exists "+schema+" cascade")
		pool.Close()
	}()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := postgres.New(pool, postgres.Options{Schema: schema, Logger: quiet})
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.New(store, memory.New(memory.Options{}), outbox.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	due := time.Now().Add(time.Hour)
	if err := publishDue(ctx, ob, tx, 42, due); err != nil {
		t.Fatal(err)
	}
	got := outboxtest.RequirePublishedTx[map[string]int](ctx, t, ob, tx, "bench.delayed", &outboxtest.Opts{
		Status:  storage.StatusDelayed,
		Headers: map[string]string{wire.SentTime: wire.FormatSentTime(due)},
	})
	if got["i"] != 42 || len(got) != 1 {
		t.Errorf("publishDue(42) published %v, want {i: 42}", got)
	}
	outboxtest.RequireNotPublished(ctx, t, ob, "bench.delayed", nil)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	outboxtest.RequirePublished[map[string]int](ctx, t, ob, "bench.delayed", &outboxtest.Opts{Status: storage.StatusDelayed})
}
