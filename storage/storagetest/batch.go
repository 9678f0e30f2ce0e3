// The ReceivedBatch area: InsertReceivedBatch of a Store that implements
// storage.ReceivedBatchInserter (skipped for one that does not).

package storagetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// insertBatch stores msgs under a fresh token and returns the results
// and the token.
func insertBatch(t *testing.T, b storage.ReceivedBatchInserter, msgs ...*storage.Message) ([]storage.ReceivedInsert, int64) {
	t.Helper()
	tok := ids.Token()
	res, err := b.InsertReceivedBatch(bg, msgs, tok, now().Add(time.Minute))
	if err != nil {
		t.Fatalf("InsertReceivedBatch of %d messages: %v", len(msgs), err)
	}
	if len(res) != len(msgs) {
		t.Fatalf("InsertReceivedBatch of %d messages: %d results", len(msgs), len(res))
	}
	return res, tok
}

// want is the result expected of one message of a batch: claimed (and
// whether reset) with the given row id, or a duplicate (id zero: any).
type want struct {
	claimed, reset bool
	id             int64
}

func checkResults(t *testing.T, what string, got []storage.ReceivedInsert, wants ...want) {
	t.Helper()
	for i, w := range wants {
		g := got[i]
		if g.Claimed != w.claimed || g.Reset != w.reset || (w.id != 0 && g.ID != w.id) {
			t.Errorf("%s: result %d = %+v, want claimed %v reset %v id %d", what, i, g, w.claimed, w.reset, w.id)
		}
	}
}

// receivedRows returns the number of received rows.
func receivedRows(t *testing.T, d storage.Store) int64 {
	t.Helper()
	counts, err := d.Counts(bg, storage.Received)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, c := range counts {
		n += c
	}
	return n
}

func (s *suite[TTx]) batchNew(t *testing.T) {
	d, b := newAs[storage.ReceivedBatchInserter](t, s)
	var msgs []*storage.Message
	for i := range 5 {
		msgs = append(msgs, s.received(fmt.Sprintf("new-%d", i), "billing", "order.paid", []byte(`{}`)))
	}
	msgs = append(msgs, s.received("new-0", "shipping", "order.paid", nil)) // same id, another group
	res, tok := insertBatch(t, b, msgs...)
	for i, m := range msgs {
		checkResults(t, "new messages", res[i:i+1], want{claimed: true, id: m.ID})
		r := get(t, d, storage.Received, m.ID)
		if r.Status != storage.StatusScheduled || r.LeaseToken != tok || r.MsgID != m.MsgID || r.Group != m.Group ||
			!r.NextAttemptAt.Equal(m.Added) || r.LeaseUntil.IsZero() {
			t.Errorf("stored row %d: %+v", i, r)
		}
	}
	if c := claim(t, d, storage.Received, now(), time.Minute, 10); len(c) != 0 {
		t.Errorf("claimed %d rows of the batch's lease", len(c))
	}
}

func (s *suite[TTx]) batchEmpty(t *testing.T) {
	_, b := newAs[storage.ReceivedBatchInserter](t, s)
	for _, msgs := range [][]*storage.Message{nil, {}} {
		if res, err := b.InsertReceivedBatch(bg, msgs, ids.Token(), now().Add(time.Minute)); err != nil || len(res) != 0 {
			t.Errorf("empty batch: %v, %v", res, err)
		}
	}
	if _, err := b.InsertReceivedBatch(bg, []*storage.Message{s.received("z", "g", "t", nil)}, 0, now()); err == nil {
		t.Error("InsertReceivedBatch with a zero token: no error")
	}
}

func (s *suite[TTx]) batchDuplicateInBatch(t *testing.T) {
	d, b := newAs[storage.ReceivedBatchInserter](t, s)
	first, again := s.received("dup", "billing", "t", []byte(`1`)), s.received("dup", "billing", "t", []byte(`2`))
	res, _ := insertBatch(t, b, first, again, s.received("dup", "billing", "t", nil))
	checkResults(t, "one id thrice", res, want{claimed: true, id: first.ID}, want{id: first.ID}, want{id: first.ID})
	if n := receivedRows(t, d); n != 1 {
		t.Errorf("%d rows stored, want 1", n)
	}
	if r := get(t, d, storage.Received, first.ID); string(r.Body) != `1` {
		t.Errorf("stored body %q, want the first message's", r.Body)
	}
}

