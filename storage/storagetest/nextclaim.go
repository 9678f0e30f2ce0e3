// The NextClaim area: SucceedClaimNext of a Store that implements
// storage.NextClaimer (skipped for one that does not).

package storagetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// succeedClaimNext runs SucceedClaimNext of done at at, with a lease of a
// minute, and checks that it marked want rows and that the rows it
// claimed are leased under its token.
func succeedClaimNext(t *testing.T, d storage.Store, nc storage.NextClaimer, kind storage.Kind, done []*storage.Message,
	at time.Time, limit int, groups []string, want int64) []*storage.Message {
	t.Helper()
	leases := make([]storage.Lease, len(done))
	for i, m := range done {
		leases[i] = lease(m)
	}
	req := storage.ClaimRequest{Now: at, LeaseUntil: at.Add(time.Minute), Token: ids.Token(), Limit: limit,
		Groups: groups, FailedHoldsKey: true}
	n, next, err := nc.SucceedClaimNext(bg, kind, completed(leases), at.Add(time.Hour), req)
	if err != nil {
		t.Fatalf("SucceedClaimNext: %v", err)
	}
	if n != want {
		t.Fatalf("SucceedClaimNext marked %d rows Succeeded, want %d", n, want)
	}
	for _, m := range done {
		if r := get(t, d, kind, m.ID); r.Status != storage.StatusSucceeded && n == int64(len(done)) {
			t.Fatalf("row %d after SucceedClaimNext: %s, want Succeeded", m.ID, r.Status)
		}
	}
	for _, m := range next {
		r := get(t, d, kind, m.ID)
		if m.LeaseToken != req.Token || r.LeaseToken != req.Token || !r.LeaseUntil.Equal(req.LeaseUntil) || r.Status != storage.StatusScheduled {
			t.Fatalf("row %d claimed by SucceedClaimNext: returned token %d, stored token %d until %v, %s; want token %d until %v, Scheduled",
				m.ID, m.LeaseToken, r.LeaseToken, r.LeaseUntil, r.Status, req.Token, req.LeaseUntil)
		}
	}
	return next
}

// nextClaimPublished: the Succeed of keyed heads claims the next row of
// their keys, and nothing else: not the rows without a key, nor the
// heads of other keys, nor a next row not yet due; at most the limit,
// the earliest due first; the rows are Succeeded as by Succeed.
func (s *suite[TTx]) nextClaimPublished(t *testing.T) {
	d, nc := newAs[storage.NextClaimer](t, s)
	t0 := now()
	a1, a2, a3 := s.keyed("a", t0.Add(-5*time.Second)), s.keyed("a", t0.Add(-4*time.Second)), s.keyed("a", t0.Add(-4*time.Second))
	b1, b2 := s.keyed("b", t0.Add(-5*time.Second)), s.keyed("b", t0.Add(-3*time.Second))
	c1, c2 := s.keyed("c", t0.Add(-5*time.Second)), s.keyed("c", t0.Add(time.Hour))
	u1, u2 := s.msg("free", t0.Add(-5*time.Second)), s.msg("free", t0.Add(-5*time.Second))
	s.insert(t, d, a1, a2, a3, b1, b2, c1, c2, u1)
	heads := claimReq(t, d, storage.Published, t0, 100, true, nil)
	if !slices.Equal(sortedIDs(heads), sortedIDs([]*storage.Message{a1, b1, c1, u1})) {
		t.Fatalf("claim: %v, want the heads of a, b, c and the unkeyed row", sortedIDs(heads))
	}
	byID := map[int64]*storage.Message{}
	for _, m := range heads {
		byID[m.ID] = m
	}
	s.insert(t, d, u2) // due, without a key: never claimed by SucceedClaimNext

	// a1 and u1 succeed: a2 only is claimed (b1 and c1 are in flight).
	next := succeedClaimNext(t, d, nc, storage.Published, []*storage.Message{byID[a1.ID], byID[u1.ID]}, t0, 10, nil, 2)
	if !slices.Equal(idsOf(next), []int64{a2.ID}) {
		t.Fatalf("after a1 and u1 succeeded: claimed %v, want a2 %d only", idsOf(next), a2.ID)
	}
	if next[0].OrderingKey != "a" || next[0].Name != "ordered" {
		t.Fatalf("claimed row: key %q, name %q", next[0].OrderingKey, next[0].Name)
	}
	// a2 and b1 succeed, limit 1: the earlier due of a3 and b2.
	next = succeedClaimNext(t, d, nc, storage.Published, []*storage.Message{next[0], byID[b1.ID]}, t0, 1, nil, 2)
	if !slices.Equal(idsOf(next), []int64{a3.ID}) {
		t.Fatalf("after a2 and b1 succeeded, limit 1: claimed %v, want a3 %d (due before b2)", idsOf(next), a3.ID)
	}
	a3c := next[0]
	if got := claimReq(t, d, storage.Published, t0, 100, true, nil); !slices.Equal(sortedIDs(got), sortedIDs([]*storage.Message{b2, u2})) {
		t.Fatalf("claim after: %v, want b2 %d (left by the limit) and u2 %d", sortedIDs(got), b2.ID, u2.ID)
	}
	// c1 succeeds: c2 is not due.
	if next = succeedClaimNext(t, d, nc, storage.Published, []*storage.Message{byID[c1.ID]}, t0, 10, nil, 1); len(next) != 0 {
		t.Fatalf("after c1 succeeded: claimed %v, want nothing (c2 is due in an hour)", idsOf(next))
	}
	// a3 succeeds: a has no row left.
	if next = succeedClaimNext(t, d, nc, storage.Published, []*storage.Message{a3c}, t0, 10, nil, 1); len(next) != 0 {
		t.Fatalf("after a3 succeeded: claimed %v, want nothing (a has no row left)", idsOf(next))
	}
	if next = succeedClaimNext(t, d, nc, storage.Published, nil, t0, 10, nil, 0); len(next) != 0 {
		t.Fatalf("empty done: claimed %v", idsOf(next))
	}
}

