package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
)

// lockMessage returns a published message with id, for the tests of
// Migrate beside open transactions.
func lockMessage(id int64) []*storage.Message {
	now := time.Now().UTC()
	return []*storage.Message{{ID: id, Kind: storage.Published, MsgID: "m", Name: "t", Headers: map[string]string{},
		Body: []byte("b"), Status: storage.StatusScheduled, Added: now, NextAttemptAt: now}}
}

// openWriter begins a transaction that published a message and wrote the
// received table, as an application's transaction still open does (ROW
// EXCLUSIVE on both tables); it is rolled back when the test ends.
func openWriter(t *testing.T, d *postgres.Driver, pool *pgxpool.Pool, schema string) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	if err := d.InsertPublishedTx(ctx, tx, lockMessage(1), storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE `+schema+`.received IN ROW EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	return tx
}

// A Migrate of a schema that is already current, as a process starting
// beside running ones runs, takes no lock on the tables: the DDL of
// SchemaSQL leaves pg_locks without one, and Migrate completes while an
// application's transaction that wrote both tables is open (a lock of
// Migrate's would queue behind that transaction, and every later query
// on the table behind it).
func TestMigrateOfCurrentSchemaTakesNoTableLock(t *testing.T) {
	ctx := context.Background()
	d, pool, schema := newDriverWith(t, postgres.Options{})

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, postgres.SchemaSQL(schema)); err != nil {
		t.Fatalf("SchemaSQL on the current schema: %v", err)
	}
	rows, err := tx.Query(ctx, `SELECT c.relname || ': ' || l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
		WHERE l.pid = pg_backend_pid() AND c.relnamespace = $1::regnamespace ORDER BY 1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	locks, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(locks) > 0 {
		t.Errorf("SchemaSQL on the current schema holds locks on its relations until commit: %s; want none", strings.Join(locks, ", "))
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	openWriter(t, d, pool, schema)
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := d.Migrate(mctx); err != nil {
		t.Fatalf("Migrate of the current schema beside an open transaction that wrote its tables: %v after %v; want it done at once", err, time.Since(start).Round(time.Millisecond))
	}
}

// A Migrate that must change a table (here: create a missing index) and
// cannot get its lock, held by an open transaction, gives up after its
// lock_timeout with an error that names the wait, instead of queueing
// without bound; the publishes of running processes, queued behind its
// lock meanwhile, go on once it has given up. Run again when the
// transaction has ended, it does the upgrade.
func TestMigrateUpgradeGivesUpOnLockWait(t *testing.T) {
	ctx := context.Background()
	d, pool, schema := newDriverWith(t, postgres.Options{})
	if _, err := pool.Exec(ctx, `DROP INDEX `+schema+`.published_expires_idx`); err != nil {
		t.Fatal(err)
	}
	writer := openWriter(t, d, pool, schema)

	mctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	migrated := make(chan error, 1)
	start := time.Now()
	go func() { migrated <- d.Migrate(mctx) }()
	// Wait (bounded) for Migrate's lock request to be queued on published.
	queued := false
	for deadline := time.Now().Add(10 * time.Second); !queued && time.Now().Before(deadline); {
		err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
			WHERE NOT granted AND relation = to_regclass($1))`, schema+".published").Scan(&queued)
		if err != nil {
			t.Fatal(err)
		}
		if !queued {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !queued {
		t.Fatalf("Migrate did not wait for a lock on published within 10 s: %v", <-migrated)
	}
	// A running process's publish waits behind the queued lock, but only
	// until Migrate gives up.
	pctx, pcancel := context.WithTimeout(ctx, 15*time.Second)
	defer pcancel()
	if err := d.InsertPublished(pctx, lockMessage(2), storage.InsertOptions{}); err != nil {
		t.Errorf("a publish while Migrate waited for its lock: %v after %v", err, time.Since(start).Round(time.Millisecond))
	}
	err := <-migrated
	elapsed := time.Since(start)
	var pe *pgconn.PgError
	switch {
	case err == nil:
		t.Fatalf("Migrate created the index while an open transaction held published; want a lock timeout")
	case mctx.Err() != nil:
		t.Fatalf("Migrate waited for its lock until the context ended (%v): %v", elapsed.Round(time.Millisecond), err)
	case !errors.As(err, &pe) || pe.Code != "55P03":
		t.Fatalf("Migrate: %v; want lock_not_available (55P03)", err)
	case !strings.Contains(err.Error(), "waited more than 5s for a lock"):
		t.Errorf("Migrate's error does not name the lock wait: %v", err)
	}
	t.Logf("Migrate: %v (after %v)", err, elapsed.Round(time.Millisecond))

	if err := writer.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(ctx); err != nil {
		t.Fatalf("Migrate once the transaction ended: %v", err)
	}
	var idx *string
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1)::text`, schema+".published_expires_idx").Scan(&idx); err != nil || idx == nil {
		t.Errorf("published_expires_idx after the second Migrate: %v, %v; want it created", idx, err)
	}
}
