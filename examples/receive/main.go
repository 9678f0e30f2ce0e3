// Command receive measures gocap's receive side on the machine's real
// RabbitMQ and PostgreSQL (or MariaDB/MySQL with -db mysql) and prints, in
// one run, how fast n messages waiting in a durable queue are handled,
// three ways:
//
//   - raw: plain amqp091-go, one consumer, prefetch 100, a manual ack per
//     message: the broker's ceiling for any consumer;
//   - inbox: a hand-rolled inbox as a competent Go team writes one: 8
//     worker goroutines on one consumer with prefetch 100, and per delivery
//     one transaction that inserts the message into a table like gocap's
//     received table (INSERT … ON CONFLICT (msg_id, grp) DO NOTHING on
//     PostgreSQL, INSERT IGNORE on MySQL), commits, then acks;
//   - gocap: outbox.Subscribe with a no-op handler and default options
//     (rabbitmq.Config with only URL, Exchange and QueuePrefix), timed
//     until every received row is Succeeded.
//
// The messages carry CAP's headers (package wire) and are preloaded, with
// publisher confirms, into a fresh durable queue bound to a topic exchange
// before each measurement; each measurement of gocap and of the inbox uses
// a fresh schema (or fresh tables). The three ways alternate their order
// round after round; the program prints each round, the medians in msg/s,
// and the ratios gocap/inbox (target >= 1.5) and gocap/raw (target >= 40%).
// Everything it created (schemas or tables, queues, the exchange) is
// deleted at exit, also after an error or Ctrl-C.
//
// Usage:
//
//	go run ./examples/receive [-n 10000] [-rounds 3] [-db postgres|mysql] [-workers 8] [-timeout 10m]
//
// For profiling, -only raw|inbox|gocap runs that measurement alone, once a
// round (each round's rate is printed, no ratios), and -cpuprofile FILE
// writes a CPU profile of the whole run.
//
// GOCAP_POSTGRES_URL, GOCAP_MYSQL_DSN and GOCAP_AMQP_URL override the local
// defaults.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/examples/internal/cpuprofile"
	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/wire"
)

const topic = "bench.receive"

// onlyMode is the -only flag: one measurement alone, for profiling.
var onlyMode string

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func main() {
	n := flag.Int("n", 10000, "messages per measurement")
	rounds := flag.Int("rounds", 3, "rounds of the three measurements (medians are reported)")
	db := flag.String("db", "postgres", "database of the inbox and of gocap: postgres or mysql")
	workers := flag.Int("workers", 8, "worker goroutines of the hand-rolled inbox")
	timeout := flag.Duration("timeout", 10*time.Minute, "longest time one measurement may take")
	only := flag.String("only", "", "run only this measurement (raw, inbox or gocap), for profiling")
	profilePath := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	stopProfile, err := cpuprofile.Start(*profilePath)
	if err != nil {
		log.Fatal(err)
	}
	defer stopProfile()
	onlyMode = *only
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *db, *n, *rounds, *workers, *timeout); err != nil {
		stopProfile()
		log.Fatal(err)
	}
}

func run(ctx context.Context, dbName string, n, rounds, workers int, timeout time.Duration) error {
	amqpURL := env("GOCAP_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
	suffix := strconv.FormatInt(ids.Token()%1_000_000, 10)
	b := &bench{amqpURL: amqpURL, exchange: "gocap.recvbench." + suffix, prefix: "gocap_recvbench_" + suffix,
		n: n, workers: workers, timeout: timeout}
	var err error
	if b.db, err = openDB(ctx, dbName); err != nil {
		return err
	}
	if b.conn, err = amqp.Dial(amqpURL); err != nil {
		b.db.close(nil)
		return err
	}
	defer b.close()
	if b.gen, err = ids.NewGenerator(1); err != nil {
		return err
	}

	type mode struct {
		name string
		run  func(context.Context) (float64, error)
	}
	modes := []mode{{"raw", b.raw}, {"inbox", b.inbox}, {"gocap", b.gocap}}
	if onlyMode != "" {
		modes = slices.DeleteFunc(modes, func(m mode) bool { return m.name != onlyMode })
		if len(modes) == 0 {
			return fmt.Errorf("-only %q: want raw, inbox or gocap", onlyMode)
		}
		for _, m := range modes {
			for round := 1; round <= rounds; round++ {
				r, err := m.run(ctx)
				if err != nil {
					return err
				}
				fmt.Printf("round %d: %s %6.0f msg/s\n", round, m.name, r)
			}
		}
		return nil
	}
	rates := map[string][]float64{}
	for round := 1; round <= rounds; round++ {
		line := fmt.Sprintf("round %d:", round)
		for i := range modes {
			m := modes[(i+round-1)%len(modes)] // alternate which goes first
			r, err := m.run(ctx)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round, m.name, err)
			}
			rates[m.name] = append(rates[m.name], r)
			line += fmt.Sprintf("  %s %6.0f msg/s", m.name, r)
		}
		fmt.Println(line)
	}
	raw, inbox, gocap := median(rates["raw"]), median(rates["inbox"]), median(rates["gocap"])
	fmt.Printf("medians of %d rounds of %d messages preloaded in a durable queue (%s):\n", rounds, n, dbName)
	fmt.Printf("  raw amqp091-go consume + ack (prefetch 100, 1 consumer):           %6.0f msg/s\n", raw)
	fmt.Printf("  hand-rolled inbox (%d workers, prefetch 100, tx per delivery, ack): %6.0f msg/s\n", workers, inbox)
	fmt.Printf("  gocap Subscribe, default options, until every row Succeeded:       %6.0f msg/s\n", gocap)
	fmt.Printf("  gocap / inbox = %.2fx (target >= 1.5x), gocap / raw = %.0f%% (target >= 40%%)\n",
		gocap/inbox, 100*gocap/raw)
	return nil
}

