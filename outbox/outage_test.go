package outbox_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/internal/testproxy"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/wire"
)

// TestBrokerOutage cuts the connection to RabbitMQ for 60 s while messages
// are published steadily: no message is Failed, no attempt is counted for
// messages committed during the outage, and delivery resumes within 2 s of
// the broker's return.
func TestBrokerOutage(t *testing.T) {
	t.Parallel()
	testBrokerOutage(t, postgresBackend, 60*time.Second, outbox.RetryPolicy{})
}

// TestBrokerOutageFewAttempts: with only 3 attempts allowed, a 30 s outage
// still fails no message.
func TestBrokerOutageFewAttempts(t *testing.T) {
	t.Parallel()
	testBrokerOutage(t, mysqlBackend, 30*time.Second, outbox.RetryPolicy{MaxAttempts: 3, Interval: 100 * time.Millisecond})
}

func testBrokerOutage[TTx any](t *testing.T, be backend[TTx], outage time.Duration, policy outbox.RetryPolicy) {
	if testing.Short() {
		t.Skip("a broker outage of", outage)
	}
	amqpURL := testenv.AMQPURL(t)
	env := be.open(t)
	b := newBroker(t, amqpURL)
	proxy := testproxy.New(t, hostPort(t, amqpURL))
	tr := b.transport(t, "amqp://guest:guest@"+proxy.Addr()+"/")
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{Retry: policy, PollInterval: time.Second})
	run(t, ob)
	ctx := context.Background()

	// Arrivals at the broker, by message id.
	var mu sync.Mutex
	arrived := map[int64]time.Time{}
	stopConsume := make(chan struct{})
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for {
			select {
			case m := <-b.got:
				id, _ := strconv.ParseInt(fmt.Sprint(m.Headers[wire.MsgID]), 10, 64)
				mu.Lock()
				arrived[id] = time.Now()
				mu.Unlock()
			case <-stopConsume:
				return
			}
		}
	}()
	defer func() { close(stopConsume); <-consumed }()

	// Publish 20 messages a second until told to stop.
	type published struct {
		id int64
		at time.Time
	}
	var pubs []published
	var pubMu sync.Mutex
	stopPublish := make(chan struct{})
	publishing := make(chan struct{})
	go func() {
		defer close(publishing)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopPublish:
				return
			case <-tick.C:
			}
			tx, commit, _ := env.begin(t)
			env.exec(t, tx, "order")
			id, err := ob.Publish(ctx, tx, "order.paid", orderPaid{ID: i})
			if err != nil {
				t.Errorf("Publish: %v", err)
				return
			}
			if err := commit(); err != nil {
				t.Errorf("commit: %v", err)
				return
			}
			pubMu.Lock()
			pubs = append(pubs, published{id, time.Now()})
			pubMu.Unlock()
		}
	}()

	time.Sleep(2 * time.Second)
	proxy.Down()
	down := time.Now()
	time.Sleep(outage)
	proxy.Up()
	up := time.Now()
	time.Sleep(3 * time.Second)
	close(stopPublish)
	<-publishing

	pubMu.Lock()
	all := slices.Clone(pubs)
	pubMu.Unlock()
	waitFor(t, 30*time.Second, "every published message at the broker", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range all {
			if _, ok := arrived[p.id]; !ok {
				return false
			}
		}
		return true
	})

	// Delivery resumes: the first message committed during the outage
	// arrives this long after the broker's return.
	var during []int64
	resumed := time.Duration(-1)
	mu.Lock()
	for _, p := range all {
		if p.at.After(down) && p.at.Before(up) {
			during = append(during, p.id)
			if d := arrived[p.id].Sub(up); resumed < 0 || d < resumed {
				resumed = d
			}
		}
	}
	mu.Unlock()
	if len(during) < int(outage/(100*time.Millisecond)) {
		t.Fatalf("only %d messages were committed during the outage", len(during))
	}
	t.Logf("%d messages published, %d during the %v outage; delivery resumed %v after the broker's return",
		len(all), len(during), outage, resumed.Round(time.Millisecond))
	if resumed > 2*time.Second {
		t.Errorf("delivery resumed %v after the broker's return, want within 2 s", resumed)
	}

	immediate := policy.ImmediateRetries
	if immediate == 0 {
		immediate = outbox.DefaultImmediateRetries
	}
	waitFor(t, 10*time.Second, "every row Succeeded", func() bool {
		counts, err := ob.Store().Counts(ctx, storage.Published)
		return err == nil && counts[storage.StatusSucceeded] == int64(len(all))
	})
	for _, id := range during {
		if r := getRow(t, ob.Store(), storage.Published, id); r.Retries >= immediate {
			t.Errorf("message %d committed during the outage has %d retries, want fewer than %d", id, r.Retries, immediate)
		}
	}
	if counts, _ := ob.Store().Counts(ctx, storage.Published); counts[storage.StatusFailed] != 0 {
		t.Errorf("%d messages Failed", counts[storage.StatusFailed])
	}
}

// TestDatabaseRestart cuts the connection to PostgreSQL for 6 s: the claim
// loop backs off (a handful of errors a second at most, not one per poll),
// and dispatch resumes after the database is back.
func TestDatabaseRestart(t *testing.T) {
	t.Parallel()
	amqpURL := testenv.AMQPURL(t)
	env := postgresBackend.open(t)
	u, err := url.Parse(env.dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testproxy.New(t, u.Host)
	u.Host = proxy.Addr()
	pool, err := pgxpool.New(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var claimErrors atomic.Int32
	logger := slog.New(countingHandler{substr: "claiming due messages failed", n: &claimErrors})
	b := newBroker(t, amqpURL)
	d := postgres.New(pool, postgres.Options{Schema: env.name, Logger: quietLogger()})
	ob := newOutbox(t, d, b.transport(t, amqpURL), outbox.Options{Logger: logger, PollInterval: time.Second})
	run(t, ob)
	ctx := context.Background()
	if _, err := ob.PublishWithoutTx(ctx, "order.paid", orderPaid{ID: 1}); err != nil {
		t.Fatal(err)
	}
	b.next(t, 10*time.Second)

	// The database goes down just after a notification, while the
	// processor polls fast for commits coalesced into it.
	if _, err := ob.PublishWithoutTx(ctx, "order.paid", orderPaid{ID: 1}); err != nil {
		t.Fatal(err)
	}
	b.next(t, 10*time.Second)
	proxy.Down()
	const down = 6 * time.Second
	time.Sleep(down)
	n := claimErrors.Load()
	proxy.Up()
	perSecond := float64(n) / down.Seconds()
	t.Logf("%d claim errors in %v while the database was down (%.1f a second)", n, down, perSecond)
	if perSecond > 3 {
		t.Errorf("%d claim errors in %v: the claim loop does not back off", n, down)
	}
	if n == 0 {
		t.Error("no claim error logged: the database was not cut off")
	}
	// Dispatch resumes once the database is back.
	var id int64
	waitFor(t, 10*time.Second, "a publish after the database's return", func() bool {
		id, err = ob.PublishWithoutTx(ctx, "order.paid", orderPaid{ID: 2})
		return err == nil
	})
	m := b.next(t, 10*time.Second)
	if got := fmt.Sprint(m.Headers[wire.MsgID]); got != strconv.FormatInt(id, 10) {
		t.Errorf("got message %s, want %d", got, id)
	}
}
