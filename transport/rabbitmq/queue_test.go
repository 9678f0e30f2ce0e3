package rabbitmq_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/rabbitmq"
	"github.com/gocap/gocap/wire"
)

// TestQueueConfigChecked checks that New refuses queue arguments and types
// it can tell are wrong, naming the field, before it connects.
func TestQueueConfigChecked(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  rabbitmq.Config
		want []string
	}{
		{"unknown type", rabbitmq.Config{QueueType: "qourum"}, []string{"Config.QueueType", `"qourum"`}},
		{"stream", rabbitmq.Config{QueueType: "stream"}, []string{"Config.QueueType", "stream", "not supported"}},
		{"ttl as text", rabbitmq.Config{QueueArguments: amqp.Table{"x-message-ttl": "60000"}}, []string{`Config.QueueArguments["x-message-ttl"]`, "not an integer"}},
		{"negative ttl", rabbitmq.Config{QueueArguments: amqp.Table{"x-message-ttl": -1}}, []string{`Config.QueueArguments["x-message-ttl"]`, "out of range"}},
		{"ttl as float", rabbitmq.Config{QueueArguments: amqp.Table{"x-message-ttl": 1.5}}, []string{`Config.QueueArguments["x-message-ttl"]`, "not an integer"}},
		{"dlx as number", rabbitmq.Config{QueueArguments: amqp.Table{"x-dead-letter-exchange": 7}}, []string{`Config.QueueArguments["x-dead-letter-exchange"]`, "not a string"}},
		{"routing key without dlx", rabbitmq.Config{QueueArguments: amqp.Table{"x-dead-letter-routing-key": "dead"}}, []string{"x-dead-letter-routing-key", "without", "x-dead-letter-exchange"}},
		{"single active consumer as text", rabbitmq.Config{QueueArguments: amqp.Table{"x-single-active-consumer": "true"}}, []string{`Config.QueueArguments["x-single-active-consumer"]`, "not a bool"}},
		{"overflow value", rabbitmq.Config{QueueArguments: amqp.Table{"x-overflow": "drop-tail"}}, []string{`Config.QueueArguments["x-overflow"]`, "drop-tail"}},
		{"unsupported Go type", rabbitmq.Config{QueueArguments: amqp.Table{"x-custom": uint64(1)}}, []string{`Config.QueueArguments["x-custom"]`, "uint64"}},
		{"type as argument", rabbitmq.Config{QueueArguments: amqp.Table{"x-queue-type": "quorum"}}, []string{"Config.QueueType"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.URL = "amqp://guest:guest@127.0.0.1:1/" // never dialed: the check comes first
			_, err := rabbitmq.New(c.cfg)
			if err == nil {
				t.Fatal("New accepted the configuration")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "connect") {
				t.Errorf("New dialed before checking the configuration: %v", err)
			}
		})
	}
}

// queueEnv is an exchange and a queue prefix of a test's own on the real
// RabbitMQ, with a direct connection for the test to act as CAP or an
// operator would, and everything deleted at the end.
type queueEnv struct {
	url, exchange, prefix string
	ch                    *amqp.Channel
}

func newQueueEnv(t *testing.T) *queueEnv {
	t.Helper()
	e := &queueEnv{url: testenv.AMQPURL(t), exchange: testenv.Name("gocap_rmq_q")}
	e.prefix = e.exchange + "."
	conn, err := amqp.Dial(e.url)
	if err != nil {
		t.Fatal(err)
	}
	if e.ch, err = conn.Channel(); err != nil {
		t.Fatal(err)
	}
	var queues, exchanges []string
	t.Cleanup(func() {
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		for _, q := range queues {
			ch.QueueDelete(q, false, false, false)
		}
		for _, x := range append(exchanges, e.exchange) {
			ch.ExchangeDelete(x, false, false)
		}
	})
	// Everything a test may create is named from e.prefix: remove those.
	for _, g := range []string{"quorum", "cap", "dlx-work", "dead"} {
		queues = append(queues, e.prefix+g)
	}
	exchanges = append(exchanges, e.prefix+"dlx")
	return e
}

