package memory_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/transport/transporttest"
)

// consume runs a consumer until the test ends, and gives it time to start.
func consume(t *testing.T, tr transport.Transport, group string, topics []string, h transport.Handler) {
	t.Helper()
	transporttest.Consume(t, tr, group, topics, h)
	time.Sleep(10 * time.Millisecond)
}

func TestGroupsWildcardsAndRedelivery(t *testing.T) {
	b := memory.NewBroker(memory.Options{RequeueDelay: time.Millisecond})
	pub := b.Transport()
	var mu sync.Mutex
	got := map[string][]string{}
	failOnce := true
	record := func(group string) transport.Handler {
		return func(_ context.Context, d transport.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			if group == "audit" && failOnce {
				failOnce = false
				return errors.New("not yet")
			}
			got[group] = append(got[group], d.Topic+"="+string(d.Body)+"/"+d.Headers["k"])
			return nil
		}
	}
	consume(t, b.Transport(), "billing", []string{"order.*"}, record("billing"))
	consume(t, b.Transport(), "audit", []string{"#"}, record("audit"))
	for i, name := range []string{"order.paid", "order.paid.eu", "user.created"} {
		if err := pub.Send(context.Background(), name, transport.Message{Headers: map[string]string{"k": "v"}, Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	// "#" matches everything: with audit bound, nothing is unroutable.
	if err := pub.Send(context.Background(), "nobody", transport.Message{Headers: map[string]string{"k": "v"}, Body: []byte("3")}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got["billing"]) + len(got["audit"])
		mu.Unlock()
		if n >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got["billing"]) != "[order.paid=0/v]" {
		t.Errorf("billing got %v", got["billing"])
	}
	// The failed one comes again after the pause, without holding up the
	// others meanwhile.
	if len(got["audit"]) != 4 || !slices.Contains(got["audit"], "order.paid=0/v") {
		t.Errorf("audit got %v, want all four, the failed one again", got["audit"])
	}
}

func TestUnroutableAndClose(t *testing.T) {
	tr := memory.New(memory.Options{})
	if err := tr.Send(context.Background(), "a.b", transport.Message{}); !errors.Is(err, memory.ErrUnroutable) {
		t.Errorf("unroutable: %v", err)
	}
	tr.Close()
	if err := tr.Send(context.Background(), "a.b", transport.Message{}); !errors.Is(err, memory.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	if err := tr.Consume(context.Background(), "g", []string{"a"}, nil); err != nil {
		t.Errorf("Consume after Close: %v, want nil (returns at once)", err)
	}
}

func TestQueueKeptWhileNoConsumer(t *testing.T) {
	b := memory.NewBroker(memory.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.Transport().Consume(ctx, "g", []string{"t"}, nil) // declares the queue, returns at once
	pub := b.Transport()
	if err := pub.Send(context.Background(), "t", transport.Message{Body: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	consume(t, b.Transport(), "g", []string{"t"}, func(_ context.Context, d transport.Delivery) error {
		got <- string(d.Body)
		return nil
	})
	select {
	case s := <-got:
		if s != "kept" {
			t.Errorf("got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("message sent while no consumer ran was lost")
	}
}

// The broker routes like RabbitMQ's topic exchange.
func Example() {
	b := memory.NewBroker(memory.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Transport().Consume(ctx, "billing", []string{"order.*"}, func(_ context.Context, d transport.Delivery) error {
			fmt.Printf("billing got %s: %s\n", d.Topic, d.Body)
			cancel()
			return nil
		})
	}()
	time.Sleep(10 * time.Millisecond)
	b.Transport().Send(context.Background(), "order.paid", transport.Message{Body: []byte(`{"id":1}`)})
	<-done
	// Output: billing got order.paid: {"id":1}
}

func TestHealthy(t *testing.T) {
	tr := memory.New(memory.Options{})
	if err := tr.Healthy(context.Background()); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	tr.Close()
	if err := tr.Healthy(context.Background()); !errors.Is(err, memory.ErrClosed) {
		t.Fatalf("Healthy after Close: %v, want ErrClosed", err)
	}
}
