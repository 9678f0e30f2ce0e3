// The Version area: version isolation (issue #17), DotNetCore.CAP's
// Version column. Rows carry a version; claims and NextDue of one version
// never see another's rows; the empty version is a version of its own.

package storagetest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// testVersions are the versions of the area's rows: the empty version
// (rows of a processor without one), two versions, and one of the
// longest allowed, of every allowed character.
var testVersions = []string{"", "v1", "v2", "Release_2.0-rc.1-abc"}

// claimVersion claims up to 100 rows of kind and version at at.
func claimVersion(t *testing.T, d storage.Store, kind storage.Kind, at time.Time, version string, groups []string) []*storage.Message {
	t.Helper()
	got, err := d.Claim(bg, kind, storage.ClaimRequest{Now: at, LeaseUntil: at.Add(time.Minute), Token: ids.Token(), Limit: 100, Groups: groups, Version: version})
	if err != nil {
		t.Fatalf("Claim of version %q: %v", version, err)
	}
	return got
}

// versionClaims: published rows of each version, due and Delayed-due, in
// and out of an application transaction, are claimed by claims of their
// version only, and read back with it.
func (s *suite[TTx]) versionClaims(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	want := map[string][]int64{}
	var all []*storage.Message
	for i, v := range testVersions {
		due := s.msg("versioned", t0.Add(-time.Duration(i+1)*time.Second))
		delayed := s.delayed("versioned", t0.Add(-time.Millisecond))
		future := s.msg("versioned", t0.Add(time.Hour))
		for _, m := range []*storage.Message{due, delayed, future} {
			m.Version = v
		}
		want[v] = []int64{due.ID, delayed.ID}
		all = append(all, due, delayed, future)
	}
	// Half in the application's transaction, half without one.
	tx, commit, _ := s.h.Begin(bg, t, d)
	if err := d.InsertPublishedTx(bg, tx, all[:len(all)/2], storage.InsertOptions{}); err != nil {
		t.Fatalf("InsertPublishedTx: %v", err)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	s.insert(t, d, all[len(all)/2:]...)
	for _, m := range all {
		if got := get(t, d, storage.Published, m.ID); got.Version != m.Version {
			t.Errorf("row %d read back with version %q, want %q", m.ID, got.Version, m.Version)
		}
	}
	// A version no row has claims nothing.
	if got := claimVersion(t, d, storage.Published, t0, "v3", nil); len(got) != 0 {
		t.Errorf("claim of version v3: %v, want none", idsOf(got))
	}
	for _, v := range testVersions {
		got := claimVersion(t, d, storage.Published, t0, v, nil)
		ids := idsOf(got)
		slices.Sort(ids)
		w := slices.Clone(want[v])
		slices.Sort(w)
		if !slices.Equal(ids, w) {
			t.Errorf("claim of version %q: %v, want %v (its due rows, and no other version's)", v, ids, w)
		}
		for _, m := range got {
			if m.Version != v {
				t.Errorf("claim of version %q returned row %d of version %q", v, m.ID, m.Version)
			}
		}
	}
}

// versionNextDue: NextDue of a version is the earliest due time of that
// version's rows, whatever other versions have before it.
func (s *suite[TTx]) versionNextDue(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	first := map[string]time.Time{}
	for i, v := range testVersions {
		// The later a version in testVersions, the earlier its rows.
		at := t0.Add(time.Duration(10-i) * time.Minute)
		a, b := s.msg("next", at), s.delayed("next", at.Add(time.Minute))
		a.Version, b.Version = v, v
		s.insert(t, d, b, a)
		first[v] = at
	}
	for _, v := range testVersions {
		next, err := d.NextDue(bg, storage.Published, storage.DueRequest{After: t0, Version: v})
		if err != nil || !next.Equal(first[v]) {
			t.Errorf("NextDue of version %q: %v %v, want %v", v, next, err, first[v])
		}
		next, err = d.NextDue(bg, storage.Published, storage.DueRequest{After: first[v], Version: v})
		if err != nil || !next.Equal(first[v].Add(time.Minute)) {
			t.Errorf("NextDue of version %q after its first row: %v %v, want %v", v, next, err, first[v].Add(time.Minute))
		}
	}
	if next, err := d.NextDue(bg, storage.Published, storage.DueRequest{After: t0, Version: "v3"}); err != nil || !next.IsZero() {
		t.Errorf("NextDue of a version without rows: %v %v, want the zero time", next, err)
	}
}

// versionReceived: received rows carry the version they were stored
// with, by InsertReceived and InsertReceivedBatch, and claims of received
// rows, by group or not, take their version's only.
func (s *suite[TTx]) versionReceived(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	batcher, _ := d.(storage.ReceivedBatchInserter)
	want := map[string][]int64{}
	for i, v := range testVersions {
		one := s.received("one-"+v, "g."+v, "t", []byte("{}"))
		one.Version = v
		// The lease of the insert has ended by the claims below.
		if res, err := d.InsertReceived(bg, one, ids.Token(), t0); err != nil || !res.Claimed {
			t.Fatalf("InsertReceived of version %q: %+v %v", v, res, err)
		}
		want[v] = append(want[v], one.ID)
		if batcher != nil && i%2 == 0 {
			two := s.received("two-"+v, "g."+v, "t", []byte("{}"))
			two.Version = v
			if res, err := batcher.InsertReceivedBatch(bg, []*storage.Message{two}, ids.Token(), t0); err != nil || len(res) != 1 || !res[0].Claimed {
				t.Fatalf("InsertReceivedBatch of version %q: %+v %v", v, res, err)
			}
			want[v] = append(want[v], two.ID)
		}
	}
	// Before any claim (a backend may count a lease's end as due time).
	if next, err := d.NextDue(bg, storage.Received, storage.DueRequest{After: t0.Add(-time.Hour), Version: "v1"}); err != nil || !next.Equal(get(t, d, storage.Received, want["v1"][0]).NextAttemptAt) {
		t.Errorf("NextDue of received rows of version v1: %v %v, want the due time of its row", next, err)
	}
	at := t0.Add(time.Second)
	for _, v := range testVersions {
		for _, id := range want[v] {
			if got := get(t, d, storage.Received, id); got.Version != v {
				t.Errorf("received row %d read back with version %q, want %q", id, got.Version, v)
			}
		}
		// By group: every version's group is named, only this version's
		// rows are claimed. The claim's lease hides them from the next.
		var groups []string
		for _, g := range testVersions {
			groups = append(groups, "g."+g)
		}
		got := idsOf(claimVersion(t, d, storage.Received, at, v, groups))
		slices.Sort(got)
		w := slices.Sorted(slices.Values(want[v]))
		if !slices.Equal(got, w) {
			t.Errorf("claim of received rows of version %q by group: %v, want %v", v, got, w)
		}
		// Without groups, after that lease: again its own only.
		got = idsOf(claimVersion(t, d, storage.Received, at.Add(2*time.Minute), v, nil))
		slices.Sort(got)
		if !slices.Equal(got, w) {
			t.Errorf("claim of received rows of version %q: %v, want %v", v, got, w)
		}
	}
}

// versionInvalid: a version that fails storage.CheckVersion is refused by
// inserts (storage.ErrPermanent, nothing stored), claims and NextDue.
func (s *suite[TTx]) versionInvalid(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	for _, bad := range []string{strings.Repeat("v", storage.MaxVersionBytes+1), "v 1", "v1/x", "vé"} {
		ok := s.msg("ok", t0)
		m := s.msg("bad", t0)
		m.Version = bad
		err := d.InsertPublished(bg, []*storage.Message{ok, m}, storage.InsertOptions{})
		if !errors.Is(err, storage.ErrPermanent) {
			t.Errorf("InsertPublished of version %q: %v, want storage.ErrPermanent", bad, err)
		}
		if _, err := d.Get(bg, storage.Published, ok.ID); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("after a refused insert of version %q, the other row of the insert: %v, want storage.ErrNotFound", bad, err)
		}
		r := s.received("bad-"+bad, "g", "t", []byte("{}"))
		r.Version = bad
		if _, err := d.InsertReceived(bg, r, ids.Token(), t0); err == nil {
			t.Errorf("InsertReceived of version %q: no error", bad)
		}
		if _, err := d.Claim(bg, storage.Published, storage.ClaimRequest{Now: t0, LeaseUntil: t0, Token: 1, Limit: 1, Version: bad}); err == nil {
			t.Errorf("Claim of version %q: no error", bad)
		}
		if _, err := d.NextDue(bg, storage.Published, storage.DueRequest{After: t0, Version: bad}); err == nil {
			t.Errorf("NextDue of version %q: no error", bad)
		}
	}
}

