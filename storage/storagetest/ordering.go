// The Ordering area: the claim rule of ordering keys (see "Ordering keys"
// in package storage), received keyed rows stored for a claim, and
// BlockedKeys.

package storagetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// keyed is a published message of key, due at due.
func (s *suite[TTx]) keyed(key string, due time.Time) *storage.Message {
	m := s.msg("ordered", due)
	m.OrderingKey = key
	return m
}

// claimReq claims with the given FailedHoldsKey and groups.
func claimReq(t *testing.T, d storage.Store, kind storage.Kind, at time.Time, limit int, failedHolds bool, groups []string) []*storage.Message {
	t.Helper()
	got, err := d.Claim(bg, kind, storage.ClaimRequest{Now: at, LeaseUntil: at.Add(time.Minute), Token: ids.Token(),
		Limit: limit, FailedHoldsKey: failedHolds, Groups: groups})
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return got
}

func sortedIDs(ms []*storage.Message) []int64 {
	out := idsOf(ms)
	slices.Sort(out)
	return out
}

func succeedAll(t *testing.T, d storage.Store, kind storage.Kind, ms ...*storage.Message) {
	t.Helper()
	leases := make([]storage.Lease, len(ms))
	for i, m := range ms {
		leases[i] = lease(m)
	}
	if n, err := d.Succeed(bg, kind, completed(leases), now().Add(time.Hour)); err != nil || n != int64(len(ms)) {
		t.Fatalf("Succeed: %d rows, %v; want %d", n, err, len(ms))
	}
}

// orderingHeadOnly: a claim takes the first row of each key, the rows
// without a key, and the next row of a key once the previous succeeded.
func (s *suite[TTx]) orderingHeadOnly(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	a1, a2, a3 := s.keyed("a", t0.Add(-3*time.Second)), s.keyed("a", t0.Add(-3*time.Second)), s.keyed("a", t0.Add(-3*time.Second))
	b1, b2 := s.keyed("b", t0.Add(-2*time.Second)), s.keyed("b", t0.Add(-2*time.Second))
	u1, u2 := s.msg("free", t0.Add(-time.Second)), s.msg("free", t0.Add(-time.Second))
	s.insert(t, d, a1, a2, a3, b1, b2, u1, u2)
	if m := get(t, d, storage.Published, a2.ID); m.OrderingKey != "a" {
		t.Fatalf("stored ordering key %q, want %q", m.OrderingKey, "a")
	}
	got := claimReq(t, d, storage.Published, t0, 100, true, nil)
	want := []int64{a1.ID, b1.ID, u1.ID, u2.ID}
	slices.Sort(want)
	if !slices.Equal(sortedIDs(got), want) {
		t.Fatalf("claim: %v, want the heads of a and b and the unkeyed rows %v", sortedIDs(got), want)
	}
	for _, m := range got {
		if m.ID == a1.ID && m.OrderingKey != "a" {
			t.Errorf("claimed row's ordering key %q", m.OrderingKey)
		}
	}
	// In flight, a1 and b1 hold their keys, even after a2's due time.
	if again := claimReq(t, d, storage.Published, t0.Add(time.Second), 100, true, nil); len(again) != 0 {
		t.Fatalf("claimed %v while the heads are in flight", idsOf(again))
	}
	succeedAll(t, d, storage.Published, got[slices.IndexFunc(got, func(m *storage.Message) bool { return m.ID == a1.ID })])
	if next := claimReq(t, d, storage.Published, t0.Add(time.Second), 100, true, nil); !slices.Equal(idsOf(next), []int64{a2.ID}) {
		t.Fatalf("after a1 succeeded: %v, want a2 %d only", idsOf(next), a2.ID)
	}
}

