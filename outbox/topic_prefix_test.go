package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/wire"
)

// TestTopicPrefixPostgresRabbitMQ: outboxes that share one database and
// one broker see only the messages of their own TopicPrefix; the prefixed
// name is the row's Name, cap-msg-name and the routing key.
func TestTopicPrefixPostgresRabbitMQ(t *testing.T) {
	url := testenv.AMQPURL(t)
	env := postgresBackend.open(t)
	tr, ex := rabbitFor(t, url)
	onWire := spy(t, url, ex, "#")
	// Two services, each with its consumer group, and a second process of
	// service a in a group of its own.
	a := newOutbox(t, env.driver(t), tr, outbox.Options{TopicPrefix: "tenant_a"})
	b := newOutbox(t, env.driver(t), rabbitOn(t, url, ex), outbox.Options{TopicPrefix: "tenant_b"})
	a2 := newOutbox(t, env.driver(t), rabbitOn(t, url, ex), outbox.Options{TopicPrefix: "tenant_a"})
	var gotA, gotB, gotA2 collector[orderPaid]
	for _, s := range []struct {
		ob    *outbox.Outbox[pgx.Tx]
		got   *collector[orderPaid]
		group string
	}{{a, &gotA, "billing"}, {b, &gotB, "shipping"}, {a2, &gotA2, "audit"}} {
		if err := outbox.Subscribe(s.ob, "order.*", func(_ context.Context, m outbox.Received[orderPaid]) error {
			s.got.add(m)
			return nil
		}, outbox.Group(s.group)); err != nil {
			t.Fatal(err)
		}
		run(t, s.ob)
	}
	waitConsumers(t, a)
	ctx := context.Background()
	idA, err := a.PublishWithoutTx(ctx, "order.paid", orderPaid{ID: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.PublishWithoutTx(ctx, "order.paid", orderPaid{ID: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "each service's message handled", func() bool {
		return gotA.len() >= 1 && gotB.len() >= 1 && gotA2.len() >= 1
	})
	time.Sleep(500 * time.Millisecond) // the other service's message, were it delivered
	for name, c := range map[string]struct {
		got   *collector[orderPaid]
		id    int
		topic string
	}{"a": {&gotA, 1, "tenant_a.order.paid"}, "b": {&gotB, 2, "tenant_b.order.paid"}, "a2": {&gotA2, 1, "tenant_a.order.paid"}} {
		all := c.got.all()
		if len(all) != 1 || all[0].Value.ID != c.id || all[0].Name != c.topic || all[0].Headers[wire.MsgName] != c.topic {
			t.Errorf("%s got %+v, want only message %d on %s", name, all, c.id, c.topic)
		}
	}
	row := getRow(t, a.Store(), storage.Published, idA)
	if row.Name != "tenant_a.order.paid" || row.Headers[wire.MsgName] != "tenant_a.order.paid" {
		t.Errorf("published row: name %q, cap-msg-name %q", row.Name, row.Headers[wire.MsgName])
	}
	keys := map[string]bool{}
	for len(keys) < 2 {
		select {
		case d := <-onWire:
			keys[fmt.Sprintf("%s %v", d.RoutingKey, d.Headers[wire.MsgName])] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("the broker carried only %v", keys)
		}
	}
	for _, k := range []string{"tenant_a.order.paid tenant_a.order.paid", "tenant_b.order.paid tenant_b.order.paid"} {
		if !keys[k] {
			t.Errorf("routing key and cap-msg-name %q not on the broker; it carried %v", k, keys)
		}
	}
}
