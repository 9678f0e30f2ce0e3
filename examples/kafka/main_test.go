package main

import (
	"context"
	"os"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/gocap/gocap/examples/internal/interrupttest"
	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/wire"
)

func TestMain(m *testing.M) {
	interrupttest.Main(main)
	os.Exit(m.Run())
}

// An example interrupted midway (Ctrl-C) removes its schema as a finished
// one does.
func TestInterruptCleansUp(t *testing.T) {
	pgURL := testenv.PostgresURL(t)
	res := interrupttest.Interrupt(t, "in a PostgreSQL transaction", []string{
		testenv.PostgresEnv + "=" + pgURL, "GOCAP_KAFKA_BROKERS=",
	})
	t.Logf("output:\n%s", res.Output)
	interrupttest.RequireNoSchema(t, pgURL, schema)
}

// The example's invoice travels with its ordering key (outbox.WithOrderingKey),
// which is what keeps one invoice's messages in order: the record key alone
// (KeyHeader) gives partition affinity, not order. The record on the topic
// carries the key both as the record key and as the gocap ordering key.
func TestInvoiceOrderingKey(t *testing.T) {
	t.Setenv(testenv.PostgresEnv, testenv.PostgresURL(t))
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "invoice.issued"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	t.Setenv("GOCAP_KAFKA_BROKERS", brokers[0])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, "postgres"); err != nil {
		t.Fatal(err)
	}

	conn, err := kafkago.DialLeader(ctx, "tcp", brokers[0], "invoice.issued", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := conn.ReadMessage(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	var orderingKey string
	for _, h := range m.Headers {
		if h.Key == wire.OrderingKey {
			orderingKey = string(h.Value)
		}
	}
	if string(m.Key) != "INV-7" || orderingKey != "INV-7" {
		t.Errorf("record key %q, %s %q; want INV-7 for both", m.Key, wire.OrderingKey, orderingKey)
	}
}
