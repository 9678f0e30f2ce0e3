package outbox_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/transport/rabbitmq"
)

// TestHealthConsumerMisconfigured: a group whose queue exists with other
// arguments (as DotNetCore.CAP declares its queues, with a TTL) is not
// consumed, and the readiness report says so, naming the group, until the
// transport is configured with the queue's arguments.
func TestHealthConsumerMisconfigured(t *testing.T) {
	url := testenv.AMQPURL(t)
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	prefix := testenv.Name("gocap_health") + "."
	exchange := prefix + "router"
	queue := prefix + "billing"
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-message-ttl": int32(60000)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ch.QueueDelete(queue, false, false, false)
		ch.ExchangeDelete(exchange, false, false)
	})

	for _, tc := range []struct {
		name  string
		args  amqp.Table
		ready bool
	}{
		{"without the queue's arguments", nil, false},
		{"with them", amqp.Table{"x-message-ttl": 60000}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := rabbitmq.New(rabbitmq.Config{URL: url, Exchange: exchange, QueuePrefix: prefix,
				QueueArguments: tc.args, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tr.Close() })
			env := sqliteBackend.open(t)
			ob := newOutbox(t, env.driver(t), tr, outbox.Options{})
			if err := outbox.Subscribe(ob, "order.paid", func(context.Context, outbox.Received[[]byte]) error { return nil },
				outbox.Group("billing")); err != nil {
				t.Fatal(err)
			}
			run(t, ob)
			srv := healthServer(t, ob)
			if !tc.ready {
				var rep outbox.HealthReport
				waitFor(t, 10*time.Second, "the consumer reported misconfigured", func() bool {
					var code int
					code, rep, _ = probe(t, srv, "/readyz")
					return code == http.StatusServiceUnavailable && len(rep.Consumers) == 1
				})
				c := rep.Consumers[0]
				if c.Group != "billing" || c.Problem != "misconfigured" || c.Since.IsZero() ||
					!slices.Contains(rep.Problems, "consumer of group billing misconfigured") {
					t.Errorf("readiness report: %+v", rep)
				}
				return
			}
			// Ready once the consumer has run for the grace period.
			waitFor(t, 15*time.Second, "ready", func() bool { code, _, _ := probe(t, srv, "/readyz"); return code == http.StatusOK })
			if _, rep, body := probe(t, srv, "/readyz"); len(rep.Consumers) != 0 {
				t.Errorf("ready with consumer problems: %s", body)
			}
		})
	}
}
