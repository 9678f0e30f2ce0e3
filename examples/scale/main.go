// Command scale measures how gocap holds up as its tables grow, on the
// machine's real PostgreSQL and RabbitMQ, and prints, in one run:
//
//   - (a) the dispatch rate of -immediate messages (20,000) on an empty
//     published table and on one holding -rows (10,000,000) Succeeded
//     rows, made with one INSERT … SELECT generate_series and vacuumed;
//     alternated rounds, medians, ratio (target: within 10%);
//   - (c) the time of the dashboard's counts on that table with 1,000
//     rows each Scheduled, Delayed and Failed added (target < 100 ms):
//     storage.CountsOf (the driver's BoundedCounts, whose Succeeded
//     figure is PostgreSQL's estimate on such a table), against
//     Store.Counts, which counts every row exactly;
//   - (b) the dispatch rate while the cleaner deletes -expired (1,000,000)
//     expired rows (expires_at in the past, CleanInterval 1 s), against
//     the same table with the rows not yet expired; alternated rounds,
//     medians, ratio (target >= 80%), and how many expired rows the
//     cleaner had deleted when the dispatch was done;
//   - (d) the peak RSS of this process (VmHWM, reset before each phase)
//     while one processor dispatches a backlog of -backlog (1,000,000)
//     Scheduled rows, and while one subscriber receives those messages
//     from its queue until every received row is Succeeded (target
//     < 200 MB each), with the rates;
//   - (e), only when asked (-parts e), on a server with autovacuum on:
//     beside -rows Succeeded rows, publishers and one processor churn
//     messages for -churn (3 min), first with the server's autovacuum
//     defaults on the published table, then with the parameters Migrate
//     sets (the other way round with -gocap-first); every -sample (10 s) it prints the table's dead rows and
//     autovacuum count and the buffers of one claim (EXPLAIN ANALYZE,
//     rolled back), then a summary of both runs.
//
// Every dispatch round starts from the same state: its rows are deleted
// and the table vacuumed after it. -parts picks some of a,b,c,d (c alone
// fills the large table without dispatching). Every schema, queue and the exchange it created are deleted
// at exit, also after an error or Ctrl-C.
//
// Usage:
//
//	go run ./examples/scale [-rows 10000000] [-expired 1000000] [-immediate 20000] [-rounds 3] [-backlog 1000000] [-parts abcd] [-churn 3m] [-sample 10s]
//
// A quicker run: -rows 2000000 -backlog 200000. GOCAP_POSTGRES_URL and
// GOCAP_AMQP_URL override the local defaults.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport/rabbitmq"
	"github.com/gocap/gocap/wire"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type config struct {
	rows, expired, immediate, rounds, backlog int
	parts                                     string
	timeout, churn, sample                    time.Duration
	gocapFirst                                bool
}

func main() {
	var c config
	flag.IntVar(&c.rows, "rows", 10_000_000, "Succeeded rows of the large table (a, c)")
	flag.IntVar(&c.expired, "expired", 1_000_000, "expired rows for the cleaner (b)")
	flag.IntVar(&c.immediate, "immediate", 20000, "messages per dispatch round (a, b)")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds of each comparison (medians are reported)")
	flag.IntVar(&c.backlog, "backlog", 1_000_000, "backlog dispatched, then received, for the peak RSS (d)")
	flag.StringVar(&c.parts, "parts", "abcd", "parts to run: a, b, c, d, e (e is not in the default: it needs autovacuum on)")
	flag.DurationVar(&c.churn, "churn", 3*time.Minute, "length of each churn run (e)")
	flag.DurationVar(&c.sample, "sample", 10*time.Second, "sampling interval of the churn runs (e)")
	flag.BoolVar(&c.gocapFirst, "gocap-first", false, "run (e) with gocap's parameters first, then with the server's defaults")
	flag.DurationVar(&c.timeout, "timeout", 30*time.Minute, "longest time one dispatch or receive may take")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, c); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, c config) error {
	b, err := newBench(ctx)
	if err != nil {
		return err
	}
	defer b.close()
	b.timeout = c.timeout
	if strings.ContainsAny(c.parts, "ac") {
		if err := b.large(ctx, c); err != nil {
			return fmt.Errorf("(a, c) large table: %w", err)
		}
	}
	if strings.Contains(c.parts, "b") {
		if err := b.cleaning(ctx, c); err != nil {
			return fmt.Errorf("(b) cleaner: %w", err)
		}
	}
	if strings.Contains(c.parts, "d") {
		if err := b.memory(ctx, c.backlog); err != nil {
			return fmt.Errorf("(d) peak RSS: %w", err)
		}
	}
	if strings.Contains(c.parts, "e") {
		if err := b.churn(ctx, c); err != nil {
			return fmt.Errorf("(e) autovacuum under churn: %w", err)
		}
	}
	return nil
}

