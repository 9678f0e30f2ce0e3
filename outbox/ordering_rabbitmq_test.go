package outbox_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport/rabbitmq"
	"github.com/gocap/gocap/wire"
)

// TestOrderingRabbitMQSingleActiveConsumer: ordered groups over RabbitMQ
// and PostgreSQL. Two publishing outboxes send keyed messages (each key
// always from one goroutine, so its publish order is its sequence); two
// subscribing outboxes, on a database of their own, consume one group
// whose queue is a single-active-consumer queue
// ("x-single-active-consumer": true, Config.QueueArguments), with the
// transport's default 4 channels each and handler concurrency 16, and
// stores of received messages that take 0–4 ms. Every message is handled
// once, each key's in publish order, one at a time. Without the argument
// the queue's messages are spread over the 8 consumers, which store them
// concurrently: a key's messages can be stored, and so handled, out of
// publish order (see the rabbitmq package doc, "Order"); this test then
// fails with inversions (120–150 of 2,000 in three runs).
func TestOrderingRabbitMQSingleActiveConsumer(t *testing.T) {
	url := testenv.AMQPURL(t)
	const keys, perKey, publishers = 50, 40, 8
	exchange := testenv.Name("gocap_test_ordered")
	group := testenv.Name("gocap_ordered_g")
	newTransport := func(args amqp.Table) *rabbitmq.Transport {
		tr, err := rabbitmq.New(rabbitmq.Config{URL: url, Exchange: exchange, Logger: quietLogger(), QueueArguments: args})
		if err != nil {
			t.Fatalf("rabbitmq.New: %v", err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	sac := amqp.Table{"x-single-active-consumer": true}
	t.Cleanup(func() { deleteQueue(url, group) }) // registered first: runs after the outboxes stopped

	check := newOrderCheck()
	subEnv := postgresBackend.open(t)
	for i := range 2 {
		// Stores that take a varying time, as under load: a consumer
		// that got a key's message i may still be storing it when
		// another one got message i+1.
		d := &slowStore[pgx.Tx]{Driver: subEnv.driver(t), rng: rand.New(rand.NewPCG(uint64(i), 7))}
		ob := newOutbox(t, d, newTransport(sac), outbox.Options{HandlerConcurrency: 16})
		err := outbox.Subscribe(ob, "ordered.rabbit", func(_ context.Context, m outbox.Received[keyedMsg]) error {
			if m.Headers[wire.OrderingKey] != m.Value.Key {
				return outbox.Permanent(fmt.Errorf("header %q, want %q", m.Headers[wire.OrderingKey], m.Value.Key))
			}
			return check.handle(m.Value, nil)
		}, outbox.Group(group))
		if err != nil {
			t.Fatal(err)
		}
		run(t, ob)
	}
	pubEnv := postgresBackend.open(t)
	var pubs []*outbox.Outbox[pgx.Tx]
	for range 2 {
		ob := newOutbox(t, pubEnv.driver(t), newTransport(nil), outbox.Options{})
		run(t, ob)
		pubs = append(pubs, ob)
	}
	// The subscribers declare the group queue when they start consuming;
	// messages sent before would be unroutable.
	waitForQueue(t, url, group)

	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ob := pubs[p%2]
			for seq := range perKey {
				for k := p; k < keys; k += publishers {
					key := fmt.Sprintf("key-%d", k)
					if _, err := ob.PublishWithoutTx(ctx, "ordered.rabbit", keyedMsg{Key: key, Seq: seq}, outbox.WithOrderingKey(key)); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "every keyed message handled", func() bool { return check.count() >= keys*perKey })
	time.Sleep(200 * time.Millisecond) // a duplicate would show now
	check.mu.Lock()
	defer check.mu.Unlock()
	if check.inversions != 0 || check.overlaps != 0 || check.total != keys*perKey {
		t.Errorf("%d handled (want %d), %d inversions, %d overlaps; want none", check.total, keys*perKey, check.inversions, check.overlaps)
	}
}

// slowStore is a driver whose stores of received messages take 0–4 ms
// more (one at a time: it hides the batch insert).
type slowStore[TTx any] struct {
	storage.Driver[TTx]
	mu  sync.Mutex
	rng *rand.Rand
}

func (d *slowStore[TTx]) InsertReceived(ctx context.Context, m *storage.Message, token int64, leaseUntil time.Time) (storage.ReceivedInsert, error) {
	d.mu.Lock()
	wait := time.Duration(d.rng.IntN(4000)) * time.Microsecond
	d.mu.Unlock()
	time.Sleep(wait)
	return d.Driver.InsertReceived(ctx, m, token, leaseUntil)
}

// deleteQueue deletes a test's queue, if it can.
func deleteQueue(url, queue string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	if ch, err := conn.Channel(); err == nil {
		ch.QueueDelete(queue, false, false, false)
	}
}

// waitForQueue waits until the queue exists (a passive declare succeeds).
func waitForQueue(t *testing.T, url, queue string) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitFor(t, 20*time.Second, "the group queue declared", func() bool {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		_, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		return err == nil
	})
}
