// The Ordering area, with versions: a key's sequence is that of one
// version (see "Ordering keys" in package storage), so rows of another
// version never hold a key, and BlockedKeys tells the versions apart.

package storagetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// claimKeysOf claims up to 100 rows of kind and version at at, Failed
// rows holding their key.
func claimKeysOf(t *testing.T, d storage.Store, kind storage.Kind, at time.Time, version string, groups []string) []*storage.Message {
	t.Helper()
	got, err := d.Claim(bg, kind, storage.ClaimRequest{Now: at, LeaseUntil: at.Add(time.Minute), Token: ids.Token(), Limit: 100,
		Groups: groups, Version: version, FailedHoldsKey: true})
	if err != nil {
		t.Fatalf("Claim of version %q: %v", version, err)
	}
	return got
}

// orderingVersions: rows of one key in two versions form two sequences.
// Rows of the empty version with smaller ids — one not due yet, one
// Failed — hold the key in their version only: the key's rows of version
// v1 are claimed (their head only), as are received rows of v1 in a group
// whose empty-version row waits; the empty version's next row stays
// behind its own head. BlockedKeys reports the Failed head with its
// version and counts only its version's waiting rows.
func (s *suite[TTx]) orderingVersions(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	versioned := func(m *storage.Message, v string) *storage.Message { m.Version = v; return m }
	// Version "": a head due in an hour, and a due row behind it.
	e1 := versioned(s.keyed("k", t0.Add(time.Hour)), "")
	e2 := versioned(s.keyed("k", t0.Add(-3*time.Second)), "")
	// Version "": a head of key f that will be Failed.
	f0 := versioned(s.keyed("f", t0.Add(-4*time.Second)), "")
	s.insert(t, d, e1, e2, f0)
	head := claimKeysOf(t, d, storage.Published, t0, "", nil)
	if !slices.Equal(idsOf(head), []int64{f0.ID}) {
		t.Fatalf("claim of the empty version: %v, want f0 %d only (e2 waits behind e1, not due)", idsOf(head), f0.ID)
	}
	if _, err := d.Fail(bg, storage.Published, lease(head[0]), storage.Failure{Error: "boom", Now: t0, Permanent: true,
		ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// Version v1: two rows of each key, after the empty version's.
	a1, a2 := versioned(s.keyed("k", t0.Add(-2*time.Second)), "v1"), versioned(s.keyed("k", t0.Add(-2*time.Second)), "v1")
	g1, g2 := versioned(s.keyed("f", t0.Add(-time.Second)), "v1"), versioned(s.keyed("f", t0.Add(-time.Second)), "v1")
	s.insert(t, d, a1, a2, g1, g2)
	for _, m := range []*storage.Message{a1, g2} {
		if r := get(t, d, storage.Published, m.ID); r.OrderingKey != m.OrderingKey || r.Version != "v1" {
			t.Fatalf("row %d read back with key %q version %q, want %q and v1", m.ID, r.OrderingKey, r.Version, m.OrderingKey)
		}
	}
	got := claimKeysOf(t, d, storage.Published, t0, "v1", nil)
	if !slices.Equal(sortedIDs(got), []int64{a1.ID, g1.ID}) {
		t.Fatalf("claim of v1: %v, want the heads of its keys %d and %d (rows of the empty version hold no key of v1)",
			sortedIDs(got), a1.ID, g1.ID)
	}
	for _, m := range got {
		if m.Version != "v1" {
			t.Errorf("claim of v1 returned row %d of version %q", m.ID, m.Version)
		}
	}
	if again := claimKeysOf(t, d, storage.Published, t0, "", nil); len(again) != 0 {
		t.Fatalf("claim of the empty version with its heads not due and Failed: %v, want none", idsOf(again))
	}

	if ki, ok := d.(storage.KeyInspector); ok {
		blocked, err := ki.BlockedKeys(bg, storage.Published, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(blocked) != 1 || blocked[0].OrderingKey != "f" || blocked[0].Version != "" || blocked[0].Head == nil ||
			blocked[0].Head.ID != f0.ID || blocked[0].Head.Version != "" || blocked[0].Waiting != 0 {
			t.Errorf("BlockedKeys: %+v, want key f of the empty version, head %d, none waiting (v1's rows are another sequence)",
				blocked, f0.ID)
		}
	}

	// Received rows: one group, one key, two versions. The first row of
	// each version is the head of its own sequence, stored claimed.
	token := ids.Token()
	var rec []*storage.Message
	for i, v := range []string{"", "v1", "v1"} {
		m := s.received(fmt.Sprintf("r-%d", i), "g", "t", []byte("b"))
		m.OrderingKey, m.Version = "rk", v
		head := i < 2
		if res, err := d.InsertReceived(bg, m, token, t0.Add(time.Minute)); err != nil || res.Claimed != head || res.Queued == head {
			t.Fatalf("InsertReceived of keyed row %d of version %q: %+v %v, want claimed %v (the empty version's row holds no key of v1)",
				i, v, res, err, head)
		}
		rec = append(rec, m)
	}
	if got := claimKeysOf(t, d, storage.Received, t0.Add(time.Second), "v1", []string{"g"}); len(got) != 0 {
		t.Fatalf("claim of received rows of v1 with its head in flight: %v, want none", idsOf(got))
	}
	succeedAll(t, d, storage.Received, get(t, d, storage.Received, rec[1].ID))
	if got := claimKeysOf(t, d, storage.Received, t0.Add(time.Second), "v1", []string{"g"}); !slices.Equal(idsOf(got), []int64{rec[2].ID}) {
		t.Fatalf("claim of received rows of v1: %v, want its next row %d", idsOf(got), rec[2].ID)
	}
}
