// Command kafka publishes through Kafka from a database transaction and
// consumes the message in a consumer group, on PostgreSQL or MySQL.
//
//	go run ./examples/kafka              # PostgreSQL
//	go run ./examples/kafka -db mysql    # MySQL / MariaDB
//
// With GOCAP_KAFKA_BROKERS unset it starts an in-process Kafka (kfake) on
// loopback, so it runs without a Kafka installation. GOCAP_POSTGRES_URL and
// GOCAP_MYSQL_DSN override the local database defaults. The example works
// in a schema (tables) of its own and removes it at the end, also when
// interrupted (Ctrl-C, SIGTERM), and at the start.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/gocap/gocap/examples/internal/cleanup"
	"github.com/gocap/gocap/examples/internal/interrupt"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/mysql"
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
	db := flag.String("db", "postgres", "postgres or mysql")
	flag.Parse()
	// An interrupt cancels run's ctx, so that run stops and cleans up.
	interrupt.Main("the example's tables", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return run(ctx, *db)
	})
}

func run(ctx context.Context, db string) error {
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
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr, err := kafka.New(kafka.Config{Brokers: brokers, AutoCreateTopics: true, Logger: quiet})
	if err != nil {
		return err
	}
	defer tr.Close()
	got := make(chan outbox.Received[InvoiceIssued], 1)
	handler := func(_ context.Context, m outbox.Received[InvoiceIssued]) error {
		got <- m
		return nil
	}
	invoice := InvoiceIssued{Invoice: "INV-7", Total: "99.00"}
	// The ordering key keeps one invoice's messages in order: they are sent
	// one at a time in publish order, the Kafka transport makes the key the
	// record key (one partition), and each consumer group handles them one
	// at a time in that order. A record key alone (kafka.Config.KeyHeader)
	// would give partition affinity, not order.
	key := outbox.WithOrderingKey(invoice.Invoice)

	var done <-chan error
	switch db {
	case "postgres":
		pool, err := pgxpool.New(ctx, env("GOCAP_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"))
		if err != nil {
			return err
		}
		defer pool.Close()
		if err := cleanup.PostgresSchema(pool, schema); err != nil { // what a run killed outright left
			return fmt.Errorf("removing the schema of an earlier run: %w", err)
		}
		defer cleanup.PostgresSchema(pool, schema)
		ob, err := start(ctx, postgres.New(pool, postgres.Options{Schema: schema, Logger: quiet}), tr, handler, &done)
		if err != nil {
			return err
		}
		defer ob.Close()
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			id, err := ob.Publish(ctx, tx, "invoice.issued", invoice, key)
			fmt.Println("published message", id, "in a PostgreSQL transaction")
			return err
		})
		if err != nil {
			return err
		}
	case "mysql":
		sqlDB, err := sql.Open("mysql", env("GOCAP_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/test"))
		if err != nil {
			return err
		}
		defer sqlDB.Close()
		prefix := "gocap_kafka_example_"
		drop := func() error {
			for _, t := range []string{"published", "received", "instances"} {
				if _, err := sqlDB.Exec("DROP TABLE IF EXISTS " + prefix + t); err != nil {
					return err
				}
			}
			return nil
		}
		if err := drop(); err != nil { // what a run killed outright left
			return fmt.Errorf("dropping the tables of an earlier run: %w", err)
		}
		defer drop()
		ob, err := start(ctx, mysql.New(sqlDB, mysql.Options{TablePrefix: prefix, Logger: quiet}), tr, handler, &done)
		if err != nil {
			return err
		}
		defer ob.Close()
		err = outbox.InTx(ctx, sqlDB, ob, func(tx *sql.Tx) error {
			id, err := ob.Publish(ctx, tx, "invoice.issued", invoice, key)
			fmt.Println("published message", id, "in a MySQL transaction")
			return err
		})
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("-db %q: want postgres or mysql", db)
	}
	select {
	case m := <-got:
		fmt.Printf("accounting received %s from Kafka: %+v (message %s)\n", m.Name, m.Value, m.ID)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("the message did not arrive")
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	return nil
}

// start migrates the storage, subscribes the handler and runs an outbox;
// Close stops it.
func start[TTx any](ctx context.Context, d storage.Driver[TTx], tr *kafka.Transport,
	h func(context.Context, outbox.Received[InvoiceIssued]) error, done *<-chan error) (*outbox.Outbox[TTx], error) {
	if err := d.Migrate(ctx); err != nil {
		return nil, err
	}
	ob, err := outbox.New(d, tr, outbox.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	if err := outbox.Subscribe(ob, "invoice.issued", h, outbox.Group("accounting")); err != nil {
		return nil, err
	}
	c := make(chan error, 1)
	go func() { c <- ob.Run(ctx) }()
	*done = c
	return ob, nil
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
