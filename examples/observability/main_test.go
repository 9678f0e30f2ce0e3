package main

import (
	"os"
	"regexp"
	"testing"

	"github.com/gocap/gocap/examples/internal/interrupttest"
	"github.com/gocap/gocap/internal/testenv"
)

func TestMain(m *testing.M) {
	interrupttest.Main(main)
	os.Exit(m.Run())
}

// Interrupted while serving (Ctrl-C), the example removes its work
// directory, and its RabbitMQ exchange and queue.
func TestInterruptCleansUp(t *testing.T) {
	amqpURL := testenv.AMQPURL(t)
	tmp := t.TempDir()
	res := interrupttest.Interrupt(t, "serving for", []string{"TMPDIR=" + tmp},
		"-addr", "127.0.0.1:0", "-serve", "5m", "-amqp", amqpURL)
	t.Logf("output:\n%s", res.Output)
	requireGone(t, tmp, amqpURL, res.Output)
}

// A walkthrough over RabbitMQ uses a queue of its own, not one named like
// its group ("billing"), and removes it and its exchange at the end.
func TestRabbitMQRemovedAtTheEnd(t *testing.T) {
	amqpURL := testenv.AMQPURL(t)
	tmp := t.TempDir()
	res := interrupttest.Run(t, "", []string{"TMPDIR=" + tmp}, "-addr", "127.0.0.1:0", "-amqp", amqpURL)
	t.Logf("output:\n%s", res.Output)
	if res.Err != nil {
		t.Fatalf("the example failed: %v", res.Err)
	}
	requireGone(t, tmp, amqpURL, res.Output)
}

// requireGone fails the test if tmp holds anything, or if the exchange or
// the queue the example printed exists, or if the queue is named like the
// group alone.
func requireGone(t *testing.T, tmp, amqpURL, output string) {
	t.Helper()
	if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
		t.Errorf("left in TMPDIR: %v (%v)", left, err)
	}
	names := regexp.MustCompile(`RabbitMQ exchange (\S+), queue (\S+),`).FindStringSubmatch(output)
	if names == nil {
		t.Fatal("the example did not print its exchange and queue")
	}
	exchange, queue := names[1], names[2]
	if queue == "billing" {
		t.Errorf("queue %q: named like the group alone", queue)
	}
	interrupttest.RequireNoRabbitMQ(t, amqpURL, exchange, queue)
}
