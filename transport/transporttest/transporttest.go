// Package transporttest is the conformance suite of gocap's transport
// contract. Every transport in this module runs it against a real broker
// (or, for Kafka, the in-process kfake), and a third-party transport runs
// it the same way:
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, transporttest.Harness{
//			New: func(t *testing.T) transport.Transport { ... }, // isolated; closed with t.Cleanup
//			Wildcards: true,
//		})
//	}
//
// It checks that headers and bodies arrive exactly, that each group gets
// every message and the consumers of a group share them, that a delivery
// whose handler failed comes again and an acknowledged one does not, that
// a discarded one does not come again, that failing deliveries (more than
// the transport holds at once) do not hold up the others, that wildcards
// route where supported, that the transport survives a broken connection
// and reports sends made while it is broken as transport.ErrUnavailable,
// and that Close ends sends and consumes.
package transporttest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/wire"
)

// Harness tells the suite how to use one transport.
type Harness struct {
	// New returns a transport isolated from other tests (its own exchange,
	// cluster or broker), closed with t.Cleanup.
	New func(t *testing.T) transport.Transport
	// Wildcards says Consume accepts '*' and '#' topic patterns.
	Wildcards bool
	// Settle is how long consumers need to join before a send reaches
	// them (queue declaration, group join). Zero means 300ms.
	Settle time.Duration
	// RebalanceRedelivers says that the consumers of a group may both get
	// a message while the group rebalances (Kafka: a record fetched but not
	// yet committed is read again by the partition's new owner). The suite
	// then checks that every message is handled, allowing duplicates.
	RebalanceRedelivers bool
	// Disconnect, if set, breaks tr's broker connections, and keeps new
	// ones from being made, until the returned function is called.
	Disconnect func(t *testing.T, tr transport.Transport) (restore func())
	// InFlight is the most deliveries one Consume holds unacknowledged at
	// once (RabbitMQ: the prefetch). The starvation check sends twice as
	// many failing messages before the good ones. Zero means 16.
	InFlight int
}

// Run runs the suite as subtests of t.
func Run(t *testing.T, h Harness) {
	if h.Settle == 0 {
		h.Settle = 300 * time.Millisecond
	}
	if h.InFlight == 0 {
		h.InFlight = 16
	}
	t.Run("HeadersAndBody", func(t *testing.T) { headersAndBody(t, h) })
	t.Run("GroupsEachGetEverything", func(t *testing.T) { groups(t, h) })
	t.Run("GroupMembersShare", func(t *testing.T) { share(t, h) })
	t.Run("FailedDeliveryComesAgain", func(t *testing.T) { redelivery(t, h) })
	t.Run("DiscardedDeliveryDoesNotComeAgain", func(t *testing.T) { discard(t, h) })
	t.Run("FailingDeliveriesDoNotStarveOthers", func(t *testing.T) { noStarvation(t, h) })
	if h.Wildcards {
		t.Run("Wildcards", func(t *testing.T) { wildcards(t, h) })
	}
	if h.Disconnect != nil {
		t.Run("ConnectionLoss", func(t *testing.T) { connectionLoss(t, h) })
		t.Run("UnavailableWhileDisconnected", func(t *testing.T) { unavailable(t, h) })
	}
	t.Run("SendBatch", func(t *testing.T) { sendBatch(t, h) })
	t.Run("Close", func(t *testing.T) { closeTest(t, h) })
}

// recorder collects deliveries; fail makes the first n calls fail.
type recorder struct {
	mu    sync.Mutex
	got   []transport.Delivery
	calls int
	fail  int
}

func (r *recorder) handle(_ context.Context, d transport.Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.calls <= r.fail {
		return fmt.Errorf("failing on purpose (%d of %d)", r.calls, r.fail)
	}
	r.got = append(r.got, d)
	return nil
}

func (r *recorder) snapshot() ([]transport.Delivery, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]transport.Delivery(nil), r.got...), r.calls
}

// wait returns once n deliveries were recorded, or fails after 30s.
func (r *recorder) wait(t *testing.T, n int) []transport.Delivery {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _ := r.snapshot()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries after 30s, want %d", len(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func consume(t *testing.T, _ Harness, tr transport.Transport, group string, topics []string, r *recorder) {
	t.Helper()
	consumeFunc(t, tr, group, topics, r.handle)
}