// nextClaimLeaseLost: a row whose lease was lost is not marked, and it
// still holds its key: nothing is claimed after it. A zero limit is
// refused, and nothing is marked.
func (s *suite[TTx]) nextClaimLeaseLost(t *testing.T) {
	d, nc := newAs[storage.NextClaimer](t, s)
	t0 := now()
	k1, k2 := s.keyed("k", t0.Add(-2*time.Second)), s.keyed("k", t0.Add(-time.Second))
	s.insert(t, d, k1, k2)
	c := claimReq(t, d, storage.Published, t0, 10, true, nil)
	if !slices.Equal(idsOf(c), []int64{k1.ID}) {
		t.Fatalf("claim: %v, want k1 %d", idsOf(c), k1.ID)
	}
	stale := *c[0]
	stale.LeaseToken++
	if next := succeedClaimNext(t, d, nc, storage.Published, []*storage.Message{&stale}, t0, 10, nil, 0); len(next) != 0 {
		t.Fatalf("after a Succeed under a lost lease: claimed %v, want nothing (k1 still holds its key)", idsOf(next))
	}
	if r := get(t, d, storage.Published, k1.ID); r.Status != storage.StatusScheduled || r.LeaseToken != c[0].LeaseToken {
		t.Fatalf("k1 after a Succeed under a lost lease: %s, token %d; want Scheduled under its lease %d", r.Status, r.LeaseToken, c[0].LeaseToken)
	}
	_, _, err := nc.SucceedClaimNext(bg, storage.Published, completed([]storage.Lease{lease(c[0])}), t0.Add(time.Hour),
		storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: ids.Token()})
	if err == nil {
		t.Fatal("SucceedClaimNext with a zero limit: no error")
	}
	if r := get(t, d, storage.Published, k1.ID); r.Status != storage.StatusScheduled {
		t.Fatalf("k1 after a refused SucceedClaimNext: %s, want Scheduled", r.Status)
	}
}

// nextClaimReceived: received keys are per group; the next row is
// claimed only in the request's groups.
func (s *suite[TTx]) nextClaimReceived(t *testing.T) {
	d, nc := newAs[storage.NextClaimer](t, s)
	t0 := now()
	token := ids.Token()
	var g1, g2 []*storage.Message
	for i := range 3 {
		for _, g := range []string{"g1", "g2"} {
			m := s.received(fmt.Sprintf("n-%d", i), g, "t", []byte("b"))
			m.OrderingKey = "key"
			if _, err := d.InsertReceived(bg, m, token, t0.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if g == "g1" {
				g1 = append(g1, get(t, d, storage.Received, m.ID))
			} else {
				g2 = append(g2, get(t, d, storage.Received, m.ID))
			}
		}
	}
	next := succeedClaimNext(t, d, nc, storage.Received, []*storage.Message{g1[0]}, t0.Add(time.Second), 10, []string{"g1", "g2"}, 1)
	if !slices.Equal(idsOf(next), []int64{g1[1].ID}) || next[0].Group != "g1" {
		t.Fatalf("after g1's head succeeded: claimed %v, want g1's second row %d only", idsOf(next), g1[1].ID)
	}
	if next = succeedClaimNext(t, d, nc, storage.Received, []*storage.Message{g2[0]}, t0.Add(time.Second), 10, []string{"g1"}, 1); len(next) != 0 {
		t.Fatalf("after g2's head succeeded, claiming for g1 only: claimed %v, want nothing", idsOf(next))
	}
	if got := claimReq(t, d, storage.Received, t0.Add(time.Second), 10, true, []string{"g2"}); !slices.Equal(idsOf(got), []int64{g2[1].ID}) {
		t.Fatalf("claim of g2 after: %v, want its second row %d", idsOf(got), g2[1].ID)
	}
}
