package transporttest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/wire"
)

// runConnection checks the transport's life with its broker: a broken
// connection, sends while it is broken, Close.
func runConnection(t *testing.T, h Harness) {
	t.Run("ConnectionLoss", func(t *testing.T) {
		needDisconnect(t, h)
		connectionLoss(t, h)
	})
	t.Run("UnavailableWhileDisconnected", func(t *testing.T) {
		needDisconnect(t, h)
		unavailable(t, h)
	})
	t.Run("Close", func(t *testing.T) { closeTest(t, h) })
}

func needDisconnect(t *testing.T, h Harness) {
	t.Helper()
	if h.Disconnect == nil {
		t.Skip("Harness.Disconnect is nil")
	}
}

// connected returns a new transport whose consumer of group, on
// order.paid, has handled message 1.
func connected(t *testing.T, h Harness, group string) (transport.Transport, *recorder) {
	t.Helper()
	tr := h.New(t)
	r := new(recorder)
	consume(t, tr, group, []string{"order.paid"}, r)
	time.Sleep(h.Settle)
	send(t, tr, "order.paid", msg(1))
	r.wait(t, 1)
	return tr, r
}

func connectionLoss(t *testing.T, h Harness) {
	tr, r := connected(t, h, "survivor")
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

// unavailable checks that sends fail with transport.ErrUnavailable while
// the connections are broken, that a send succeeds within 2s once they can
// be made again, and that the consumer resumes.
func unavailable(t *testing.T, h Harness) {
	tr, r := connected(t, h, "outage")
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
	if !poll(5*time.Second-time.Since(start), func() bool {
		got, _ := r.snapshot()
		return got[len(got)-1].Headers[wire.MsgID] == "2"
	}) {
		t.Fatalf("message 2 not handled within 5s after the connection came back")
	}
	t.Logf("consumer resumed: message 2 handled %v after the connection came back", time.Since(start).Round(time.Millisecond))
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