func (s *suite[TTx]) batchDuplicateAcrossBatches(t *testing.T) {
	d, b := newAs[storage.ReceivedBatchInserter](t, s)
	single := s.received("x", "g", "t", nil)
	if res, err := d.InsertReceived(bg, single, ids.Token(), now().Add(time.Minute)); err != nil || !res.Claimed {
		t.Fatalf("InsertReceived: %+v %v", res, err)
	}
	y := s.received("y", "g", "t", nil)
	res, _ := insertBatch(t, b, s.received("x", "g", "t", nil), y)
	checkResults(t, "against InsertReceived", res, want{}, want{claimed: true, id: y.ID})
	z := s.received("z", "g", "t", nil)
	res, _ = insertBatch(t, b, s.received("y", "g", "t", nil), z, s.received("x", "g", "t", nil))
	checkResults(t, "against a batch", res, want{}, want{claimed: true, id: z.ID}, want{})
	if res, err := d.InsertReceived(bg, s.received("z", "g", "t", nil), ids.Token(), now().Add(time.Minute)); err != nil || res.Claimed {
		t.Errorf("InsertReceived of a batch's message: %+v %v; want a duplicate", res, err)
	}
	if n := receivedRows(t, d); n != 3 {
		t.Errorf("%d rows stored, want 3", n)
	}
}