type bench struct {
	pool     *pgxpool.Pool
	conn     *amqp.Connection
	amqpURL  string
	prefix   string
	exchange string
	timeout  time.Duration
	schemas  []string
	queues   []string
}

func newBench(ctx context.Context) (*bench, error) {
	cfg, err := pgxpool.ParseConfig(env("GOCAP_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"))
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 16
	suffix := strconv.FormatInt(ids.Token()%1_000_000, 10)
	b := &bench{amqpURL: env("GOCAP_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
		prefix: "gocap_scalebench_" + suffix, exchange: "gocap.scalebench." + suffix}
	if b.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, err
	}
	if b.conn, err = amqp.Dial(b.amqpURL); err != nil {
		b.pool.Close()
		return nil, err
	}
	return b, nil
}

func (b *bench) close() {
	for _, s := range b.schemas {
		b.pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+s+" CASCADE")
	}
	if ch, err := b.conn.Channel(); err == nil {
		for _, q := range b.queues {
			ch.QueueDelete(q, false, false, false)
		}
		ch.ExchangeDelete(b.exchange, false, false)
		ch.Close()
	}
	b.conn.Close()
	b.pool.Close()
}

// schema migrates a fresh schema and returns its name.
func (b *bench) schema(ctx context.Context) (string, error) {
	s := fmt.Sprintf("%s_%d", b.prefix, len(b.schemas)+1)
	b.schemas = append(b.schemas, s)
	return s, postgres.New(b.pool, postgres.Options{Schema: s, Logger: quiet}).Migrate(ctx)
}

// fill adds n rows of the given status and expiry (a SQL expression),
// with CAP's headers, in one INSERT … SELECT, and vacuums the table. Their
// ids are from a year ago, so they never meet the ids of new messages.
func (b *bench) fill(ctx context.Context, schema string, n int, name, status, expires string) error {
	start := time.Now()
	base := storage.MinIDAt(time.Now().AddDate(-1, 0, 0))
	_, err := b.pool.Exec(ctx, `INSERT INTO `+schema+`.published
		(id, name, headers, body, status, added, next_attempt_at, expires_at)
		SELECT $1::bigint + g, $3::text,
			jsonb_build_object($4::text, ($1::bigint + g)::text, $5::text, $3::text, $6::text, ($1::bigint + g)::text,
				$7::text, '0', $8::text, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), $9::text, 'map[string]interface {}'),
			convert_to('{"amount":"9.90","currency":"EUR","id":12345}', 'UTF8'), $10::text, now(), now(), `+expires+`
		FROM generate_series(1, $2::bigint) AS g`,
		base, n, name, wire.MsgID, wire.MsgName, wire.CorrelationID, wire.CorrelationSeq, wire.SentTime, wire.MsgType, status)
	if err != nil {
		return err
	}
	if err := b.vacuum(ctx, schema); err != nil {
		return err
	}
	fmt.Printf("  (%s: %d %s rows added and vacuumed in %v)\n", schema, n, status, time.Since(start).Round(time.Second))
	return nil
}

// vacuum vacuums the published table, so that autovacuum does not work on
// it during a measurement.
func (b *bench) vacuum(ctx context.Context, schema string) error {
	_, err := b.pool.Exec(ctx, "VACUUM ANALYZE "+schema+".published")
	return err
}

