package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/rabbitmq"
)

// BenchmarkCommitToHandled measures, on PostgreSQL, the time from the
// commit of a transaction that published a message to the start of the
// subscription's handler, through each broker in the same run: RabbitMQ,
// NATS JetStream, Redis Streams. A round publishes 200 messages a second,
// one transaction each, for 10 s, through one outbox that also subscribes
// (a service talking to itself: notify, claim, send, broker, consume,
// store, handle); rounds rotate the order of the brokers. Each round
// reports its p50 and p99, and the medians of 3 rounds are printed at the
// end:
//
//	go test -run '^$' -bench CommitToHandled -benchtime 1x ./outbox/
func BenchmarkCommitToHandled(b *testing.B) {
	const (
		rate     = 200
		duration = 10 * time.Second
		rounds   = 3
	)
	brokers := []struct {
		name      string
		transport func(b *testing.B) transport.Transport
	}{
		{"rabbitmq", benchRabbit},
		{"nats", func(b *testing.B) transport.Transport { return natsKit.open(b).transport(b, nil) }},
		{"redis", func(b *testing.B) transport.Transport { return redisKit.open(b).transport(b, nil) }},
	}
	p50s, p99s := map[string][]time.Duration{}, map[string][]time.Duration{}
	for round := range rounds {
		for i := range brokers {
			br := brokers[(i+round)%len(brokers)]
			b.Run(fmt.Sprintf("%s/round%d", br.name, round+1), func(b *testing.B) {
				p50, p99 := commitToHandled(b, br.transport(b), rate, duration)
				b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
				p50s[br.name] = append(p50s[br.name], p50)
				p99s[br.name] = append(p99s[br.name], p99)
			})
		}
	}
	fmt.Printf("medians of %d rounds, commit -> handled at %d msg/s for %v, PostgreSQL:\n", rounds, rate, duration)
	for _, br := range brokers {
		p50, p99 := medianDuration(p50s[br.name]), medianDuration(p99s[br.name])
		fmt.Printf("  %-8s p50 %v, p99 %v\n", br.name, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond))
	}
}

func medianDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// benchRabbit returns a RabbitMQ transport on an exchange and queue
// prefix of its own, deleted when b ends.
func benchRabbit(b *testing.B) transport.Transport {
	url := testenv.AMQPURL(b)
	ex := testenv.Name("gocap_bench_ex")
	tr, err := rabbitmq.New(rabbitmq.Config{URL: url, Exchange: ex, QueuePrefix: ex + ".", Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		tr.Close()
		deleteRabbit(url, ex, ex+".")
	})
	return tr
}

// commitToHandled runs one round on tr: an outbox on a fresh schema that
// publishes rate messages a second for d and handles them, and returns the
// p50 and p99 of commit → handler.
func commitToHandled(b *testing.B, tr transport.Transport, rate int, d time.Duration) (p50, p99 time.Duration) {
	ctx := context.Background()
	dsn := testenv.PostgresURL(b)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	schema := testenv.Name("gocap_bench_e2e")
	b.Cleanup(func() {
		pool.Exec(context.Background(), "drop schema if exists "+schema+" cascade")
		pool.Close()
	})
	drv := postgres.New(pool, postgres.Options{Schema: schema, Logger: quietLogger()})
	if err := drv.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	ob, err := outbox.New(drv, tr, outbox.Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	handled := map[string]time.Time{}
	if err := outbox.Subscribe(ob, "order.paid", func(_ context.Context, m outbox.Received[orderPaid]) error {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if _, ok := handled[m.ID]; !ok {
			handled[m.ID] = now
		}
		return nil
	}, outbox.Group("billing")); err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ob.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			b.Errorf("Run: %v", err)
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(handled)
	}
	publish := func(i int) (string, error) {
		var id int64
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var err error
			id, err = ob.Publish(ctx, tx, "order.paid", orderPaid{ID: i, Amount: "9.90"})
			return err
		})
		return strconv.FormatInt(id, 10), err
	}
	// Warm up until a message goes round: the consumers are then bound.
	for i := 0; count() == 0; i++ {
		if i == 100 {
			b.Fatal("no warm-up message handled within 10 s")
		}
		if i%10 == 0 {
			if _, err := publish(-1); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	warm := count()

	total := int(d.Seconds() * float64(rate))
	committed := make(map[string]time.Time, total)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := range total {
		<-tick.C
		id, err := publish(i)
		if err != nil {
			b.Fatal(err)
		}
		committed[id] = time.Now()
	}
	for deadline := time.Now().Add(30 * time.Second); count() < warm+total; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d messages handled 30 s after the last commit", count()-warm, total)
		}
	}
	mu.Lock()
	lat := make([]time.Duration, 0, total)
	for id, c := range committed {
		lat = append(lat, max(handled[id].Sub(c), 0))
	}
	mu.Unlock()
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100]
}
