package transporttest

import (
	"context"
	"errors"
	"reflect"
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
	t.Run("RefusedIsNotUnavailable", func(t *testing.T) {
		if h.Refused == nil {
			t.Skip("Harness.Refused is nil")
		}
		refused(t, h)
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

// refused checks that a message the broker refuses (Harness.Refused) is
// an error of Send, and of its place in a SendBatch, that is not
// transport.ErrUnavailable (which would make it no attempt: the outbox
// would pause and send it again for ever), and that the transport sends
// the next message.
func refused(t *testing.T, h Harness) {
	tr := h.New(t)
	r := new(recorder)
	consume(t, tr, "refusals", []string{"order.paid"}, r)
	time.Sleep(h.Settle)
	topic, m := h.Refused(t)
	check := func(what string, err error) {
		t.Helper()
		t.Logf("%s of the refused message: %v", what, err)
		if err == nil || errors.Is(err, transport.ErrUnavailable) {
			t.Errorf("%s of a message the broker refuses: %v, want an error that is not transport.ErrUnavailable", what, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	check("Send", tr.Send(ctx, topic, m))
	want := map[string]bool{"2": true}
	if bs, ok := tr.(transport.BatchSender); ok {
		want["1"] = true
		errs := bs.SendBatch(ctx, []transport.Outgoing{{Topic: "order.paid", Message: msg(1)}, {Topic: topic, Message: m}})
		if len(errs) != 2 {
			t.Fatalf("SendBatch of 2 messages: %d results", len(errs))
		}
		if errs[0] != nil {
			t.Errorf("SendBatch: the message taken beside a refused one: %v", errs[0])
		}
		check("SendBatch", errs[1])
	}
	send(t, tr, "order.paid", msg(2))
	seen := map[string]bool{}
	if !poll(30*time.Second, func() bool {
		got, _ := r.snapshot()
		for _, d := range got {
			seen[d.Headers[wire.MsgID]] = true
		}
		return len(seen) >= len(want)
	}) || !reflect.DeepEqual(seen, want) {
		t.Errorf("after the refusals the consumer got messages %v, want %v", seen, want)
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
