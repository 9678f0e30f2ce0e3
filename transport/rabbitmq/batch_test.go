package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/internal/testlog"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/rabbitmq"
	"github.com/gocap/gocap/wire"
)

// consumeBatch runs tr.ConsumeBatch until stop is called, which ends it
// and waits for it to return.
func consumeBatch(t *testing.T, tr *rabbitmq.Transport, group string, h transport.BatchHandler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.ConsumeBatch(ctx, group, []string{"order.paid"}, 0, 50*time.Millisecond, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("ConsumeBatch returned %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("ConsumeBatch did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func sendBatch(t *testing.T, tr *rabbitmq.Transport, from, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs := make([]transport.Outgoing, n)
	for i := range msgs {
		msgs[i] = transport.Outgoing{Topic: "order.paid", Message: transport.Message{Headers: map[string]string{wire.MsgID: fmt.Sprint(from + i)}, Body: []byte("x")}}
	}
	for i, err := range tr.SendBatch(ctx, msgs) {
		if err != nil {
			t.Fatalf("SendBatch: message %d: %v", i, err)
		}
	}
}

// TestBatchAcknowledged checks that batches whose results are all nil are
// acknowledged: once the consumer stopped the queue is empty, and a new
// consumer (a new connection) gets nothing.
func TestBatchAcknowledged(t *testing.T) {
	tr, _ := newTransport(t, rabbitmq.Config{})
	const n = 200
	var (
		mu      sync.Mutex
		seen    = map[string]int{}
		biggest int
	)
	stop := consumeBatch(t, tr, "batch-acked", func(_ context.Context, ds []transport.Delivery) []error {
		mu.Lock()
		defer mu.Unlock()
		biggest = max(biggest, len(ds))
		for _, d := range ds {
			seen[d.Headers[wire.MsgID]]++
		}
		return make([]error, len(ds))
	})
	time.Sleep(300 * time.Millisecond)
	sendBatch(t, tr, 0, n)
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages handled within 20s", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the last acknowledgement is sent after the handler returned
	stop()
	mu.Lock()
	if biggest < 2 {
		t.Errorf("%d messages sent at once arrived in batches of one", n)
	}
	mu.Unlock()

	c, err := amqp.Dial(testenv.AMQPURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	queue := tr.Exchange() + ".batch-acked" // newTransport's QueuePrefix is the exchange and a dot
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil || q.Messages != 0 {
		t.Fatalf("after the consumer stopped, queue %s: %d messages (%v), want 0: batches were not acknowledged", queue, q.Messages, err)
	}
	again := make(chan string, n)
	consumeBatch(t, tr, "batch-acked", func(_ context.Context, ds []transport.Delivery) []error {
		for _, d := range ds {
			again <- d.Headers[wire.MsgID]
		}
		return make([]error, len(ds))
	})
	select {
	case id := <-again:
		t.Errorf("message %s delivered again after it was acknowledged in a batch", id)
	case <-time.After(time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	for id, c := range seen {
		if c != 1 {
			t.Errorf("message %s delivered %d times", id, c)
		}
	}
}

// TestBatchAckSparesWaitingRetries checks that an all-nil batch on a
// channel where a failed delivery waits to be handed back does not
// acknowledge that delivery with a multiple ack: it comes again, the
// others come once, and the channel is not closed by the broker (as a
// second acknowledgement of one delivery tag would have it).
func TestBatchAckSparesWaitingRetries(t *testing.T) {
	var logs testlog.Buffer
	tr, _ := newTransport(t, rabbitmq.Config{
		Concurrency: 1, RequeueDelay: time.Second,
		Logger: logs.Logger(slog.LevelWarn),
	})
	var (
		mu    sync.Mutex
		calls = map[string]int{}
	)
	consumeBatch(t, tr, "batch-retry", func(_ context.Context, ds []transport.Delivery) []error {
		mu.Lock()
		defer mu.Unlock()
		errs := make([]error, len(ds))
		for i, d := range ds {
			id := d.Headers[wire.MsgID]
			if calls[id]++; id == "0" && calls[id] == 1 {
				errs[i] = errors.New("failing on purpose")
			}
		}
		return errs
	})
	time.Sleep(300 * time.Millisecond)
	sendBatch(t, tr, 0, 1)
	time.Sleep(200 * time.Millisecond) // message 0 failed and waits to be handed back
	sendBatch(t, tr, 1, 20)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		again, n := calls["0"], len(calls)
		mu.Unlock()
		if again == 2 && n == 21 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 10s: message 0 delivered %d times (want 2), %d of 21 messages delivered", again, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for id, c := range calls {
		if want := map[bool]int{true: 2, false: 1}[id == "0"]; c != want {
			t.Errorf("message %s delivered %d times, want %d", id, c, want)
		}
	}
	if l := logs.String(); strings.Contains(l, "reconnecting") {
		t.Errorf("the consumer reconnected; the broker closed its channel:\n%s", l)
	}
}
