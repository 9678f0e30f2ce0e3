package main

import (
	"os"
	"testing"

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
	interrupttest.RequireNoSchema(t, pgURL, schema)
	interrupttest.RequireNoRabbitMQ(t, amqpURL, exchange, "gocap.example.billing", "gocap.example.shipping")
}