// consumeFunc runs Consume with h until the test ends.
func consumeFunc(t *testing.T, tr transport.Transport, group string, topics []string, h transport.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Consume(ctx, group, topics, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Consume returned %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("Consume did not return after its context ended")
		}
	})
}

func send(t *testing.T, tr transport.Transport, topic string, m transport.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := tr.Send(ctx, topic, m); err != nil {
		t.Fatalf("Send(%s): %v", topic, err)
	}
}

func msg(i int) transport.Message {
	return transport.Message{Headers: map[string]string{wire.MsgID: fmt.Sprint(i)}, Body: []byte(fmt.Sprintf(`{"n":%d}`, i))}
}

func headersAndBody(t *testing.T, h Harness) {
	tr := h.New(t)
	var r recorder
	consume(t, h, tr, "conformance", []string{"order.paid"}, &r)
	time.Sleep(h.Settle)
	want := transport.Message{
		Headers: map[string]string{
			wire.MsgID: "2125444000991662080", wire.MsgName: "order.paid",
			wire.SentTime: "2026-11-25T10:30:00Z", "x-note": "naïve 東京 \"quoted\"", "empty": "",
		},
		Body: []byte{0, 1, 2, 0xfe, 0xff, '{', '}', 0},
	}
	send(t, tr, "order.paid", want)
	got := r.wait(t, 1)[0]
	if string(got.Body) != string(want.Body) {
		t.Errorf("body %v, want %v", got.Body, want.Body)
	}
	for k, v := range want.Headers {
		if got.Headers[k] != v {
			t.Errorf("header %s = %q, want %q", k, got.Headers[k], v)
		}
	}
	if got.Topic != "order.paid" {
		t.Errorf("topic %q", got.Topic)
	}
}

