// Command sustained measures gocap under a sustained publish load on the
// machine's real PostgreSQL and RabbitMQ, beside the dual write it
// replaces, and prints, in one run:
//
//   - gocap: 16 goroutines (-workers) each commit, as fast as they can,
//     transactions of one business INSERT and one ob.Publish, while one
//     processor (ob.Run, default options) dispatches to RabbitMQ, for a
//     fixed time (-duration, 20 s by default): committed msg/s, dispatched
//     msg/s (arrivals at a plain consumer within the same time), and the
//     latency from each commit to the message's arrival at the consumer,
//     p50 and p99 (messages still on their way when the time is up are
//     waited for, and count with their full latency);
//   - dual write: the same goroutines commit the same INSERT, then publish
//     the message with plain amqp091-go on a confirm-mode channel of their
//     own and wait for its confirm: msg/s, arrivals at the same plain
//     consumer within the same time, and commit -> consumer p50 and p99,
//     measured as for gocap (and commit -> confirmed p50 and p99 beside).
//
// Both send CAP's headers, persistent, mandatory, to a fresh durable queue
// with a consumer, per run; each run has a fresh schema with an orders
// table. The two alternate their order round after round (-rounds, 3 by
// default); the program prints each round, then the medians and the
// ratios (targets: gocap's sustained rate >= the dual write's, its p99 <=
// 50 ms). Everything it created is deleted at exit, also after an error or
// Ctrl-C.
//
// Usage:
//
//	go run ./examples/sustained [-duration 20s] [-rounds 3] [-workers 16]
//
// -durable-bookkeeping sets postgres.Options.DurableBookkeeping (the
// processor's Claim, Succeed, Fail and Release then wait for the WAL
// flush), to compare with the default; -cpuprofile writes a CPU profile
// of the whole run.
//
// -cpu prints, for each run, the CPU time used during its load per
// committed message: the whole machine's, PostgreSQL's, RabbitMQ's
// (beam.smp), this process's and the rest's (Linux only, from /proc).
//
// -publish-only adds a third run to each round: the same goroutines commit
// the same INSERT + ob.Publish with no processor running (nothing is
// dispatched), which is the rate of gocap's publishing transaction alone
// on this database, beside the two others. -breakdown splits gocap's
// commit -> consumer latency: it times each batch the processor hands to
// the transport (a wrapper around it), and prints commit -> handed to the
// transport and handed -> every message of the batch confirmed, p50 and
// p99, and the mean batch size.
//
// GOCAP_POSTGRES_URL and GOCAP_AMQP_URL override the local defaults.
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
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/examples/internal/cpuprofile"
	"github.com/gocap/gocap/examples/internal/cpuuse"
	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/rabbitmq"
	"github.com/gocap/gocap/wire"
)

const topic = "bench.sustained"

// notifyInterval, durableBookkeeping, publishOnly, breakdown and cpu are
// the -notify-interval, -durable-bookkeeping, -publish-only, -breakdown
// and -cpu flags.
var (
	notifyInterval     time.Duration
	durableBookkeeping bool
	publishOnly        bool
	breakdown          bool
	cpu                bool
)

// servers are the processes whose CPU time -cpu shows: PostgreSQL's and
// RabbitMQ's.
var servers = []string{"postgres", "beam.smp"}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func main() {
	dur := flag.Duration("duration", 20*time.Second, "length of each run")
	rounds := flag.Int("rounds", 3, "rounds of the two runs (medians are reported)")
	workers := flag.Int("workers", 16, "committing goroutines")
	flag.DurationVar(&notifyInterval, "notify-interval", 0, "outbox.Options.NotifyInterval (0 = default)")
	flag.BoolVar(&durableBookkeeping, "durable-bookkeeping", false, "postgres.Options.DurableBookkeeping")
	flag.BoolVar(&publishOnly, "publish-only", false, "add a run of gocap's publishing alone, with no processor, to each round")
	flag.BoolVar(&breakdown, "breakdown", false, "time the processor's batches at the transport (commit -> handed over -> confirmed)")
	flag.BoolVar(&cpu, "cpu", false, "print the CPU time per committed message of each run (machine, postgres, RabbitMQ, this process; Linux)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	stopProfile, err := cpuprofile.Start(*cpuProfile)
	if err != nil {
		log.Fatal(err)
	}
	defer stopProfile()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *dur, *rounds, *workers); err != nil {
		stopProfile()
		log.Fatal(err)
	}
}

