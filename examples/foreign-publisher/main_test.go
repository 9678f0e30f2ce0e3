package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/examples/internal/interrupttest"
	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
)

func TestMain(m *testing.M) {
	interrupttest.Main(main)
	os.Exit(m.Run())
}

// An example interrupted midway (Ctrl-C) removes its schema, queue and
// exchange as a finished one does.
func TestInterruptCleansUp(t *testing.T) {
	pgURL, amqpURL := testenv.PostgresURL(t), testenv.AMQPURL(t)
	res := interrupttest.Interrupt(t, "a foreign service publishes", []string{
		testenv.PostgresEnv + "=" + pgURL, testenv.AMQPEnv + "=" + amqpURL,
	})
	t.Logf("output:\n%s", res.Output)
	interrupttest.RequireNoSchema(t, pgURL, schema)
	interrupttest.RequireNoRabbitMQ(t, amqpURL, exchange, exchange+"."+group)
}

// What a run killed outright (kill -9) leaves behind — the received row of
// a message's fixed id, a queued message — does not fail the next run: it
// starts from nothing, and cleans up after itself.
func TestLeftoversOfAKilledRun(t *testing.T) {
	pgURL, amqpURL := testenv.PostgresURL(t), testenv.AMQPURL(t)
	t.Setenv(testenv.PostgresEnv, pgURL)
	t.Setenv(testenv.AMQPEnv, amqpURL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := postgres.New(pool, postgres.Options{Schema: schema, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = store.InsertReceived(ctx, &storage.Message{ID: 1, MsgID: "880000000000001", Name: "shipment.sent", Group: group,
		Headers: map[string]string{}, Body: []byte(`{}`), Added: time.Now()}, 1, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(exchange+"."+group, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.PublishWithContext(ctx, "", exchange+"."+group, false, false, amqp.Publishing{Body: []byte(`{"order_id":0}`)}); err != nil {
		t.Fatal(err)
	}

	if err := run(ctx); err != nil {
		t.Fatal(err)
	}
	interrupttest.RequireNoSchema(t, pgURL, schema)
	interrupttest.RequireNoRabbitMQ(t, amqpURL, exchange, exchange+"."+group)
}
