package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/transport/rabbitmq"
	"github.com/gocap/gocap/wire"
)

type sum struct {
	A, B int
}

type total struct {
	Total int `json:"total"`
}

// replier subscribes the adder, which replies with the total, and a
// plain subscriber, which replies (as CAP does) with an empty body.
func replier[TTx any](t *testing.T, ob *outbox.Outbox[TTx]) {
	t.Helper()
	if err := outbox.SubscribeReply(ob, "calc.add", func(_ context.Context, m outbox.Received[sum]) (total, error) {
		return total{Total: m.Value.A + m.Value.B}, nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Subscribe(ob, "calc.ping", func(context.Context, outbox.Received[[]byte]) error { return nil },
		outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
}

// testReplyRoundTrip: gocap asks gocap for replies; each arrives on the
// callback topic with CAP's correlation headers.
func testReplyRoundTrip[TTx any](t *testing.T, caller, callee *outbox.Outbox[TTx], wait func()) {
	replier(t, callee)
	var got collector[json.RawMessage]
	if err := outbox.Subscribe(caller, "calc.*.result", func(_ context.Context, m outbox.Received[json.RawMessage]) error {
		got.add(m)
		return nil
	}, outbox.Group("shipping")); err != nil {
		t.Fatal(err)
	}
	run(t, callee)
	run(t, caller)
	wait()
	ctx := context.Background()
	add, err := caller.PublishWithoutTx(ctx, "calc.add", sum{A: 2, B: 3}, outbox.WithCallback("calc.add.result"))
	if err != nil {
		t.Fatal(err)
	}
	// A message further on in its conversation.
	add2, _ := caller.PublishWithoutTx(ctx, "calc.add", sum{A: 1, B: 1}, outbox.WithCallback("calc.add.result"),
		outbox.WithHeader(wire.CorrelationSeq, "4"))
	ping, _ := caller.PublishWithoutTx(ctx, "calc.ping", []byte("{}"), outbox.WithCallback("calc.ping.result"))
	// No callback: no reply.
	caller.PublishWithoutTx(ctx, "calc.add", sum{A: 5, B: 5})
	waitFor(t, 20*time.Second, "three replies", func() bool { return got.len() >= 3 })
	time.Sleep(300 * time.Millisecond) // a fourth, were the message without a callback answered
	want := map[string]struct{ name, seq, body string }{
		strconv.FormatInt(add, 10):  {"calc.add.result", "1", `{"total":5}`},
		strconv.FormatInt(add2, 10): {"calc.add.result", "5", `{"total":2}`},
		strconv.FormatInt(ping, 10): {"calc.ping.result", "1", ``},
	}
	if got.len() != 3 {
		t.Errorf("%d replies, want 3", got.len())
	}
	for _, r := range got.all() {
		corr := r.Headers[wire.CorrelationID]
		w, ok := want[corr]
		if !ok {
			t.Errorf("reply with cap-corr-id %q, which is no message asking for one: %+v", corr, r)
			continue
		}
		if r.Name != w.name || r.Headers[wire.CorrelationSeq] != w.seq || string(r.Body) != w.body {
			t.Errorf("reply to %s: name %q, cap-corr-seq %q, body %q; want %q, %q, %q",
				corr, r.Name, r.Headers[wire.CorrelationSeq], r.Body, w.name, w.seq, w.body)
		}
		if r.ID == corr || r.Headers[wire.CallbackName] != "" {
			t.Errorf("reply to %s has id %s and callback %q: a reply is a message of its own, asking for none", corr, r.ID, r.Headers[wire.CallbackName])
		}
	}
	// The replies are published rows of the callee, like any message.
	rows, err := callee.Store().List(ctx, storage.Filter{Kind: storage.Published})
	if err != nil || len(rows) != 3 {
		t.Errorf("the callee has %d published rows (%v), want its 3 replies", len(rows), err)
	}
}

// TestReplyMemory runs the round trip over the memory broker, with an
// outbox on a SQLite file of its own on each side.
func TestReplyMemory(t *testing.T) {
	broker := memory.NewBroker(memory.Options{})
	caller := newOutbox(t, sqliteBackend.open(t).driver(t), broker.Transport(), outbox.Options{})
	callee := newOutbox(t, sqliteBackend.open(t).driver(t), broker.Transport(), outbox.Options{})
	testReplyRoundTrip(t, caller, callee, func() {})
}

// rabbitOn is another RabbitMQ transport on the exchange and queues of
// rabbitFor's, like another process's.
func rabbitOn(t *testing.T, url, exchange string) transport.Transport {
	t.Helper()
	tr, err := rabbitmq.New(rabbitmq.Config{URL: url, Exchange: exchange, QueuePrefix: exchange + ".", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// spy returns what the exchange routes with binding, read by a plain
// AMQP consumer on a queue of its own.
func spy(t *testing.T, url, exchange, binding string) <-chan amqp.Delivery {
	t.Helper()
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, binding, exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	got, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestReplyPostgresRabbitMQ: the round trip between two outboxes on one
// PostgreSQL database over RabbitMQ, and a reply to a foreign publisher
// that asks for one with CAP's headers.
func TestReplyPostgresRabbitMQ(t *testing.T) {
	url := testenv.AMQPURL(t)
	t.Run("gocap", func(t *testing.T) {
		env := postgresBackend.open(t)
		tr, ex := rabbitFor(t, url)
		caller := newOutbox(t, env.driver(t), tr, outbox.Options{})
		callee := newOutbox(t, postgresBackend.open(t).driver(t), rabbitOn(t, url, ex), outbox.Options{})
		testReplyRoundTrip(t, caller, callee, func() { waitConsumers(t, caller) })
	})
	t.Run("foreign", func(t *testing.T) {
		env := postgresBackend.open(t)
		tr, ex := rabbitFor(t, url)
		callee := newOutbox(t, env.driver(t), tr, outbox.Options{})
		replier(t, callee)
		replies := spy(t, url, ex, "calc.add.result")
		run(t, callee)
		waitConsumers(t, callee)
		// As CAP's PublishAsync("calc.add", value, callbackName: "calc.add.result") sends it.
		foreignPublish(t, url, ex, "calc.add", amqp.Table{
			"cap-msg-id": "7400000000000000001", "cap-msg-name": "calc.add", "cap-msg-type": "Sum",
			"cap-corr-id": "7400000000000000001", "cap-corr-seq": "0",
			"cap-callback-name": "calc.add.result", "cap-senttime": "11/25/2026 10:30:00 +00:00",
		}, `{"A":20,"B":22}`)
		select {
		case d := <-replies:
			h := map[string]string{}
			for k, v := range d.Headers {
				h[k] = fmt.Sprint(v)
			}
			if d.RoutingKey != "calc.add.result" || h[wire.MsgName] != "calc.add.result" ||
				h[wire.CorrelationID] != "7400000000000000001" || h[wire.CorrelationSeq] != "1" || string(d.Body) != `{"total":42}` {
				t.Errorf("reply: routing key %q, headers %v, body %s", d.RoutingKey, h, d.Body)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no reply on the callback topic within 20s")
		}
	})
}
