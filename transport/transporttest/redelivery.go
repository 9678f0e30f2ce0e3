package transporttest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/wire"
)

// runRedelivery checks what happens after a handler fails or discards.
func runRedelivery(t *testing.T, h Harness) {
	t.Run("FailedDeliveryComesAgain", func(t *testing.T) { redelivery(t, h) })
	t.Run("DiscardedDeliveryDoesNotComeAgain", func(t *testing.T) { discard(t, h) })
	t.Run("FailingDeliveriesDoNotStarveOthers", func(t *testing.T) { noStarvation(t, h) })
	t.Run("ConsumerRestart", func(t *testing.T) { consumerRestart(t, h) })
}

// consumerRestart checks that a group outlives its consumers: a consumer
// stopped while its handler held a delivery, and started again in the
// same group, gets that delivery and the message sent while no consumer
// of the group ran (as after a process restart). A transport whose group
// queue lived only while a consumer ran would lose both.
func consumerRestart(t *testing.T, h Harness) {
	tr := h.New(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	holding := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		done <- tr.Consume(ctx, "restart", []string{"order.paid"}, func(ctx context.Context, d transport.Delivery) error {
			once.Do(func() { close(holding) })
			<-ctx.Done() // the process stops while handling it
			return ctx.Err()
		})
	}()
	time.Sleep(h.Settle)
	send(t, tr, "order.paid", transport.Message{Headers: map[string]string{wire.MsgID: "held"}, Body: []byte(`"held"`)})
	select {
	case <-holding:
	case <-time.After(30 * time.Second):
		t.Fatal("the first consumer got no delivery within 30s")
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the first Consume returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the first Consume did not return after its context ended")
	}
	send(t, tr, "order.paid", transport.Message{Headers: map[string]string{wire.MsgID: "while-down"}, Body: []byte(`"while-down"`)})
	got := make(chan string, 16)
	Consume(t, tr, "restart", []string{"order.paid"}, func(ctx context.Context, d transport.Delivery) error {
		select {
		case got <- d.Headers[wire.MsgID]:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	})
	seen := map[string]bool{}
	timeout := time.After(10 * time.Second)
	for !seen["held"] || !seen["while-down"] {
		select {
		case id := <-got:
			seen[id] = true
		case <-timeout:
			t.Fatalf("within 10s of the restart the group got %v, want held (unacknowledged when its consumer stopped) and while-down (sent while none ran)", seen)
		}
	}
}

func redelivery(t *testing.T, h Harness) {
	tr := h.New(t)
	r := recorder{fail: 2}
	consume(t, tr, "retrying", []string{"order.paid"}, &r)
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
	Consume(t, tr, "discarding", []string{"order.paid"}, func(_ context.Context, d transport.Delivery) error {
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
	if !poll(10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls["1"] > 0
	}) {
		t.Fatal("message 1 was not delivered within 10s")
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
	Consume(t, tr, "starving", []string{"job.run"}, func(_ context.Context, d transport.Delivery) error {
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
	var n, failing int
	if !poll(10*time.Second-time.Since(start), func() bool {
		mu.Lock()
		defer mu.Unlock()
		n, failing = len(handled), len(calls)
		return n == good
	}) {
		t.Fatalf("%d of %d good messages handled within 10s, behind %d failing ones (%d of them delivered)", n, good, poison, failing)
	}
	t.Logf("%d good messages handled %v after they were sent, behind %d failing ones", good, time.Since(start).Round(time.Millisecond), poison)
}
