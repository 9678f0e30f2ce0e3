// Command throughput measures gocap's publish side on the machine's real
// PostgreSQL and RabbitMQ and prints, in one run:
//
//   - the raw amqp091-go publish rate with pipelined publisher confirms,
//     twice: with light messages (default exchange, two headers), and with
//     exactly the messages gocap sends for a Publish (topic exchange,
//     mandatory flag, CAP's headers, message id and timestamp), the
//     ceiling for any CAP-compatible outbox on this broker;
//   - gocap's dispatch throughput: committed rows sent, confirmed by
//     RabbitMQ and marked Succeeded, per second, and the CPU this process
//     used for it;
//
// Every throughput run publishes persistent messages to a fresh durable
// queue with no consumer, so RabbitMQ does the same work in each.
//   - commit-to-broker latency percentiles at a steady publish rate, measured
//     from the application's commit to the arrival at a consumer.
//
// Usage:
//
//	go run ./examples/throughput [-n 20000] [-rounds 3] [-rate 1000] [-duration 10s] [-db postgres|mysql] [-otel] [-driver pgx|sql]
//
// With -otel, each round also runs the dispatch with the OpenTelemetry SDK
// recording every span (AlwaysSample, a batch span processor, an exporter
// that drops the batches) and every metric, with W3C trace-context
// propagation, alternating which of the two runs goes first, and the
// report compares their medians. The other runs use the global providers,
// which without an SDK installed are no-ops.
//
// With -db mysql the dispatch rounds run on MySQL/MariaDB (the latency run
// stays on PostgreSQL). With -driver sql it runs only latency runs, -rounds
// pairs of them, in alternating order: PostgreSQL with the pgx.Tx driver
// (postgres.New) beside the *sql.Tx one (postgres.NewSQL, pgx's stdlib
// driver), each woken by the NOTIFY committed with the publish (see
// sqldriver.go). GOCAP_POSTGRES_URL, GOCAP_MYSQL_DSN and
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
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gocap/gocap/examples/internal/cpuuse"
	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/rabbitmq"
)

var (
	claimBatch, sendConcurrency int
	profilePath                 string
	cpuFlag                     bool // -cpu
)

// telemetry is the OpenTelemetry SDK of an -otel run: every span recorded
// and handed to a batch span processor whose exporter drops it, every
// metric aggregated.
type telemetry struct {
	tp *sdktrace.TracerProvider
	mp *sdkmetric.MeterProvider
}

func newTelemetry() *telemetry {
	return &telemetry{
		tp: sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithBatcher(tracetest.NewNoopExporter())),
		mp: sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
	}
}

func (t *telemetry) options(o outbox.Options) outbox.Options {
	if t != nil {
		o.TracerProvider, o.MeterProvider = t.tp, t.mp
		o.Propagator = propagation.TraceContext{}
	}
	return o
}

func (t *telemetry) shutdown() {
	if t != nil {
		t.tp.Shutdown(context.Background())
		t.mp.Shutdown(context.Background())
	}
}