// orderingPredecessorBlocks: a pending row with a smaller id holds its
// key whether it is due, Delayed or waiting for a retry; a Failed one
// only when the request says so.
func (s *suite[TTx]) orderingPredecessorBlocks(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	// Not due yet: Scheduled in an hour, and Delayed.
	later, after := s.keyed("later", t0.Add(time.Hour)), s.keyed("later", t0.Add(-time.Second))
	del := s.keyed("delayed", t0.Add(time.Hour))
	del.Added, del.Status = t0, storage.StatusDelayed
	afterDel := s.keyed("delayed", t0.Add(-time.Second))
	// Waiting for its retry, and Failed.
	retry, afterRetry := s.keyed("retry", t0.Add(-2*time.Second)), s.keyed("retry", t0.Add(-time.Second))
	failed, afterFailed := s.keyed("failed", t0.Add(-2*time.Second)), s.keyed("failed", t0.Add(-time.Second))
	s.insert(t, d, later, after, del, afterDel, retry, afterRetry, failed, afterFailed)

	// One claim, of the heads only: retry and failed.
	got := claimReq(t, d, storage.Published, t0, 100, true, nil)
	if !slices.Equal(sortedIDs(got), []int64{retry.ID, failed.ID}) {
		t.Fatalf("first claim: %v, want the heads %d and %d only (later, delayed not due; their successors blocked)",
			sortedIDs(got), retry.ID, failed.ID)
	}
	for _, m := range got {
		f := storage.Failure{Error: "x", Now: t0, NextAttemptAt: t0.Add(time.Hour), MaxAttempts: 10, Permanent: m.ID == failed.ID,
			ExpiresAt: t0.Add(time.Hour)}
		if _, err := d.Fail(bg, storage.Published, lease(m), f); err != nil {
			t.Fatal(err)
		}
	}
	if got := claimReq(t, d, storage.Published, t0.Add(time.Second), 100, true, nil); len(got) != 0 {
		t.Fatalf("claim with Failed holding keys: %v, want nothing", idsOf(got))
	}
	got = claimReq(t, d, storage.Published, t0.Add(time.Second), 100, false, nil)
	if !slices.Equal(idsOf(got), []int64{afterFailed.ID}) {
		t.Fatalf("claim with Failed releasing keys: %v, want %d only (the retrying row still holds its key)", idsOf(got), afterFailed.ID)
	}
	// Requeueing the Failed head under "block": it goes first again.
	s2 := s.h.New(t)
	h, n := s.keyed("k", t0.Add(-2*time.Second)), s.keyed("k", t0.Add(-time.Second))
	s.insert(t, s2, h, n)
	c := claimReq(t, s2, storage.Published, t0, 10, true, nil)
	if _, err := s2.Fail(bg, storage.Published, lease(c[0]), storage.Failure{Error: "x", Now: t0, Permanent: true, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Requeue(bg, storage.Published, []int64{h.ID}, t0); err != nil {
		t.Fatal(err)
	}
	if got := claimReq(t, s2, storage.Published, t0.Add(time.Second), 10, true, nil); !slices.Equal(idsOf(got), []int64{h.ID}) {
		t.Fatalf("after a requeue of the Failed head: %v, want the head %d", idsOf(got), h.ID)
	}
}

// orderingReceived: a keyed received message is stored claimed when it
// is the head of its key (no row of its key, group and version that is
// not Succeeded), else unleased (for a claim); its Failed duplicate is
// reset unleased, keys are per group, and a claim restricted to groups
// keeps the rule.
func (s *suite[TTx]) orderingReceived(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	token := ids.Token()
	var g1 []*storage.Message
	for i := range 3 {
		m := s.received(fmt.Sprintf("k-%d", i), "g1", "t", []byte("b"))
		m.OrderingKey = "key"
		g1 = append(g1, m)
	}
	other := s.received("k-0", "g2", "t", []byte("b"))
	other.OrderingKey = "key"
	free := s.received("free", "g1", "t", []byte("b"))
	for i, m := range append(slices.Clone(g1), other) {
		res, err := d.InsertReceived(bg, m, token, t0.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		head := i == 0 || m == other
		if res.Claimed != head || res.Queued == head || res.ID != m.ID {
			t.Fatalf("InsertReceived of keyed message %d: %+v, want claimed %v (the head of its key in its group), queued %v, id %d",
				i, res, head, !head, m.ID)
		}
		r := get(t, d, storage.Received, m.ID)
		if r.LeaseUntil.IsZero() == head || r.OrderingKey != "key" || r.Status != storage.StatusScheduled {
			t.Fatalf("stored keyed row %d: lease until %v, key %q, %s; want leased %v, key, Scheduled", i, r.LeaseUntil, r.OrderingKey, r.Status, head)
		}
	}
	if res, err := d.InsertReceived(bg, free, token, t0.Add(time.Minute)); err != nil || !res.Claimed || res.Queued {
		t.Fatalf("InsertReceived of an unkeyed message: %+v %v, want claimed", res, err)
	}
	if res, err := d.InsertReceived(bg, g1[1], ids.Token(), t0.Add(time.Minute)); err != nil || res.Claimed || res.Queued {
		t.Fatalf("duplicate of a keyed Scheduled row: %+v %v, want neither claimed nor queued", res, err)
	}
	// The heads stored claimed are in flight: nothing of their keys is due.
	if got := claimReq(t, d, storage.Received, t0.Add(time.Second), 100, true, []string{"g1", "g2"}); len(got) != 0 {
		t.Fatalf("claim with the heads of g1 and g2 in flight since their insert: %v", idsOf(got))
	}
	// The head fails for good (under the lease of its insert); a new
	// delivery of it resets it, unleased, and it goes first again.
	head := get(t, d, storage.Received, g1[0].ID)
	if head.LeaseToken != token {
		t.Fatalf("head stored claimed with lease token %d, want %d", head.LeaseToken, token)
	}
	if _, err := d.Fail(bg, storage.Received, lease(head), storage.Failure{Error: "x", Now: t0, Permanent: true, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	again := s.received("k-0", "g1", "t", []byte("b"))
	again.OrderingKey = "key"
	res, err := d.InsertReceived(bg, again, ids.Token(), t0.Add(time.Minute))
	if err != nil || !res.Queued || res.Claimed || !res.Reset || res.ID != g1[0].ID {
		t.Fatalf("redelivery of the Failed keyed head: %+v %v, want queued and reset, id %d", res, err, g1[0].ID)
	}
	if got := claimReq(t, d, storage.Received, t0.Add(time.Second), 100, true, []string{"g1"}); !slices.Equal(idsOf(got), []int64{g1[0].ID}) {
		t.Fatalf("claim after the reset: %v, want the head %d", idsOf(got), g1[0].ID)
	}

	// A batch: the first row of a free key is its head, stored claimed;
	// the key's next rows, and a row of a key with rows pending, are
	// stored for a claim.
	bi, ok := d.(storage.ReceivedBatchInserter)
	if !ok {
		return
	}
	b1, b2 := s.received("b-1", "g3", "t", []byte("b")), s.received("b-2", "g3", "t", []byte("b"))
	b1.OrderingKey, b2.OrderingKey = "bk", "bk"
	b3 := s.received("b-3", "g3", "t", []byte("b"))
	b4 := s.received("b-4", "g1", "t", []byte("b"))
	b4.OrderingKey = "key" // g1's key has rows pending
	rs, err := bi.InsertReceivedBatch(bg, []*storage.Message{b1, b2, b3, b4}, ids.Token(), t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !rs[0].Claimed || rs[0].Queued || !rs[1].Queued || rs[1].Claimed || !rs[2].Claimed || rs[2].Queued || !rs[3].Queued || rs[3].Claimed {
		t.Fatalf("batch results %+v: want the head of bk claimed, its next row queued, the unkeyed row claimed, the row of a busy key queued", rs)
	}
	if r := get(t, d, storage.Received, b2.ID); !r.LeaseUntil.IsZero() || r.OrderingKey != "bk" {
		t.Fatalf("keyed row of a batch after its head: lease until %v key %q", r.LeaseUntil, r.OrderingKey)
	}
	if r := get(t, d, storage.Received, b1.ID); r.LeaseUntil.IsZero() || r.OrderingKey != "bk" {
		t.Fatalf("head of a batch: lease until %v key %q, want leased", r.LeaseUntil, r.OrderingKey)
	}
	if got := claimReq(t, d, storage.Received, t0.Add(time.Second), 100, true, []string{"g3"}); len(got) != 0 {
		t.Fatalf("claim of g3 with its head in flight: %v, want nothing", idsOf(got))
	}
}

// orderingReceivedBatchIDOrder: of one key's messages in a batch, the
// one with the smallest ID is its head, whatever the order of their
// message ids as text (a storage sorts a batch's rows by message id) and
// of the messages in the batch: with "evt-9", "evt-10" and "evt-100"
// (ids ascending, text order "evt-10" < "evt-100" < "evt-9"), "evt-9" is
// stored claimed and the others unleased, claimed in id order after it.
func (s *suite[TTx]) orderingReceivedBatchIDOrder(t *testing.T) {
	d, bi := newAs[storage.ReceivedBatchInserter](t, s)
	t0 := now()
	var seq []*storage.Message // in id order
	for _, msgID := range []string{"evt-9", "evt-10", "evt-100"} {
		m := s.received(msgID, "g", "t", []byte("b"))
		m.OrderingKey = "k"
		seq = append(seq, m)
	}
	// The batch in neither id nor text order.
	batch := []*storage.Message{seq[1], seq[0], seq[2]}
	rs, err := bi.InsertReceivedBatch(bg, batch, ids.Token(), t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range batch {
		head := m == seq[0]
		if rs[i].Claimed != head || rs[i].Queued == head || rs[i].ID != m.ID {
			t.Errorf("batch result of %q (id %d): %+v, want claimed %v (the smallest id of its key is the head), queued %v",
				m.MsgID, m.ID, rs[i], head, !head)
		}
		if r := get(t, d, storage.Received, m.ID); r.LeaseUntil.IsZero() == head {
			t.Errorf("stored row of %q: lease until %v, want leased %v", m.MsgID, r.LeaseUntil, head)
		}
	}
	if t.Failed() {
		return
	}
	// The rest of the key follows its head, in id order.
	head := get(t, d, storage.Received, seq[0].ID)
	for _, next := range seq[1:] {
		succeedAll(t, d, storage.Received, head)
		got := claimReq(t, d, storage.Received, t0.Add(time.Second), 100, true, nil)
		if !slices.Equal(idsOf(got), []int64{next.ID}) {
			t.Fatalf("claim after %q succeeded: %v, want %q (id %d)", head.MsgID, idsOf(got), next.MsgID, next.ID)
		}
		head = got[0]
	}
}

// orderingConcurrent: claimers racing over many keys never hold two rows
// of one key at once, and never claim a row before the previous row of
// its key succeeded.
func (s *suite[TTx]) orderingConcurrent(t *testing.T) {
	d := s.h.New(t)
	const keys, perKey = 20, 10
	t0 := now().Add(-time.Minute)
	order := map[string][]int64{}
	var msgs []*storage.Message
	for i := range perKey {
		for k := range keys {
			m := s.keyed(fmt.Sprintf("key-%d", k), t0.Add(time.Duration(i)*time.Millisecond))
			order[m.OrderingKey] = append(order[m.OrderingKey], m.ID)
			msgs = append(msgs, m)
		}
	}
	s.insert(t, d, msgs...)

	var mu sync.Mutex
	next := map[string]int{} // index in order of each key's next row
	inFlight := map[string]int64{}
	var errs []string
	done := 0
	deadline := time.Now().Add(30 * time.Second)
	var wg sync.WaitGroup
	for w := range s.h.Claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for time.Now().Before(deadline) {
				mu.Lock()
				finished := done == keys*perKey || len(errs) > 0
				mu.Unlock()
				if finished {
					return
				}
				at := now()
				got, err := d.Claim(bg, storage.Published, storage.ClaimRequest{Now: at, LeaseUntil: at.Add(time.Minute),
					Token: ids.Token(), Limit: 1 + rng.IntN(8), FailedHoldsKey: true})
				if err != nil {
					mu.Lock()
					errs = append(errs, "Claim: "+err.Error())
					mu.Unlock()
					return
				}
				mu.Lock()
				for _, m := range got {
					k := m.OrderingKey
					if other, ok := inFlight[k]; ok {
						errs = append(errs, fmt.Sprintf("key %s: claimed %d while %d is in flight", k, m.ID, other))
					}
					if want := order[k][next[k]]; m.ID != want {
						errs = append(errs, fmt.Sprintf("key %s: claimed %d, want its next row %d", k, m.ID, want))
					}
					inFlight[k] = m.ID
				}
				mu.Unlock()
				if len(got) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
				// Forget the rows before their Succeed commits: a claim
				// of a key's next row cannot return before it.
				mu.Lock()
				for _, m := range got {
					delete(inFlight, m.OrderingKey)
					next[m.OrderingKey]++
				}
				mu.Unlock()
				leases := make([]storage.Lease, len(got))
				for i, m := range got {
					leases[i] = lease(m)
				}
				// A deadlock with a claim (a backend without SKIP LOCKED)
				// is transient: the caller retries it.
				var n int64
				for try := range 8 {
					if n, err = d.Succeed(bg, storage.Published, completed(leases), now().Add(time.Hour)); err == nil || errors.Is(err, storage.ErrPermanent) {
						break
					}
					// Back off as the engine does, or the same claims
					// collide again (seen at a load average of 13).
					time.Sleep(time.Duration(try+1) * time.Duration(1+rng.IntN(5)) * time.Millisecond)
				}
				mu.Lock()
				if err != nil || n != int64(len(got)) {
					errs = append(errs, fmt.Sprintf("Succeed: %d of %d rows, %v", n, len(got), err))
				}
				done += len(got)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i, e := range errs {
		if i == 10 {
			t.Errorf("... and %d more", len(errs)-10)
			break
		}
		t.Error(e)
	}
	if done != keys*perKey && len(errs) == 0 {
		t.Errorf("claimed %d rows in 30s, want %d", done, keys*perKey)
	}
}

// blockedKeys: BlockedKeys lists a key whose head is Failed with the
// rows waiting behind it, and not a key whose Failed row is not its
// head, nor one without a Failed row.
func (s *suite[TTx]) blockedKeys(t *testing.T) {
	d := s.h.New(t)
	ki, ok := d.(storage.KeyInspector)
	if !ok {
		t.Skip("the Store does not implement storage.KeyInspector")
	}
	t0 := now()
	h, w1, w2 := s.keyed("blocked", t0.Add(-3*time.Second)), s.keyed("blocked", t0.Add(-3*time.Second)), s.keyed("blocked", t0.Add(-3*time.Second))
	ok1, ok2 := s.keyed("fine", t0.Add(-2*time.Second)), s.keyed("fine", t0.Add(-2*time.Second))
	s.insert(t, d, h, w1, w2, ok1, ok2)
	for _, m := range claimReq(t, d, storage.Published, t0, 10, true, nil) {
		if _, err := d.Fail(bg, storage.Published, lease(m), storage.Failure{Error: "boom", Now: t0, Permanent: m.ID == h.ID,
			NextAttemptAt: t0.Add(time.Hour), ExpiresAt: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ki.BlockedKeys(bg, storage.Published, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].OrderingKey != "blocked" || got[0].Head == nil || got[0].Head.ID != h.ID ||
		got[0].Waiting != 2 || got[0].Group != "" || got[0].Head.LastError != "boom" {
		t.Fatalf("BlockedKeys: %+v, want key blocked, head %d, 2 waiting", got, h.ID)
	}
	if empty, err := ki.BlockedKeys(bg, storage.Received, 10); err != nil || len(empty) != 0 {
		t.Errorf("BlockedKeys of received rows: %+v %v, want none", empty, err)
	}
	if _, err := d.Delete(bg, storage.Published, []int64{h.ID}); err != nil {
		t.Fatal(err)
	}
	if got, err := ki.BlockedKeys(bg, storage.Published, 10); err != nil || len(got) != 0 {
		t.Errorf("BlockedKeys after deleting the head: %+v %v, want none", got, err)
	}
	if got := claimReq(t, d, storage.Published, t0, 10, true, nil); !slices.Equal(idsOf(got), []int64{w1.ID}) {
		t.Errorf("claim after deleting the Failed head: %v, want %d", idsOf(got), w1.ID)
	}
}
