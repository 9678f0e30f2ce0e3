// Command postgres-rabbitmq shows gocap on PostgreSQL and RabbitMQ: orders
// are marked paid and an order.paid message is published in the same
// transaction; a rolled back transaction publishes nothing; two consumer
// groups each receive every committed message.
//
//	go run ./examples/postgres-rabbitmq
//
// GOCAP_POSTGRES_URL and GOCAP_AMQP_URL override the local defaults. The
// example works in a schema and on an exchange of its own, and removes them
// at the end, also when interrupted (Ctrl-C, SIGTERM); it removes what an
// earlier run killed outright left behind at the start.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/examples/internal/cleanup"
	"github.com/gocap/gocap/examples/internal/interrupt"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport/rabbitmq"
)

// OrderPaid is the message payload.
type OrderPaid struct {
	OrderID int    `json:"order_id"`
	Amount  string `json:"amount"`
}

const (
	schema   = "gocap_example"
	exchange = "gocap.example.router"
)

func main() {
	// An interrupt cancels run's ctx, so that run stops and cleans up.
	interrupt.Main("the example's schema, queues and exchange", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return run(ctx)
	})
}

func run(ctx context.Context) error {
	pgURL := env("GOCAP_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	amqpURL := env("GOCAP_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	// What a run killed outright left (orders, unsent rows) would change
	// this one's story: start from nothing.
	if err := cleanup.PostgresSchema(pool, schema); err != nil {
		return fmt.Errorf("removing the schema of an earlier run: %w", err)
	}
	defer cleanup.PostgresSchema(pool, schema)
	store := postgres.New(pool, postgres.Options{Schema: schema, Logger: logger})
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+schema+`.orders (id int PRIMARY KEY, paid bool NOT NULL DEFAULT false);
		INSERT INTO `+schema+`.orders (id) VALUES (1), (2), (3) ON CONFLICT DO NOTHING`); err != nil {
		return err
	}

	// The groups' queues (QueuePrefix + group).
	queues := []string{"gocap.example.billing", "gocap.example.shipping"}
	if err := cleanup.RabbitMQ(amqpURL, exchange, queues...); err != nil {
		return fmt.Errorf("removing the queues of an earlier run: %w", err)
	}
	tr, err := rabbitmq.New(rabbitmq.Config{URL: amqpURL, Exchange: exchange, QueuePrefix: "gocap.example.", Logger: logger})
	if err != nil {
		return err
	}
	defer tr.Close()
	defer cleanup.RabbitMQ(amqpURL, exchange, queues...)

	ob, err := outbox.New(store, tr, outbox.Options{Logger: logger})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	got := map[string][]int{}
	for _, group := range []string{"billing", "shipping"} {
		err := outbox.Subscribe(ob, "order.paid", func(ctx context.Context, m outbox.Received[OrderPaid]) error {
			mu.Lock()
			defer mu.Unlock()
			got[group] = append(got[group], m.Value.OrderID)
			fmt.Printf("%-8s received order.paid for order %d (message %s, sent %s)\n",
				group, m.Value.OrderID, m.ID, m.SentTime.Format(time.RFC3339))
			return nil
		}, outbox.Group(group))
		if err != nil {
			return err
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ob.Run(runCtx) }()
	// However run returns, Run has stopped before the deferred cleanup
	// removes its schema and queues.
	stopRun := sync.OnceValue(func() error { stop(); return <-done })
	defer stopRun()
	if err := interrupt.Sleep(ctx, 500*time.Millisecond); err != nil { // let the consumers bind their queues
		return err
	}

	pay := func(order int, commit bool) error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "UPDATE "+schema+".orders SET paid = true WHERE id = $1", order); err != nil {
			return err
		}
		id, err := ob.Publish(ctx, tx, "order.paid", OrderPaid{OrderID: order, Amount: "19.90"})
		if err != nil {
			return err
		}
		if !commit {
			fmt.Printf("order %d: published message %d, then rolled back: it will never be sent\n", order, id)
			return tx.Rollback(ctx)
		}
		fmt.Printf("order %d: published message %d and committed\n", order, id)
		return tx.Commit(ctx)
	}
	for _, p := range []struct {
		order  int
		commit bool
	}{{1, true}, {2, false}, {3, true}} {
		if err := pay(p.order, p.commit); err != nil {
			return err
		}
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(got["billing"]) + len(got["shipping"])
		mu.Unlock()
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("timed out waiting for the messages")
		}
		if err := interrupt.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	if err := stopRun(); err != nil {
		return err
	}
	counts, err := store.Counts(ctx, storage.Published)
	if err != nil {
		return err
	}
	fmt.Printf("published table: %v (order 2 was rolled back: no row, no message)\n", counts)
	return nil
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