// queue declares a fresh durable queue bound to the exchange for pattern;
// dispatched messages wait in it.
func (b *bench) queue(name, pattern string) error {
	ch, err := b.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.ExchangeDeclare(b.exchange, "topic", true, false, false, false, nil); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		return err
	}
	b.queues = append(b.queues, name)
	return ch.QueueBind(name, pattern, b.exchange, false, nil)
}

func (b *bench) deleteQueue(name string) {
	if ch, err := b.conn.Channel(); err == nil {
		if _, err := ch.QueueDelete(name, false, false, false); err == nil {
			b.queues = slices.DeleteFunc(b.queues, func(s string) bool { return s == name })
		}
		ch.Close()
	}
}

// running starts one processor on schema with opts (and queuePrefix for
// its subscriptions, set by subscribe); stop ends it and closes its
// transport.
func (b *bench) running(ctx context.Context, schema, queuePrefix string, opts outbox.Options,
	subscribe func(*outbox.Outbox[pgx.Tx]) error) (ob *outbox.Outbox[pgx.Tx], stop func(), err error) {
	tr, err := rabbitmq.New(rabbitmq.Config{URL: b.amqpURL, Exchange: b.exchange, QueuePrefix: queuePrefix, Logger: quiet})
	if err != nil {
		return nil, nil, err
	}
	opts.Logger = quiet
	ob, err = outbox.New(postgres.New(b.pool, postgres.Options{Schema: schema, Logger: quiet}), tr, opts)
	if err == nil && subscribe != nil {
		err = subscribe(ob)
	}
	if err != nil {
		tr.Close()
		return nil, nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ob.Run(runCtx)
	}()
	return ob, func() { cancel(); wg.Wait(); ob.Close(); tr.Close() }, nil
}

