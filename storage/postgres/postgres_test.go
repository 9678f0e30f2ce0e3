package postgres_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/storage/storagetest"
)

// newDriver returns a migrated driver on a schema of its own, dropped when
// the test ends.
func newDriver(t *testing.T) (*postgres.Driver, *pgxpool.Pool) {
	t.Helper()
	d, pool, _ := newDriverWith(t, postgres.Options{})
	return d, pool
}

// newDriverWith is newDriver with options; it sets their Schema, which it
// returns.
func newDriverWith(t *testing.T, opts postgres.Options) (*postgres.Driver, *pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	schema := testenv.Name("gocap_st")
	t.Cleanup(func() {
		pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		pool.Close()
	})
	opts.Schema = schema
	d := postgres.New(pool, opts)
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return d, pool, schema
}

func TestConformance(t *testing.T) {
	pools := map[storage.Driver[pgx.Tx]]*pgxpool.Pool{}
	storagetest.Run(t, storagetest.Harness[pgx.Tx]{
		New: func(t *testing.T) storage.Driver[pgx.Tx] {
			d, pool := newDriver(t)
			pools[d] = pool
			return d
		},
		Begin: func(ctx context.Context, t *testing.T, d storage.Driver[pgx.Tx]) (pgx.Tx, func() error, func() error) {
			tx, err := pools[d].Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return tx, func() error { return tx.Commit(ctx) }, func() error { return tx.Rollback(ctx) }
		},
		LargeBody: 16 << 20,
	})
}

func TestMigrateConcurrentlyAndTwice(t *testing.T) {
	d, _ := newDriver(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- d.Migrate(context.Background()) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
}

func TestListenFiresOnCommitOnly(t *testing.T) {
	// Every transaction notifies, so that each commit can be checked.
	d, pool, _ := newDriverWith(t, postgres.Options{NotifyInterval: -1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fired := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() { done <- d.Listen(ctx, func() { fired <- struct{}{} }) }()
	// Publish until the listener is surely listening: the first commits
	// may come before LISTEN ran.
	waitFire := func(d2 time.Duration) bool {
		select {
		case <-fired:
			return true
		case <-time.After(d2):
			return false
		}
	}
	publish := func(commit bool) {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := &storage.Message{ID: time.Now().UnixNano(), Name: "n", Headers: map[string]string{}, Body: []byte("x"),
			Added: time.Now().UTC(), NextAttemptAt: time.Now().UTC()}
		if err := d.InsertPublishedTx(ctx, tx, []*storage.Message{m}); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	listening := false
	for range 50 {
		publish(true)
		if waitFire(100 * time.Millisecond) {
			listening = true
			break
		}
	}
	if !listening {
		t.Fatal("no notification after commits")
	}
	for waitFire(50 * time.Millisecond) {
	}
	publish(false)
	if waitFire(300 * time.Millisecond) {
		t.Error("notified for a rolled back transaction")
	}
	publish(true)
	if !waitFire(2 * time.Second) {
		t.Error("no notification for a commit")
	}
	cancel()
	<-done
}

// TestNotifyCoalesced checks that transactions within NotifyInterval of a
// notified one do not notify, and that the next one after it does.
func TestNotifyCoalesced(t *testing.T) {
	const interval = 2 * time.Second
	d, pool, schema := newDriverWith(t, postgres.Options{NotifyInterval: interval})
	if got := d.NotifyInterval(); got != interval {
		t.Fatalf("NotifyInterval() = %v, want %v", got, interval)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var fired atomic.Int32
	done := make(chan error, 1)
	go func() { done <- d.Listen(ctx, func() { fired.Add(1) }) }()
	publish := func() {
		t.Helper()
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			m := &storage.Message{ID: time.Now().UnixNano(), Name: "n", Headers: map[string]string{}, Body: []byte("x"),
				Added: time.Now().UTC(), NextAttemptAt: time.Now().UTC()}
			return d.InsertPublishedTx(ctx, tx, []*storage.Message{m})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Wait until LISTEN runs: a notification published before is lost.
	// The probe uses a driver of its own, which always notifies.
	probe := postgres.New(pool, postgres.Options{Schema: schema, NotifyInterval: -1})
	for i := 0; fired.Load() == 0; i++ {
		if i == 100 {
			t.Fatal("the listener never heard a notification")
		}
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			return probe.InsertPublishedTx(ctx, tx, []*storage.Message{{ID: time.Now().UnixNano(), Name: "probe",
				Headers: map[string]string{}, Body: []byte("x"), Added: time.Now().UTC(), NextAttemptAt: time.Now().UTC()}})
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	fired.Store(0)

	start := time.Now()
	for range 5 {
		publish()
	}
	time.Sleep(300 * time.Millisecond)
	if n := fired.Load(); n != 1 {
		t.Fatalf("%d notifications for 5 commits within NotifyInterval, want 1", n)
	}
	time.Sleep(interval - time.Since(start))
	publish()
	deadline := time.Now().Add(5 * time.Second)
	for fired.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := fired.Load(); n != 2 {
		t.Fatalf("%d notifications after NotifyInterval passed, want 2", n)
	}
	cancel()
	<-done
}
