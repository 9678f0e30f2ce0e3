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
// Run groups its checks by area, one subtest each:
//
//   - Delivery: headers and bodies arrive exactly, each group gets every
//     message, the consumers of a group share them, and wildcards route
//     where supported (Harness.Wildcards).
//   - Redelivery: a delivery whose handler failed comes again and an
//     acknowledged one does not, a discarded one does not come again,
//     failing deliveries (more than the transport holds at once) do not
//     hold up the others, and a group's consumer stopped while it held a
//     delivery and started again gets that delivery and those sent while
//     it was down.
//   - Connection: the transport survives a broken connection and reports
//     sends made while it is broken as transport.ErrUnavailable (with
//     Harness.Disconnect), reports a message the broker refuses as an
//     error that is not transport.ErrUnavailable and goes on sending
//     (with Harness.Refused), and Close ends sends and consumes.
//   - Batch: transport.BatchSender, when the transport implements it.
//   - BatchReceive: transport.BatchReceiver, when the transport implements
//     it: every message is delivered once across batches of at most max,
//     each delivery of a batch gets its own result (a failed one comes
//     again, a discarded or acknowledged one does not), and a batch that
//     is not full is handed over within the linger.
//
// so a transport author runs one area, or one check, on its own:
//
//	go test -run 'TestConformance/Redelivery'
//	go test -run 'TestConformance/Connection/UnavailableWhileDisconnected'
//
// [Consume] is the suite's way of running a consumer for the length of a
// test, exported for a transport's own tests.
package transporttest

import (
	"context"
	"fmt"
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
	// Refused, if set, returns a message, and the topic to send it to,
	// that a transport made by New refuses for good (too large, a topic
	// or header the broker cannot take, unroutable): its Send, and its
	// result in a SendBatch, must be an error that is not
	// transport.ErrUnavailable, so that the outbox counts the attempt and
	// fails the message instead of pausing dispatch for ever. The topic
	// must not be order.paid, on which the check sends a message the
	// transport takes afterwards.
	Refused func(t *testing.T) (topic string, msg transport.Message)
}

// Run runs the suite as subtests of t, grouped by area: Delivery,
// Redelivery, Connection, Batch and BatchReceive (see the package
// documentation).
func Run(t *testing.T, h Harness) {
	if h.Settle == 0 {
		h.Settle = 300 * time.Millisecond
	}
	if h.InFlight == 0 {
		h.InFlight = 16
	}
	t.Run("Delivery", func(t *testing.T) { runDelivery(t, h) })
	t.Run("Redelivery", func(t *testing.T) { runRedelivery(t, h) })
	t.Run("Connection", func(t *testing.T) { runConnection(t, h) })
	t.Run("Batch", func(t *testing.T) { runBatch(t, h) })
	t.Run("BatchReceive", func(t *testing.T) { runBatchReceive(t, h) })
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
	var got []transport.Delivery
	if !poll(30*time.Second, func() bool {
		got, _ = r.snapshot()
		return len(got) >= n
	}) {
		t.Fatalf("%d deliveries after 30s, want %d", len(got), n)
	}
	return got
}

// poll calls cond every 20ms until it returns true, for at most d, and
// reports whether it did.
func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func consume(t *testing.T, tr transport.Transport, group string, topics []string, r *recorder) {
	t.Helper()
	Consume(t, tr, group, topics, r.handle)
}

// Consume runs tr.Consume with h in a goroutine until the test ends; then
// it ends Consume's context and reports an error if Consume does not return
// nil within 20s.
func Consume(t *testing.T, tr transport.Transport, group string, topics []string, h transport.Handler) {
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
