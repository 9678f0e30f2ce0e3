package main

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/examples/internal/interrupttest"
	"github.com/gocap/gocap/internal/testenv"
)

func TestMain(m *testing.M) {
	interrupttest.Main(main)
	os.Exit(m.Run())
}

// An example interrupted midway (Ctrl-C) removes its schema, queues and
// exchange as a finished one does.
func TestInterruptCleansUp(t *testing.T) {
	pgURL, amqpURL := testenv.PostgresURL(t), testenv.AMQPURL(t)
	res := interrupttest.Interrupt(t, "order 1: published", []string{
		testenv.PostgresEnv + "=" + pgURL, testenv.AMQPEnv + "=" + amqpURL,
	})
	t.Logf("output:\n%s", res.Output)
	requireGone(t, pgURL, amqpURL, schema, exchange, "gocap.example.billing", "gocap.example.shipping")
}

// requireGone fails the test if the schema, the exchange or one of the
// queues exists.
func requireGone(t *testing.T, pgURL, amqpURL, schema, exchange string, queues ...string) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("schema %s is left", schema)
		pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	}
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exists := func(declare func(*amqp.Channel) error) bool {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		return declare(ch) == nil // a passive declare of a missing one fails (404)
	}
	for _, q := range queues {
		if exists(func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
			return err
		}) {
			t.Errorf("queue %s is left", q)
		}
	}
	if exists(func(ch *amqp.Channel) error {
		return ch.ExchangeDeclarePassive(exchange, "topic", true, false, false, false, nil)
	}) {
		t.Errorf("exchange %s is left", exchange)
	}
}
