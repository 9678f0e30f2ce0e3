package outbox_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/internal/testproxy"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/rabbitmq"
	"github.com/gocap/gocap/wire"
)

func runReceive[TTx any](t *testing.T, be backend[TTx]) {
	t.Run("TwoGroups", func(t *testing.T) { testTwoGroups(t, be) })
	t.Run("ForeignPublisher", func(t *testing.T) { testForeignPublisher(t, be) })
	t.Run("UndecodableBody", func(t *testing.T) { testUndecodable(t, be) })
	t.Run("DuplicateDelivery", func(t *testing.T) { testDuplicate(t, be) })
	t.Run("HandlerFailsTwice", func(t *testing.T) { testFailsTwice(t, be) })
	t.Run("HandlerPanics", func(t *testing.T) { testPanic(t, be) })
	t.Run("CrashBetweenStoreAndAck", func(t *testing.T) { testCrashBeforeAck(t, be) })
}

// rabbitFor returns a transport on its own exchange and queue prefix, and
// the exchange name.
func rabbitFor(t *testing.T, url string) (*rabbitmq.Transport, string) {
	t.Helper()
	ex := testenv.Name("gocap_test_ex")
	prefix := ex + "."
	tr, err := rabbitmq.New(rabbitmq.Config{URL: url, Exchange: ex, QueuePrefix: prefix, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.Close()
		deleteRabbit(url, ex, prefix)
	})
	return tr, ex
}

// deleteRabbit removes a test's exchange and the queues its groups used.
func deleteRabbit(url, exchange, queuePrefix string) {
	c, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return
	}
	for _, g := range []string{"billing", "shipping", "audit", outbox.DefaultGroup} {
		ch.QueueDelete(queuePrefix+g, false, false, false)
	}
	ch.ExchangeDelete(exchange, false, false)
}

// collector records what a handler saw.
type collector[T any] struct {
	mu  sync.Mutex
	got []outbox.Received[T]
}

func (c *collector[T]) add(m outbox.Received[T]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, m)
}

func (c *collector[T]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func (c *collector[T]) all() []outbox.Received[T] {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]outbox.Received[T](nil), c.got...)
}

