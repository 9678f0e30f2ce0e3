package outboxtest_test

import (
	"context"
	"testing"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/outboxtest"
)

// TestTopicPrefixAndVersion: assertions and Handle name topics as the
// application publishes and subscribes to them, whatever TopicPrefix and
// Version the outbox stores and consumes them under.
func TestTopicPrefixAndVersion(t *testing.T) {
	ctx := context.Background()
	e := sqliteEnv(t, outbox.Options{TopicPrefix: "shop", Version: "v2"})
	var got []outbox.Received[order]
	if err := outbox.Subscribe(e.ob, "orders.*", func(_ context.Context, m outbox.Received[order]) error {
		got = append(got, m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tx, commit, _ := e.begin(t)
	if _, err := e.ob.Publish(ctx, tx, "orders.placed", order{ID: 1}); err != nil {
		t.Fatal(err)
	}
	if v := outboxtest.RequirePublishedTx[order](ctx, t, e.ob, tx, "orders.placed", nil); v.ID != 1 {
		t.Errorf("RequirePublishedTx decoded %+v", v)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	ms := outboxtest.RequirePublishedCount(ctx, t, e.ob, "orders.placed", 1, nil)
	if ms[0].Name != "shop.orders.placed" || ms[0].Version != "v2" {
		t.Errorf("stored name %q version %q, want shop.orders.placed and v2", ms[0].Name, ms[0].Version)
	}
	if err := outboxtest.Handle(ctx, e.ob, "orders.placed", order{ID: 2}, nil); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if len(got) != 1 || got[0].Name != "shop.orders.placed" || got[0].Group != outbox.DefaultGroup+".v2" {
		t.Fatalf("the handler got %+v", got)
	}
}
