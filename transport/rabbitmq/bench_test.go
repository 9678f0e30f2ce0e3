package rabbitmq_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/rabbitmq"
	"github.com/gocap/gocap/wire"
)

// BenchmarkConsumeBatch preloads b.N messages into a queue of the real
// broker, then consumes and acknowledges them with ConsumeBatch (batches
// of up to the prefetch, no linger) and measures the rate, for several
// prefetch and concurrency settings, with a handler that returns at once
// (store=0) and one that takes 2ms per batch, as a multi-row INSERT does
// (store=2ms). The Consume case is the per-delivery path for comparison.
// b.N is best fixed, so that every case drains the same queue length:
//
//	CI=true go test -run '^$' -bench ConsumeBatch -benchtime 20000x ./transport/rabbitmq/
func BenchmarkConsumeBatch(b *testing.B) {
	for _, store := range []time.Duration{0, 2 * time.Millisecond} {
		for _, prefetch := range []int{16, 64, 128, 256} {
			for _, conc := range []int{1, 2, 4, 8} {
				b.Run(fmt.Sprintf("store=%v/prefetch=%d/concurrency=%d", store, prefetch, conc), func(b *testing.B) {
					benchConsume(b, rabbitmq.Config{Prefetch: prefetch, Concurrency: conc}, store, true)
				})
			}
		}
		b.Run(fmt.Sprintf("store=%v/Consume/prefetch=16/concurrency=4", store), func(b *testing.B) {
			benchConsume(b, rabbitmq.Config{Prefetch: 16, Concurrency: 4}, store, false)
		})
	}
}

func benchConsume(b *testing.B, cfg rabbitmq.Config, store time.Duration, batch bool) {
	raw := testenv.AMQPURL(b)
	cfg.URL, cfg.Logger = raw, quiet
	cfg.Exchange = testenv.Name("gocap_rmq_bench")
	cfg.QueuePrefix = cfg.Exchange + "."
	tr, err := rabbitmq.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	queue := cfg.QueuePrefix + "bench"
	c, err := amqp.Dial(raw)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ch.QueueDelete(queue, false, false, false)
		ch.ExchangeDelete(cfg.Exchange, false, false)
	}()
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	if err := ch.QueueBind(queue, "bench", cfg.Exchange, false, nil); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const chunk = 500
	for sent := 0; sent < b.N; sent += chunk {
		msgs := make([]transport.Outgoing, min(chunk, b.N-sent))
		for i := range msgs {
			msgs[i] = transport.Outgoing{Topic: "bench", Message: transport.Message{
				Headers: map[string]string{wire.MsgID: fmt.Sprint(sent + i), wire.MsgName: "bench"},
				Body:    []byte(`{"id":12345,"amount":"9.90","currency":"EUR"}`),
			}}
		}
		for _, err := range tr.SendBatch(ctx, msgs) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	var handled, batches atomic.Int64
	done := make(chan struct{})
	count := func(n int) {
		batches.Add(1)
		if handled.Add(int64(n)) == int64(b.N) {
			close(done)
		}
	}
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	exited := make(chan struct{})
	b.ResetTimer()
	go func() {
		defer close(exited)
		if batch {
			tr.ConsumeBatch(cctx, "bench", []string{"bench"}, 0, 0, func(_ context.Context, ds []transport.Delivery) []error {
				time.Sleep(store)
				count(len(ds))
				return make([]error, len(ds))
			})
			return
		}
		tr.Consume(cctx, "bench", []string{"bench"}, func(context.Context, transport.Delivery) error {
			time.Sleep(store)
			count(1)
			return nil
		})
	}()
	select {
	case <-done:
	case <-ctx.Done():
		b.Fatalf("%d of %d messages consumed", handled.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
	b.ReportMetric(float64(b.N)/float64(batches.Load()), "msg/batch")
	time.Sleep(100 * time.Millisecond) // the last batch's acknowledgement is sent
	stop()
	<-exited
	// Every acknowledgement reached the broker: the queue is empty.
	deadline := time.Now().Add(10 * time.Second)
	for {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err == nil && q.Messages == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("queue not empty after consuming: %+v %v", q, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
