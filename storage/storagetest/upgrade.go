package storagetest

import (
	"context"
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
)

// CheckUpgraded checks, after Migrate upgraded tables of a previous
// schema, the two rows a backend's upgrade test inserted before it: the
// published row with id 1 and the received row with id 2, both Scheduled
// and due at t0, with body "body". They read back with no Policy and no
// attempts, are claimed, record a failed attempt in their new history, and
// NextDue sees them.
func CheckUpgraded(t *testing.T, d storage.Store, t0 time.Time) {
	t.Helper()
	ctx := context.Background()
	for _, k := range []struct {
		kind storage.Kind
		id   int64
	}{{storage.Published, 1}, {storage.Received, 2}} {
		m, err := d.Get(ctx, k.kind, k.id)
		if err != nil {
			t.Fatalf("Get of an old %s row: %v", k.kind, err)
		}
		if m.Policy != "" || len(m.Attempts) != 0 || m.Status != storage.StatusScheduled || string(m.Body) != "body" {
			t.Errorf("old %s row: policy %q attempts %v status %s body %q", k.kind, m.Policy, m.Attempts, m.Status, m.Body)
		}
		c, err := d.Claim(ctx, k.kind, storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: 7, Limit: 10})
		if err != nil || len(c) != 1 {
			t.Fatalf("claim of the old %s row: %d rows, %v", k.kind, len(c), err)
		}
		a := storage.Attempt{At: t0, Duration: time.Millisecond, Error: "first"}
		if _, err := d.Fail(ctx, k.kind, storage.Lease{ID: k.id, Token: 7}, storage.Failure{Error: "first", Now: t0, NextAttemptAt: t0, Attempt: a}); err != nil {
			t.Fatal(err)
		}
		if m, err := d.Get(ctx, k.kind, k.id); err != nil || len(m.Attempts) != 1 || m.Attempts[0].Error != "first" {
			t.Errorf("old %s row after Fail: %+v %v", k.kind, m, err)
		}
	}
	if next, err := d.NextDue(ctx, storage.Published, t0.Add(-time.Hour)); err != nil || !next.Equal(t0) {
		t.Errorf("NextDue: %v %v, want %v", next, err, t0)
	}
	checkUpgradedKeys(t, d, t0)
}

// checkUpgradedKeys checks that upgraded tables hold ordering keys (#18)
// and that their claims keep the key's order: of two keyed rows, the
// first only.
func checkUpgradedKeys(t *testing.T, d storage.Store, t0 time.Time) {
	t.Helper()
	ctx := context.Background()
	var msgs []*storage.Message
	for _, id := range []int64{10, 11} {
		msgs = append(msgs, &storage.Message{ID: id, Kind: storage.Published, Name: "new", Headers: map[string]string{},
			Body: []byte("b"), Status: storage.StatusScheduled, Added: t0, NextAttemptAt: t0, OrderingKey: "k"})
	}
	if err := d.InsertPublished(ctx, msgs, storage.InsertOptions{}); err != nil {
		t.Fatalf("inserting keyed rows into upgraded tables: %v", err)
	}
	c, err := d.Claim(ctx, storage.Published, storage.ClaimRequest{Now: t0.Add(time.Hour), LeaseUntil: t0.Add(2 * time.Hour), Token: 8, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var keyed []int64
	for _, m := range c {
		if m.OrderingKey != "" {
			keyed = append(keyed, m.ID)
		}
	}
	if len(keyed) != 1 || keyed[0] != 10 {
		t.Errorf("claim of keyed rows in upgraded tables: %v, want [10]", keyed)
	}
}