// result is one run's figures.
type result struct {
	committed, delivered float64       // msg/s within the run's time
	p50, p99             time.Duration // commit -> consumer
	backlog              int           // committed but not yet delivered when the time was up
	confP50, confP99     time.Duration // dual write: commit -> confirmed

	// -breakdown, gocap: commit -> handed to the transport, handed ->
	// confirmed (the whole batch), and the mean batch size.
	handP50, handP99, sendP50, sendP99 time.Duration
	batch                              float64

	cpu string // -cpu: the CPU time per committed message during the load
}

func run(ctx context.Context, dur time.Duration, rounds, workers int) error {
	b, err := newBench(ctx, workers)
	if err != nil {
		return err
	}
	defer b.close()
	var gs, ds, ps []result
	for round := 1; round <= rounds; round++ {
		var g, d, p result
		// The runs of a round, in turn: each round starts with the next.
		runs := []func() error{
			func() (err error) { g, err = b.gocap(ctx, dur, true); return err },
			func() (err error) { d, err = b.dualWrite(ctx, dur); return err },
		}
		if publishOnly {
			runs = append(runs, func() (err error) { p, err = b.gocap(ctx, dur, false); return err })
		}
		for i := range runs {
			if err := runs[(round-1+i)%len(runs)](); err != nil {
				return fmt.Errorf("round %d: %w", round, err)
			}
		}
		fmt.Printf("round %d: gocap committed %6.0f msg/s, delivered %6.0f msg/s, commit->consumer p50 %v p99 %v (backlog at the end %d);"+
			" dual write %6.0f msg/s, delivered %6.0f msg/s, commit->consumer p50 %v p99 %v, commit->confirmed p50 %v p99 %v\n",
			round, g.committed, g.delivered, ms(g.p50), ms(g.p99), g.backlog, d.committed, d.delivered, ms(d.p50), ms(d.p99), ms(d.confP50), ms(d.confP99))
		if publishOnly {
			fmt.Printf("         gocap publishing alone (no processor) committed %6.0f msg/s\n", p.committed)
		}
		if cpu {
			fmt.Printf("         gocap %s\n         dual write %s\n", g.cpu, d.cpu)
			if publishOnly {
				fmt.Printf("         gocap publishing alone %s\n", p.cpu)
			}
		}
		if breakdown {
			fmt.Printf("         gocap: commit->handed to the transport p50 %v p99 %v; handed->batch confirmed p50 %v p99 %v; mean batch %.1f\n",
				ms(g.handP50), ms(g.handP99), ms(g.sendP50), ms(g.sendP99), g.batch)
		}
		gs, ds, ps = append(gs, g), append(ds, d), append(ps, p)
	}
	g, d, p := medians(gs), medians(ds), medians(ps)
	fmt.Printf("medians of %d rounds of %v, %d committing goroutines:\n", rounds, dur, workers)
	fmt.Printf("  gocap (INSERT + Publish, commit; one processor dispatches): committed %6.0f msg/s, delivered %6.0f msg/s,"+
		" commit -> consumer p50 %v, p99 %v (target <= 50ms)\n", g.committed, g.delivered, ms(g.p50), ms(g.p99))
	fmt.Printf("  dual write (INSERT, commit, then publish + confirm):         committed %6.0f msg/s, delivered %6.0f msg/s,"+
		" commit -> consumer p50 %v, p99 %v (commit -> confirmed p50 %v, p99 %v)\n",
		d.committed, d.delivered, ms(d.p50), ms(d.p99), ms(d.confP50), ms(d.confP99))
	if publishOnly {
		fmt.Printf("  gocap publishing alone (INSERT + Publish, commit; no processor): committed %6.0f msg/s\n", p.committed)
	}
	if breakdown {
		fmt.Printf("  gocap: commit -> handed to the transport p50 %v, p99 %v; handed -> batch confirmed p50 %v, p99 %v; mean batch %.1f\n",
			ms(g.handP50), ms(g.handP99), ms(g.sendP50), ms(g.sendP99), g.batch)
	}
	fmt.Printf("  gocap committed / dual write = %.0f%%, gocap delivered / dual write = %.0f%% (target >= 100%%)\n",
		100*g.committed/d.committed, 100*g.delivered/d.committed)
	if publishOnly {
		fmt.Printf("  gocap publishing alone / dual write = %.0f%%\n", 100*p.committed/d.committed)
	}
	return nil
}

type bench struct {
	pool     *pgxpool.Pool
	conn     *amqp.Connection
	amqpURL  string
	prefix   string
	exchange string
	workers  int
	gen      *ids.Generator
	schemas  []string
	queues   []string
}

