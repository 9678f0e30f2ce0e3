// Command ordering measures ordered delivery per key (outbox.WithOrderingKey)
// against unordered delivery in the acceptance scenario of issue #18, and
// prints both side by side in one run:
//
// 10,000 messages over 100 keys, published by 8 goroutines (each key
// always by the same goroutine, and so the same outbox, in sequence), two
// outboxes on one database dispatching, both subscribed in one group with
// handler concurrency 16, over one in-process memory broker. A round is
// timed from the first publish to the last message handled; the ordered
// and unordered rounds alternate, each on fresh tables, and the medians
// are reported with their ratio. The handler counts inversions (a
// message of a key handled after a later one of that key) and overlaps
// (two of a key handled at once): ordered rounds must have none.
//
// Usage:
//
//	go run ./examples/ordering [-db postgres|mysql|sqlite] [-n 10000] [-keys 100] [-rounds 3] [-cpuprofile file]
//
// GOCAP_POSTGRES_URL and GOCAP_MYSQL_DSN override the local defaults.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/gocap/gocap/examples/internal/cpuprofile"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport/memory"
)

// msg is the payload: a key and its sequence number.
type msg struct {
	Key string `json:"key"`
	Seq int    `json:"seq"`
}

// scenario is the shape of a round.
type scenario struct {
	n, keys, publishers, concurrency int
}

// result is the outcome of one round.
type result struct {
	took, published      time.Duration
	handled              int
	inversions, overlaps int
	duplicates           int
}

// tables makes fresh tables for a round and returns two drivers on them
// (one per outbox) and their cleanup.
type tables[TTx any] func(ctx context.Context, round int) (a, b storage.Driver[TTx], cleanup func(), err error)

