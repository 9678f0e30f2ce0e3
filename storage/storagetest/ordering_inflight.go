// The Ordering area, continued: at most one row of a key in flight, also
// when rows of a key become visible out of id order (a late commit) and
// when received keyed rows are stored claimed as the head of their key.

package storagetest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// orderingLateCommit: a row that becomes visible after a row of its key
// with a larger id was claimed (two publishing transactions committed in
// the order opposite to their ids) is not due while that row is in
// flight, and is claimed once it succeeded.
func (s *suite[TTx]) orderingLateCommit(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	first, second := s.keyed("late", t0.Add(-2*time.Second)), s.keyed("late", t0.Add(-2*time.Second))
	if first.ID >= second.ID {
		t.Fatalf("ids %d, %d: want increasing", first.ID, second.ID)
	}
	s.insert(t, d, second)
	got := claimReq(t, d, storage.Published, t0, 10, true, nil)
	if !slices.Equal(idsOf(got), []int64{second.ID}) {
		t.Fatalf("claim: %v, want %d", idsOf(got), second.ID)
	}
	s.insert(t, d, first) // commits after second was claimed
	for _, failedHolds := range []bool{true, false} {
		if again := claimReq(t, d, storage.Published, t0.Add(time.Second), 10, failedHolds, nil); len(again) != 0 {
			t.Fatalf("claim (FailedHoldsKey %v) while %d of the key is in flight: %v, want nothing", failedHolds, second.ID, idsOf(again))
		}
	}
	succeedAll(t, d, storage.Published, got...)
	if next := claimReq(t, d, storage.Published, t0.Add(time.Second), 10, true, nil); !slices.Equal(idsOf(next), []int64{first.ID}) {
		t.Fatalf("claim after %d succeeded: %v, want the late row %d", second.ID, idsOf(next), first.ID)
	}
	// A lease that ended holds nothing: its holder died.
	third := s.keyed("late", t0.Add(-time.Second))
	s.insert(t, d, third)
	if next := claimReq(t, d, storage.Published, t0.Add(2*time.Minute), 10, true, nil); !slices.Equal(idsOf(next), []int64{first.ID}) {
		t.Fatalf("claim after the lease of %d ended: %v, want it again", first.ID, idsOf(next))
	}
}

// keyTracker records which rows of each key are in flight in a
// concurrent test, and the violations: a second row of a key in flight.
type keyTracker struct {
	mu       sync.Mutex
	inFlight map[string]int64
	errs     []string
	done     int
}

// take records that m's row is in flight.
func (k *keyTracker) take(m *storage.Message) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := m.Group + "/" + m.OrderingKey
	if other, ok := k.inFlight[key]; ok {
		k.errs = append(k.errs, fmt.Sprintf("key %s: %d in flight while %d is", key, m.ID, other))
	}
	k.inFlight[key] = m.ID
}

// leave records that m's row leaves flight; the caller's Succeed follows.
func (k *keyTracker) leave(m *storage.Message) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := m.Group + "/" + m.OrderingKey
	if k.inFlight[key] == m.ID {
		delete(k.inFlight, key)
	}
	k.done++
}

func (k *keyTracker) fail(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.errs = append(k.errs, fmt.Sprintf(format, args...))
}

func (k *keyTracker) state() (done int, failed bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.done, len(k.errs) > 0
}

func (k *keyTracker) report(t *testing.T) {
	for i, e := range k.errs {
		if i == 10 {
			t.Errorf("... and %d more", len(k.errs)-10)
			break
		}
		t.Error(e)
	}
}

// finish runs the attempt of a row in flight: a short pause, then it
// leaves flight and succeeds.
func (k *keyTracker) finish(d storage.Store, kind storage.Kind, rng *rand.Rand, ms []*storage.Message) {
	if len(ms) == 0 {
		return
	}
	time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)
	leases := make([]storage.Lease, len(ms))
	for i, m := range ms {
		k.leave(m)
		leases[i] = lease(m)
	}
	var n int64
	var err error
	// A deadlock with a claim (a backend without SKIP LOCKED) is
	// transient: the caller retries it.
	for i := range 10 {
		if n, err = d.Succeed(bg, kind, completed(leases), now().Add(time.Hour)); err == nil {
			break
		}
		time.Sleep(time.Duration(i+1) * time.Millisecond)
	}
	if err != nil || n != int64(len(ms)) {
		k.fail("Succeed: %d of %d rows, %v", n, len(ms), err)
	}
}

// orderingReceivedConcurrent: received keyed rows stored by concurrent
// inserters (the head of a key stored claimed, the others for a claim)
// while concurrent claimers take the rest never put two rows of a key in
// flight; some of the inserts store a key's rows with decreasing ids, so
// that rows become visible after larger ids of their key (late commits).
func (s *suite[TTx]) orderingReceivedConcurrent(t *testing.T) {
	d := s.h.New(t)
	const keys, perKey, inserters = 6, 24, 4
	var msgs [inserters][]*storage.Message
	for i := range perKey {
		for k := range keys {
			m := s.received(fmt.Sprintf("m-%d-%d", k, i), "g", "t", []byte("b"))
			m.OrderingKey = fmt.Sprintf("key-%d", k)
			w := (i + k) % inserters
			msgs[w] = append(msgs[w], m)
		}
	}
	bi, _ := d.(storage.ReceivedBatchInserter)
	k := &keyTracker{inFlight: map[string]int64{}}
	deadline := time.Now().Add(30 * time.Second)
	var wg sync.WaitGroup
	for w := range inserters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			ms := msgs[w]
			for len(ms) > 0 && time.Now().Before(deadline) {
				n := min(len(ms), 1+rng.IntN(4))
				batch := ms[:n]
				ms = ms[n:]
				if w%2 == 1 {
					slices.Reverse(batch) // larger ids stored first
				}
				token, until := ids.Token(), now().Add(time.Minute)
				var res []storage.ReceivedInsert
				var err error
				if bi != nil && n > 1 && w < 2 {
					res, err = bi.InsertReceivedBatch(bg, batch, token, until)
				} else {
					for _, m := range batch {
						var r storage.ReceivedInsert
						if r, err = d.InsertReceived(bg, m, token, until); err != nil {
							break
						}
						res = append(res, r)
					}
				}
				if err != nil {
					k.fail("insert: %v", err)
					return
				}
				var claimed []*storage.Message
				for i, r := range res {
					if r.Claimed {
						m := *batch[i]
						m.LeaseToken, m.LeaseUntil = token, until
						k.take(&m)
						claimed = append(claimed, &m)
					}
				}
				k.finish(d, storage.Received, rng, claimed)
			}
		}()
	}
	for w := range s.h.Claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for time.Now().Before(deadline) {
				if done, failed := k.state(); done == keys*perKey || failed {
					return
				}
				at := now()
				got, err := d.Claim(bg, storage.Received, storage.ClaimRequest{Now: at, LeaseUntil: at.Add(time.Minute),
					Token: ids.Token(), Limit: 1 + rng.IntN(4), FailedHoldsKey: true, Groups: []string{"g"}})
				if err != nil {
					k.fail("Claim: %v", err)
					return
				}
				for _, m := range got {
					k.take(m)
				}
				if len(got) == 0 {
					time.Sleep(time.Millisecond)
				}
				k.finish(d, storage.Received, rng, got)
			}
		}()
	}
	wg.Wait()
	k.report(t)
	if done, failed := k.state(); done != keys*perKey && !failed {
		t.Errorf("handled %d rows in 30s, want %d", done, keys*perKey)
	}
}
