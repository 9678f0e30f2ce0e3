package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/mysql"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport/rabbitmq"
)

// OrderPaid is an example payload.
type OrderPaid struct {
	ID     int64  `json:"id"`
	Amount string `json:"amount"`
}

// Publish a message in the same PostgreSQL transaction as the business
// change: it is sent if and only if the transaction commits.
func ExampleOutbox_Publish() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/test")
	if err != nil {
		log.Fatal(err)
	}
	store := postgres.New(pool, postgres.Options{})
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	tr, err := rabbitmq.New(rabbitmq.Config{URL: "amqp://guest:guest@127.0.0.1:5672/"})
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
	ob, err := outbox.New(store, tr, outbox.Options{})
	if err != nil {
		log.Fatal(err)
	}
	go ob.Run(ctx) // sends what commits; stops when ctx ends

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "update orders set paid = true where id = $1", 42); err != nil {
			return err
		}
		id, err := ob.Publish(ctx, tx, "order.paid", OrderPaid{ID: 42, Amount: "9.90"},
			outbox.WithHeader("tenant", "acme"))
		fmt.Println("published message", id)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Subscribe a handler in a consumer group. Every message is stored before
// it is acknowledged, de-duplicated by id and group, and retried if the
// handler fails.
func ExampleSubscribe() {
	ctx := context.Background()
	pool, _ := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/test")
	tr, _ := rabbitmq.New(rabbitmq.Config{URL: "amqp://guest:guest@127.0.0.1:5672/"})
	ob, _ := outbox.New(postgres.New(pool, postgres.Options{}), tr, outbox.Options{})

	err := outbox.Subscribe(ob, "order.*", func(ctx context.Context, m outbox.Received[OrderPaid]) error {
		// Record the work and any follow-up message in one transaction.
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "insert into invoices (order_id) values ($1) on conflict do nothing", m.Value.ID); err != nil {
				return err
			}
			_, err := ob.Publish(ctx, tx, "invoice.created", map[string]any{"order": m.Value.ID})
			return err
		})
	}, outbox.Group("billing"))
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(ob.Run(ctx))
}

// With MySQL (or SQLite), Publish takes the application's *sql.Tx, and
// InTx wakes the processor as soon as the transaction commits.
func ExampleInTx() {
	ctx := context.Background()
	db, _ := sql.Open("mysql", "root@tcp(127.0.0.1:3306)/test")
	tr, _ := rabbitmq.New(rabbitmq.Config{URL: "amqp://guest:guest@127.0.0.1:5672/"})
	ob, _ := outbox.New(mysql.New(db, mysql.Options{}), tr, outbox.Options{})
	go ob.Run(ctx)

	err := outbox.InTx(ctx, db, ob, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "update orders set paid = 1 where id = ?", 42); err != nil {
			return err
		}
		_, err := ob.Publish(ctx, tx, "order.paid", OrderPaid{ID: 42})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
}
