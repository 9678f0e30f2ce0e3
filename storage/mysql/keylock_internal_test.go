package mysql

import (
	"context"
	"database/sql"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// newKeyDriver returns a migrated driver on tables of its own, dropped
// when the test ends, and its database.
func newKeyDriver(t *testing.T) (*Driver, *sql.DB) {
	t.Helper()
	db, prefix := openTestTables(t, "gocap_kl")
	d := New(db, Options{TablePrefix: prefix})
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d, db
}

// keyedMessages returns a maker of published rows of an ordering key
// ("" for none), due at the given time, with ids of a generator of its
// own.
func keyedMessages(t *testing.T) func(key string, due time.Time) *storage.Message {
	t.Helper()
	gen, err := ids.NewGenerator(ids.RandomNode())
	if err != nil {
		t.Fatal(err)
	}
	return func(key string, due time.Time) *storage.Message {
		id := gen.Next()
		return &storage.Message{ID: id, Kind: storage.Published, MsgID: strconv.FormatInt(id, 10), Name: "t",
			Headers: map[string]string{"cap-msg-id": strconv.FormatInt(id, 10), "cap-msg-name": "t"},
			Body:    []byte(`{}`), Status: storage.StatusScheduled, Added: due, NextAttemptAt: due, OrderingKey: key}
	}
}

// holdKeyLock takes the lock of the ordering key of m in a session of
// its own, and returns its release.
func holdKeyLock(t *testing.T, d *Driver, db *sql.DB, m *storage.Message) (release func()) {
	t.Helper()
	ctx := context.Background()
	other, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	name := keyLockName(d.q.Published.table, m)
	var got int
	if err := other.QueryRowContext(ctx, `SELECT GET_LOCK(?, 0)`, name).Scan(&got); err != nil || got != 1 {
		t.Fatalf("GET_LOCK in the other session: %d, %v", got, err)
	}
	return func() {
		if _, err := other.ExecContext(ctx, `DO RELEASE_LOCK(?)`, name); err != nil {
			t.Fatal(err)
		}
	}
}

// claimIDs claims published rows, up to 10 heads with runs of up to run
// rows, checks that they are leased, and returns their ids, sorted.
func claimIDs(t *testing.T, d *Driver, run int) []int64 {
	t.Helper()
	now := time.Now().UTC()
	ms, err := d.Claim(context.Background(), storage.Published, storage.ClaimRequest{Now: now, LeaseUntil: now.Add(time.Minute),
		Token: ids.Token(), Limit: 10, Run: run})
	if err != nil {
		t.Fatalf("Claim with Run %d: %v", run, err)
	}
	var out []int64
	for _, m := range ms {
		if m.Status != storage.StatusScheduled || m.LeaseToken == 0 {
			t.Fatalf("claimed row %d: %s, token %d", m.ID, m.Status, m.LeaseToken)
		}
		out = append(out, m.ID)
	}
	slices.Sort(out)
	return out
}

// A claim does not wait for the lock of an ordering key that another
// session holds, since it holds the row locks of its claim by then (see
// keylock.go): it gives up that key's head, leaving it unleased, claims
// the other rows, and claims the head once the lock is free. A claim that
// waited returned an error after its retries, each wait of keyLockWait
// seconds, and left every other row unclaimed meanwhile.
func TestClaimGivesUpRowsOfLockedKey(t *testing.T) {
	ctx := context.Background()
	d, db := newKeyDriver(t)
	msg := keyedMessages(t)
	t0 := time.Now().UTC().Add(-time.Second)
	a, b, free := msg("a", t0), msg("b", t0), msg("", t0)
	if err := d.InsertPublished(ctx, []*storage.Message{a, b, free}, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	release := holdKeyLock(t, d, db, a) // another session holds the lock of key a
	want := []int64{b.ID, free.ID}
	slices.Sort(want)
	if ids := claimIDs(t, d, 0); !slices.Equal(ids, want) {
		t.Fatalf("claimed %v while key a's lock is held elsewhere; want b and the unkeyed row %v", ids, want)
	}
	if m, err := d.Get(ctx, storage.Published, a.ID); err != nil || !m.LeaseUntil.IsZero() || m.LeaseToken != 0 {
		t.Fatalf("a after the claim that gave it up: %+v, %v; want it unleased", m, err)
	}
	release()
	if ids := claimIDs(t, d, 0); !slices.Equal(ids, []int64{a.ID}) {
		t.Fatalf("claimed %v once key a's lock is free; want a (%d)", ids, a.ID)
	}
}

// A claim with ClaimRequest.Run leases with each keyed head the rows that
// follow it, up to Run rows and not past a row that is not due; with its
// key's lock held by another session, the head and its run are given up
// together.
func TestClaimRuns(t *testing.T) {
	ctx := context.Background()
	d, db := newKeyDriver(t)
	msg := keyedMessages(t)
	t0 := time.Now().UTC().Add(-time.Second)
	var k []*storage.Message
	for i := range 8 {
		due := t0
		if i == 6 {
			due = t0.Add(time.Hour) // the runs stop before it
		}
		k = append(k, msg("k", due))
	}
	if err := d.InsertPublished(ctx, k, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	release := holdKeyLock(t, d, db, k[0])
	if ids := claimIDs(t, d, 4); len(ids) != 0 {
		t.Fatalf("claimed %v while the key's lock is held elsewhere; want nothing", ids)
	}
	release()
	if ids, want := claimIDs(t, d, 4), []int64{k[0].ID, k[1].ID, k[2].ID, k[3].ID}; !slices.Equal(ids, want) {
		t.Fatalf("claim with Run 4: %v, want the first four rows %v", ids, want)
	}
	// In flight, the run holds its key.
	if ids := claimIDs(t, d, 4); len(ids) != 0 {
		t.Fatalf("claimed %v while the key's run is in flight", ids)
	}
	if _, err := db.ExecContext(ctx, "UPDATE `"+d.q.Published.table+"` SET status = 'Succeeded', lease_until = NULL, lease_token = NULL WHERE id IN (?, ?, ?, ?)",
		k[0].ID, k[1].ID, k[2].ID, k[3].ID); err != nil {
		t.Fatal(err)
	}
	if ids, want := claimIDs(t, d, 16), []int64{k[4].ID, k[5].ID}; !slices.Equal(ids, want) {
		t.Fatalf("claim with Run 16 after the first run: %v, want %v (the run stops before the row not due)", ids, want)
	}
}
