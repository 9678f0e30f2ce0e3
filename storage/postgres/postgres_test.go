package postgres_test

import (
	"context"
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
	d := postgres.New(pool, postgres.Options{Schema: schema})
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return d, pool
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
	d, pool := newDriver(t)
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