func main() {
	n := flag.Int("n", 20000, "messages for the throughput runs")
	rounds := flag.Int("rounds", 3, "throughput rounds (medians are reported)")
	rate := flag.Int("rate", 1000, "publish rate (msg/s) for the latency run")
	dur := flag.Duration("duration", 10*time.Second, "length of the latency run")
	flag.IntVar(&claimBatch, "batch", 0, "Options.ClaimBatch (0 = default)")
	flag.IntVar(&sendConcurrency, "concurrency", 0, "Options.SendConcurrency (0 = default)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the dispatch run to this file")
	flag.BoolVar(&cpuFlag, "cpu", false, "print the CPU time per message of the raw same-messages and dispatch runs (machine, databases, RabbitMQ, this process; Linux)")
	withOtel := flag.Bool("otel", false, "also run each dispatch round with the OpenTelemetry SDK recording every span")
	db := flag.String("db", "postgres", "database of the dispatch rounds: postgres or mysql")
	driver := flag.String("driver", "pgx", "pgx: as above; sql: only latency runs, PostgreSQL's pgx.Tx driver beside its *sql.Tx one")
	flag.Parse()
	profilePath = *cpuprofile
	pgURL := env("GOCAP_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	amqpURL := env("GOCAP_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
	ctx := context.Background()

	b, err := newBench(ctx, pgURL, amqpURL)
	check("setup", err)
	defer b.close()
	if *driver == "sql" {
		check("latency runs", b.latencyByDriver(ctx, *rate, *dur, *rounds))
		return
	}
	dispatchRate := b.dispatchRate
	switch *db {
	case "postgres":
	case "mysql":
		m, err := newMySQLBench(b, env("GOCAP_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/test"))
		check("mysql setup", err)
		defer m.close()
		dispatchRate = m.dispatchRate
	default:
		check("flags", fmt.Errorf("-db %q: postgres or mysql", *db))
	}

	// The broker's speed drifts on a small machine: alternate the runs and
	// compare medians.
	var lights, raws, disps, pubs, odisps, opubs []float64
	for round := 1; round <= *rounds; round++ {
		light, err := rawConfirmRate(ctx, amqpURL, "", *n)
		check("raw amqp091 run", err)
		rawCPU := cpuWindow("raw same messages:")
		raw, err := rawConfirmRate(ctx, amqpURL, b.exchange, *n)
		check("raw amqp091 run", err)
		rawCPU(*n)
		// With -otel, the run with the SDK goes first in even rounds.
		order := []bool{false}
		if *withOtel {
			order = []bool{round%2 == 0, round%2 != 0}
		}
		for _, sdk := range order {
			disp, pub, err := dispatchRate(ctx, *n, sdk)
			check("dispatch run", err)
			if sdk {
				odisps, opubs = append(odisps, disp), append(opubs, pub)
				fmt.Printf("round %d: gocap dispatch with the OpenTelemetry SDK %6.0f msg/s (publish %6.0f msg/s)\n", round, disp, pub)
			} else {
				disps, pubs = append(disps, disp), append(pubs, pub)
				fmt.Printf("round %d: raw light %6.0f msg/s, raw same %6.0f msg/s, gocap dispatch %6.0f msg/s (publish %6.0f msg/s)\n",
					round, light, raw, disp, pub)
			}
		}
		lights, raws = append(lights, light), append(raws, raw)
	}
	light, raw, disp := median(lights), median(raws), median(disps)
	if *withOtel {
		odisp, pub, opub := median(odisps), median(pubs), median(opubs)
		fmt.Printf("OpenTelemetry, medians of %d rounds of %d messages (runs alternated):\n", *rounds, *n)
		fmt.Printf("  dispatch: no SDK (global no-op providers) %6.0f msg/s, SDK recording every span %6.0f msg/s: %+.1f%%\n",
			disp, odisp, 100*(odisp-disp)/disp)
		fmt.Printf("  publish (100 per transaction): no SDK %6.0f msg/s, SDK %6.0f msg/s: %+.1f%%\n", pub, opub, 100*(opub-pub)/pub)
	}
	fmt.Printf("medians of %d rounds of %d messages, all persistent to a durable queue, up to 256 confirms outstanding:\n", *rounds, *n)
	fmt.Printf("  raw amqp091-go, light messages (default exchange, 2 headers): %6.0f msg/s\n", light)
	fmt.Printf("  raw amqp091-go, the messages gocap sends (topic exchange, mandatory, CAP headers): %6.0f msg/s\n", raw)
	fmt.Printf("  gocap dispatch (%s), commit -> confirmed -> Succeeded: %6.0f msg/s = %.0f%% of raw same messages (%.0f%% of light)\n",
		*db, disp, 100*disp/raw, 100*disp/light)

	p50, p99, count, err := b.latency(ctx, "pgx", *rate, *dur)
	check("latency run", err)
	fmt.Printf("commit -> broker -> consumer latency at %d msg/s over %v (%d msgs): p50 %v, p99 %v\n",
		*rate, *dur, count, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond))
}

// servers are the processes whose CPU time -cpu shows.
var servers = []string{"postgres", "mariadbd", "beam.smp"}

