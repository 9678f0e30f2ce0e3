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
// attempts and with the empty version, are claimed (by a claim of the
// empty version, not of another), record a failed attempt in their new
// history, and NextDue sees them.
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
		// Version isolation (issue #17): an old row has the empty version,
		// which a claim of another version does not take.
		if m.Version != "" {
			t.Errorf("old %s row: version %q, want the empty version", k.kind, m.Version)
		}
		if c, err := d.Claim(ctx, k.kind, storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: 6, Limit: 10, Version: "v1"}); err != nil || len(c) != 0 {
			t.Fatalf("claim of version v1 took %d old %s rows (%v), want none", len(c), k.kind, err)
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
	if next, err := d.NextDue(ctx, storage.Published, storage.DueRequest{After: t0.Add(-time.Hour)}); err != nil || !next.Equal(t0) {
		t.Errorf("NextDue: %v %v, want %v", next, err, t0)
	}
	checkUpgradedKeys(t, d, t0)
}

// checkUpgradedKeys checks that upgraded tables hold ordering keys (#18)
// and versions (issue #17) together, and that their claims keep each
// key's order per version: of two keyed rows of the empty version and two
// of version v1, all of key "k", a claim of each version takes its first
// row only.
func checkUpgradedKeys(t *testing.T, d storage.Store, t0 time.Time) {
	t.Helper()
	ctx := context.Background()
	var msgs []*storage.Message
	for _, r := range []struct {
		id      int64
		version string
	}{{10, ""}, {11, ""}, {12, "v1"}, {13, "v1"}} {
		msgs = append(msgs, &storage.Message{ID: r.id, Kind: storage.Published, Name: "new", Headers: map[string]string{},
			Body: []byte("b"), Status: storage.StatusScheduled, Added: t0, NextAttemptAt: t0, OrderingKey: "k", Version: r.version})
	}
	if err := d.InsertPublished(ctx, msgs, storage.InsertOptions{}); err != nil {
		t.Fatalf("inserting keyed rows into upgraded tables: %v", err)
	}
	for i, c := range []struct {
		version string
		want    int64
	}{{"", 10}, {"v1", 12}} {
		got, err := d.Claim(ctx, storage.Published, storage.ClaimRequest{Now: t0.Add(time.Hour), LeaseUntil: t0.Add(2 * time.Hour),
			Token: int64(8 + i), Limit: 10, Version: c.version})
		if err != nil {
			t.Fatal(err)
		}
		var keyed []int64
		for _, m := range got {
			if m.OrderingKey != "" {
				keyed = append(keyed, m.ID)
				if m.OrderingKey != "k" || m.Version != c.version {
					t.Errorf("claimed keyed row %d of version %q: key %q version %q", m.ID, c.version, m.OrderingKey, m.Version)
				}
			}
		}
		if len(keyed) != 1 || keyed[0] != c.want {
			t.Errorf("claim of keyed rows of version %q in upgraded tables: %v, want [%d]", c.version, keyed, c.want)
		}
	}
}