func testTwoGroups[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	tr, _ := rabbitFor(t, url)
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{})
	var billing, shipping collector[orderPaid]
	if err := outbox.Subscribe(ob, "order.*", func(_ context.Context, m outbox.Received[orderPaid]) error {
		billing.add(m)
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Subscribe(ob, "order.paid", func(_ context.Context, m outbox.Received[orderPaid]) error {
		shipping.add(m)
		return nil
	}, outbox.Group("shipping")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitConsumers(t, ob)
	const n = 20
	ctx := context.Background()
	for i := range n {
		tx, commit, _ := env.begin(t)
		if _, err := ob.Publish(ctx, tx, "order.paid", orderPaid{ID: i, Amount: "1.00"}); err != nil {
			t.Fatal(err)
		}
		if err := commit(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "both groups got every message", func() bool {
		return billing.len() >= n && shipping.len() >= n
	})
	time.Sleep(300 * time.Millisecond)
	for name, c := range map[string]*collector[orderPaid]{"billing": &billing, "shipping": &shipping} {
		seen := map[int]int{}
		for _, m := range c.all() {
			seen[m.Value.ID]++
			if m.Group != name || m.Name != "order.paid" || m.SentTime.IsZero() || m.Headers[wire.MsgType] != "orderPaid" {
				t.Errorf("%s: got %+v", name, m)
			}
		}
		for i := range n {
			if seen[i] != 1 {
				t.Errorf("%s handled message %d %d times, want once", name, i, seen[i])
			}
		}
	}
	counts, err := ob.Store().Counts(ctx, storage.Received)
	if err != nil || counts[storage.StatusSucceeded] != 2*n {
		t.Errorf("received counts = %v (%v), want %d Succeeded", counts, err, 2*n)
	}
}

// firstReceived waits until a received row has status, and returns the
// newest such row.
func firstReceived(t *testing.T, s storage.Store, status storage.Status) *storage.Message {
	t.Helper()
	var row *storage.Message
	waitFor(t, 10*time.Second, "a received row "+string(status), func() bool {
		rows, err := s.List(context.Background(), storage.Filter{Kind: storage.Received, Status: status})
		if err != nil || len(rows) == 0 {
			return false
		}
		row = rows[0]
		return true
	})
	return row
}

// waitConsumers gives the consumers time to declare and bind their queues
// before the test publishes (a queue bound later would not get earlier
// messages: the outbox then records them as unroutable and retries).
func waitConsumers[TTx any](t *testing.T, ob *outbox.Outbox[TTx]) {
	t.Helper()
	time.Sleep(500 * time.Millisecond)
}

// foreignPublish sends like a Java or Node program would: plain AMQP with
// only the headers it chooses.
func foreignPublish(t *testing.T, url, exchange, routingKey string, headers amqp.Table, body string) {
	t.Helper()
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, routingKey, false, false, amqp.Publishing{
		Headers: headers, Body: []byte(body), DeliveryMode: amqp.Persistent, ContentType: "application/json",
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dc.WaitContext(context.Background()); !ok || err != nil {
		t.Fatalf("foreign publish not confirmed: %v", err)
	}
}

func testForeignPublisher[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	tr, ex := rabbitFor(t, url)
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{})
	var got collector[orderPaid]
	if err := outbox.Subscribe(ob, "order.#", func(_ context.Context, m outbox.Received[orderPaid]) error {
		got.add(m)
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitConsumers(t, ob)
	// With CAP's headers, as a CAP (.NET) service sends them.
	foreignPublish(t, url, ex, "order.paid", amqp.Table{
		"cap-msg-id": "1234567890123", "cap-msg-name": "order.paid", "cap-senttime": "11/25/2026 10:30:00 +00:00",
	}, `{"id":1,"amount":"5.00"}`)
	// No cap-msg-id and no cap-msg-name: an id is generated, the routing key names the topic.
	foreignPublish(t, url, ex, "order.paid.eu", amqp.Table{"x-trace": int32(7)}, `{"id":2}`)
	waitFor(t, 10*time.Second, "both foreign messages handled", func() bool { return got.len() == 2 })
	for _, m := range got.all() {
		switch m.Value.ID {
		case 1:
			if m.ID != "1234567890123" || m.Name != "order.paid" || m.Value.Amount != "5.00" {
				t.Errorf("CAP-style message: %+v", m)
			}
			if want := time.Date(2026, 11, 25, 10, 30, 0, 0, time.UTC); !m.SentTime.Equal(want) {
				t.Errorf("sent time %v, want %v (CAP's invariant format)", m.SentTime, want)
			}
		case 2:
			if m.ID == "" || m.Name != "order.paid.eu" || m.Headers["x-trace"] != "7" {
				t.Errorf("headerless message: id %q name %q headers %v", m.ID, m.Name, m.Headers)
			}
		default:
			t.Errorf("unexpected %+v", m)
		}
	}
}

type strictOrder struct {
	ID int `json:"id"`
}

func testUndecodable[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	tr, ex := rabbitFor(t, url)
	var failed atomic.Int32
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{
		OnFailed: func(context.Context, outbox.FailedMessage) { failed.Add(1) },
	})
	var calls atomic.Int32
	if err := outbox.Subscribe(ob, "order.paid", func(context.Context, outbox.Received[strictOrder]) error {
		calls.Add(1)
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx) }()
	waitConsumers(t, ob)
	foreignPublish(t, url, ex, "order.paid", amqp.Table{"cap-msg-id": "777"}, `{"id":"not a number"}`)
	row := firstReceived(t, ob.Store(), storage.StatusFailed)
	for _, want := range []string{`"order.paid"`, `"billing"`, "cannot unmarshal"} {
		if !strings.Contains(row.LastError, want) {
			t.Errorf("error %q does not name %s", row.LastError, want)
		}
	}
	waitFor(t, 5*time.Second, "OnFailed", func() bool { return failed.Load() > 0 })
	if row.Retries != 1 || calls.Load() != 0 || failed.Load() != 1 || string(row.Body) != `{"id":"not a number"}` {
		t.Errorf("retries %d calls %d failed callbacks %d body %s", row.Retries, calls.Load(), failed.Load(), row.Body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The fix: a new release of the service whose handler accepts the body;
	// then the row is requeued (as from the dashboard) and succeeds.
	fixed := newOutbox(t, env.driver(t), tr, outbox.Options{})
	var got collector[map[string]any]
	if err := outbox.Subscribe(fixed, "order.paid", func(_ context.Context, m outbox.Received[map[string]any]) error {
		got.add(m)
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, fixed)
	if n, err := fixed.Store().Requeue(context.Background(), storage.Received, []int64{row.ID}, time.Now().UTC()); err != nil || n != 1 {
		t.Fatalf("requeue: %d %v", n, err)
	}
	fixed.Wake(storage.Received)
	waitFor(t, 10*time.Second, "requeued row handled", func() bool { return got.len() == 1 })
	waitFor(t, 5*time.Second, "row Succeeded", func() bool {
		return getRow(t, fixed.Store(), storage.Received, row.ID).Status == storage.StatusSucceeded
	})
}

func testDuplicate[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	tr, ex := rabbitFor(t, url)
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{})
	var got collector[orderPaid]
	if err := outbox.Subscribe(ob, "order.paid", func(_ context.Context, m outbox.Received[orderPaid]) error {
		got.add(m)
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitConsumers(t, ob)
	for range 3 {
		foreignPublish(t, url, ex, "order.paid", amqp.Table{"cap-msg-id": "42", "cap-msg-name": "order.paid"}, `{"id":42}`)
	}
	foreignPublish(t, url, ex, "order.paid", amqp.Table{"cap-msg-id": "43", "cap-msg-name": "order.paid"}, `{"id":43}`)
	waitFor(t, 10*time.Second, "message 43 handled", func() bool {
		for _, m := range got.all() {
			if m.ID == "43" {
				return true
			}
		}
		return false
	})
	time.Sleep(300 * time.Millisecond)
	if n := got.len(); n != 2 {
		t.Errorf("handler ran %d times, want 2 (42 once, 43 once)", n)
	}
	rows, err := ob.Store().List(context.Background(), storage.Filter{Kind: storage.Received, MsgID: "42"})
	if err != nil || len(rows) != 1 {
		t.Errorf("rows for id 42: %d (%v), want 1", len(rows), err)
	}
}

func testFailsTwice[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	tr, _ := rabbitFor(t, url)
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{})
	var calls atomic.Int32
	if err := outbox.Subscribe(ob, "order.paid", func(context.Context, outbox.Received[orderPaid]) error {
		if calls.Add(1) <= 2 {
			return errors.New("database busy")
		}
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitConsumers(t, ob)
	if _, err := ob.PublishWithoutTx(context.Background(), "order.paid", orderPaid{ID: 5}); err != nil {
		t.Fatal(err)
	}
	row := firstReceived(t, ob.Store(), storage.StatusSucceeded)
	if row.Retries != 2 || row.LastError != "database busy" || calls.Load() != 3 {
		t.Errorf("retries %d, last error %q, calls %d; want 2, database busy, 3", row.Retries, row.LastError, calls.Load())
	}
}

func testPanic[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	tr, _ := rabbitFor(t, url)
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{})
	var calls atomic.Int32
	if err := outbox.Subscribe(ob, "order.paid", func(context.Context, outbox.Received[orderPaid]) error {
		if calls.Add(1) == 1 {
			panic("nil map somewhere")
		}
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitConsumers(t, ob)
	if _, err := ob.PublishWithoutTx(context.Background(), "order.paid", orderPaid{ID: 6}); err != nil {
		t.Fatal(err)
	}
	row := firstReceived(t, ob.Store(), storage.StatusSucceeded)
	if row.Retries != 1 || !strings.Contains(row.LastError, "panic: nil map somewhere") {
		t.Errorf("retries %d, last error %q", row.Retries, row.LastError)
	}
}

// ackCutter breaks the broker connection after the outbox stored a
// delivery and before the transport acknowledges it: the crash window
// between store and ack.
type ackCutter struct {
	transport.Transport
	proxy *testproxy.Proxy
	cut   atomic.Bool
	seen  atomic.Int32
}

func (a *ackCutter) Consume(ctx context.Context, group string, topics []string, h transport.Handler) error {
	return a.Transport.Consume(ctx, group, topics, func(ctx context.Context, d transport.Delivery) error {
		a.seen.Add(1)
		err := h(ctx, d)
		if err == nil && a.cut.CompareAndSwap(false, true) {
			a.proxy.Down()
			go func() {
				time.Sleep(300 * time.Millisecond)
				a.proxy.Up()
			}()
		}
		return err
	})
}

func testCrashBeforeAck[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	proxy := testproxy.New(t, hostPort(t, url))
	tr, ex := rabbitFor(t, "amqp://guest:guest@"+proxy.Addr()+"/")
	cutter := &ackCutter{Transport: tr, proxy: proxy}
	ob := newOutbox(t, env.driver(t), cutter, outbox.Options{})
	var got collector[orderPaid]
	if err := outbox.Subscribe(ob, "order.paid", func(_ context.Context, m outbox.Received[orderPaid]) error {
		got.add(m)
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitConsumers(t, ob)
	foreignPublish(t, url, ex, "order.paid", amqp.Table{"cap-msg-id": "9001", "cap-msg-name": "order.paid"}, `{"id":9001}`)
	waitFor(t, 30*time.Second, "redelivery after the lost ack", func() bool { return cutter.seen.Load() >= 2 })
	waitFor(t, 10*time.Second, "message handled", func() bool { return got.len() >= 1 })
	time.Sleep(300 * time.Millisecond)
	if n := got.len(); n != 1 {
		t.Errorf("handler ran %d times, want once", n)
	}
	rows, err := ob.Store().List(context.Background(), storage.Filter{Kind: storage.Received, MsgID: "9001"})
	if err != nil || len(rows) != 1 {
		t.Fatalf("rows: %d %v", len(rows), err)
	}
	waitFor(t, 5*time.Second, "row Succeeded", func() bool {
		return getRow(t, ob.Store(), storage.Received, rows[0].ID).Status == storage.StatusSucceeded
	})
}