type bench struct {
	amqpURL  string
	exchange string
	prefix   string // of the schemas (tables) and queues
	n        int
	workers  int
	timeout  time.Duration
	conn     *amqp.Connection
	db       *database
	gen      *ids.Generator
	queues   []string
	runs     int
}

// next returns a fresh name for a measurement's schema (or table prefix)
// and queue prefix.
func (b *bench) next() (store, queuePrefix string) {
	b.runs++
	return fmt.Sprintf("%s_%d", b.prefix, b.runs), fmt.Sprintf("%s.%d.", b.exchange, b.runs)
}

func (b *bench) close() {
	if ch, err := b.conn.Channel(); err == nil {
		for _, q := range b.queues {
			ch.QueueDelete(q, false, false, false)
		}
		ch.ExchangeDelete(b.exchange, false, false)
		ch.Close()
	}
	b.conn.Close()
	stores := make([]string, b.runs)
	for i := range stores {
		stores[i] = fmt.Sprintf("%s_%d", b.prefix, i+1)
	}
	b.db.close(stores)
}

// deleteQueue deletes a measurement's queue once it is done with it, so
// that RabbitMQ does not carry the queues of earlier rounds.
func (b *bench) deleteQueue(q string) {
	if ch, err := b.conn.Channel(); err == nil {
		if _, err := ch.QueueDelete(q, false, false, false); err == nil {
			b.queues = slices.DeleteFunc(b.queues, func(s string) bool { return s == q })
		}
		ch.Close()
	}
}

// preload declares the durable queue q bound to the exchange for the
// benchmark's topic, as gocap declares a group's queue, and publishes n
// persistent messages with CAP's headers to the exchange, waiting for
// every confirm: when it returns, the n messages wait in q.
func (b *bench) preload(ctx context.Context, q string) error {
	ch, err := b.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.ExchangeDeclare(b.exchange, "topic", true, false, false, false, nil); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		return err
	}
	b.queues = append(b.queues, q)
	if err := ch.QueueBind(q, topic, b.exchange, false, nil); err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	const window = 256
	pending := make(chan *amqp.DeferredConfirmation, window)
	errc := make(chan error, 1)
	go func() {
		var bad error
		for dc := range pending {
			if ok, err := dc.WaitContext(ctx); (!ok || err != nil) && bad == nil {
				bad = fmt.Errorf("preloading: nack or error: %v", err)
			}
		}
		errc <- bad
	}()
	body := []byte(`{"amount":"9.90","currency":"EUR","id":12345}`)
	for range b.n {
		id := b.gen.Next()
		now := time.Now().UTC()
		h := wire.Published(id, topic, "map[string]interface {}", now, nil)
		headers := make(amqp.Table, len(h))
		for k, v := range h {
			headers[k] = v
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, b.exchange, topic, true, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, ContentType: "application/json", Body: body, Headers: headers,
			MessageId: strconv.FormatInt(id, 10), Timestamp: now,
		})
		if err != nil {
			close(pending)
			<-errc
			return err
		}
		pending <- dc
	}
	close(pending)
	return <-errc
}

// raw consumes the preloaded queue with plain amqp091-go and acks each
// delivery.
func (b *bench) raw(ctx context.Context) (float64, error) {
	_, qp := b.next()
	q := qp + "raw"
	if err := b.preload(ctx, q); err != nil {
		return 0, err
	}
	defer b.deleteQueue(q)
	ch, err := b.conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	if err := ch.Qos(100, 0, false); err != nil {
		return 0, err
	}
	start := time.Now()
	deliveries, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	deadline := time.After(b.timeout)
	for got := 0; got < b.n; got++ {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return 0, errors.New("the channel closed")
			}
			if err := d.Ack(false); err != nil {
				return 0, err
			}
		case <-deadline:
			return 0, fmt.Errorf("only %d of %d messages after %v", got, b.n, b.timeout)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return float64(b.n) / time.Since(start).Seconds(), nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
