package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/internal/testproxy"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/rabbitmq"
	"github.com/gocap/gocap/transport/transporttest"
	"github.com/gocap/gocap/wire"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTransport returns a transport on an exchange and queues of its own,
// through a proxy that the test can cut, and removes them afterwards.
func newTransport(t *testing.T, cfg rabbitmq.Config) (*rabbitmq.Transport, *testproxy.Proxy) {
	t.Helper()
	raw := testenv.AMQPURL(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testproxy.New(t, u.Host)
	u.Host = proxy.Addr()
	cfg.URL = u.String()
	cfg.Exchange = testenv.Name("gocap_rmq_ex")
	cfg.QueuePrefix = cfg.Exchange + "."
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.RequeueDelay == 0 {
		cfg.RequeueDelay = 10 * time.Millisecond
	}
	tr, err := rabbitmq.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.Close()
		c, err := amqp.Dial(raw)
		if err != nil {
			return
		}
		defer c.Close()
		ch, err := c.Channel()
		if err != nil {
			return
		}
		for _, g := range []string{"conformance", "billing", "shipping", "workers", "retrying", "star", "hash", "survivor", "closing", "discarding", "starving", "outage", "batch-paid", "batch-shipped", "batch-once", "batch-mixed", "batch-linger", "batch-acked", "batch-retry"} {
			ch.QueueDelete(cfg.QueuePrefix+g, false, false, false)
		}
		ch.ExchangeDelete(cfg.Exchange, false, false)
	})
	return tr, proxy
}

// deliveries consumes topic, as group "conformance", until the test ends,
// and returns its deliveries once the consumer had the time to bind.
func deliveries(t *testing.T, tr *rabbitmq.Transport, topic string) <-chan transport.Delivery {
	t.Helper()
	got := make(chan transport.Delivery, 16)
	transporttest.Consume(t, tr, "conformance", []string{topic}, func(_ context.Context, d transport.Delivery) error {
		got <- d
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	return got
}

func TestConformance(t *testing.T) {
	proxies := map[transport.Transport]*testproxy.Proxy{}
	transporttest.Run(t, transporttest.Harness{
		New: func(t *testing.T) transport.Transport {
			tr, p := newTransport(t, rabbitmq.Config{})
			proxies[tr] = p
			return tr
		},
		Wildcards: true,
		InFlight:  512, // the default prefetch (128) on each of the default 4 channels
		// No queue is bound to the topic: the mandatory publish comes
		// back, rabbitmq.ErrUnroutable.
		Refused: func(*testing.T) (string, transport.Message) {
			return "nobody.listens", transport.Message{Body: []byte("x")}
		},
		Disconnect: func(t *testing.T, tr transport.Transport) func() {
			p := proxies[tr]
			p.Down()
			return p.Up
		},
	})
}

func TestUnroutable(t *testing.T) {
	tr, _ := newTransport(t, rabbitmq.Config{})
	err := tr.Send(context.Background(), "nobody.listens", transport.Message{Body: []byte("x")})
	if !errors.Is(err, rabbitmq.ErrUnroutable) {
		t.Fatalf("Send with no queue bound: %v, want ErrUnroutable", err)
	}
	accepting, _ := newTransport(t, rabbitmq.Config{AcceptUnroutable: true})
	if err := accepting.Send(context.Background(), "nobody.listens", transport.Message{Body: []byte("x")}); err != nil {
		t.Fatalf("AcceptUnroutable: %v", err)
	}
}

// TestSendBatchUnroutable checks that in a batch only the unroutable
// message fails, with ErrUnroutable, and the others are confirmed.
func TestSendBatchUnroutable(t *testing.T) {
	tr, _ := newTransport(t, rabbitmq.Config{})
	got := deliveries(t, tr, "bound")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs := []transport.Outgoing{
		{Topic: "bound", Message: transport.Message{Headers: map[string]string{wire.MsgID: "1"}, Body: []byte("a")}},
		{Topic: "nobody.listens", Message: transport.Message{Headers: map[string]string{wire.MsgID: "2"}, Body: []byte("b")}},
		{Topic: "bound", Message: transport.Message{Headers: map[string]string{wire.MsgID: "3"}, Body: []byte("c")}},
	}
	errs := tr.SendBatch(ctx, msgs)
	if len(errs) != 3 || errs[0] != nil || !errors.Is(errs[1], rabbitmq.ErrUnroutable) || errs[2] != nil {
		t.Fatalf("SendBatch errors %v, want [nil ErrUnroutable nil]", errs)
	}
	for range 2 {
		select {
		case d := <-got:
			if id := d.Headers[wire.MsgID]; id != "1" && id != "3" {
				t.Errorf("unexpected delivery of message %s", id)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the routable messages of the batch did not arrive")
		}
	}
}

func TestForeignHeaderTypes(t *testing.T) {
	tr, _ := newTransport(t, rabbitmq.Config{})
	got := deliveries(t, tr, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := amqp.Dial(testenv.AMQPURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, _ := c.Channel()
	ts := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	err = ch.PublishWithContext(ctx, tr.Exchange(), "t", false, false, amqp.Publishing{Headers: amqp.Table{
		"i": int32(7), "l": int64(-3), "b": true, "f": 1.5, "bytes": []byte("raw"), "bin": []byte{0xff, 0xfe, 'x'}, "nul": []byte{'a', 0, 'b'}, "ts": ts, "tbl": amqp.Table{"k": "v"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		want := map[string]string{"i": "7", "l": "-3", "b": "true", "f": "1.5", "bytes": "raw", "bin": "base64://54", "nul": "base64:YQBi", "ts": "2026-11-25T10:00:00Z", "tbl": `{"k":"v"}`}
		for k, v := range want {
			if d.Headers[k] != v {
				t.Errorf("header %s = %q, want %q", k, d.Headers[k], v)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}
}

// TestFailingDeliveriesDoNotStarve checks that deliveries whose handler
// always fails, more of them than the prefetch, do not hold up the good
// messages queued behind them while they wait to be handed back.
func TestFailingDeliveriesDoNotStarve(t *testing.T) {
	const poison, good = 30, 20
	tr, _ := newTransport(t, rabbitmq.Config{Prefetch: 16, Concurrency: 1, RequeueDelay: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var (
		mu       sync.Mutex
		handled  = map[string]bool{}
		failures int
	)
	transporttest.Consume(t, tr, "workers", []string{"job.run"}, func(_ context.Context, d transport.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		if d.Headers["kind"] == "poison" {
			failures++
			return errors.New("poison: failing on purpose")
		}
		handled[d.Headers[wire.MsgID]] = true
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	send := func(kind string, i int) {
		m := transport.Message{Headers: map[string]string{"kind": kind, wire.MsgID: fmt.Sprintf("%s-%d", kind, i)}, Body: []byte("x")}
		if err := tr.Send(ctx, "job.run", m); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	for i := range poison {
		send("poison", i)
	}
	start := time.Now()
	for i := range good {
		send("good", i)
	}
	deadline := start.Add(5 * time.Second)
	for {
		mu.Lock()
		n, f := len(handled), failures
		mu.Unlock()
		if n == good {
			t.Logf("%d good messages handled %v after they were sent, behind %d failing ones (%d failures)", good, time.Since(start).Round(time.Millisecond), poison, f)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d good messages handled within 5s behind %d always-failing ones (%d failures)", n, good, poison, f)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
