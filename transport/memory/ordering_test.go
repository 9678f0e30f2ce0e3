package memory_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/wire"
)

// Two consumers of one group never handle two messages of one ordering
// key at once, and handle each key's messages in the order sent; a
// message whose handler failed still comes before the key's next ones.
func TestOrderingKeyOneConsumerAtATime(t *testing.T) {
	tr := memory.New(memory.Options{RequeueDelay: time.Millisecond})
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const keys, perKey = 5, 40
	var mu sync.Mutex
	busy := map[string]bool{}
	next := map[string]int{}
	failedOnce := map[string]bool{}
	var errs []string
	handled := 0
	all := make(chan struct{})
	h := func(_ context.Context, d transport.Delivery) error {
		k := d.Headers[wire.OrderingKey]
		seq, _ := strconv.Atoi(string(d.Body))
		mu.Lock()
		if busy[k] {
			errs = append(errs, fmt.Sprintf("key %s: message %d handled while another of the key is", k, seq))
		}
		busy[k] = true
		mu.Unlock()
		time.Sleep(time.Duration(seq%3) * 100 * time.Microsecond)
		mu.Lock()
		defer mu.Unlock()
		busy[k] = false
		if seq%10 == 3 && !failedOnce[k+d.Headers["seq"]] {
			failedOnce[k+d.Headers["seq"]] = true
			return fmt.Errorf("fails once")
		}
		if seq != next[k] {
			errs = append(errs, fmt.Sprintf("key %s: handled %d, want %d", k, seq, next[k]))
		}
		next[k] = seq + 1
		if handled++; handled == keys*perKey {
			close(all)
		}
		return nil
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr.Consume(ctx, "g", []string{"t"}, h)
		}()
	}
	time.Sleep(10 * time.Millisecond) // bind the group before sending
	for i := range perKey {
		for k := range keys {
			m := transport.Message{Headers: map[string]string{wire.OrderingKey: "k" + strconv.Itoa(k), "seq": strconv.Itoa(i)},
				Body: []byte(strconv.Itoa(i))}
			if err := tr.Send(ctx, "t", m); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-all:
	case <-ctx.Done():
		t.Errorf("handled %d of %d messages in time", handled, keys*perKey)
	}
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for i, e := range errs {
		if i == 10 {
			t.Errorf("... and %d more", len(errs)-10)
			break
		}
		t.Error(e)
	}
}

// A batch whose handler failed comes back whole and in its order, ahead
// of the later messages of its keys: the keys' order holds across the
// redelivery (a requeue of each message on its own put them back last
// first).
func TestFailedBatchRequeuedInOrder(t *testing.T) {
	tr := memory.New(memory.Options{RequeueDelay: time.Millisecond})
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 20
	var got []int
	failures := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.ConsumeBatch(ctx, "g", []string{"t"}, 8, 50*time.Millisecond, func(_ context.Context, ds []transport.Delivery) []error {
			errs := make([]error, len(ds))
			if failures < 3 {
				// The store of the batch failed: every delivery fails.
				failures++
				for i := range errs {
					errs[i] = fmt.Errorf("store failed")
				}
				return errs
			}
			for _, d := range ds {
				seq, _ := strconv.Atoi(string(d.Body))
				got = append(got, seq)
			}
			if len(got) >= n {
				cancel()
			}
			return errs
		})
	}()
	time.Sleep(10 * time.Millisecond) // bind the group before sending
	for i := range n {
		m := transport.Message{Headers: map[string]string{wire.OrderingKey: "k"}, Body: []byte(strconv.Itoa(i))}
		if err := tr.Send(ctx, "t", m); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	if len(got) != n {
		t.Fatalf("handled %d of %d messages: %v", len(got), n, got)
	}
	for i, seq := range got {
		if seq != i {
			t.Fatalf("handled in the order %v, want 0 to %d", got, n-1)
		}
	}
}