// sendBatch checks a transport.BatchSender: a batch over two topics, and
// concurrent batches, arrive whole, each message to its topic.
func sendBatch(t *testing.T, h Harness) {
	tr := h.New(t)
	bs, ok := tr.(transport.BatchSender)
	if !ok {
		t.Skip("the transport does not implement transport.BatchSender")
	}
	var paid, shipped recorder
	consume(t, h, tr, "batch-paid", []string{"order.paid"}, &paid)
	consume(t, h, tr, "batch-shipped", []string{"order.shipped"}, &shipped)
	time.Sleep(h.Settle)

	const batches, perBatch = 4, 50
	var wg sync.WaitGroup
	for b := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msgs := make([]transport.Outgoing, perBatch)
			for i := range msgs {
				topic := "order.paid"
				if i%2 == 1 {
					topic = "order.shipped"
				}
				msgs[i] = transport.Outgoing{Topic: topic, Message: msg(b*perBatch + i)}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			errs := bs.SendBatch(ctx, msgs)
			if len(errs) != len(msgs) {
				t.Errorf("SendBatch returned %d errors for %d messages", len(errs), len(msgs))
				return
			}
			for i, err := range errs {
				if err != nil {
					t.Errorf("SendBatch: message %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	// Even messages went to order.paid, odd ones to order.shipped.
	for parity, r := range []*recorder{&paid, &shipped} {
		for _, d := range r.wait(t, batches*perBatch/2) {
			id := d.Headers[wire.MsgID]
			seen[id] = true
			if n, err := strconv.Atoi(id); err != nil || n%2 != parity {
				t.Errorf("message %s arrived on the wrong topic (even ones go to order.paid, odd ones to order.shipped)", id)
			}
		}
	}
	for i := range batches * perBatch {
		if !seen[fmt.Sprint(i)] {
			t.Errorf("message %d never arrived", i)
		}
	}
	if errs := bs.SendBatch(context.Background(), nil); len(errs) != 0 {
		t.Errorf("SendBatch of no messages returned %v", errs)
	}
}

func groups(t *testing.T, h Harness) {
	tr := h.New(t)
	var a, b recorder
	consume(t, h, tr, "billing", []string{"order.paid"}, &a)
	consume(t, h, tr, "shipping", []string{"order.paid"}, &b)
	time.Sleep(h.Settle)
	const n = 20
	for i := range n {
		send(t, tr, "order.paid", msg(i))
	}
	for name, r := range map[string]*recorder{"billing": &a, "shipping": &b} {
		ids := map[string]bool{}
		for _, d := range r.wait(t, n) {
			ids[d.Headers[wire.MsgID]] = true
		}
		if len(ids) != n {
			t.Errorf("%s got %d distinct messages, want %d", name, len(ids), n)
		}
	}
}

func share(t *testing.T, h Harness) {
	tr := h.New(t)
	var a, b recorder
	consume(t, h, tr, "workers", []string{"job.run"}, &a)
	consume(t, h, tr, "workers", []string{"job.run"}, &b)
	time.Sleep(h.Settle * 3) // both members join the group
	const n = 30
	for i := range n {
		send(t, tr, "job.run", msg(i))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ga, _ := a.snapshot()
		gb, _ := b.snapshot()
		seen := map[string]int{}
		for _, d := range append(ga, gb...) {
			seen[d.Headers[wire.MsgID]]++
		}
		if len(seen) == n {
			for id, c := range seen {
				if c != 1 && !h.RebalanceRedelivers {
					t.Errorf("message %s handled %d times in one group", id, c)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group handled %d of %d messages", len(seen), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func redelivery(t *testing.T, h Harness) {
	tr := h.New(t)
	r := recorder{fail: 2}
	consume(t, h, tr, "retrying", []string{"order.paid"}, &r)
	time.Sleep(h.Settle)
	send(t, tr, "order.paid", msg(1))
	got := r.wait(t, 1)
	if want := msg(1); len(got[0].Headers) != len(want.Headers) || got[0].Headers[wire.MsgID] != "1" ||
		string(got[0].Body) != string(want.Body) || got[0].Topic != "order.paid" {
		t.Errorf("redelivered topic %q, headers %v, body %q; want the message as sent", got[0].Topic, got[0].Headers, got[0].Body)
	}
	time.Sleep(h.Settle + 500*time.Millisecond)
	if got, calls := r.snapshot(); len(got) != 1 || calls != 3 {
		t.Errorf("after two failures and a success: %d deliveries, %d calls; want 1 and 3 (no delivery after the ack)", len(got), calls)
	}
}

// discard checks that a delivery whose handler returns transport.Discard
// is not delivered again, and that a message sent after it arrives.
func discard(t *testing.T, h Harness) {
	tr := h.New(t)
	var (
		mu    sync.Mutex
		calls = map[string]int{}
	)
	handled := make(chan string, 10)
	consumeFunc(t, tr, "discarding", []string{"order.paid"}, func(_ context.Context, d transport.Delivery) error {
		id := d.Headers[wire.MsgID]
		mu.Lock()
		calls[id]++
		mu.Unlock()
		if id == "1" {
			return transport.Discard(errors.New("discarding on purpose"))
		}
		handled <- id
		return nil
	})
	time.Sleep(h.Settle)
	send(t, tr, "order.paid", msg(1))
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := calls["1"]
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("message 1 was not delivered within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2500 * time.Millisecond) // a redelivery would come in this time
	send(t, tr, "order.paid", msg(2))
	select {
	case id := <-handled:
		if id != "2" {
			t.Errorf("handled message %s, want 2", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message 2, sent after the discarded one, did not arrive within 10s")
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["1"] != 1 {
		t.Errorf("the discarded message was delivered %d times, want 1", calls["1"])
	}
}

// noStarvation sends 2×InFlight "poison" messages, whose handler fails
// (a plain error) their first two deliveries and discards the third, and
// then 20 good ones, which must all be handled within 10s.
func noStarvation(t *testing.T, h Harness) {
	tr := h.New(t)
	poison, good := 2*h.InFlight, 20
	var (
		mu      sync.Mutex
		calls   = map[string]int{}
		handled = map[string]bool{}
	)
	consumeFunc(t, tr, "starving", []string{"job.run"}, func(_ context.Context, d transport.Delivery) error {
		id := d.Headers[wire.MsgID]
		mu.Lock()
		defer mu.Unlock()
		if d.Headers["kind"] == "poison" {
			calls[id]++
			if calls[id] <= 2 {
				return fmt.Errorf("poison %s: failing on purpose (%d of 2)", id, calls[id])
			}
			return transport.Discard(fmt.Errorf("poison %s: discarding after 2 failures", id))
		}
		handled[id] = true
		return nil
	})
	time.Sleep(h.Settle)
	for i := range poison {
		send(t, tr, "job.run", transport.Message{Headers: map[string]string{"kind": "poison", wire.MsgID: fmt.Sprint("p", i)}, Body: []byte("p")})
	}
	start := time.Now()
	for i := range good {
		send(t, tr, "job.run", transport.Message{Headers: map[string]string{"kind": "good", wire.MsgID: fmt.Sprint("g", i)}, Body: []byte("g")})
	}
	deadline := start.Add(10 * time.Second)
	for {
		mu.Lock()
		n, failing := len(handled), len(calls)
		mu.Unlock()
		if n == good {
			t.Logf("%d good messages handled %v after they were sent, behind %d failing ones", good, time.Since(start).Round(time.Millisecond), poison)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d good messages handled within 10s, behind %d failing ones (%d of them delivered)", n, good, poison, failing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// unavailable checks that sends fail with transport.ErrUnavailable while
// the connections are broken, that a send succeeds within 2s once they can
// be made again, and that the consumer resumes.
func unavailable(t *testing.T, h Harness) {
	tr := h.New(t)
	var r recorder
	consume(t, h, tr, "outage", []string{"order.paid"}, &r)
	time.Sleep(h.Settle)
	send(t, tr, "order.paid", msg(1))
	r.wait(t, 1)
	restore := h.Disconnect(t, tr)
	restored := false
	defer func() {
		if !restored {
			restore()
		}
	}()
	// Long enough for reconnection backoffs to reach their cap; the last
	// send, just before the connection comes back, starts a backoff.
	for range 4 {
		time.Sleep(time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := tr.Send(ctx, "order.paid", msg(99))
		cancel()
		if !errors.Is(err, transport.ErrUnavailable) {
			t.Fatalf("Send while disconnected: %v, want an error wrapping transport.ErrUnavailable", err)
		}
	}
	restore()
	restored = true
	start := time.Now()
	var err error
	for time.Since(start) < 2*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = tr.Send(ctx, "order.paid", msg(2))
		cancel()
		if err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Send still failing 2s after the connection came back: %v", err)
	}
	t.Logf("first successful Send %v after the connection came back", time.Since(start).Round(time.Millisecond))
	deadline := start.Add(5 * time.Second)
	for {
		got, _ := r.snapshot()
		if got[len(got)-1].Headers[wire.MsgID] == "2" {
			t.Logf("consumer resumed: message 2 handled %v after the connection came back", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("message 2 not handled within 5s after the connection came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wildcards(t *testing.T, h Harness) {
	tr := h.New(t)
	var star, hash recorder
	consume(t, h, tr, "star", []string{"order.*"}, &star)
	consume(t, h, tr, "hash", []string{"order.#"}, &hash)
	time.Sleep(h.Settle)
	for i, topic := range []string{"order.paid", "order.paid.eu", "order"} {
		send(t, tr, topic, msg(i))
	}
	if got := hash.wait(t, 3); len(got) != 3 {
		t.Errorf("order.# got %d", len(got))
	}
	star.wait(t, 1)
	time.Sleep(h.Settle)
	if got, _ := star.snapshot(); len(got) != 1 || got[0].Topic != "order.paid" {
		t.Errorf("order.* got %d deliveries, want only order.paid", len(got))
	}
}

func connectionLoss(t *testing.T, h Harness) {
	tr := h.New(t)
	var r recorder
	consume(t, h, tr, "survivor", []string{"order.paid"}, &r)
	time.Sleep(h.Settle)
	send(t, tr, "order.paid", msg(1))
	r.wait(t, 1)
	restore := h.Disconnect(t, tr)
	time.Sleep(200 * time.Millisecond)
	restore()
	// Sends fail fast while reconnecting; retry them, bounded, as the outbox does.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := tr.Send(ctx, "order.paid", msg(2))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Send still failing 30s after the connection came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := r.wait(t, 2)
	if got[len(got)-1].Headers[wire.MsgID] != "2" {
		t.Errorf("after reconnecting got %v", got[len(got)-1].Headers)
	}
}

func closeTest(t *testing.T, h Harness) {
	tr := h.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tr.Consume(ctx, "closing", []string{"order.paid"}, (&recorder{}).handle) }()
	time.Sleep(h.Settle)
	if err := tr.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Consume did not return after Close")
	}
	if err := tr.Send(context.Background(), "order.paid", msg(1)); err == nil {
		t.Error("Send after Close succeeded")
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
