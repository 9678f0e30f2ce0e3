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
// GOCAP_POSTGRES_URL and GOCAP_AMQP_URL override the local defaults. The
// example works in a schema and on an exchange of its own, and removes them
// at the end, also when interrupted (Ctrl-C, SIGTERM); it removes what an
// earlier run killed outright left behind at the start (its messages'
// fixed ids would be de-duplicated).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/examples/internal/cleanup"
	"github.com/gocap/gocap/examples/internal/interrupt"
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
	// An interrupt cancels run's ctx, so that run stops and cleans up.
	interrupt.Main("the example's schema, queue and exchange", func(ctx context.Context) error {
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
	// The messages' ids are fixed: rows an earlier run killed outright left
	// would de-duplicate them. Start from nothing.
	if err := cleanup.PostgresSchema(pool, schema); err != nil {
		return fmt.Errorf("removing the schema of an earlier run: %w", err)
	}
	defer cleanup.PostgresSchema(pool, schema)
	if err := cleanup.RabbitMQ(amqpURL, exchange, exchange+"."+group); err != nil {
		return fmt.Errorf("removing the queue of an earlier run: %w", err)
	}
	defer cleanup.RabbitMQ(amqpURL, exchange, exchange+"."+group)
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
	done := make(chan error, 1)
	go func() { done <- ob.Run(runCtx) }()
	// However run returns, Run has stopped before the deferred cleanup
	// removes its schema and queue.
	stopRun := sync.OnceValue(func() error { stop(); return <-done })
	defer stopRun()
	fmt.Println("gocap consumes shipment.# for group " + group + "; a foreign service publishes three messages")
	if err := interrupt.Sleep(ctx, 500*time.Millisecond); err != nil { // let the consumer bind its queue
		return err
	}

	// The foreign publisher.
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return err
	}
	defer conn.Close()
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
		if err := interrupt.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return stopRun()
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