func newBench(ctx context.Context, workers int) (*bench, error) {
	cfg, err := pgxpool.ParseConfig(env("GOCAP_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"))
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(workers) + 8 // the committing goroutines, and the processor's queries
	suffix := strconv.FormatInt(ids.Token()%1_000_000, 10)
	b := &bench{amqpURL: env("GOCAP_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), workers: workers,
		prefix: "gocap_sustbench_" + suffix, exchange: "gocap.sustbench." + suffix}
	if b.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, err
	}
	if b.conn, err = amqp.Dial(b.amqpURL); err != nil {
		b.pool.Close()
		return nil, err
	}
	if b.gen, err = ids.NewGenerator(2); err != nil {
		b.close()
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

// setup makes a run's schema, with gocap's tables and an orders table,
// and a fresh durable queue bound to the exchange, consumed by a plain
// consumer whose arrivals (cap-msg-id -> time) it collects; stop ends the
// consumer and deletes the queue.
func (b *bench) setup(ctx context.Context) (schema string, got *arrivals, stop func(), err error) {
	schema = fmt.Sprintf("%s_%d", b.prefix, len(b.schemas)+1)
	b.schemas = append(b.schemas, schema)
	if err := postgres.New(b.pool, postgres.Options{Schema: schema, Logger: quiet}).Migrate(ctx); err != nil {
		return "", nil, nil, err
	}
	_, err = b.pool.Exec(ctx, `CREATE TABLE `+schema+`.orders (id bigserial PRIMARY KEY, customer integer NOT NULL,
		amount numeric(12, 2) NOT NULL, created timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		return "", nil, nil, err
	}
	ch, err := b.conn.Channel()
	if err != nil {
		return "", nil, nil, err
	}
	if err := ch.ExchangeDeclare(b.exchange, "topic", true, false, false, false, nil); err != nil {
		return "", nil, nil, err
	}
	q := schema + ".q"
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		return "", nil, nil, err
	}
	b.queues = append(b.queues, q)
	if err := ch.QueueBind(q, "#", b.exchange, false, nil); err != nil {
		return "", nil, nil, err
	}
	if err := ch.Qos(1000, 0, false); err != nil {
		return "", nil, nil, err
	}
	deliveries, err := ch.Consume(q, "", true, false, false, false, nil)
	if err != nil {
		return "", nil, nil, err
	}
	a := &arrivals{at: map[string]time.Time{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for d := range deliveries {
			a.add(fmt.Sprint(d.Headers[wire.MsgID]), time.Now())
		}
	}()
	return schema, a, func() {
		ch.Close()
		<-done
		if c, err := b.conn.Channel(); err == nil {
			if _, err := c.QueueDelete(q, false, false, false); err == nil {
				b.queues = slices.DeleteFunc(b.queues, func(s string) bool { return s == q })
			}
			c.Close()
		}
	}, nil
}

// arrivals are the consumer's arrival times by message id.
type arrivals struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (a *arrivals) add(id string, t time.Time) {
	a.mu.Lock()
	a.at[id] = t
	a.mu.Unlock()
}

// count returns the number of arrivals, and of those at or before t.
func (a *arrivals) count(t time.Time) (all, before int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, at := range a.at {
		if !at.After(t) {
			before++
		}
	}
	return len(a.at), before
}

// sample is a message's id and its commit time.
type sample struct {
	id string
	at time.Time
}

// load runs b.workers goroutines that each call work in a loop until the
// run's time is up, and returns what they committed, when the run began
// and ended, and, with -cpu, the CPU time it used per commit.
func (b *bench) load(ctx context.Context, dur time.Duration, work func(ctx context.Context, w int) (sample, error)) ([]sample, time.Time, time.Time, string, error) {
	var before cpuuse.Use
	if cpu {
		var err error
		if before, err = cpuuse.Read(servers...); err != nil {
			return nil, time.Time{}, time.Time{}, "", err
		}
	}
	start := time.Now()
	end := start.Add(dur)
	// A commit or a confirm that hangs (RabbitMQ's flow control, say)
	// ends the run a minute after its time instead of never.
	ctx, cancel := context.WithDeadline(ctx, end.Add(time.Minute))
	defer cancel()
	var wg sync.WaitGroup
	per := make([][]sample, b.workers)
	errs := make([]error, b.workers)
	for w := range b.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && ctx.Err() == nil {
				s, err := work(ctx, w)
				if err != nil {
					errs[w] = err
					return
				}
				per[w] = append(per[w], s)
			}
		}()
	}
	wg.Wait()
	commits := slices.Concat(per...)
	var used string
	if cpu {
		after, err := cpuuse.Read(servers...)
		if err != nil {
			return nil, start, end, "", err
		}
		used = cpuuse.PerMessage(before, after, len(commits), servers...)
	}
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return nil, start, end, "", err
	}
	return commits, start, end, used, nil
}

// gocap runs the load through ob.Publish while one processor dispatches,
// or, if dispatch is false, with no processor (the rate of committing
// alone: only result.committed is set).
func (b *bench) gocap(ctx context.Context, dur time.Duration, dispatch bool) (result, error) {
	schema, got, stopConsumer, err := b.setup(ctx)
	if err != nil {
		return result{}, err
	}
	defer stopConsumer()
	tr, err := rabbitmq.New(rabbitmq.Config{URL: b.amqpURL, Exchange: b.exchange, Logger: quiet})
	if err != nil {
		return result{}, err
	}
	defer tr.Close()
	var obTr transport.Transport = tr
	var timed *timedTransport
	if breakdown && dispatch {
		timed = &timedTransport{Transport: tr, sent: map[string][2]time.Time{}}
		obTr = timed
	}
	ob, err := outbox.New(postgres.New(b.pool, postgres.Options{Schema: schema, Logger: quiet, DurableBookkeeping: durableBookkeeping}), obTr, outbox.Options{Logger: quiet, NotifyInterval: notifyInterval})
	if err != nil {
		return result{}, err
	}
	defer ob.Close()
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	if dispatch {
		go func() {
			defer wg.Done()
			ob.Run(runCtx)
		}()
	} else {
		wg.Done()
	}
	defer func() { stop(); wg.Wait() }()
	time.Sleep(300 * time.Millisecond) // let the processor start listening

	payload := map[string]any{"customer": 42, "amount": "9.90", "currency": "EUR"}
	commits, start, end, used, err := b.load(ctx, dur, func(ctx context.Context, w int) (sample, error) {
		var id int64
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO "+schema+".orders (customer, amount) VALUES ($1, 9.90)", w); err != nil {
				return err
			}
			var err error
			id, err = ob.Publish(ctx, tx, topic, payload)
			return err
		})
		return sample{strconv.FormatInt(id, 10), time.Now()}, err
	})
	if err != nil {
		return result{}, err
	}
	if !dispatch {
		return result{committed: float64(len(commits)) / end.Sub(start).Seconds(), cpu: used}, nil
	}
	r, err := b.arrived(ctx, got, commits, start, end, dur)
	if err == nil && timed != nil {
		timed.figures(&r, commits)
	}
	r.cpu = used
	return r, err
}

// timedTransport is the -breakdown wrapper: it records when each message
// was handed to SendBatch and when its batch returned (every message
// confirmed or failed).
type timedTransport struct {
	*rabbitmq.Transport
	mu      sync.Mutex
	sent    map[string][2]time.Time // message id -> handed over, batch returned
	batches int
	msgs    int
}

func (t *timedTransport) SendBatch(ctx context.Context, msgs []transport.Outgoing) []error {
	handed := time.Now()
	errs := t.Transport.SendBatch(ctx, msgs)
	done := time.Now()
	t.mu.Lock()
	t.batches++
	t.msgs += len(msgs)
	for _, m := range msgs {
		t.sent[m.Message.Headers[wire.MsgID]] = [2]time.Time{handed, done}
	}
	t.mu.Unlock()
	return errs
}

// figures sets r's breakdown from the committed messages' records.
func (t *timedTransport) figures(r *result, commits []sample) {
	t.mu.Lock()
	defer t.mu.Unlock()
	hand := make([]time.Duration, 0, len(commits))
	send := make([]time.Duration, 0, len(commits))
	for _, c := range commits {
		if s, ok := t.sent[c.id]; ok {
			hand = append(hand, max(s[0].Sub(c.at), 0))
			send = append(send, s[1].Sub(s[0]))
		}
	}
	r.handP50, r.handP99 = percentiles(hand)
	r.sendP50, r.sendP99 = percentiles(send)
	if t.batches > 0 {
		r.batch = float64(t.msgs) / float64(t.batches)
	}
}

// arrived returns the figures of a run whose commits were made between
// start and end: the rate of the commits, of their arrivals at the
// consumer by end, and the latency from each commit to its arrival (the
// messages still on their way at end are waited for, a minute at most).
func (b *bench) arrived(ctx context.Context, got *arrivals, commits []sample, start, end time.Time, dur time.Duration) (result, error) {
	_, inTime := got.count(end)
	r := result{committed: float64(len(commits)) / end.Sub(start).Seconds(), delivered: float64(inTime) / end.Sub(start).Seconds(),
		backlog: len(commits) - inTime}
	deadline := time.Now().Add(dur + time.Minute)
	for {
		all, _ := got.count(end)
		if all >= len(commits) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return result{}, fmt.Errorf("only %d of %d messages arrived a minute after the run", all, len(commits))
		}
		time.Sleep(20 * time.Millisecond)
	}
	lat := make([]time.Duration, 0, len(commits))
	got.mu.Lock()
	for _, c := range commits {
		if a, ok := got.at[c.id]; ok {
			lat = append(lat, max(a.Sub(c.at), 0))
		}
	}
	got.mu.Unlock()
	if len(lat) < len(commits) {
		return result{}, fmt.Errorf("%d of %d committed messages arrived", len(lat), len(commits))
	}
	r.p50, r.p99 = percentiles(lat)
	return r, nil
}

// dualWrite runs the load as commit, then a publish with confirm on the
// goroutine's own channel.
func (b *bench) dualWrite(ctx context.Context, dur time.Duration) (result, error) {
	schema, got, stopConsumer, err := b.setup(ctx)
	if err != nil {
		return result{}, err
	}
	defer stopConsumer()
	chans := make([]*amqp.Channel, b.workers)
	for i := range chans {
		ch, err := b.conn.Channel()
		if err != nil {
			return result{}, err
		}
		defer ch.Close()
		if err := ch.Confirm(false); err != nil {
			return result{}, err
		}
		chans[i] = ch
	}
	body := []byte(`{"amount":"9.90","currency":"EUR","customer":42}`)
	lats := make([][]time.Duration, b.workers)
	commits, start, end, used, err := b.load(ctx, dur, func(ctx context.Context, w int) (sample, error) {
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO "+schema+".orders (customer, amount) VALUES ($1, 9.90)", w)
			return err
		})
		if err != nil {
			return sample{}, err
		}
		committed := time.Now()
		id := b.gen.Next()
		h := wire.Published(id, topic, "map[string]interface {}", committed, nil)
		headers := make(amqp.Table, len(h))
		for k, v := range h {
			headers[k] = v
		}
		dc, err := chans[w].PublishWithDeferredConfirmWithContext(ctx, b.exchange, topic, true, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, ContentType: "application/json", Body: body, Headers: headers,
			MessageId: strconv.FormatInt(id, 10), Timestamp: committed,
		})
		if err != nil {
			return sample{}, err
		}
		if ok, err := dc.WaitContext(ctx); !ok || err != nil {
			return sample{}, fmt.Errorf("publish not confirmed: %v", err)
		}
		lats[w] = append(lats[w], time.Since(committed))
		return sample{strconv.FormatInt(id, 10), committed}, nil
	})
	if err != nil {
		return result{}, err
	}
	r, err := b.arrived(ctx, got, commits, start, end, dur)
	if err != nil {
		return result{}, err
	}
	r.confP50, r.confP99 = percentiles(slices.Concat(lats...))
	r.cpu = used
	return r, nil
}

func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	if len(lat) == 0 {
		return 0, 0
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100]
}

func medians(rs []result) result {
	pick := func(f func(result) float64) float64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = f(r)
		}
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	return result{
		committed: pick(func(r result) float64 { return r.committed }),
		delivered: pick(func(r result) float64 { return r.delivered }),
		p50:       time.Duration(pick(func(r result) float64 { return float64(r.p50) })),
		p99:       time.Duration(pick(func(r result) float64 { return float64(r.p99) })),
		confP50:   time.Duration(pick(func(r result) float64 { return float64(r.confP50) })),
		confP99:   time.Duration(pick(func(r result) float64 { return float64(r.confP99) })),
		handP50:   time.Duration(pick(func(r result) float64 { return float64(r.handP50) })),
		handP99:   time.Duration(pick(func(r result) float64 { return float64(r.handP99) })),
		sendP50:   time.Duration(pick(func(r result) float64 { return float64(r.sendP50) })),
		sendP99:   time.Duration(pick(func(r result) float64 { return float64(r.sendP99) })),
		batch:     pick(func(r result) float64 { return r.batch }),
	}
}

func ms(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
