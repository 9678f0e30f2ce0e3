package postgres_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/storage/storagetest"
)

// newSQLDriver returns a migrated *sql.Tx driver on a schema of its own,
// with a *sql.DB on its pool; it returns the schema too.
func newSQLDriver(t *testing.T, opts postgres.Options) (*postgres.SQLDriver, *pgxpool.Pool, *sql.DB, string) {
	t.Helper()
	_, pool, schema := newDriverWith(t, opts)
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { db.Close() })
	opts.Schema = schema
	return postgres.NewSQL(pool, opts), pool, db, schema
}

func TestSQLConformance(t *testing.T) {
	dbs := map[storage.Driver[*sql.Tx]]*sql.DB{}
	storagetest.Run(t, storagetest.Harness[*sql.Tx]{
		New: func(t *testing.T) storage.Driver[*sql.Tx] {
			d, _, db, _ := newSQLDriver(t, postgres.Options{})
			dbs[d] = db
			return d
		},
		Begin: func(ctx context.Context, t *testing.T, d storage.Driver[*sql.Tx]) (*sql.Tx, func() error, func() error) {
			tx, err := dbs[d].BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			return tx, tx.Commit, tx.Rollback
		},
		LargeBody: 16 << 20,
	})
}

// publishSQL inserts msgs with d in a *sql.Tx that commits or rolls back.
func publishSQL(t *testing.T, d *postgres.SQLDriver, db *sql.DB, commit bool, n int, opts storage.InsertOptions) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	msgs := make([]*storage.Message, n)
	for i := range msgs {
		msgs[i] = &storage.Message{ID: now.UnixNano() + int64(i), Name: "n", Headers: map[string]string{}, Body: []byte("x"),
			Added: now, NextAttemptAt: now}
	}
	if err := d.InsertPublishedTx(ctx, tx, msgs, opts); err != nil {
		t.Fatal(err)
	}
	if commit {
		err = tx.Commit()
	} else {
		err = tx.Rollback()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// An insert with Notify on a *sql.Tx notifies when that transaction
// commits, and only then, for one message and for several.
func TestSQLListenFiresOnCommitOnly(t *testing.T) {
	d, pool, db, schema := newSQLDriver(t, postgres.Options{})
	fired := listening(t, d.Driver, pool, schema)
	scheduled := func() int64 {
		t.Helper()
		c, err := d.Counts(context.Background(), storage.Published)
		if err != nil {
			t.Fatal(err)
		}
		return c[storage.StatusScheduled]
	}
	before := scheduled() // the listener's probes
	notify := storage.InsertOptions{Notify: true}
	for _, n := range []int{1, 3} {
		publishSQL(t, d, db, false, n, notify)
		if waitFire(fired, 300*time.Millisecond) {
			t.Errorf("%d messages: notified for a rolled back transaction", n)
		}
		publishSQL(t, d, db, true, n, notify)
		if !waitFire(fired, 2*time.Second) {
			t.Errorf("%d messages: no notification for a commit", n)
		}
		publishSQL(t, d, db, true, n, storage.InsertOptions{})
		if waitFire(fired, 300*time.Millisecond) {
			t.Errorf("%d messages: notified for an insert without Notify", n)
		}
	}
	if got := scheduled() - before; got != 8 {
		t.Errorf("%d rows stored, want the 8 committed", got)
	}
}

// A nil *sql.Tx is an error, not a panic.
func TestSQLNilTx(t *testing.T) {
	d, _, _, _ := newSQLDriver(t, postgres.Options{})
	m := &storage.Message{ID: 1, Name: "n", Added: time.Now(), NextAttemptAt: time.Now()}
	if err := d.InsertPublishedTx(context.Background(), nil, []*storage.Message{m}, storage.InsertOptions{}); err == nil {
		t.Error("InsertPublishedTx with a nil *sql.Tx returned no error")
	}
}
