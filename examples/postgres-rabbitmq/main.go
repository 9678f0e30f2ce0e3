// Command postgres-rabbitmq shows gocap on PostgreSQL and RabbitMQ: orders
// are marked paid and an order.paid message is published in the same
// transaction; a rolled back transaction publishes nothing; two consumer
// groups each receive every committed message.
//
//	go run ./examples/postgres-rabbitmq
//
// GOCAP_POSTGRES_URL and GOCAP_AMQP_URL override the local defaults. The
// example works in a schema and on an exchange of its own, and removes them
// at the end.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

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
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx); err != nil {
		log.Fatal(err)
	}
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
	defer pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	store := postgres.New(pool, postgres.Options{Schema: schema, Logger: logger})
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+schema+`.orders (id int PRIMARY KEY, paid bool NOT NULL DEFAULT false);
		INSERT INTO `+schema+`.orders (id) VALUES (1), (2), (3) ON CONFLICT DO NOTHING`); err != nil {
		return err
	}

	tr, err := rabbitmq.New(rabbitmq.Config{URL: amqpURL, Exchange: exchange, QueuePrefix: "gocap.example.", Logger: logger})
	if err != nil {
		return err
	}
	defer tr.Close()
	defer cleanupBroker(amqpURL)

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
	defer stop()
	done := make(chan error, 1)
	go func() { done <- ob.Run(runCtx) }()
	time.Sleep(500 * time.Millisecond) // let the consumers bind their queues

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
			stop()
			return errors.New("timed out waiting for the messages")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		return err
	}
	counts, err := store.Counts(ctx, storage.Published)
	if err != nil {
		return err
	}
	fmt.Printf("published table: %v (order 2 was rolled back: no row, no message)\n", counts)
	return nil
}

func cleanupBroker(url string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	for _, q := range []string{"gocap.example.billing", "gocap.example.shipping"} {
		ch.QueueDelete(q, false, false, false)
	}
	ch.ExchangeDelete(exchange, false, false)
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