// transport returns a transport on e's exchange and queues.
func (e *queueEnv) transport(t *testing.T, cfg rabbitmq.Config) *rabbitmq.Transport {
	t.Helper()
	cfg.URL, cfg.Exchange, cfg.QueuePrefix, cfg.Logger = e.url, e.exchange, e.prefix, quiet
	if cfg.RequeueDelay == 0 {
		cfg.RequeueDelay = 10 * time.Millisecond
	}
	tr, err := rabbitmq.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// consumeUntil runs Consume in the background and returns a function that
// stops it and returns Consume's result.
func consumeUntil(t *testing.T, tr *rabbitmq.Transport, group string, topics []string, h transport.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Consume(ctx, group, topics, h) }()
	stopped := false
	var result error
	stop = func() error {
		if stopped {
			return result
		}
		stopped = true
		cancel()
		select {
		case result = <-done:
		case <-time.After(20 * time.Second):
			t.Error("Consume did not return after its context ended")
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestQuorumQueue checks that with QueueType quorum the group's queue is a
// quorum queue, and that it is consumed: deliveries arrive, and one whose
// handler failed is handed back and arrives again.
func TestQuorumQueue(t *testing.T) {
	e := newQueueEnv(t)
	tr := e.transport(t, rabbitmq.Config{QueueType: rabbitmq.QueueQuorum})
	got := make(chan transport.Delivery, 16)
	var failed atomic.Bool
	consumeUntil(t, tr, "quorum", []string{"order.*"}, func(_ context.Context, d transport.Delivery) error {
		if d.Headers[wire.MsgID] == "2" && failed.CompareAndSwap(false, true) {
			return errors.New("failing once on purpose")
		}
		got <- d
		return nil
	})
	waitForQueue(t, e, e.prefix+"quorum")
	// Declaring it as a quorum queue is accepted, as a classic one refused:
	// the broker's queue is a quorum queue.
	if _, err := e.ch.QueueDeclare(e.prefix+"quorum", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatalf("the group queue is not a quorum queue: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, id := range []string{"1", "2", "3"} {
		if err := tr.Send(ctx, "order.paid", transport.Message{Headers: map[string]string{wire.MsgID: id}, Body: []byte("x" + id)}); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	seen := map[string]bool{}
	for len(seen) < 3 {
		select {
		case d := <-got:
			id := d.Headers[wire.MsgID]
			if string(d.Body) != "x"+id || d.Topic != "order.paid" {
				t.Errorf("delivery %+v", d)
			}
			seen[id] = true
		case <-time.After(15 * time.Second):
			t.Fatalf("received %v of messages 1, 2 and 3 from the quorum queue", seen)
		}
	}
	if !failed.Load() {
		t.Error("message 2's first delivery was not handled")
	}
}

// waitForQueue waits until queue exists (a consumer declared it).
func waitForQueue(t *testing.T, e *queueEnv, queue string) {
	t.Helper()
	conn, err := amqp.Dial(e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		_, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err == nil {
			ch.Close()
			time.Sleep(100 * time.Millisecond) // the bindings follow the declaration
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s not declared within 10s: %v", queue, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestQueueDeclaredByCAP checks a queue that CAP (or an operator) declared
// with x-message-ttl and a dead-letter exchange: without those arguments
// Consume returns at once an error wrapping ErrQueueMismatch that names
// the argument and the field to set; with them it consumes the queue.
func TestQueueDeclaredByCAP(t *testing.T) {
	e := newQueueEnv(t)
	queue := e.prefix + "cap"
	// As DotNetCore.CAP declares it: a 32-bit TTL (a C# int), and here a
	// dead-letter exchange.
	capArgs := amqp.Table{"x-message-ttl": int32(60000), "x-dead-letter-exchange": e.prefix + "dlx"}
	if _, err := e.ch.QueueDeclare(queue, true, false, false, false, capArgs); err != nil {
		t.Fatal(err)
	}

	plain := e.transport(t, rabbitmq.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err := plain.Consume(ctx, "cap", []string{"order.paid"}, func(context.Context, transport.Delivery) error { return nil })
	if !errors.Is(err, rabbitmq.ErrQueueMismatch) || !errors.Is(err, transport.ErrMisconfigured) {
		t.Fatalf("Consume of the queue declared with other arguments: %v, want ErrQueueMismatch (and transport.ErrMisconfigured)", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Consume returned only when its context ended")
	}
	for _, w := range []string{queue, "x-message-ttl", "60000", `Config.QueueArguments["x-message-ttl"]`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)

	// Only the TTL configured: the error names the dead-letter exchange.
	ttlOnly := e.transport(t, rabbitmq.Config{QueueArguments: amqp.Table{"x-message-ttl": 60000}})
	err = ttlOnly.Consume(ctx, "cap", []string{"order.paid"}, func(context.Context, transport.Delivery) error { return nil })
	if !errors.Is(err, rabbitmq.ErrQueueMismatch) || !strings.Contains(err.Error(), `Config.QueueArguments["x-dead-letter-exchange"]`) {
		t.Fatalf("Consume with the TTL only: %v, want ErrQueueMismatch naming x-dead-letter-exchange", err)
	}

	// The same arguments (the TTL as a Go int): consumed.
	same := e.transport(t, rabbitmq.Config{QueueArguments: amqp.Table{"x-message-ttl": 60000, "x-dead-letter-exchange": e.prefix + "dlx"}})
	got := make(chan transport.Delivery, 1)
	stop := consumeUntil(t, same, "cap", []string{"order.paid"}, func(_ context.Context, d transport.Delivery) error {
		got <- d
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	if err := same.Send(ctx, "order.paid", transport.Message{Headers: map[string]string{wire.MsgID: "7"}, Body: []byte("paid")}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	select {
	case d := <-got:
		if d.Headers[wire.MsgID] != "7" || string(d.Body) != "paid" {
			t.Errorf("delivery %+v", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no delivery from the queue declared by CAP")
	}
	if err := stop(); err != nil {
		t.Errorf("Consume: %v", err)
	}

	// A quorum type where the queue is classic: named too.
	quorum := e.transport(t, rabbitmq.Config{QueueType: rabbitmq.QueueQuorum, QueueArguments: capArgs})
	err = quorum.Consume(ctx, "cap", []string{"order.paid"}, func(context.Context, transport.Delivery) error { return nil })
	if !errors.Is(err, rabbitmq.ErrQueueMismatch) || !strings.Contains(err.Error(), "Config.QueueType") {
		t.Fatalf("Consume as quorum of a classic queue: %v, want ErrQueueMismatch naming Config.QueueType", err)
	}
}

// TestDeadLetterScheme checks the TTL + dead-letter exchange scheme on a
// queue the transport declared with those arguments: a message no
// consumer takes within the TTL, and a message its handler discards, land
// in the dead-letter queue.
func TestDeadLetterScheme(t *testing.T) {
	e := newQueueEnv(t)
	dlx, dead := e.prefix+"dlx", e.prefix+"dead"
	if err := e.ch.ExchangeDeclare(dlx, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ch.QueueDeclare(dead, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.ch.QueueBind(dead, "", dlx, false, nil); err != nil {
		t.Fatal(err)
	}
	tr := e.transport(t, rabbitmq.Config{QueueArguments: amqp.Table{"x-message-ttl": 300, "x-dead-letter-exchange": dlx}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Discarded by the handler: rejected without requeue, dead-lettered.
	stop := consumeUntil(t, tr, "dlx-work", []string{"job.run"}, func(context.Context, transport.Delivery) error {
		return transport.Discard(errors.New("discarding on purpose"))
	})
	waitForQueue(t, e, e.prefix+"dlx-work")
	send := func(id string) {
		t.Helper()
		if err := tr.Send(ctx, "job.run", transport.Message{Headers: map[string]string{wire.MsgID: id}, Body: []byte(id)}); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	send("discarded")
	checkDeadLettered(t, e.ch, dead, "discarded", "rejected")
	if err := stop(); err != nil {
		t.Fatalf("Consume: %v", err)
	}

	// No consumer: the message expires after the TTL and is dead-lettered.
	send("expired")
	checkDeadLettered(t, e.ch, dead, "expired", "expired")
}

// checkDeadLettered waits (10s at most) for the message with id in queue
// dead and checks the reason RabbitMQ recorded in its x-death header.
func checkDeadLettered(t *testing.T, ch *amqp.Channel, dead, id, reason string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, ok, err := ch.Get(dead, true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if got := d.Headers[wire.MsgID]; got != id {
				t.Fatalf("dead-lettered message %v, want %s", got, id)
			}
			deaths, _ := d.Headers["x-death"].([]any)
			if len(deaths) == 0 {
				t.Fatalf("message %s has no x-death header: %v", id, d.Headers)
			}
			if r := deaths[0].(amqp.Table)["reason"]; r != reason {
				t.Errorf("message %s dead-lettered for %v, want %s", id, r, reason)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %s was not dead-lettered within 10s", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
