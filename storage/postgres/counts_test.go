package postgres_test

import (
	"context"
	"testing"

	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
)

// fillCounts adds rows to schema's published table: 20,000 of which 10
// Failed, 5 Scheduled and 3 Delayed, the rest Succeeded, and analyzes it.
func fillCounts(t *testing.T, schema string, exec func(ctx context.Context, sql string) error) {
	t.Helper()
	err := exec(context.Background(), `INSERT INTO `+schema+`.published (id, name, headers, body, status, added, next_attempt_at, expires_at)
		SELECT g, 'counts', '{}', '', CASE WHEN g <= 10 THEN 'Failed' WHEN g <= 15 THEN 'Scheduled' WHEN g <= 18 THEN 'Delayed' ELSE 'Succeeded' END,
			now(), now(), now() + interval '1 day'
		FROM generate_series(1, 20000) AS g`)
	if err == nil {
		// The inserting backend reports its 20,000 new rows to the
		// statistics system when it next flushes, which may come after the
		// ANALYZE below and add them once more to the live-row count
		// ANALYZE set (an estimate of 39,982 was seen under load). Flush
		// them first (PostgreSQL 15: at the end of this transaction).
		err = exec(context.Background(), `SELECT pg_stat_force_next_flush()`)
	}
	if err == nil {
		err = exec(context.Background(), `ANALYZE `+schema+`.published`)
	}
	if err != nil {
		t.Fatal(err)
	}
}

var countsWant = map[storage.Status]int64{storage.StatusFailed: 10, storage.StatusScheduled: 5, storage.StatusDelayed: 3, storage.StatusSucceeded: 19982}

// Above ExactCountLimit, the Succeeded rows are PostgreSQL's estimate,
// marked, and close to the truth after ANALYZE; the others stay exact.
func TestBoundedCountsEstimate(t *testing.T) {
	d, pool, schema := newDriverWith(t, postgres.Options{ExactCountLimit: -1})
	// One connection for the fill, so that the flush of its statistics
	// comes from the backend that inserted.
	conn, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fillCounts(t, schema, func(ctx context.Context, sql string) error { _, err := conn.Exec(ctx, sql); return err })
	conn.Release()
	got, err := d.BoundedCounts(context.Background(), storage.Published)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []storage.Status{storage.StatusFailed, storage.StatusScheduled, storage.StatusDelayed} {
		if got.ByStatus[st] != countsWant[st] || got.Estimated[st] {
			t.Errorf("%s: %d (estimated %v), want exactly %d", st, got.ByStatus[st], got.Estimated[st], countsWant[st])
		}
	}
	want := countsWant[storage.StatusSucceeded]
	if n := got.ByStatus[storage.StatusSucceeded]; !got.Estimated[storage.StatusSucceeded] || n < want*95/100 || n > want*105/100 {
		t.Errorf("Succeeded: %d (estimated %v), want an estimate within 5%% of %d", n, got.Estimated[storage.StatusSucceeded], want)
	}
	// The received table, empty: an estimate of 0, not below.
	rec, err := d.BoundedCounts(context.Background(), storage.Received)
	if err != nil || rec.ByStatus[storage.StatusSucceeded] != 0 {
		t.Errorf("BoundedCounts(received) = %+v %v, want 0 Succeeded", rec, err)
	}
}

// At or under ExactCountLimit, every count is exact and nothing marked.
func TestBoundedCountsExactUnderLimit(t *testing.T) {
	for _, limit := range []int64{0, 25_000} {
		d, pool, schema := newDriverWith(t, postgres.Options{ExactCountLimit: limit})
		fillCounts(t, schema, func(ctx context.Context, sql string) error { _, err := pool.Exec(ctx, sql); return err })
		got, err := d.BoundedCounts(context.Background(), storage.Published)
		if err != nil {
			t.Fatal(err)
		}
		for st, n := range countsWant {
			if got.ByStatus[st] != n || got.Estimated[st] {
				t.Errorf("limit %d: %s %d (estimated %v), want exactly %d", limit, st, got.ByStatus[st], got.Estimated[st], n)
			}
		}
	}
}
