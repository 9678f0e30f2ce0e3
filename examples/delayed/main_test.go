package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/outboxtest"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/wire"
)

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
