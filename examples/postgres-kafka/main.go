// Command postgres-kafka publishes through Kafka from a PostgreSQL
// transaction and consumes the message in a consumer group.
//
//	go run ./examples/postgres-kafka
//
// With GOCAP_KAFKA_BROKERS unset it starts an in-process Kafka (kfake) on
// loopback, so it runs without a Kafka installation. GOCAP_POSTGRES_URL
// overrides the local PostgreSQL default.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport/kafka"
)

// InvoiceIssued is the message payload.
type InvoiceIssued struct {
	Invoice string `json:"invoice"`
	Total   string `json:"total"`
}

const schema = "gocap_kafka_example"

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	brokers := strings.Split(os.Getenv("GOCAP_KAFKA_BROKERS"), ",")
	if brokers[0] == "" {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
		if err != nil {
			return err
		}
		defer c.Close()
		brokers = c.ListenAddrs()
		fmt.Println("in-process Kafka on", brokers)
	}
	pgURL := os.Getenv("GOCAP_POSTGRES_URL")
	if pgURL == "" {
		pgURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	defer pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	store := postgres.New(pool, postgres.Options{Schema: schema, Logger: quiet})
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	tr, err := kafka.New(kafka.Config{Brokers: brokers, AutoCreateTopics: true, KeyHeader: "invoice", Logger: quiet})
	if err != nil {
		return err
	}
	defer tr.Close()
	ob, err := outbox.New(store, tr, outbox.Options{Logger: quiet})
	if err != nil {
		return err
	}
	got := make(chan outbox.Received[InvoiceIssued], 1)
	if err := outbox.Subscribe(ob, "invoice.issued", func(_ context.Context, m outbox.Received[InvoiceIssued]) error {
		got <- m
		return nil
	}, outbox.Group("accounting")); err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- ob.Run(runCtx) }()

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		id, err := ob.Publish(ctx, tx, "invoice.issued", InvoiceIssued{Invoice: "INV-7", Total: "99.00"},
			outbox.WithHeader("invoice", "INV-7")) // the record key: one invoice's messages stay in order
		fmt.Println("published message", id, "in a PostgreSQL transaction")
		return err
	})
	if err != nil {
		return err
	}
	select {
	case m := <-got:
		fmt.Printf("accounting received %s from Kafka: %+v (message %s)\n", m.Name, m.Value, m.ID)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("the message did not arrive")
	}
	stop()
	return <-done
}
