package outboxtest_test

import (
	"context"
	"testing"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/outboxtest"
	"github.com/gocap/gocap/storage"
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
	for _, tp := range []string{"orders.placed", "orders.reminder"} {
		if _, err := e.ob.Publish(ctx, tx, tp, order{ID: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if v := outboxtest.RequirePublishedTx[order](ctx, t, e.ob, tx, "orders.placed", nil); v.ID != 1 {
		t.Errorf("RequirePublishedTx decoded %+v", v)
	}
	if ms := outboxtest.RequireManyPublishedTx(ctx, t, e.ob, tx, []outboxtest.Expected{
		{Topic: "orders.placed"}, {Topic: "orders.reminder"},
	}); ms[0].Name != "shop.orders.placed" || ms[1].Name != "shop.orders.reminder" {
		t.Errorf("RequireManyPublishedTx returned names %q, %q", ms[0].Name, ms[1].Name)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	ms := outboxtest.RequirePublishedCount(ctx, t, e.ob, "orders.placed", 1, nil)
	if ms[0].Name != "shop.orders.placed" || ms[0].Version != "v2" {
		t.Errorf("stored name %q version %q, want shop.orders.placed and v2", ms[0].Name, ms[0].Version)
	}
	outboxtest.RequireManyPublished(ctx, t, e.ob, []outboxtest.Expected{
		{Topic: "orders.placed", Opts: &outboxtest.Opts{Status: storage.StatusScheduled}}, {Topic: "orders.reminder"},
	})
	// A failure names the topics as the application does.
	fails(t, "RequirePublished into the wrong type", func(tb testing.TB) {
		outboxtest.RequirePublished[int](ctx, tb, e.ob, "orders.placed", nil)
	}, `of topic "orders.placed" into int`)
	fails(t, "RequirePublished of a topic not published", func(tb testing.TB) {
		outboxtest.RequirePublished[order](ctx, tb, e.ob, "orders.cancelled", nil)
	}, `no message published to "orders.cancelled"; the newest messages are of topics ["orders.reminder" "orders.placed"]`)
	fails(t, "RequireManyPublished in another order", func(tb testing.TB) {
		outboxtest.RequireManyPublished(ctx, tb, e.ob, []outboxtest.Expected{{Topic: "orders.reminder"}, {Topic: "orders.placed"}})
	}, `published topics ["orders.placed" "orders.reminder"], want ["orders.reminder" "orders.placed"]`)
	if err := outboxtest.Handle(ctx, e.ob, "orders.placed", order{ID: 2}, nil); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if len(got) != 1 || got[0].Name != "shop.orders.placed" || got[0].Group != outbox.DefaultGroup+".v2" {
		t.Fatalf("the handler got %+v", got)
	}
}