// waitNone polls, with a query a partial index answers at once, until
// table has no pending row, and returns the time it took since start.
func (b *bench) waitNone(ctx context.Context, schema, table string, start time.Time) (time.Duration, error) {
	q := "SELECT EXISTS (SELECT 1 FROM " + schema + "." + table + " WHERE status IN ('Scheduled', 'Delayed'))"
	deadline := start.Add(b.timeout)
	for {
		var more bool
		if err := b.pool.QueryRow(ctx, q).Scan(&more); err != nil {
			return 0, err
		}
		if !more {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s rows still pending after %v", table, b.timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dispatchRate commits n immediate messages in schema while no processor
// runs, then starts one with opts and measures until none is Scheduled;
// done runs then, before the processor stops. The round's rows are then
// deleted and the table vacuumed.
func (b *bench) dispatchRate(ctx context.Context, schema string, n int, opts outbox.Options, done func() error) (float64, error) {
	q := schema + ".q" + strconv.FormatInt(ids.Token()%1_000_000, 10)
	if err := b.queue(q, "bench.now"); err != nil {
		return 0, err
	}
	defer b.deleteQueue(q)
	// The processor is not running yet: it starts with the first commit's
	// notification at the latest, so the committing goes first, outside.
	tr, err := rabbitmq.New(rabbitmq.Config{URL: b.amqpURL, Exchange: b.exchange, Logger: quiet})
	if err != nil {
		return 0, err
	}
	pub, err := outbox.New(postgres.New(b.pool, postgres.Options{Schema: schema, Logger: quiet}), tr, outbox.Options{Logger: quiet})
	if err != nil {
		tr.Close()
		return 0, err
	}
	first := storage.MinIDAt(time.Now().Add(-time.Second))
	payload := map[string]any{"id": 12345, "amount": "9.90", "currency": "EUR"}
	for i := 0; i < n; i += 100 {
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			for range min(100, n-i) {
				if _, err := pub.Publish(ctx, tx, "bench.now", payload); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tr.Close()
			return 0, err
		}
	}
	pub.Close()
	tr.Close()
	start := time.Now()
	_, stop, err := b.running(ctx, schema, "", opts, nil)
	if err != nil {
		return 0, err
	}
	elapsed, err := b.waitNone(ctx, schema, "published", start)
	if err == nil && done != nil {
		err = done()
	}
	stop()
	if err != nil {
		return 0, err
	}
	if _, err := b.pool.Exec(ctx, "DELETE FROM "+schema+".published WHERE id >= $1", first); err != nil {
		return 0, err
	}
	return float64(n) / elapsed.Seconds(), b.vacuum(ctx, schema)
}

// large measures (a) and, on the same table, (c).
func (b *bench) large(ctx context.Context, c config) error {
	empty, err := b.schema(ctx)
	if err != nil {
		return err
	}
	loaded, err := b.schema(ctx)
	if err != nil {
		return err
	}
	if err := b.fill(ctx, loaded, c.rows, "bench.done", "Succeeded", "now() + interval '1 day'"); err != nil {
		return err
	}
	if strings.Contains(c.parts, "a") {
		if err := b.dispatchLarge(ctx, c, empty, loaded); err != nil {
			return err
		}
	}
	if strings.Contains(c.parts, "c") {
		return b.counts(ctx, c, loaded)
	}
	return nil
}

// dispatchLarge measures (a): dispatch rates on the empty and the loaded
// schema, in alternated rounds.
func (b *bench) dispatchLarge(ctx context.Context, c config, empty, loaded string) error {
	var without, with []float64
	for round := 1; round <= c.rounds; round++ {
		order := []string{empty, loaded}
		if round%2 == 0 {
			order = []string{loaded, empty}
		}
		rates := map[string]float64{}
		for _, s := range order {
			r, err := b.dispatchRate(ctx, s, c.immediate, outbox.Options{}, nil)
			if err != nil {
				return err
			}
			rates[s] = r
		}
		fmt.Printf("(a) round %d: dispatch %6.0f msg/s on an empty table, %6.0f msg/s beside %d Succeeded rows\n",
			round, rates[empty], rates[loaded], c.rows)
		without, with = append(without, rates[empty]), append(with, rates[loaded])
	}
	m0, m1 := median(without), median(with)
	fmt.Printf("(a) medians of %d rounds of %d messages: %6.0f msg/s empty, %6.0f msg/s beside %d Succeeded rows = %.0f%% (target: within 10%%)\n",
		c.rounds, c.immediate, m0, m1, c.rows, 100*m1/m0)
	return nil
}

// counts measures (c) on the loaded schema, after adding 1,000 rows each
// Scheduled (due in a day), Delayed and Failed, and vacuuming.
func (b *bench) counts(ctx context.Context, c config, loaded string) error {
	for _, s := range []struct{ status, expires string }{
		{"Scheduled", "NULL"}, {"Delayed", "NULL"}, {"Failed", "now() + interval '1 day'"},
	} {
		if _, err := b.pool.Exec(ctx, `INSERT INTO `+loaded+`.published (id, name, headers, body, status, added, next_attempt_at, expires_at)
			SELECT $1::bigint + g, 'bench.other', '{}', '', $2::text, now(), now() + interval '1 day', `+s.expires+`
			FROM generate_series(1, 1000) AS g`, storage.MinIDAt(time.Now().AddDate(-2, 0, 0))+int64(len(s.status))*10_000, s.status); err != nil {
			return err
		}
	}
	if err := b.vacuum(ctx, loaded); err != nil {
		return err
	}
	store := postgres.New(b.pool, postgres.Options{Schema: loaded, Logger: quiet})
	for _, m := range []struct {
		name  string
		count func() (any, error)
	}{
		{"storage.CountsOf (BoundedCounts)", func() (any, error) { return storage.CountsOf(ctx, store, storage.Published) }},
		{"Store.Counts (exact)", func() (any, error) { return store.Counts(ctx, storage.Published) }},
	} {
		var times []float64
		var counts any
		for range 5 {
			start := time.Now()
			var err error
			if counts, err = m.count(); err != nil {
				return err
			}
			times = append(times, float64(time.Since(start)))
		}
		slices.Sort(times)
		fmt.Printf("(c) %s of %d rows: median %v, fastest %v, slowest %v of 5 calls (target < 100ms); %+v\n",
			m.name, c.rows+3000, time.Duration(median(times)).Round(10*time.Microsecond), time.Duration(times[0]).Round(10*time.Microsecond),
			time.Duration(times[len(times)-1]).Round(10*time.Microsecond), counts)
	}
	return nil
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
