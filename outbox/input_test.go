package outbox_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
)

// inputOutbox is an outbox on a SQLite file of its own and the in-memory
// transport, not run: for the checks Publish and Subscribe make of their
// input.
func inputOutbox(t *testing.T, opts outbox.Options) *outbox.Outbox[*sql.Tx] {
	t.Helper()
	d := sqlite.New(sqliteDB(t, filepath.Join(t.TempDir(), "gocap.db")), sqlite.Options{Logger: quietLogger()})
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	ob := newOutbox(t, d, memory.New(memory.Options{}), opts)
	t.Cleanup(func() { ob.Close() })
	return ob
}

// requireNothingPublished fails t if ob's store holds a published row.
func requireNothingPublished(t *testing.T, ob *outbox.Outbox[*sql.Tx]) {
	t.Helper()
	rows, err := ob.Store().List(context.Background(), storage.Filter{Kind: storage.Published, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		t.Errorf("a refused publish wrote row %d (%q)", r.ID, r.Name)
	}
}

// TestRetryWaitsUnderAMillisecond: a policy is stored with its waits in
// whole milliseconds, so a positive wait under 1ms would be stored as no
// wait, refused when read back at the first failure, and the message
// retried under the default policy (50 attempts) instead of its own. It
// is refused by Publish, Subscribe and New, naming the wait.
func TestRetryWaitsUnderAMillisecond(t *testing.T) {
	ctx := context.Background()
	ob := inputOutbox(t, outbox.Options{})
	for _, c := range []struct {
		p    outbox.RetryPolicy
		want string
	}{
		{outbox.RetryPolicy{MaxAttempts: 2, Schedule: []time.Duration{500 * time.Microsecond}}, "Schedule[0] = 500µs"},
		{outbox.RetryPolicy{MaxAttempts: 2, Schedule: []time.Duration{time.Second, time.Nanosecond}}, "Schedule[1] = 1ns"},
		{outbox.RetryPolicy{MaxAttempts: 2, Interval: 999 * time.Microsecond}, "Interval = 999µs"},
		{outbox.RetryPolicy{MaxAttempts: 2, Backoff: &outbox.ExponentialBackoff{Initial: 100 * time.Microsecond}}, "Backoff.Initial = 100µs"},
		{outbox.RetryPolicy{MaxAttempts: 2, Backoff: &outbox.ExponentialBackoff{Initial: time.Second, Max: 200 * time.Microsecond}}, "Backoff.Max = 200µs"},
	} {
		_, err := ob.PublishWithoutTx(ctx, "pay.notify", orderPaid{}, outbox.WithRetry(c.p))
		if err == nil || !containsAll(err.Error(), "pay.notify", "WithRetry", c.want, "whole milliseconds", "at least 1ms") {
			t.Errorf("Publish with %+v: %v, want an error naming %q", c.p, err, c.want)
		}
		err = outbox.Subscribe(ob, "pay.notify", func(context.Context, outbox.Received[orderPaid]) error { return nil },
			outbox.Group("billing"), outbox.WithSubscriptionRetry(c.p))
		if err == nil || !containsAll(err.Error(), "WithSubscriptionRetry", c.want, "whole milliseconds") {
			t.Errorf("Subscribe with %+v: %v, want an error naming %q", c.p, err, c.want)
		}
		d := sqlite.New(sqliteDB(t, filepath.Join(t.TempDir(), "new.db")), sqlite.Options{Logger: quietLogger()})
		if _, err := outbox.New(d, memory.New(memory.Options{}), outbox.Options{Logger: quietLogger(), Retry: c.p}); err == nil ||
			!containsAll(err.Error(), "Options.Retry", c.want) {
			t.Errorf("New with Options.Retry %+v: %v, want an error naming %q", c.p, err, c.want)
		}
	}
	requireNothingPublished(t, ob)
	// A millisecond is kept.
	id, err := ob.PublishWithoutTx(ctx, "pay.notify", orderPaid{}, outbox.WithRetry(outbox.RetryPolicy{
		MaxAttempts: 2, Schedule: []time.Duration{time.Millisecond}}))
	if err != nil {
		t.Fatalf("a schedule of 1ms: %v", err)
	}
	if row := getRow(t, ob.Store(), storage.Published, id); row.Policy != `{"max":2,"imm":3,"ivl":60000,"sch":[1]}` {
		t.Errorf("stored policy %s, want the schedule of 1 ms", row.Policy)
	}
}
