package postgres_test

import (
	"context"
	"math"
	"strings"
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

// listening starts d.Listen and returns once it hears notifications (a
// notification sent before LISTEN ran is lost), with a channel of those
// that follow; the listener stops when the test ends.
func listening(t *testing.T, d *postgres.Driver, pool *pgxpool.Pool, schema string) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fired := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() { done <- d.Listen(ctx, func() { fired <- struct{}{} }) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	// The probe is a driver of its own, which notifies whatever d's options.
	probe := postgres.New(pool, postgres.Options{Schema: schema})
	for i := 0; ; i++ {
		if i == 50 {
			t.Fatal("the listener never heard a notification")
		}
		publish(t, probe, pool, true, storage.InsertOptions{Notify: true})
		if waitFire(fired, 100*time.Millisecond) {
			break
		}
	}
	for waitFire(fired, 50*time.Millisecond) {
	}
	return fired
}

// waitFire reports whether a notification arrives within d.
func waitFire(fired <-chan struct{}, d time.Duration) bool {
	select {
	case <-fired:
		return true
	case <-time.After(d):
		return false
	}
}

// publish inserts one message with d in a transaction that commits or
// rolls back.
func publish(t *testing.T, d *postgres.Driver, pool *pgxpool.Pool, commit bool, opts storage.InsertOptions) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := &storage.Message{ID: time.Now().UnixNano(), Name: "n", Headers: map[string]string{}, Body: []byte("x"),
		Added: time.Now().UTC(), NextAttemptAt: time.Now().UTC()}
	if err := d.InsertPublishedTx(ctx, tx, []*storage.Message{m}, opts); err != nil {
		tx.Rollback(ctx) // its locks would hold up the cleanup's DROP SCHEMA
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

// An insert with Notify notifies when its transaction commits, and only then.
func TestListenFiresOnCommitOnly(t *testing.T) {
	d, pool, schema := newDriverWith(t, postgres.Options{})
	fired := listening(t, d, pool, schema)
	notify := storage.InsertOptions{Notify: true}
	publish(t, d, pool, false, notify)
	if waitFire(fired, 300*time.Millisecond) {
		t.Error("notified for a rolled back transaction")
	}
	publish(t, d, pool, true, notify)
	if !waitFire(fired, 2*time.Second) {
		t.Error("no notification for a commit")
	}
	// InsertPublished, in a transaction of its own, notifies the same way.
	m := &storage.Message{ID: time.Now().UnixNano(), Name: "n", Headers: map[string]string{}, Body: []byte("x"),
		Added: time.Now().UTC(), NextAttemptAt: time.Now().UTC()}
	if err := d.InsertPublished(context.Background(), []*storage.Message{m, {ID: m.ID + 1, Name: "n", Added: m.Added, NextAttemptAt: m.Added}}, notify); err != nil {
		t.Fatal(err)
	}
	if !waitFire(fired, 2*time.Second) {
		t.Error("no notification for InsertPublished of two messages")
	}
}

// The driver notifies only when the outbox asks: an insert without Notify
// commits silently.
func TestNoNotifyUnlessAsked(t *testing.T) {
	d, pool, schema := newDriverWith(t, postgres.Options{})
	fired := listening(t, d, pool, schema)
	for range 3 {
		publish(t, d, pool, true, storage.InsertOptions{})
	}
	if waitFire(fired, 300*time.Millisecond) {
		t.Error("notified for inserts without Notify")
	}
}

// Options.DisableNotify wins over InsertOptions.Notify.
func TestDisableNotify(t *testing.T) {
	d, pool, schema := newDriverWith(t, postgres.Options{DisableNotify: true})
	fired := listening(t, d, pool, schema)
	for range 3 {
		publish(t, d, pool, true, storage.InsertOptions{Notify: true})
	}
	if waitFire(fired, 300*time.Millisecond) {
		t.Error("notified with DisableNotify")
	}
}

// TestClaimDueFromLeavesOutEarlierRows: the driver uses
// ClaimRequest.DueFrom as the lower end of the claim's range of the
// pending index (QUERY_PLANS.md, "Claims from a floor"), so that a claim
// from it reads no entry before it.
func TestClaimDueFromLeavesOutEarlierRows(t *testing.T) {
	d, _ := newDriver(t)
	ctx := context.Background()
	t0 := time.Now().UTC()
	early, late := benchMessage(1), benchMessage(2)
	early.NextAttemptAt, late.NextAttemptAt = t0.Add(-time.Hour), t0.Add(-time.Second)
	if err := d.InsertPublished(ctx, []*storage.Message{early, late}, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	claimFrom := func(from time.Time) []*storage.Message {
		got, err := d.Claim(ctx, storage.Published, storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: 7, Limit: 10, DueFrom: from})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := claimFrom(t0.Add(-time.Minute)); len(got) != 1 || got[0].ID != late.ID {
		t.Fatalf("claim from a minute ago: %d rows, want row %d alone", len(got), late.ID)
	}
	if got := claimFrom(time.Time{}); len(got) != 1 || got[0].ID != early.ID {
		t.Fatalf("claim from the start: %d rows, want row %d", len(got), early.ID)
	}
}

// TestLongSchemaNotifies: a schema name of the longest PostgreSQL keeps
// (63 bytes) leaves no room for "_published" in a channel name; the
// driver's channel is still a name of its own, which its publishes notify
// on and its listener hears.
func TestLongSchemaNotifies(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	base := testenv.Name("gocap_long")
	schema := base + strings.Repeat("x", 63-len(base))
	t.Cleanup(func() {
		pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		pool.Close()
	})
	d := postgres.New(pool, postgres.Options{Schema: schema})
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	fired := listening(t, d, pool, schema)
	publish(t, d, pool, true, storage.InsertOptions{Notify: true})
	if !waitFire(fired, 5*time.Second) {
		t.Fatal("a notifying publish to a 63-byte schema was not heard")
	}
}

// TestFailMaxAttemptsBeyondInt32: a MaxAttempts no SQL integer holds is
// recorded as no limit reached (as FailBatch binds it), not refused by
// the client as a value it cannot encode (an error the engine would take
// for a transient one).
func TestFailMaxAttemptsBeyondInt32(t *testing.T) {
	ctx := context.Background()
	d, _ := newDriver(t)
	now := time.Now().UTC()
	m := &storage.Message{ID: 777 << 22, Kind: storage.Published, Name: "t", Added: now, NextAttemptAt: now, Status: storage.StatusScheduled}
	if err := d.InsertPublished(ctx, []*storage.Message{m}, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := d.Claim(ctx, storage.Published, storage.ClaimRequest{Now: now.Add(time.Second), LeaseUntil: now.Add(time.Minute), Token: 9, Limit: 10})
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %d rows, %v", len(got), err)
	}
	res, err := d.Fail(ctx, storage.Published, storage.Lease{ID: m.ID, Token: 9},
		storage.Failure{Error: "x", Now: now, NextAttemptAt: now, MaxAttempts: math.MaxInt32 + 1, ExpiresAt: now})
	if err != nil || res.Retries != 1 || res.Status != storage.StatusScheduled {
		t.Errorf("Fail with MaxAttempts %d: %+v, %v; want 1 retry, Scheduled", math.MaxInt32+1, res, err)
	}
}
