// Command delayed measures gocap's delayed messages on the machine's real
// PostgreSQL and RabbitMQ and prints, in one run:
//
//   - lateness: n messages published with due times spread over a window
//     (10 s by default), each received by a plain consumer; how late each
//     arrived after its due time (cap-senttime, which is the due time of a
//     delayed message), p50, p99 and max;
//   - the dispatch rate of immediate messages on a table without Delayed
//     rows and on one holding a million Delayed rows due tomorrow, in
//     alternating rounds, medians and their ratio: Delayed rows must cost
//     the dispatch of immediate messages nothing.
//
// Usage:
//
//	go run ./examples/delayed [-n 10000] [-window 10s] [-delayed 1000000] [-immediate 20000] [-rounds 3]
//
// GOCAP_POSTGRES_URL and GOCAP_AMQP_URL override the local defaults. The
// run works in schemas and on an exchange and queues of its own (their
// names are printed first), and removes them at the end, also when it
// fails or is interrupted (Ctrl-C, SIGTERM).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/examples/internal/cleanup"
	"github.com/gocap/gocap/examples/internal/interrupt"
	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport/rabbitmq"
	"github.com/gocap/gocap/wire"
)

func main() {
	var c config
	flag.IntVar(&c.n, "n", 10000, "delayed messages for the lateness run")
	flag.DurationVar(&c.window, "window", 10*time.Second, "due times are spread over this window")
	flag.IntVar(&c.delayed, "delayed", 1_000_000, "Delayed rows in the table of the second dispatch run")
	flag.IntVar(&c.immediate, "immediate", 20000, "immediate messages per dispatch round")
	flag.IntVar(&c.rounds, "rounds", 3, "dispatch rounds of each kind (medians are reported)")
	flag.Parse()
	c.pgURL = env("GOCAP_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	c.amqpURL = env("GOCAP_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
	// An interrupt cancels run's ctx, so that run stops and removes what
	// it created.
	interrupt.Main("the run's schemas, queues and exchange", func(ctx context.Context) error {
		return run(ctx, c)
	})
}

// config is the command line.
type config struct {
	n, delayed, immediate, rounds int
	window                        time.Duration
	pgURL, amqpURL                string
}

// run measures and prints; it removes the schemas, queues and exchange it
// created however it returns.
func run(ctx context.Context, c config) error {
	b, err := newBench(ctx, c.pgURL, c.amqpURL)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	defer b.close()
	fmt.Printf("working in schemas %s_* and on exchange %s, removed at the end\n", b.prefix, b.exchange)

	p50, p99, worst, err := b.lateness(ctx, c.n, c.window)
	if err != nil {
		return fmt.Errorf("lateness run: %w", err)
	}
	fmt.Printf("lateness of %d delayed messages due over %v, due time -> consumer: p50 %v, p99 %v, max %v (target p99 <= 100ms)\n",
		c.n, c.window, p50.Round(time.Millisecond), p99.Round(time.Millisecond), worst.Round(time.Millisecond))

	empty, err := b.schemaWith(ctx, 0)
	if err != nil {
		return fmt.Errorf("empty table: %w", err)
	}
	loaded, err := b.schemaWith(ctx, c.delayed)
	if err != nil {
		return fmt.Errorf("loading Delayed rows: %w", err)
	}
	var without, with []float64
	for round := 1; round <= c.rounds; round++ {
		// Alternate which table goes first; each round starts from the same
		// state (its Succeeded rows are deleted and vacuumed after it).
		first, second := empty, loaded
		if round%2 == 0 {
			first, second = loaded, empty
		}
		rates := map[string]float64{}
		for _, schema := range []string{first, second} {
			r, err := b.dispatchRate(ctx, schema, c.immediate)
			if err != nil {
				return fmt.Errorf("dispatch run: %w", err)
			}
			rates[schema] = r
		}
		r0, r1 := rates[empty], rates[loaded]
		fmt.Printf("round %d: immediate dispatch %6.0f msg/s without Delayed rows, %6.0f msg/s beside %d Delayed rows\n",
			round, r0, r1, c.delayed)
		without, with = append(without, r0), append(with, r1)
	}
	m0, m1 := median(without), median(with)
	fmt.Printf("medians of %d rounds of %d immediate messages: %6.0f msg/s without, %6.0f msg/s with %d Delayed rows = %.0f%% (target >= 90%%)\n",
		c.rounds, c.immediate, m0, m1, c.delayed, 100*m1/m0)
	return nil
}

type bench struct {
	pool     *pgxpool.Pool
	amqpURL  string
	prefix   string
	exchange string
	conn     *amqp.Connection
	schemas  []string
	queues   []string
	quiet    *slog.Logger
}

func newBench(ctx context.Context, pgURL, amqpURL string) (*bench, error) {
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		return nil, err
	}
	suffix := strconv.FormatInt(ids.Token()%1_000_000, 10)
	b := &bench{pool: pool, amqpURL: amqpURL, prefix: "gocap_delaybench_" + suffix, exchange: "gocap.delaybench." + suffix,
		quiet: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if b.conn, err = amqp.Dial(amqpURL); err != nil {
		pool.Close()
		return nil, err
	}
	return b, nil
}

func (b *bench) close() {
	for _, s := range b.schemas {
		cleanup.PostgresSchema(b.pool, s)
	}
	cleanup.RabbitMQ(b.amqpURL, b.exchange, b.queues...)
	b.conn.Close()
	b.pool.Close()
}

// schemaWith migrates a fresh schema and fills its published table with
// delayed rows due in a day, as one INSERT … SELECT.
func (b *bench) schemaWith(ctx context.Context, delayed int) (string, error) {
	schema := fmt.Sprintf("%s_%d", b.prefix, len(b.schemas))
	b.schemas = append(b.schemas, schema)
	if err := postgres.New(b.pool, postgres.Options{Schema: schema}).Migrate(ctx); err != nil {
		return "", err
	}
	if delayed == 0 {
		return schema, nil
	}
	// Ids from a year ago, so they never meet the ids of new messages.
	base := storage.MinIDAt(time.Now().AddDate(-1, 0, 0))
	_, err := b.pool.Exec(ctx, `INSERT INTO `+schema+`.published (id, name, headers, body, status, added, next_attempt_at)
		SELECT $1::bigint + g, 'bench.later', '{}'::jsonb, '\x7b7d'::bytea, 'Delayed', now(), now() + interval '1 day' + g * interval '1 ms'
		FROM generate_series(1, $2::bigint) AS g`, base, delayed)
	if err != nil {
		return "", err
	}
	// Vacuumed now, so that autovacuum does not work on the new rows
	// during a measured round.
	_, err = b.pool.Exec(ctx, "VACUUM ANALYZE "+schema+".published")
	return schema, err
}

// consumer binds a fresh queue to the exchange and returns its deliveries;
// with consume false it only binds it (the messages wait there).
func (b *bench) queue(consume bool) (<-chan amqp.Delivery, error) {
	ch, err := b.conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.ExchangeDeclare(b.exchange, "topic", true, false, false, false, nil); err != nil {
		return nil, err
	}
	q, err := ch.QueueDeclare(b.exchange+".q"+strconv.FormatInt(ids.Token()%1_000_000, 10), true, false, false, false, nil)
	if err != nil {
		return nil, err
	}
	b.queues = append(b.queues, q.Name)
	if err := ch.QueueBind(q.Name, "#", b.exchange, false, nil); err != nil {
		return nil, err
	}
	if !consume {
		return nil, nil
	}
	return ch.Consume(q.Name, "", true, true, false, false, nil)
}

// deleteQueues deletes the queues bound so far.
func (b *bench) deleteQueues() {
	if ch, err := b.conn.Channel(); err == nil {
		for _, q := range b.queues {
			ch.QueueDelete(q, false, false, false)
		}
		ch.Close()
	}
	b.queues = nil
}

func (b *bench) outbox(schema string) (*outbox.Outbox[pgx.Tx], func(), error) {
	tr, err := rabbitmq.New(rabbitmq.Config{URL: b.amqpURL, Exchange: b.exchange, Logger: b.quiet})
	if err != nil {
		return nil, nil, err
	}
	ob, err := outbox.New(postgres.New(b.pool, postgres.Options{Schema: schema, Logger: b.quiet}), tr, outbox.Options{Logger: b.quiet})
	if err != nil {
		tr.Close()
		return nil, nil, err
	}
	return ob, func() { tr.Close() }, nil
}

// lateness publishes n messages due at random times within window, from
// 8 goroutines, and measures each one's arrival after its due time.
func (b *bench) lateness(ctx context.Context, n int, window time.Duration) (p50, p99, worst time.Duration, err error) {
	schema, err := b.schemaWith(ctx, 0)
	if err != nil {
		return 0, 0, 0, err
	}
	got, err := b.queue(true)
	if err != nil {
		return 0, 0, 0, err
	}
	ob, done, err := b.outbox(schema)
	if err != nil {
		return 0, 0, 0, err
	}
	defer done()
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ob.Run(runCtx)
	}()
	defer func() { stop(); wg.Wait() }()

	late := make([]time.Duration, 0, n)
	recv := make(chan error, 1)
	// The receiver stops when lateness returns (an error, an interrupt):
	// it is waited for, so that late is not written after.
	recvCtx, stopRecv := context.WithCancel(ctx)
	var receiving sync.WaitGroup
	receiving.Add(1)
	defer func() { stopRecv(); receiving.Wait() }()
	go func() {
		defer receiving.Done()
		timeout := time.After(window + time.Minute)
		for len(late) < n {
			select {
			case <-recvCtx.Done():
				recv <- context.Cause(recvCtx)
				return
			case m := <-got:
				at := time.Now()
				due, ok := wire.ParseSentTime(fmt.Sprint(m.Headers[wire.SentTime]))
				if !ok {
					recv <- fmt.Errorf("message without a readable cap-senttime: %v", m.Headers)
					return
				}
				late = append(late, at.Sub(due))
			case <-timeout:
				recv <- fmt.Errorf("only %d of %d delayed messages arrived", len(late), n)
				return
			}
		}
		recv <- nil
	}()
	start := time.Now().Add(3 * time.Second) // every due time after the publishing
	fmt.Printf("lateness run: publishing %d messages due over %v from %s\n", n, window, start.Format(time.TimeOnly))
	var pub sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		pub.Add(1)
		go func() {
			defer pub.Done()
			for i := w; i < n; i += 8 {
				due := start.Add(time.Duration(rand.Int64N(int64(window))))
				err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
					return publishDue(ctx, ob, tx, i, due)
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	pub.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, 0, err
	}
	if time.Now().After(start) {
		fmt.Printf("  (publishing took longer than 3 s: some messages were due before they were committed)\n")
	}
	if err := <-recv; err != nil {
		return 0, 0, 0, err
	}
	receiving.Wait()
	b.deleteQueues()
	slices.Sort(late)
	return late[len(late)/2], late[len(late)*99/100], late[len(late)-1], nil
}

// publishDue publishes the lateness run's message i, due at due, in tx.
func publishDue(ctx context.Context, ob *outbox.Outbox[pgx.Tx], tx pgx.Tx, i int, due time.Time) error {
	_, err := ob.Publish(ctx, tx, "bench.delayed", map[string]int{"i": i}, outbox.WithDeliverAt(due))
	return err
}

// dispatchRate commits n immediate messages in schema while no processor
// runs, then starts one and measures until none is Scheduled.
func (b *bench) dispatchRate(ctx context.Context, schema string, n int) (float64, error) {
	if _, err := b.queue(false); err != nil {
		return 0, err
	}
	// A queue filling round after round would slow RabbitMQ down: each
	// round gets a fresh one, deleted after it.
	defer b.deleteQueues()
	ob, done, err := b.outbox(schema)
	if err != nil {
		return 0, err
	}
	defer done()
	payload := map[string]any{"id": 12345, "amount": "9.90"}
	for i := 0; i < n; i += 100 {
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			for range min(100, n-i) {
				if _, err := ob.Publish(ctx, tx, "bench.now", payload); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		ob.Run(runCtx)
	}()
	defer func() { stop(); wg.Wait() }()
	pending := "SELECT EXISTS (SELECT 1 FROM " + schema + ".published WHERE status = 'Scheduled')"
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var more bool
		if err := b.pool.QueryRow(ctx, pending).Scan(&more); err != nil {
			return 0, err
		}
		if !more {
			rate := float64(n) / time.Since(start).Seconds()
			stop()
			wg.Wait()
			// Back to the state before the round, for the next one.
			if _, err := b.pool.Exec(ctx, "DELETE FROM "+schema+".published WHERE status = 'Succeeded'"); err != nil {
				return 0, err
			}
			_, err := b.pool.Exec(ctx, "VACUUM ANALYZE "+schema+".published")
			return rate, err
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("messages still Scheduled after 5 minutes")
		}
		if err := interrupt.Sleep(ctx, 20*time.Millisecond); err != nil {
			return 0, err
		}
	}
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
