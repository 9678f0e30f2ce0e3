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

// runBatchReceive checks transport.BatchReceiver.
func runBatchReceive(t *testing.T, h Harness) {
	t.Run("DeliveredOnceAcrossBatches", func(t *testing.T) { batchOnce(t, h) })
	t.Run("PerDeliveryResults", func(t *testing.T) { batchResults(t, h) })
	t.Run("Linger", func(t *testing.T) { batchLinger(t, h) })
}

// batchReceiver returns a new transport and its BatchReceiver, or skips
// the test if it has none.
func batchReceiver(t *testing.T, h Harness) (transport.Transport, transport.BatchReceiver) {
	t.Helper()
	tr := h.New(t)
	br, ok := tr.(transport.BatchReceiver)
	if !ok {
		t.Skip("the transport does not implement transport.BatchReceiver")
	}
	return tr, br
}

// ConsumeBatch runs br.ConsumeBatch with h in a goroutine until the test
// ends, as [Consume] does for Consume.
func ConsumeBatch(t *testing.T, br transport.BatchReceiver, group string, topics []string, max int, linger time.Duration, h transport.BatchHandler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.ConsumeBatch(ctx, group, topics, max, linger, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ConsumeBatch returned %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("ConsumeBatch did not return after its context ended")
		}
	})
}