// versionListAndClean: the dashboard filters by version, and
// DeleteExpired removes the expired rows of every version, as
// DotNetCore.CAP's DeleteExpiresAsync does.
func (s *suite[TTx]) versionListAndClean(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	byVersion := map[string]int64{}
	for _, v := range testVersions {
		m := s.msg("clean", t0.Add(-time.Second))
		m.Version = v
		s.insert(t, d, m)
		byVersion[v] = m.ID
		c := claimVersion(t, d, storage.Published, t0, v, nil)
		if len(c) != 1 {
			t.Fatalf("claim of version %q: %v", v, idsOf(c))
		}
		if n, err := d.Succeed(bg, storage.Published, completed([]storage.Lease{lease(c[0])}), t0); err != nil || n != 1 {
			t.Fatalf("Succeed: %d %v", n, err)
		}
	}
	for _, v := range testVersions[1:] {
		got, err := d.List(bg, storage.Filter{Kind: storage.Published, Version: v})
		if err != nil || len(got) != 1 || got[0].ID != byVersion[v] || got[0].Version != v {
			t.Errorf("List of version %q: %v %v, want row %d", v, idsOf(got), err, byVersion[v])
		}
	}
	if got, err := d.List(bg, storage.Filter{Kind: storage.Published}); err != nil || len(got) != len(testVersions) {
		t.Errorf("List without a version: %v %v, want the rows of every version", idsOf(got), err)
	}
	if n, err := d.DeleteExpired(bg, storage.Published, t0.Add(time.Second), 100); err != nil || n != int64(len(testVersions)) {
		t.Errorf("DeleteExpired: %d %v, want the %d expired rows of every version", n, err, len(testVersions))
	}
}
