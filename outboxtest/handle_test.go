package outboxtest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/outboxtest"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/wire"
)

var errDeclined = errors.New("card declined")

// TestHandle runs subscriptions' handlers without a broker and without
// Run, and checks what they were given and what Handle returns.
func TestHandle(t *testing.T) {
	ctx := context.Background()
	ob := sqliteEnv(t, outbox.Options{GroupPrefix: "app."}).ob
	var got []outbox.Received[order]
	if err := outbox.Subscribe(ob, "orders.*", func(_ context.Context, m outbox.Received[order]) error {
		got = append(got, m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Subscribe(ob, "orders.placed", func(context.Context, outbox.Received[order]) error {
		return errDeclined
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Subscribe(ob, "boom", func(context.Context, outbox.Received[[]byte]) error {
		panic("handler exploded")
	}); err != nil {
		t.Fatal(err)
	}

	err := outboxtest.Handle(ctx, ob, "orders.placed", order{ID: 7, Label: "seven"},
		&outboxtest.HandleOpts{Headers: map[string]string{"tenant": "acme"}})
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("the handler ran %d times, want once", len(got))
	}
	m := got[0]
	if m.Value != (order{ID: 7, Label: "seven"}) || m.Name != "orders.placed" || m.Group != "app."+outbox.DefaultGroup {
		t.Errorf("the handler got value %+v, name %q, group %q", m.Value, m.Name, m.Group)
	}
	if m.ID == "" || m.SentTime.IsZero() || m.Retries != 0 || string(m.Body) != `{"id":7,"label":"seven"}` {
		t.Errorf("the handler got id %q, sent time %v, retries %d, body %s", m.ID, m.SentTime, m.Retries, m.Body)
	}
	for k, want := range map[string]string{"tenant": "acme", wire.Group: "app." + outbox.DefaultGroup,
		wire.MsgName: "orders.placed", wire.MsgType: "order", wire.MsgID: m.ID, wire.CorrelationID: m.ID} {
		if m.Headers[k] != want {
			t.Errorf("header %s = %q, want %q (headers %v)", k, m.Headers[k], want, m.Headers)
		}
	}

	if err := outboxtest.Handle(ctx, ob, "orders.placed", order{ID: 8}, &outboxtest.HandleOpts{Group: "billing"}); !errors.Is(err, errDeclined) {
		t.Errorf("Handle in group billing = %v, want the handler's error %v", err, errDeclined)
	}
	if len(got) != 1 {
		t.Errorf("the default group's handler ran for the billing group")
	}
	if err := outboxtest.Handle(ctx, ob, "boom", []byte("x"), nil); err == nil || !strings.Contains(err.Error(), "panic: handler exploded") {
		t.Errorf("Handle of a panicking handler = %v, want the panic as an error", err)
	}
	var perm *outbox.PermanentError
	if err := outboxtest.Handle(ctx, ob, "orders.shipped", "not an order", nil); !errors.As(err, &perm) || !strings.Contains(err.Error(), "decoding the body") {
		t.Errorf("Handle of a body that does not decode = %v, want a permanent decoding error", err)
	}
	err = outboxtest.Handle(ctx, ob, "invoices.sent", order{}, nil)
	if err == nil || !strings.Contains(err.Error(), `no subscription of group "app.gocap.default" matches topic "invoices.sent"`) ||
		!strings.Contains(err.Error(), "orders.*") {
		t.Errorf("Handle of a topic without subscription = %v", err)
	}
	if err := outboxtest.Handle(ctx, ob, "orders.*", order{}, nil); err == nil {
		t.Error("Handle of a wildcard topic: no error")
	}
	if err := outboxtest.Handle(ctx, ob, "", order{}, nil); err == nil || !strings.Contains(err.Error(), "topic is empty") {
		t.Errorf("Handle of an empty topic = %v, want Publish's error", err)
	}

	// Nothing was stored.
	for _, kind := range []storage.Kind{storage.Published, storage.Received} {
		counts, err := ob.Store().Counts(ctx, kind)
		if err != nil {
			t.Fatal(err)
		}
		for st, n := range counts {
			if n != 0 {
				t.Errorf("%d %s %s rows stored by Handle", n, st, kind)
			}
		}
	}
}
