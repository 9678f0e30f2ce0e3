// Command foreign-publisher shows a program that knows nothing of gocap —
// plain amqp091-go here, standing in for a Java, Node or Python service —
// publishing to a gocap subscriber. It sets CAP's headers by hand on one
// message, none on another, and sends a body that does not decode on a
// third:
//
//   - with cap-msg-id and cap-msg-name: handled like a message from gocap or
//     DotNetCore.CAP;
//
//   - with no CAP headers: gocap gives it an id (and logs that) and takes the
//     routing key as its name;
//
//   - with an undecodable body: stored as Failed with the decode error,
//     visible and requeueable in the dashboard, never redelivered forever.
//
//     go run ./examples/foreign-publisher
//
// GOCAP_POSTGRES_URL and GOCAP_AMQP_URL override the local defaults.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport/rabbitmq"
)

// Shipment is what the foreign service sends.
type Shipment struct {
	OrderID int    `json:"order_id"`
	Carrier string `json:"carrier"`
}

const (
	schema   = "gocap_foreign_example"
	exchange = "gocap.foreign.example"
	group    = "warehouse"
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
	tr, err := rabbitmq.New(rabbitmq.Config{URL: amqpURL, Exchange: exchange, QueuePrefix: exchange + ".", Logger: logger})
	if err != nil {
		return err
	}
	defer tr.Close()

	ob, err := outbox.New(store, tr, outbox.Options{Logger: logger})
	if err != nil {
		return err
	}
	var handled atomic.Int32
	err = outbox.Subscribe(ob, "shipment.#", func(ctx context.Context, m outbox.Received[Shipment]) error {
		handled.Add(1)
		fmt.Printf("handled %-18s id=%-22s order=%d carrier=%s\n", m.Name, m.ID, m.Value.OrderID, m.Value.Carrier)
		return nil
	}, outbox.Group(group))
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- ob.Run(runCtx) }()
	time.Sleep(500 * time.Millisecond) // let the consumer bind its queue

	// The foreign publisher.
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer func() {
		if ch, err := conn.Channel(); err == nil {
			ch.QueueDelete(exchange+"."+group, false, false, false)
			ch.ExchangeDelete(exchange, false, false)
		}
	}()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	publish := func(key string, headers amqp.Table, body string) error {
		return ch.PublishWithContext(ctx, exchange, key, false, false, amqp.Publishing{
			Headers: headers, Body: []byte(body), DeliveryMode: amqp.Persistent, ContentType: "application/json",
		})
	}
	if err := publish("shipment.sent", amqp.Table{
		"cap-msg-id": "880000000000001", "cap-msg-name": "shipment.sent", "cap-senttime": time.Now().UTC().Format(time.RFC3339),
	}, `{"order_id":1,"carrier":"DHL"}`); err != nil {
		return err
	}
	if err := publish("shipment.sent.express", nil, `{"order_id":2,"carrier":"UPS"}`); err != nil {
		return err
	}
	if err := publish("shipment.sent", amqp.Table{"cap-msg-id": "880000000000003"}, `{"order_id":"three"}`); err != nil {
		return err
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		failed, err := store.List(ctx, storage.Filter{Kind: storage.Received, Status: storage.StatusFailed})
		if err != nil {
			return err
		}
		if handled.Load() == 2 && len(failed) == 1 {
			fmt.Printf("failed  %-18s id=%-22s retries=%d\n        error: %s\n", failed[0].Name, failed[0].MsgID, failed[0].Retries, failed[0].LastError)
			break
		}
		if time.Now().After(deadline) {
			return errors.New("timed out waiting for the three messages")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return <-done
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