func main() {
	db := flag.String("db", "postgres", "database: postgres, mysql or sqlite")
	n := flag.Int("n", 10000, "messages per round")
	keys := flag.Int("keys", 100, "ordering keys")
	rounds := flag.Int("rounds", 3, "rounds of each kind (medians are reported)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	stopProfile, err := cpuprofile.Start(*cpuProfile)
	if err != nil {
		log.Fatal(err)
	}
	defer stopProfile()
	sc := scenario{n: *n, keys: *keys, publishers: 8, concurrency: 16}
	ctx := context.Background()
	switch *db {
	case "postgres":
		err = measure(ctx, *db, sc, *rounds, postgresTables(env("GOCAP_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")))
	case "mysql":
		err = measure(ctx, *db, sc, *rounds, mysqlTables(env("GOCAP_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/test")))
	case "sqlite":
		err = measure(ctx, *db, sc, *rounds, sqliteTables())
	default:
		err = fmt.Errorf("-db %q: want postgres, mysql or sqlite", *db)
	}
	if err != nil {
		stopProfile()
		log.Fatal(err)
	}
}

// measure runs the rounds, ordered and unordered alternately, and prints
// the report.
func measure[TTx any](ctx context.Context, db string, sc scenario, rounds int, mk tables[TTx]) error {
	var ordered, unordered []result
	for r := range rounds {
		for _, keyed := range []bool{r%2 == 0, r%2 != 0} {
			res, err := round(ctx, sc, mk, 2*r+len(ordered)+len(unordered), keyed)
			if err != nil {
				return err
			}
			kind := "unordered"
			if keyed {
				ordered, kind = append(ordered, res), "ordered"
			} else {
				unordered = append(unordered, res)
			}
			fmt.Printf("round %d %-9s %6d handled in %-8v %7.0f msg/s  (published in %v)  inversions %d  overlaps %d  duplicates %d\n",
				r+1, kind, res.handled, res.took.Round(time.Millisecond), rate(res), res.published.Round(time.Millisecond),
				res.inversions, res.overlaps, res.duplicates)
		}
	}
	o, u := median(ordered), median(unordered)
	inv := 0
	for _, r := range ordered {
		inv += r.inversions + r.overlaps
	}
	fmt.Printf("\n%s, %d messages over %d keys, %d publishers, 2 outboxes, handler concurrency %d, medians of %d rounds:\n",
		db, sc.n, sc.keys, sc.publishers, sc.concurrency, rounds)
	fmt.Printf("  unordered  %7.0f msg/s\n  ordered    %7.0f msg/s   (%.2f of unordered; inversions and overlaps in ordered rounds: %d)\n",
		u, o, o/u, inv)
	return nil
}

func rate(r result) float64 { return float64(r.handled) / r.took.Seconds() }

func median(rs []result) float64 {
	rates := make([]float64, len(rs))
	for i, r := range rs {
		rates[i] = rate(r)
	}
	slices.Sort(rates)
	return rates[len(rates)/2]
}

// checker counts what the handlers saw.
type checker struct {
	mu         sync.Mutex
	last       map[string]int
	busy       map[string]bool
	seen       map[msg]bool
	handled    int
	inversions int
	overlaps   int
	duplicates int
	all        chan struct{}
	want       int
}

func (c *checker) handle(m msg) {
	c.mu.Lock()
	if c.busy[m.Key] {
		c.overlaps++
	}
	c.busy[m.Key] = true
	c.mu.Unlock()
	time.Sleep(100 * time.Microsecond) // a handler that does a little work
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy[m.Key] = false
	if c.seen[m] {
		c.duplicates++
		return
	}
	c.seen[m] = true
	if last, ok := c.last[m.Key]; ok && m.Seq < last {
		c.inversions++
	}
	c.last[m.Key] = m.Seq
	if c.handled++; c.handled == c.want {
		close(c.all)
	}
}

// round publishes sc.n messages and waits until all are handled.
func round[TTx any](ctx context.Context, sc scenario, mk tables[TTx], n int, keyed bool) (result, error) {
	a, b, cleanup, err := mk(ctx, n)
	if err != nil {
		return result{}, err
	}
	defer cleanup()
	c := &checker{last: map[string]int{}, busy: map[string]bool{}, seen: map[msg]bool{}, all: make(chan struct{}), want: sc.n}
	broker := memory.NewBroker(memory.Options{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var obs []*outbox.Outbox[TTx]
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
	}()
	for _, d := range []storage.Driver[TTx]{a, b} {
		ob, err := outbox.New(d, broker.Transport(), outbox.Options{Logger: quiet, HandlerConcurrency: sc.concurrency,
			PollInterval: 100 * time.Millisecond})
		if err != nil {
			return result{}, err
		}
		if err := outbox.Subscribe(ob, "bench.ordered", func(_ context.Context, m outbox.Received[msg]) error {
			c.handle(m.Value)
			return nil
		}, outbox.Group("bench")); err != nil {
			return result{}, err
		}
		obs = append(obs, ob)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ob.Run(rctx); err != nil {
				log.Printf("Run: %v", err)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // the subscriptions bind their queue
	start := time.Now()
	perKey := sc.n / sc.keys
	errs := make(chan error, sc.publishers)
	var pub sync.WaitGroup
	for p := range sc.publishers {
		pub.Add(1)
		go func() {
			defer pub.Done()
			ob := obs[p%2]
			for seq := range perKey {
				for k := p; k < sc.keys; k += sc.publishers {
					key := fmt.Sprintf("key-%d", k)
					var opts []outbox.PublishOption
					if keyed {
						opts = append(opts, outbox.WithOrderingKey(key))
					}
					if _, err := ob.PublishWithoutTx(ctx, "bench.ordered", msg{Key: key, Seq: seq}, opts...); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	pub.Wait()
	published := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return result{}, err
	}
	select {
	case <-c.all:
	case <-time.After(5 * time.Minute):
		return result{}, fmt.Errorf("round %d: %d of %d handled after 5 minutes", n, c.handled, sc.n)
	}
	took := time.Since(start)
	c.mu.Lock()
	defer c.mu.Unlock()
	return result{took: took, published: published, handled: c.handled, inversions: c.inversions, overlaps: c.overlaps, duplicates: c.duplicates}, nil
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
