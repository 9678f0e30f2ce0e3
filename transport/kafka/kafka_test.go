package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/kafka"
	"github.com/gocap/gocap/transport/transporttest"
	"github.com/gocap/gocap/wire"
)

// cluster starts an in-process Kafka on loopback.
func cluster(t *testing.T, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topics...), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTransport(t *testing.T, brokers []string, cfg kafka.Config) *kafka.Transport {
	t.Helper()
	cfg.Brokers, cfg.Logger = brokers, quiet()
	tr, err := kafka.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

type sink struct {
	mu  sync.Mutex
	got []transport.Delivery
}

func (s *sink) handler(fail *int) transport.Handler {
	return func(_ context.Context, d transport.Delivery) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if fail != nil && *fail > 0 {
			*fail--
			return fmt.Errorf("not yet")
		}
		s.got = append(s.got, d)
		return nil
	}
}

func (s *sink) wait(t *testing.T, n int) []transport.Delivery {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.mu.Lock()
		got := append([]transport.Delivery(nil), s.got...)
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d deliveries, want %d", len(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRoundTripGroupsAndRedelivery(t *testing.T) {
	brokers := cluster(t, "app.order.paid")
	tr := newTransport(t, brokers, kafka.Config{TopicPrefix: "app.", RequeueDelay: 10 * time.Millisecond})
	var billing, audit sink
	failTwice := 2
	transporttest.Consume(t, tr, "billing", []string{"order.paid"}, billing.handler(nil))
	transporttest.Consume(t, tr, "audit", []string{"order.paid"}, audit.handler(&failTwice))
	body := []byte{0, 1, 2, 0xff, 'x'}
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := tr.Send(ctx, "order.paid", transport.Message{
				Headers: map[string]string{wire.MsgID: fmt.Sprint(i), wire.MsgName: "order.paid", "note": "ünï"},
				Body:    body,
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for name, s := range map[string]*sink{"billing": &billing, "audit": &audit} {
		got := s.wait(t, 20)
		ids := map[string]bool{}
		for _, d := range got {
			ids[d.Headers[wire.MsgID]] = true
			if string(d.Body) != string(body) || d.Headers["note"] != "ünï" || d.Topic != "order.paid" {
				t.Errorf("%s: delivery %+v", name, d)
			}
		}
		if len(ids) != 20 {
			t.Errorf("%s got %d distinct messages, want 20", name, len(ids))
		}
	}
}

func TestForeignRecordAndWildcards(t *testing.T) {
	brokers := cluster(t, "shipment.sent")
	tr := newTransport(t, brokers, kafka.Config{})
	if err := tr.Consume(context.Background(), "g", []string{"shipment.*"}, nil); err == nil {
		t.Error("a wildcard topic was accepted")
	}
	var s sink
	transporttest.Consume(t, tr, "warehouse", []string{"shipment.sent"}, s.handler(nil))
	// A producer that sets no CAP header.
	if err := tr.Send(context.Background(), "shipment.sent", transport.Message{Body: []byte(`{"id":1}`)}); err != nil {
		t.Fatal(err)
	}
	got := s.wait(t, 1)
	if got[0].Topic != "shipment.sent" || len(got[0].Headers) != 0 {
		t.Errorf("foreign record: %+v", got[0])
	}
}

func TestAutoCreateAndClose(t *testing.T) {
	brokers := cluster(t)
	tr := newTransport(t, brokers, kafka.Config{AutoCreateTopics: true, Partitions: 3})
	var s sink
	transporttest.Consume(t, tr, "g", []string{"fresh.topic"}, s.handler(nil))
	if err := tr.Send(context.Background(), "fresh.topic", transport.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	s.wait(t, 1)
	tr.Close()
	if err := tr.Send(context.Background(), "fresh.topic", transport.Message{}); !errors.Is(err, kafka.ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
	if _, err := kafka.New(kafka.Config{Brokers: []string{"no-port"}}); err == nil {
		t.Error("bad broker address accepted")
	}
}

// TestBinaryHeaderValues checks that a record header value that is not
// text arrives as "base64:" and its base64, and a text one unchanged.
func TestBinaryHeaderValues(t *testing.T) {
	brokers := cluster(t, "bin")
	tr := newTransport(t, brokers, kafka.Config{})
	var s sink
	transporttest.Consume(t, tr, "g", []string{"bin"}, s.handler(nil))
	m := transport.Message{Headers: map[string]string{
		"text": "naïve", "bin": string([]byte{0xff, 0xfe, 'x'}), "nul": "a\x00b",
	}, Body: []byte("x")}
	if err := tr.Send(context.Background(), "bin", m); err != nil {
		t.Fatal(err)
	}
	got := s.wait(t, 1)[0]
	want := map[string]string{"text": "naïve", "bin": "base64://54", "nul": "base64:YQBi"}
	for k, v := range want {
		if got.Headers[k] != v {
			t.Errorf("header %s = %q, want %q", k, got.Headers[k], v)
		}
	}
}

// TestSendErrors checks that a send the brokers could not take (the
// cluster is gone) wraps transport.ErrUnavailable, and a record-level
// error (a record too large) does not, and is permanent.
func TestSendErrors(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tr := newTransport(t, c.ListenAddrs(), kafka.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := tr.Send(ctx, "t", transport.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	err = tr.Send(ctx, "t", transport.Message{Body: make([]byte, 2<<20)})
	if !permanent(err) || errors.Is(err, transport.ErrUnavailable) {
		t.Errorf("Send of a record too large: %v, want a permanent error that is not ErrUnavailable", err)
	}
	c.Close()
	start := time.Now()
	err = tr.Send(ctx, "t", transport.Message{Body: []byte("x")})
	if !errors.Is(err, transport.ErrUnavailable) {
		t.Errorf("Send with the cluster gone: %v, want ErrUnavailable", err)
	}
	t.Logf("Send with the cluster gone failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
}

// TestHealthy: healthy while a broker answers, not once none does, nor
// after Close.
func TestHealthy(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	tr := newTransport(t, c.ListenAddrs(), kafka.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Healthy(ctx); err != nil {
		t.Fatalf("Healthy with the broker up: %v", err)
	}
	c.Close()
	if err := tr.Healthy(ctx); err == nil {
		t.Fatal("Healthy with the broker gone: nil")
	}
	other := newTransport(t, cluster(t), kafka.Config{})
	other.Close()
	if err := other.Healthy(ctx); !errors.Is(err, kafka.ErrClosed) {
		t.Fatalf("Healthy after Close: %v, want ErrClosed", err)
	}
}