// cpuWindow starts measuring, for -cpu, the CPU time of a run; the
// function it returns prints it per message of n, under label. Without
// -cpu both do nothing.
func cpuWindow(label string) (done func(n int)) {
	if !cpuFlag {
		return func(int) {}
	}
	before, err := cpuuse.Read(servers...)
	check("-cpu", err)
	return func(n int) {
		after, err := cpuuse.Read(servers...)
		check("-cpu", err)
		fmt.Printf("  %s %s\n", label, cpuuse.PerMessage(before, after, n, servers...))
	}
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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

func check(what string, err error) {
	if err != nil {
		log.Fatalf("%s: %v", what, err)
	}
}

type bench struct {
	pool     *pgxpool.Pool
	schema   string
	exchange string
	amqpURL  string
	conn     *amqp.Connection
	queues   []string
	runs     int
}

func newBench(ctx context.Context, pgURL, amqpURL string) (*bench, error) {
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		return nil, err
	}
	suffix := strconv.FormatInt(ids.Token()%1_000_000, 10)
	b := &bench{pool: pool, schema: "gocap_bench_" + suffix, exchange: "gocap.bench." + suffix, amqpURL: amqpURL}
	b.conn, err = amqp.Dial(amqpURL)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (b *bench) deleteQueues() {
	if ch, err := b.conn.Channel(); err == nil {
		for _, q := range b.queues {
			ch.QueueDelete(q, false, false, false)
		}
		ch.Close()
	}
	b.queues = nil
}

func (b *bench) close() {
	for i := 1; i <= b.runs; i++ {
		b.pool.Exec(context.Background(), "drop schema if exists "+b.schema+"_"+strconv.Itoa(i)+" cascade")
	}
	if ch, err := b.conn.Channel(); err == nil {
		for _, q := range b.queues {
			ch.QueueDelete(q, false, false, false)
		}
		ch.ExchangeDelete(b.exchange, false, false)
	}
	b.conn.Close()
	b.pool.Close()
}

// bindQueue binds a fresh durable queue, like a consumer group's, to the
// exchange and returns its name; close deletes it.
func (b *bench) bindQueue(ch *amqp.Channel) (string, error) {
	if err := ch.ExchangeDeclare(b.exchange, "topic", true, false, false, false, nil); err != nil {
		return "", err
	}
	q, err := ch.QueueDeclare(b.exchange+".q"+strconv.FormatInt(ids.Token()%1_000_000, 10), true, false, false, false, nil)
	if err != nil {
		return "", err
	}
	b.queues = append(b.queues, q.Name)
	if err := ch.QueueBind(q.Name, "#", b.exchange, false, nil); err != nil {
		return "", err
	}
	return q.Name, nil
}

// consumer binds a fresh queue to the exchange and returns its deliveries.
func (b *bench) consumer() (<-chan amqp.Delivery, error) {
	ch, err := b.conn.Channel()
	if err != nil {
		return nil, err
	}
	q, err := b.bindQueue(ch)
	if err != nil {
		return nil, err
	}
	return ch.Consume(q, "", true, true, false, false, nil)
}

func (b *bench) outbox(ctx context.Context, tel *telemetry) (*outbox.Outbox[pgx.Tx], transport.Transport, error) {
	b.runs++
	d := postgres.New(b.pool, postgres.Options{Schema: b.schema + "_" + strconv.Itoa(b.runs)})
	if err := d.Migrate(ctx); err != nil {
		return nil, nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr, err := rabbitmq.New(rabbitmq.Config{URL: b.amqpURL, Exchange: b.exchange, Logger: quiet})
	if err != nil {
		return nil, nil, err
	}
	ob, err := outbox.New(d, tr, tel.options(outbox.Options{Logger: quiet, ClaimBatch: claimBatch, SendConcurrency: sendConcurrency}))
	return ob, tr, err
}

// dispatchRate commits n messages while no processor runs, then starts one
// and measures until every row is Succeeded; it returns the dispatch rate
// and the rate of the publishes. With sdk, the outbox records its spans
// and metrics with the OpenTelemetry SDK.
func (b *bench) dispatchRate(ctx context.Context, n int, sdk bool) (float64, float64, error) {
	var tel *telemetry
	if sdk {
		tel = newTelemetry()
		defer tel.shutdown()
	}
	// A bound queue, so nothing is unroutable, and no consumer, as in the
	// raw run: the messages wait in the queue. Deleted after the round.
	ch, err := b.conn.Channel()
	if err != nil {
		return 0, 0, err
	}
	defer ch.Close()
	if _, err := b.bindQueue(ch); err != nil {
		return 0, 0, err
	}
	defer b.deleteQueues()
	ob, tr, err := b.outbox(ctx, tel)
	if err != nil {
		return 0, 0, err
	}
	defer tr.Close()
	schema := b.schema + "_" + strconv.Itoa(b.runs)
	payload := map[string]any{"id": 12345, "amount": "9.90", "currency": "EUR"}
	const perTx = 100
	pubStart := time.Now()
	for i := 0; i < n; i += perTx {
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			for j := i; j < min(i+perTx, n); j++ {
				if _, err := ob.Publish(ctx, tx, "bench.dispatch", payload); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, 0, err
		}
	}
	pubRate := float64(n) / time.Since(pubStart).Seconds()
	if profilePath != "" {
		f, err := os.Create(profilePath)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, 0, err
		}
		defer pprof.StopCPUProfile()
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	cpu0 := processCPU()
	cpuDone := cpuWindow("dispatch (postgres):")
	start := time.Now()
	go func() {
		defer wg.Done()
		ob.Run(runCtx)
	}()
	// Poll with a query the partial index of Scheduled rows answers in
	// constant time: a count over the whole table would itself load the
	// database being measured.
	pending := "SELECT EXISTS (SELECT 1 FROM " + schema + ".published WHERE status = 'Scheduled')"
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var more bool
		if err := b.pool.QueryRow(ctx, pending).Scan(&more); err != nil {
			stop()
			return 0, 0, err
		}
		if !more {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return 0, 0, fmt.Errorf("messages still Scheduled after 5 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	cpuDone(n)
	stop()
	wg.Wait()
	label := "dispatch"
	if sdk {
		label = "dispatch with the SDK"
	}
	fmt.Printf("  %s: this process used %.0f%% of a core, %v of CPU per message\n",
		label, 100*cpu.Seconds()/elapsed.Seconds(), (cpu / time.Duration(n)).Round(100*time.Nanosecond))
	c, err := ob.Store().Counts(ctx, storage.Published)
	if err != nil {
		return 0, 0, err
	}
	if c[storage.StatusSucceeded] != int64(n) {
		return 0, 0, fmt.Errorf("%d of %d messages Succeeded (counts %v)", c[storage.StatusSucceeded], n, c)
	}
	return float64(n) / elapsed.Seconds(), pubRate, nil
}

// latency publishes at rate msg/s, one transaction each, with the driver
// named (see latencyOutbox), and measures from each commit to the
// message's arrival at a consumer.
func (b *bench) latency(ctx context.Context, driver string, rate int, d time.Duration) (p50, p99 time.Duration, count int, err error) {
	got, err := b.consumer()
	if err != nil {
		return 0, 0, 0, err
	}
	publish, stop, err := b.latencyOutbox(ctx, driver)
	if err != nil {
		return 0, 0, 0, err
	}
	defer stop()
	time.Sleep(200 * time.Millisecond) // let the listener start

	// Arrivals and commits are recorded separately and joined at the end: a
	// message may arrive before its publisher has noted the commit time.
	committed := make(map[string]time.Time, rate*int(d.Seconds()))
	arrived := make(map[string]time.Time, len(committed))
	total := int(d.Seconds() * float64(rate))
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		timeout := time.After(d + 30*time.Second)
		for len(arrived) < total {
			select {
			case m := <-got:
				arrived[fmt.Sprint(m.Headers["cap-msg-id"])] = time.Now()
			case <-timeout:
				return
			}
		}
	}()
	payload := map[string]any{"id": 12345, "amount": "9.90"}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for range total {
		<-tick.C
		id, err := publish(payload)
		if err != nil {
			return 0, 0, 0, err
		}
		committed[strconv.FormatInt(id, 10)] = time.Now()
	}
	<-recvDone
	lat := make([]time.Duration, 0, total)
	for id, c := range committed {
		if a, ok := arrived[id]; ok {
			lat = append(lat, max(a.Sub(c), 0))
		}
	}
	if len(lat) < total {
		return 0, 0, len(lat), fmt.Errorf("only %d of %d messages arrived", len(lat), total)
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100], len(lat), nil
}