// failed stores a received message and makes it Failed; it returns its id.
func (s *suite[TTx]) failed(t *testing.T, d storage.Store, msgID string) int64 {
	t.Helper()
	tok := ids.Token()
	m := s.received(msgID, "g", "t", []byte(`original`))
	if res, err := d.InsertReceived(bg, m, tok, now().Add(time.Minute)); err != nil || !res.Claimed {
		t.Fatalf("InsertReceived: %+v %v", res, err)
	}
	t0 := now()
	if _, err := d.Fail(bg, storage.Received, storage.Lease{ID: m.ID, Token: tok}, storage.Failure{
		Error: "bad", Now: t0, NextAttemptAt: t0, MaxAttempts: 1, ExpiresAt: t0.Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	return m.ID
}

func (s *suite[TTx]) batchResetFailed(t *testing.T) {
	d, b := newAs[storage.ReceivedBatchInserter](t, s)
	id := s.failed(t, d, "f")
	again := s.received("f", "g", "t", []byte(`redelivered`))
	res, tok := insertBatch(t, b, again, s.received("f", "g", "t", nil))
	checkResults(t, "a Failed row", res, want{claimed: true, reset: true, id: id}, want{id: id})
	r := get(t, d, storage.Received, id)
	if r.Status != storage.StatusScheduled || r.Retries != 0 || r.LastError != "" || !r.ExpiresAt.IsZero() ||
		r.LeaseToken != tok || !r.NextAttemptAt.Equal(again.Added) || string(r.Body) != `original` {
		t.Errorf("reset row: %+v", r)
	}
	if n := receivedRows(t, d); n != 1 {
		t.Errorf("%d rows stored, want 1", n)
	}
}

func (s *suite[TTx]) batchMix(t *testing.T) {
	d, b := newAs[storage.ReceivedBatchInserter](t, s)
	failedID := s.failed(t, d, "failed")
	stored := s.received("stored", "g", "t", nil)
	if _, err := d.InsertReceived(bg, stored, ids.Token(), now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	n1, n2, other := s.received("n1", "g", "t", nil), s.received("n2", "g", "t", nil), s.received("stored", "h", "t", nil)
	res, _ := insertBatch(t, b,
		n2, s.received("stored", "g", "t", nil), s.received("failed", "g", "t", nil), n1,
		s.received("n2", "g", "t", nil), other, s.received("failed", "g", "t", nil))
	checkResults(t, "a mix", res,
		want{claimed: true, id: n2.ID}, want{}, want{claimed: true, reset: true, id: failedID}, want{claimed: true, id: n1.ID},
		want{id: n2.ID}, want{claimed: true, id: other.ID}, want{id: failedID})
	if n := receivedRows(t, d); n != 5 {
		t.Errorf("%d rows stored, want 5", n)
	}
}

func (s *suite[TTx]) batchLongMsgID(t *testing.T) {
	d, b := newAs[storage.ReceivedBatchInserter](t, s)
	long := incompressible(10_000)
	first := s.received(long, "g", "long.id", nil)
	res, _ := insertBatch(t, b, first, s.received(long, "g", "long.id", nil))
	checkResults(t, "a 10,000-character id twice", res, want{claimed: true, id: first.ID}, want{id: first.ID})
	if r := get(t, d, storage.Received, first.ID); r.MsgID != storage.StorableMsgID(long) {
		t.Errorf("stored id %q, want %q", r.MsgID, storage.StorableMsgID(long))
	}
	res, _ = insertBatch(t, b, s.received(long, "g", "long.id", nil))
	checkResults(t, "the long id in a later batch", res, want{})
	if n := receivedRows(t, d); n != 1 {
		t.Errorf("%d rows stored, want 1", n)
	}
}

// A batch whose message cannot be stored (its id is that of a stored
// row) fails whole: nothing of it is stored.
func (s *suite[TTx]) batchAtomic(t *testing.T) {
	d, b := newAs[storage.ReceivedBatchInserter](t, s)
	stored := s.received("a", "g", "t", nil)
	if _, err := d.InsertReceived(bg, stored, ids.Token(), now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	clash := s.received("b", "g", "t", nil)
	clash.ID = stored.ID
	fine := s.received("c", "g", "t", nil)
	_, err := b.InsertReceivedBatch(bg, []*storage.Message{fine, clash}, ids.Token(), now().Add(time.Minute))
	if !errors.Is(err, storage.ErrPermanent) {
		t.Errorf("a batch with a stored row's id: err %v, want storage.ErrPermanent", err)
	}
	if _, err := d.Get(bg, storage.Received, fine.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a message of the failed batch was stored (Get: %v)", err)
	}
	if n := receivedRows(t, d); n != 1 {
		t.Errorf("%d rows stored, want 1", n)
	}
}

// Batches from several goroutines with overlapping ids: each (message id,
// group) is stored once, and claimed by exactly one of them.
func (s *suite[TTx]) batchConcurrent(t *testing.T) {
	d, b := newAs[storage.ReceivedBatchInserter](t, s)
	const workers, batches, size, keys = 4, 5, 40, 60
	type claim struct {
		id, token int64
	}
	var mu sync.Mutex
	claims := map[string][]claim{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 14))
			for range batches {
				var msgs []*storage.Message
				for _, k := range rnd.Perm(keys)[:size] {
					msgs = append(msgs, s.received(fmt.Sprintf("c%d", k), fmt.Sprintf("g%d", k%2), "t", nil))
				}
				tok := ids.Token()
				res, err := b.InsertReceivedBatch(bg, msgs, tok, now().Add(time.Minute))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for i, r := range res {
					if r.Claimed {
						k := msgs[i].MsgID + "/" + msgs[i].Group
						claims[k] = append(claims[k], claim{r.ID, tok})
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent InsertReceivedBatch: %v", err)
	}
	if n := receivedRows(t, d); n != int64(len(claims)) {
		t.Errorf("%d rows stored, %d distinct ids claimed", n, len(claims))
	}
	for k, cs := range claims {
		if len(cs) != 1 {
			t.Errorf("%s claimed %d times", k, len(cs))
			continue
		}
		if r := get(t, d, storage.Received, cs[0].id); r.MsgID+"/"+r.Group != k || r.LeaseToken != cs[0].token {
			t.Errorf("%s: claimed as row %d, which is %s/%s under token %d (want %d)", k, cs[0].id, r.MsgID, r.Group, r.LeaseToken, cs[0].token)
		}
	}
}

// batchDuplicateOfHandled: InsertReceivedBatch of a message already
// handled (Succeeded) or waiting for its retry (Scheduled, lease ended)
// is a duplicate, as in InsertReceived: neither claimed nor reset, the
// row unchanged.
func (s *suite[TTx]) batchDuplicateOfHandled(t *testing.T) {
	d, b := newAs[storage.ReceivedBatchInserter](t, s)
	done, retry := s.handledRows(t, d)
	fresh := s.received("fresh", "g", "t", nil)
	res, _ := insertBatch(t, b, s.received("done", "g", "t", []byte(`redelivered`)), fresh,
		s.received("retry", "g", "t", []byte(`redelivered`)))
	checkResults(t, "a batch with a Succeeded and a retrying duplicate", res, want{}, want{claimed: true, id: fresh.ID}, want{})
	for _, i := range []int{0, 2} {
		if res[i].Queued {
			t.Errorf("result %d = %+v, want a duplicate, not queued", i, res[i])
		}
	}
	checkUnchanged(t, d, "a Succeeded row redelivered in a batch", done)
	checkUnchanged(t, d, "a row waiting for its retry redelivered in a batch", retry)
}