// sendAll sends msg(0) to msg(n-1) to topic, with one SendBatch if the
// transport has it, so that they are waiting together.
func sendAll(t *testing.T, tr transport.Transport, topic string, n int) {
	t.Helper()
	bs, ok := tr.(transport.BatchSender)
	if !ok {
		for i := range n {
			send(t, tr, topic, msg(i))
		}
		return
	}
	msgs := make([]transport.Outgoing, n)
	for i := range msgs {
		msgs[i] = transport.Outgoing{Topic: topic, Message: msg(i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, err := range bs.SendBatch(ctx, msgs) {
		if err != nil {
			t.Fatalf("SendBatch: message %d: %v", i, err)
		}
	}
}

// batchLog records the batches a BatchHandler was called with.
type batchLog struct {
	mu      sync.Mutex
	sizes   []int
	calls   map[string]int // by message id
	results map[string]int // successful calls, by message id
}

func (l *batchLog) snapshot() (sizes []int, calls, results map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	calls, results = map[string]int{}, map[string]int{}
	for k, v := range l.calls {
		calls[k] = v
	}
	for k, v := range l.results {
		results[k] = v
	}
	return append([]int(nil), l.sizes...), calls, results
}

// handler returns a BatchHandler that records each batch and returns
// result's error for each delivery, given its id and how many times it
// was delivered before.
func (l *batchLog) handler(result func(id string, seen int) error) transport.BatchHandler {
	l.calls, l.results = map[string]int{}, map[string]int{}
	return func(_ context.Context, ds []transport.Delivery) []error {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.sizes = append(l.sizes, len(ds))
		errs := make([]error, len(ds))
		for i, d := range ds {
			id := d.Headers[wire.MsgID]
			errs[i] = result(id, l.calls[id])
			l.calls[id]++
			if errs[i] == nil {
				l.results[id]++
			}
		}
		return errs
	}
}

// batchOnce sends more messages than a batch holds and checks that each
// is delivered once, in batches of at most max, some of more than one.
func batchOnce(t *testing.T, h Harness) {
	tr, br := batchReceiver(t, h)
	const n, size = 60, 7
	var l batchLog
	ConsumeBatch(t, br, "batch-once", []string{"order.paid"}, size, 100*time.Millisecond, l.handler(func(string, int) error { return nil }))
	time.Sleep(h.Settle)
	sendAll(t, tr, "order.paid", n)
	if !poll(30*time.Second, func() bool { _, _, r := l.snapshot(); return len(r) == n }) {
		_, _, r := l.snapshot()
		t.Fatalf("%d of %d messages handled within 30s", len(r), n)
	}
	time.Sleep(h.Settle + 500*time.Millisecond) // a redelivery would come in this time
	sizes, calls, _ := l.snapshot()
	for id, c := range calls {
		if c != 1 && !h.RebalanceRedelivers {
			t.Errorf("message %s delivered %d times, want once", id, c)
		}
	}
	biggest := 0
	for _, s := range sizes {
		if s > size || s < 1 {
			t.Errorf("a batch of %d deliveries, want 1 to %d", s, size)
		}
		biggest = max(biggest, s)
	}
	if biggest < 2 {
		t.Errorf("%d messages sent at once arrived in %d batches of one", n, len(sizes))
	}
	t.Logf("%d messages in %d batches %v", n, len(sizes), sizes)
}

// batchResults checks that each delivery of a batch gets its own result:
// every third message fails once, every third is discarded, the others
// are acknowledged.
func batchResults(t *testing.T, h Harness) {
	tr, br := batchReceiver(t, h)
	const n = 30
	kind := func(id string) int { i, _ := strconv.Atoi(id); return i % 3 } // 0 fails once, 1 is discarded, 2 succeeds
	var (
		l     batchLog
		mixMu sync.Mutex
		mixed bool // a batch held a failing, a discarded and a succeeding first delivery
	)
	handle := l.handler(func(id string, seen int) error {
		switch {
		case kind(id) == 0 && seen == 0:
			return fmt.Errorf("message %s: failing on purpose", id)
		case kind(id) == 1:
			return transport.Discard(errors.New("discarding on purpose"))
		}
		return nil
	})
	ConsumeBatch(t, br, "batch-mixed", []string{"order.paid"}, 10, 300*time.Millisecond, func(ctx context.Context, ds []transport.Delivery) []error {
		kinds := map[int]bool{}
		l.mu.Lock()
		for _, d := range ds {
			if id := d.Headers[wire.MsgID]; l.calls[id] == 0 {
				kinds[kind(id)] = true
			}
		}
		l.mu.Unlock()
		if len(kinds) == 3 {
			mixMu.Lock()
			mixed = true
			mixMu.Unlock()
		}
		return handle(ctx, ds)
	})
	time.Sleep(h.Settle)
	sendAll(t, tr, "order.paid", n)
	want := 2 * n / 3 // the failing ones, once they succeed, and the succeeding ones
	if !poll(30*time.Second, func() bool { _, _, r := l.snapshot(); return len(r) == want }) {
		_, _, r := l.snapshot()
		t.Fatalf("%d of %d messages handled within 30s", len(r), want)
	}
	time.Sleep(h.Settle + time.Second) // a redelivery would come in this time
	_, calls, _ := l.snapshot()
	for i := range n {
		id := fmt.Sprint(i)
		if want := map[int]int{0: 2, 1: 1, 2: 1}[kind(id)]; calls[id] != want && !(h.RebalanceRedelivers && calls[id] > want) {
			t.Errorf("message %s (%s) delivered %d times, want %d", id, []string{"failing once", "discarded", "acknowledged"}[kind(id)], calls[id], want)
		}
	}
	mixMu.Lock()
	defer mixMu.Unlock()
	if !mixed {
		t.Error("no batch held a failing, a discarded and an acknowledged delivery")
	}
}

// batchLinger checks that a batch with fewer deliveries than max is handed
// over within the linger and some slack.
func batchLinger(t *testing.T, h Harness) {
	tr, br := batchReceiver(t, h)
	const linger, slack = 300 * time.Millisecond, 700 * time.Millisecond
	got := make(chan int, 10)
	ConsumeBatch(t, br, "batch-linger", []string{"order.paid"}, 100, linger, func(_ context.Context, ds []transport.Delivery) []error {
		got <- len(ds)
		return make([]error, len(ds))
	})
	time.Sleep(h.Settle)
	send(t, tr, "order.paid", msg(1))
	sent := time.Now()
	select {
	case n := <-got:
		if d := time.Since(sent); d > linger+slack {
			t.Errorf("a batch of %d handed over %v after the send, want at most the linger %v and %v", n, d.Round(time.Millisecond), linger, slack)
		} else {
			t.Logf("a batch of %d handed over %v after the send (linger %v)", n, d.Round(time.Millisecond), linger)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no batch within 10s of the send (linger %v)", linger)
	}
}
