// Package storagetest is the conformance suite of gocap's storage contract.
// Every storage in this module runs it against a real database, and a
// third-party storage runs it the same way from a test of its own:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, storagetest.Harness[*sql.Tx]{
//			New: func(t *testing.T) storage.Driver[*sql.Tx] {
//				// a fresh, migrated, empty driver on tables of its own,
//				// dropped with t.Cleanup
//			},
//			Begin: func(ctx context.Context, t *testing.T, d storage.Driver[*sql.Tx]) (*sql.Tx, func() error, func() error) {
//				tx, err := db.BeginTx(ctx, nil)
//				...
//				return tx, tx.Commit, tx.Rollback
//			},
//			LargeBody: 16 << 20,
//		})
//	}
//
// The suite checks the promises written on storage.Store: transactional
// insert, claims with leases that never hand one row to two claimers,
// retry counting in SQL, expiry and cleaning in bounded batches, exact
// round trips of large and non-ASCII content, received-side de-duplication,
// the dashboard's queries, and the storage package's rules for text: any
// Go string is stored (invalid UTF-8 and NUL made visible, long message ids
// hashed, long error texts cut), Release, and errors marked permanent.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// Harness tells the suite how to use one storage.
type Harness[TTx any] struct {
	// New returns a fresh, migrated, empty driver on tables no other test
	// uses, and registers their removal with t.Cleanup.
	New func(t *testing.T) storage.Driver[TTx]
	// Begin starts an application transaction on the database of d and
	// returns it with its commit and rollback functions.
	Begin func(ctx context.Context, t *testing.T, d storage.Driver[TTx]) (tx TTx, commit, rollback func() error)
	// LargeBody is the body size of the large-payload test. Zero means 4 MiB.
	LargeBody int
	// Claimers is the number of goroutines of the concurrent-claim test.
	// Zero means 8.
	Claimers int
}

// Run runs the whole suite as subtests of t.
func Run[TTx any](t *testing.T, h Harness[TTx]) {
	if h.LargeBody == 0 {
		h.LargeBody = 4 << 20
	}
	if h.Claimers == 0 {
		h.Claimers = 8
	}
	s := &suite[TTx]{h: h}
	tests := []struct {
		name string
		f    func(t *testing.T)
	}{
		{"TxCommitAndRollback", s.txCommitAndRollback},
		{"InsertWithoutTx", s.insertWithoutTx},
		{"ClaimDueOnly", s.claimDueOnly},
		{"LeaseHidesAndExpires", s.leaseHidesAndExpires},
		{"Succeed", s.succeed},
		{"FailRetriesAndFinal", s.failRetriesAndFinal},
		{"FailPermanent", s.failPermanent},
		{"ConcurrentClaims", s.concurrentClaims},
		{"DeleteExpired", s.deleteExpired},
		{"LargeAndNonASCII", s.largeAndNonASCII},
		{"ReceivedDedup", s.receivedDedup},
		{"ReceivedClaimByGroup", s.receivedClaimByGroup},
		{"ListFiltersAndPaging", s.listFiltersAndPaging},
		{"CountsHistogramRequeueDelete", s.countsHistogramRequeueDelete},
		{"Instances", s.instances},
		{"ReceivedLongMsgID", s.receivedLongMsgID},
		{"InvalidText", s.invalidText},
		{"FailLongErrorText", s.failLongErrorText},
		{"Release", s.release},
		{"PermanentError", s.permanentError},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.f)
	}
}

type suite[TTx any] struct {
	h   Harness[TTx]
	gen *ids.Generator
	mu  sync.Mutex
}

var bg = context.Background()

// now is truncated to the microsecond, the precision every backend keeps.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func (s *suite[TTx]) id() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen == nil {
		s.gen, _ = ids.NewGenerator(-1)
	}
	return s.gen.Next()
}

func (s *suite[TTx]) msg(name string, due time.Time) *storage.Message {
	id := s.id()
	return &storage.Message{
		ID: id, Kind: storage.Published, MsgID: strconv.FormatInt(id, 10), Name: name,
		Headers: map[string]string{"cap-msg-id": strconv.FormatInt(id, 10), "cap-msg-name": name},
		Body:    []byte(`{"n":` + strconv.FormatInt(id%1000, 10) + `}`),
		Status:  storage.StatusScheduled, Added: due, NextAttemptAt: due,
	}
}

func (s *suite[TTx]) received(msgID, group, name string, body []byte) *storage.Message {
	return &storage.Message{
		ID: s.id(), Kind: storage.Received, MsgID: msgID, Group: group, Name: name,
		Headers: map[string]string{"cap-msg-id": msgID, "cap-msg-name": name, "cap-msg-group": group},
		Body:    body, Status: storage.StatusScheduled, Added: now(),
	}
}

func (s *suite[TTx]) insert(t *testing.T, d storage.Store, msgs ...*storage.Message) {
	t.Helper()
	if err := d.InsertPublished(bg, msgs); err != nil {
		t.Fatalf("InsertPublished: %v", err)
	}
}

func claim(t *testing.T, d storage.Store, kind storage.Kind, at time.Time, lease time.Duration, limit int) []*storage.Message {
	t.Helper()
	got, err := d.Claim(bg, kind, storage.ClaimRequest{Now: at, LeaseUntil: at.Add(lease), Token: ids.Token(), Limit: limit})
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return got
}

func get(t *testing.T, d storage.Store, kind storage.Kind, id int64) *storage.Message {
	t.Helper()
	m, err := d.Get(bg, kind, id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return m
}

func lease(m *storage.Message) storage.Lease { return storage.Lease{ID: m.ID, Token: m.LeaseToken} }

func (s *suite[TTx]) txCommitAndRollback(t *testing.T) {
	d := s.h.New(t)
	committed, rolledBack := s.msg("tx.commit", now()), s.msg("tx.rollback", now())
	tx, commit, _ := s.h.Begin(bg, t, d)
	if err := d.InsertPublishedTx(bg, tx, []*storage.Message{committed}); err != nil {
		t.Fatal(err)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	tx, _, rollback := s.h.Begin(bg, t, d)
	if err := d.InsertPublishedTx(bg, tx, []*storage.Message{rolledBack, s.msg("tx.rollback", now())}); err != nil {
		t.Fatal(err)
	}
	if err := rollback(); err != nil {
		t.Fatal(err)
	}
	got := get(t, d, storage.Published, committed.ID)
	if got.Status != storage.StatusScheduled || got.Name != "tx.commit" || got.MsgID != committed.MsgID || got.Retries != 0 {
		t.Errorf("committed row: %+v", got)
	}
	if _, err := d.Get(bg, storage.Published, rolledBack.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("rolled back row: err = %v, want ErrNotFound", err)
	}
	if c := claim(t, d, storage.Published, now().Add(time.Second), time.Minute, 10); len(c) != 1 || c[0].ID != committed.ID {
		t.Errorf("claimable after commit and rollback: %d rows, want only the committed one", len(c))
	}
}

func (s *suite[TTx]) insertWithoutTx(t *testing.T) {
	d := s.h.New(t)
	a, b := s.msg("direct", now()), s.msg("direct", now())
	s.insert(t, d, a, b)
	for _, m := range []*storage.Message{a, b} {
		got := get(t, d, storage.Published, m.ID)
		if !bytes.Equal(got.Body, m.Body) || got.Headers["cap-msg-id"] != m.MsgID || !got.Added.Equal(m.Added) {
			t.Errorf("row %d: %+v", m.ID, got)
		}
		if got.Added.Location() != time.UTC || got.NextAttemptAt.Location() != time.UTC {
			t.Errorf("times not in UTC: %v %v", got.Added.Location(), got.NextAttemptAt.Location())
		}
	}
}

func (s *suite[TTx]) claimDueOnly(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	old, mid, future := s.msg("due", t0.Add(-2*time.Minute)), s.msg("due", t0.Add(-time.Minute)), s.msg("due", t0.Add(time.Hour))
	s.insert(t, d, future, mid, old)
	got := claim(t, d, storage.Published, t0, time.Minute, 1)
	if len(got) != 1 || got[0].ID != old.ID {
		t.Fatalf("first claim: %v, want the oldest due row %d", idsOf(got), old.ID)
	}
	if got[0].LeaseToken == 0 || !got[0].LeaseUntil.Equal(t0.Add(time.Minute)) {
		t.Errorf("claimed row lease: token %d until %v", got[0].LeaseToken, got[0].LeaseUntil)
	}
	got = claim(t, d, storage.Published, t0, time.Minute, 10)
	if len(got) != 1 || got[0].ID != mid.ID {
		t.Fatalf("second claim: %v, want %d only (the other is not due)", idsOf(got), mid.ID)
	}
	if _, err := d.Claim(bg, storage.Published, storage.ClaimRequest{Now: t0, LeaseUntil: t0, Token: 0, Limit: 1}); err == nil {
		t.Error("Claim with a zero token: no error")
	}
}

func idsOf(ms []*storage.Message) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func (s *suite[TTx]) leaseHidesAndExpires(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	m := s.msg("lease", t0.Add(-time.Second))
	s.insert(t, d, m)
	first := claim(t, d, storage.Published, t0, time.Minute, 10)
	if len(first) != 1 {
		t.Fatalf("claimed %d, want 1", len(first))
	}
	if again := claim(t, d, storage.Published, t0.Add(59*time.Second), time.Minute, 10); len(again) != 0 {
		t.Fatalf("claimed a leased row before its lease ended")
	}
	second := claim(t, d, storage.Published, t0.Add(61*time.Second), time.Minute, 10)
	if len(second) != 1 || second[0].LeaseToken == first[0].LeaseToken {
		t.Fatalf("after the lease: claimed %d rows, want 1 with a new token", len(second))
	}
	// The first, stale claimer can no longer record anything.
	if n, err := d.Succeed(bg, storage.Published, []storage.Lease{lease(first[0])}, t0, t0.Add(time.Hour)); err != nil || n != 0 {
		t.Errorf("stale Succeed: %d rows, %v; want 0", n, err)
	}
	if _, err := d.Fail(bg, storage.Published, lease(first[0]), storage.Failure{Error: "x", Now: t0, NextAttemptAt: t0, MaxAttempts: 50}); !errors.Is(err, storage.ErrLeaseLost) {
		t.Errorf("stale Fail: %v, want ErrLeaseLost", err)
	}
	if n, err := d.Succeed(bg, storage.Published, []storage.Lease{lease(second[0])}, t0, t0.Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("current Succeed: %d rows, %v; want 1", n, err)
	}
}

func (s *suite[TTx]) succeed(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	var msgs []*storage.Message
	for range 5 {
		msgs = append(msgs, s.msg("ok", t0.Add(-time.Second)))
	}
	s.insert(t, d, msgs...)
	got := claim(t, d, storage.Published, t0, time.Minute, 10)
	var leases []storage.Lease
	for _, m := range got {
		leases = append(leases, lease(m))
	}
	exp := t0.Add(24 * time.Hour)
	if n, err := d.Succeed(bg, storage.Published, leases, t0, exp); err != nil || n != 5 {
		t.Fatalf("Succeed: %d, %v", n, err)
	}
	for _, m := range msgs {
		r := get(t, d, storage.Published, m.ID)
		if r.Status != storage.StatusSucceeded || !r.ExpiresAt.Equal(exp) || r.LeaseToken != 0 || !r.LeaseUntil.IsZero() {
			t.Errorf("row %d: status %s expires %v token %d", m.ID, r.Status, r.ExpiresAt, r.LeaseToken)
		}
	}
	if n, err := d.Succeed(bg, storage.Published, leases, t0, exp); err != nil || n != 0 {
		t.Errorf("second Succeed of the same leases: %d, %v; want 0", n, err)
	}
	if c := claim(t, d, storage.Published, t0.Add(time.Hour), time.Minute, 10); len(c) != 0 {
		t.Errorf("claimed %d Succeeded rows", len(c))
	}
}

func (s *suite[TTx]) failRetriesAndFinal(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	m := s.msg("fail", t0.Add(-time.Second))
	s.insert(t, d, m)
	at := t0
	const maxAttempts = 3
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		c := claim(t, d, storage.Published, at, time.Minute, 1)
		if len(c) != 1 {
			t.Fatalf("attempt %d: claimed %d rows", attempt, len(c))
		}
		if c[0].Retries != attempt-1 {
			t.Errorf("attempt %d: retries %d before, want %d", attempt, c[0].Retries, attempt-1)
		}
		next := at.Add(10 * time.Second)
		res, err := d.Fail(bg, storage.Published, lease(c[0]), storage.Failure{
			Error: fmt.Sprintf("boom %d", attempt), Now: at, NextAttemptAt: next, MaxAttempts: maxAttempts,
			ExpiresAt: at.Add(15 * 24 * time.Hour),
		})
		if err != nil {
			t.Fatalf("attempt %d: Fail: %v", attempt, err)
		}
		if res.Retries != attempt {
			t.Errorf("attempt %d: retries %d, want %d", attempt, res.Retries, attempt)
		}
		r := get(t, d, storage.Published, m.ID)
		if attempt < maxAttempts {
			if res.Status != storage.StatusScheduled || r.Status != storage.StatusScheduled || !r.NextAttemptAt.Equal(next) || !r.ExpiresAt.IsZero() {
				t.Errorf("attempt %d: %s / row %s next %v expires %v", attempt, res.Status, r.Status, r.NextAttemptAt, r.ExpiresAt)
			}
			if early := claim(t, d, storage.Published, next.Add(-time.Second), time.Minute, 1); len(early) != 0 {
				t.Errorf("attempt %d: claimed before NextAttemptAt", attempt)
			}
		} else if res.Status != storage.StatusFailed || r.Status != storage.StatusFailed || !r.ExpiresAt.Equal(at.Add(15*24*time.Hour)) {
			t.Errorf("final attempt: %s / row %s expires %v", res.Status, r.Status, r.ExpiresAt)
		}
		if r.LastError != fmt.Sprintf("boom %d", attempt) || r.Retries != attempt {
			t.Errorf("attempt %d: row retries %d error %q", attempt, r.Retries, r.LastError)
		}
		at = next
	}
	if c := claim(t, d, storage.Published, at.Add(time.Hour), time.Minute, 1); len(c) != 0 {
		t.Error("claimed a Failed row")
	}
}

func (s *suite[TTx]) failPermanent(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	m := s.msg("perm", t0.Add(-time.Second))
	s.insert(t, d, m)
	c := claim(t, d, storage.Published, t0, time.Minute, 1)
	res, err := d.Fail(bg, storage.Published, lease(c[0]), storage.Failure{
		Error: "cannot decode", Now: t0, NextAttemptAt: t0, MaxAttempts: 50, Permanent: true, ExpiresAt: t0.Add(time.Hour),
	})
	if err != nil || res.Status != storage.StatusFailed || res.Retries != 1 {
		t.Errorf("permanent Fail: %+v %v; want Failed after 1", res, err)
	}
}

func (s *suite[TTx]) concurrentClaims(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	const n = 300
	var msgs []*storage.Message
	for range n {
		msgs = append(msgs, s.msg("race", t0.Add(-time.Second)))
	}
	s.insert(t, d, msgs...)
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	errs := make(chan error, s.h.Claimers)
	for range s.h.Claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n { // bounded: each round claims at least one row or stops
				got, err := d.Claim(bg, storage.Published, storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: ids.Token(), Limit: 7})
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, m := range got {
					seen[m.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Claim: %v", err)
	}
	if len(seen) != n {
		t.Errorf("claimed %d distinct rows, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("row %d claimed %d times", id, c)
		}
	}
}

func (s *suite[TTx]) deleteExpired(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	var expired, kept []int64
	var all []*storage.Message
	for i := range 7 {
		m := s.msg("exp", t0.Add(-time.Hour))
		all = append(all, m)
		if i < 5 {
			expired = append(expired, m.ID)
		} else {
			kept = append(kept, m.ID)
		}
	}
	pending := s.msg("exp", t0.Add(time.Hour)) // Scheduled: never expires
	s.insert(t, d, append(all, pending)...)
	c := claim(t, d, storage.Published, t0, time.Minute, 10)
	byID := map[int64]*storage.Message{}
	for _, m := range c {
		byID[m.ID] = m
	}
	var short, long []storage.Lease
	for _, id := range expired {
		short = append(short, lease(byID[id]))
	}
	for _, id := range kept {
		long = append(long, lease(byID[id]))
	}
	if _, err := d.Succeed(bg, storage.Published, short, t0, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Succeed(bg, storage.Published, long, t0, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(90 * time.Second)
	var total int64
	for range 10 {
		n, err := d.DeleteExpired(bg, storage.Published, at, 2)
		if err != nil {
			t.Fatal(err)
		}
		if n > 2 {
			t.Fatalf("DeleteExpired removed %d rows with limit 2", n)
		}
		total += n
		if n == 0 {
			break
		}
	}
	if total != int64(len(expired)) {
		t.Errorf("deleted %d rows, want %d", total, len(expired))
	}
	for _, id := range expired {
		if _, err := d.Get(bg, storage.Published, id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("expired row %d still there (%v)", id, err)
		}
	}
	for _, id := range append(kept, pending.ID) {
		get(t, d, storage.Published, id)
	}
}

func (s *suite[TTx]) largeAndNonASCII(t *testing.T) {
	d := s.h.New(t)
	large := make([]byte, s.h.LargeBody)
	for i := range large {
		large[i] = byte(i * 7)
	}
	m := s.msg("größe.订单.🚀", now())
	m.Body = large
	m.Headers["note"] = "naïve 東京 \u00e9\u0301 \"quoted\" \\ back"
	bin := s.msg("binary", now())
	bin.Body = []byte{0, 1, 2, 0xff, 0xfe, 0, '\'', '"', '\\'}
	empty := s.msg("empty", now())
	empty.Body = nil
	tx, commit, _ := s.h.Begin(bg, t, d)
	if err := d.InsertPublishedTx(bg, tx, []*storage.Message{m, bin, empty}); err != nil {
		t.Fatal(err)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	got := get(t, d, storage.Published, m.ID)
	if !bytes.Equal(got.Body, large) || got.Name != m.Name || got.Headers["note"] != m.Headers["note"] {
		t.Errorf("large/non-ASCII row did not round-trip (body %d bytes, name %q, note %q)", len(got.Body), got.Name, got.Headers["note"])
	}
	if got := get(t, d, storage.Published, bin.ID); !bytes.Equal(got.Body, bin.Body) {
		t.Errorf("binary body: %v, want %v", got.Body, bin.Body)
	}
	if got := get(t, d, storage.Published, empty.ID); len(got.Body) != 0 {
		t.Errorf("empty body: %v", got.Body)
	}
	r := s.received("ünï-1", "grüppe", "größe.订单", large)
	if _, ok, err := d.InsertReceived(bg, r, ids.Token(), now().Add(time.Minute)); err != nil || !ok {
		t.Fatalf("InsertReceived: %v %v", ok, err)
	}
	if got := get(t, d, storage.Received, r.ID); !bytes.Equal(got.Body, large) || got.MsgID != r.MsgID || got.Group != r.Group {
		t.Errorf("received large/non-ASCII row did not round-trip")
	}
}

func (s *suite[TTx]) receivedDedup(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	first := s.received("42", "billing", "order.paid", []byte(`{"id":42}`))
	tok := ids.Token()
	id, claimed, err := d.InsertReceived(bg, first, tok, t0.Add(time.Minute))
	if err != nil || !claimed || id != first.ID {
		t.Fatalf("first insert: id %d claimed %v err %v", id, claimed, err)
	}
	r := get(t, d, storage.Received, id)
	if r.Status != storage.StatusScheduled || r.LeaseToken != tok || r.Group != "billing" || r.MsgID != "42" {
		t.Errorf("stored row: %+v", r)
	}
	if again := claim(t, d, storage.Received, t0, time.Minute, 10); len(again) != 0 {
		t.Error("a claimed received row was claimed again")
	}
	dup := s.received("42", "billing", "order.paid", []byte(`{"id":42}`))
	if _, claimed, err := d.InsertReceived(bg, dup, ids.Token(), t0.Add(time.Minute)); err != nil || claimed {
		t.Errorf("duplicate: claimed %v err %v; want not claimed", claimed, err)
	}
	other := s.received("42", "shipping", "order.paid", []byte(`{"id":42}`))
	if oid, claimed, err := d.InsertReceived(bg, other, ids.Token(), t0.Add(time.Minute)); err != nil || !claimed || oid != other.ID {
		t.Errorf("same id, other group: claimed %v err %v", claimed, err)
	}
	// After a final failure, a redelivery runs the message again.
	if _, err := d.Fail(bg, storage.Received, storage.Lease{ID: id, Token: tok}, storage.Failure{
		Error: "bad", Now: t0, NextAttemptAt: t0, MaxAttempts: 1, ExpiresAt: t0.Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	tok2 := ids.Token()
	rid, claimed, err := d.InsertReceived(bg, s.received("42", "billing", "order.paid", []byte(`{}`)), tok2, t0.Add(time.Minute))
	if err != nil || !claimed || rid != id {
		t.Fatalf("redelivery of a Failed message: id %d (want %d) claimed %v err %v", rid, id, claimed, err)
	}
	r = get(t, d, storage.Received, id)
	if r.Status != storage.StatusScheduled || r.Retries != 0 || r.LeaseToken != tok2 || string(r.Body) != `{"id":42}` {
		t.Errorf("reset row: status %s retries %d token %d body %s", r.Status, r.Retries, r.LeaseToken, r.Body)
	}
	rows, err := d.List(bg, storage.Filter{Kind: storage.Received, MsgID: "42"})
	if err != nil || len(rows) != 2 {
		t.Errorf("rows for id 42: %d (%v), want 2 (one per group)", len(rows), err)
	}
}

func (s *suite[TTx]) receivedClaimByGroup(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	past := t0.Add(-time.Minute)
	for i, g := range []string{"a", "b", "c"} {
		m := s.received("m"+strconv.Itoa(i), g, "t", nil)
		m.Added = past
		if _, _, err := d.InsertReceived(bg, m, ids.Token(), past); err != nil { // lease already over
			t.Fatal(err)
		}
	}
	got, err := d.Claim(bg, storage.Received, storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: ids.Token(), Limit: 10, Groups: []string{"a", "c"}})
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string]bool{}
	for _, m := range got {
		groups[m.Group] = true
	}
	if len(got) != 2 || !groups["a"] || !groups["c"] {
		t.Errorf("claimed groups %v, want a and c", groups)
	}
	if rest := claim(t, d, storage.Received, t0, time.Minute, 10); len(rest) != 1 || rest[0].Group != "b" {
		t.Errorf("claim without groups: %d rows", len(rest))
	}
}

func (s *suite[TTx]) listFiltersAndPaging(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	var msgs []*storage.Message
	for i := range 23 {
		name := "list.a"
		if i%3 == 0 {
			name = "list.b"
		}
		m := s.msg(name, t0.Add(-time.Second))
		m.Body = []byte(fmt.Sprintf(`{"customer":"c%02d","note":"100%% _off_"}`, i))
		msgs = append(msgs, m)
	}
	s.insert(t, d, msgs...)
	// Page through everything, newest first.
	var seen []int64
	before := int64(0)
	for range 10 {
		page, err := d.List(bg, storage.Filter{Kind: storage.Published, BeforeID: before, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 5 {
			t.Fatalf("page of %d rows with limit 5", len(page))
		}
		for _, m := range page {
			seen = append(seen, m.ID)
		}
		before = page[len(page)-1].ID
	}
	if len(seen) != len(msgs) {
		t.Fatalf("paged through %d rows, want %d", len(seen), len(msgs))
	}
	for i := range seen {
		if want := msgs[len(msgs)-1-i].ID; seen[i] != want {
			t.Fatalf("row %d of the listing is %d, want %d (newest first, no gaps)", i, seen[i], want)
		}
	}
	count := func(f storage.Filter) int {
		t.Helper()
		f.Kind, f.Limit = storage.Published, 100
		rows, err := d.List(bg, f)
		if err != nil {
			t.Fatalf("List(%+v): %v", f, err)
		}
		return len(rows)
	}
	if n := count(storage.Filter{Name: "list.b"}); n != 8 {
		t.Errorf("by name: %d, want 8", n)
	}
	if n := count(storage.Filter{MsgID: msgs[4].MsgID}); n != 1 {
		t.Errorf("by message id: %d, want 1", n)
	}
	if n := count(storage.Filter{Content: `"c07"`}); n != 1 {
		t.Errorf("by content: %d, want 1", n)
	}
	if n := count(storage.Filter{Content: "100% _off_"}); n != len(msgs) {
		t.Errorf("by content with LIKE metacharacters: %d, want %d", n, len(msgs))
	}
	if n := count(storage.Filter{Content: "c0_"}); n != 0 {
		t.Errorf("content _ must be literal: %d rows, want 0", n)
	}
	// Fail one, then filter by status.
	c := claim(t, d, storage.Published, t0, time.Minute, 1)
	if _, err := d.Fail(bg, storage.Published, lease(c[0]), storage.Failure{Error: "x", Now: t0, NextAttemptAt: t0, MaxAttempts: 1, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if n := count(storage.Filter{Status: storage.StatusFailed}); n != 1 {
		t.Errorf("by status Failed: %d, want 1", n)
	}
	if n := count(storage.Filter{Status: storage.StatusScheduled, Name: "list.a"}); n+count(storage.Filter{Status: storage.StatusScheduled, Name: "list.b"}) != len(msgs)-1 {
		t.Errorf("by status Scheduled and name: %d", n)
	}
}

func (s *suite[TTx]) countsHistogramRequeueDelete(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	var msgs []*storage.Message
	for range 6 {
		msgs = append(msgs, s.msg("count", t0.Add(-time.Second)))
	}
	s.insert(t, d, msgs...)
	c := claim(t, d, storage.Published, t0, time.Minute, 3)
	var ok []storage.Lease
	for _, m := range c[:2] {
		ok = append(ok, lease(m))
	}
	if _, err := d.Succeed(bg, storage.Published, ok, t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	failed := c[2]
	if _, err := d.Fail(bg, storage.Published, lease(failed), storage.Failure{Error: "x", Now: t0, NextAttemptAt: t0, MaxAttempts: 1, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	counts, err := d.Counts(bg, storage.Published)
	if err != nil {
		t.Fatal(err)
	}
	if counts[storage.StatusSucceeded] != 2 || counts[storage.StatusFailed] != 1 || counts[storage.StatusScheduled] != 3 {
		t.Errorf("counts %v, want 2 Succeeded, 1 Failed, 3 Scheduled", counts)
	}
	hist, err := d.Histogram(bg, storage.Published, t0.Add(-time.Hour), time.Minute, ids.EpochMillis)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, b := range hist {
		total += b.Count
		if b.Start.After(time.Now()) || b.Start.Before(t0.Add(-2*time.Minute)) || b.Start.Location() != time.UTC {
			t.Errorf("bucket start %v out of range", b.Start)
		}
	}
	if total != 6 {
		t.Errorf("histogram counts %d rows, want 6", total)
	}
	if hist, err := d.Histogram(bg, storage.Published, t0.Add(time.Hour), time.Minute, ids.EpochMillis); err != nil || len(hist) != 0 {
		t.Errorf("histogram of the future: %v %v", hist, err)
	}
	// Requeue the Failed row and a Succeeded one; a leased Scheduled row is left alone.
	inFlight := claim(t, d, storage.Published, t0, time.Minute, 1)[0]
	at := t0.Add(time.Second)
	n, err := d.Requeue(bg, storage.Published, []int64{failed.ID, c[0].ID, inFlight.ID}, at)
	if err != nil || n != 2 {
		t.Errorf("Requeue: %d rows, %v; want 2", n, err)
	}
	r := get(t, d, storage.Published, failed.ID)
	if r.Status != storage.StatusScheduled || r.Retries != 0 || r.LastError != "" || !r.ExpiresAt.IsZero() || !r.NextAttemptAt.Equal(at) {
		t.Errorf("requeued row: %+v", r)
	}
	if r := get(t, d, storage.Published, inFlight.ID); r.LeaseToken != inFlight.LeaseToken {
		t.Error("Requeue broke the lease of a row in flight")
	}
	n, err = d.Delete(bg, storage.Published, []int64{failed.ID, c[1].ID, 12345})
	if err != nil || n != 2 {
		t.Errorf("Delete: %d, %v; want 2", n, err)
	}
	if _, err := d.Get(bg, storage.Published, failed.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted row: %v", err)
	}
}

func (s *suite[TTx]) instances(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	a := storage.Instance{ID: "host-a/1/1", Hostname: "host-a", PID: 1, Started: t0.Add(-time.Hour), LastSeen: t0}
	b := storage.Instance{ID: "host-b/2/2", Hostname: "host-b", PID: 2, Started: t0.Add(-time.Hour), LastSeen: t0.Add(-10 * time.Minute)}
	for _, inst := range []storage.Instance{a, b} {
		if err := d.Heartbeat(bg, inst); err != nil {
			t.Fatal(err)
		}
	}
	a.LastSeen = t0.Add(time.Second)
	if err := d.Heartbeat(bg, a); err != nil {
		t.Fatal(err)
	}
	got, err := d.Instances(bg, t0.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != a.ID || !got[0].LastSeen.Equal(a.LastSeen) || !got[0].Started.Equal(a.Started) || got[0].PID != 1 {
		t.Errorf("live instances: %+v", got)
	}
	if err := d.RemoveInstance(bg, "", t0.Add(-5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Instances(bg, time.Time{}); len(got) != 1 {
		t.Errorf("after removing stale ones: %d instances, want 1", len(got))
	}
	if err := d.RemoveInstance(bg, a.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Instances(bg, time.Time{}); len(got) != 0 {
		t.Errorf("after removing a: %d instances", len(got))
	}
}

func (s *suite[TTx]) receivedLongMsgID(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	long := incompressible(10_000)
	r := s.received(long, "billing", "long.id", []byte(`{}`))
	id, claimed, err := d.InsertReceived(bg, r, ids.Token(), t0.Add(time.Minute))
	if err != nil || !claimed || id != r.ID {
		t.Fatalf("InsertReceived of a 10,000-character id: id %d claimed %v err %v", id, claimed, err)
	}
	got := get(t, d, storage.Received, id)
	if !utf8.ValidString(got.MsgID) || len(got.MsgID) > storage.MaxMsgIDBytes || got.MsgID != storage.StorableMsgID(long) {
		t.Errorf("stored id %q, want StorableMsgID of the long id, %q", got.MsgID, storage.StorableMsgID(long))
	}
	if got.Status != storage.StatusScheduled || got.LeaseToken == 0 || got.Headers["cap-msg-id"] != long {
		t.Errorf("stored row: status %s token %d, cap-msg-id header of %d bytes", got.Status, got.LeaseToken, len(got.Headers["cap-msg-id"]))
	}
	dup := s.received(long, "billing", "long.id", []byte(`{}`))
	if _, claimed, err := d.InsertReceived(bg, dup, ids.Token(), t0.Add(time.Minute)); err != nil || claimed {
		t.Errorf("the same long id again: claimed %v err %v; want a duplicate", claimed, err)
	}
	// Two ids that share their first 200 characters are two messages.
	other := s.received(long[:len(long)-1]+"x", "billing", "long.id", []byte(`{}`))
	if oid, claimed, err := d.InsertReceived(bg, other, ids.Token(), t0.Add(time.Minute)); err != nil || !claimed || oid != other.ID {
		t.Errorf("another long id with the same prefix: id %d (want %d) claimed %v err %v", oid, other.ID, claimed, err)
	}
	if counts, err := d.Counts(bg, storage.Received); err != nil || counts[storage.StatusScheduled] != 2 {
		t.Errorf("received rows: %v %v, want 2 Scheduled", counts, err)
	}
}

// incompressible returns n characters of hex that a database cannot
// compress below an index's size limit, as it can a repeated text.
func incompressible(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		sum := sha256.Sum256([]byte(strconv.Itoa(i)))
		b.WriteString(hex.EncodeToString(sum[:]))
	}
	return b.String()[:n]
}

// visible checks that a text read back is valid UTF-8 and shows each of
// the escapes that storage.ValidText makes of bytes a database refuses.
func visible(t *testing.T, what, got string, escapes ...string) {
	t.Helper()
	if !utf8.ValidString(got) {
		t.Errorf("%s read back is not valid UTF-8: %q", what, got)
	}
	for _, e := range escapes {
		if !strings.Contains(got, e) {
			t.Errorf("%s read back as %q: does not show %s", what, got, e)
		}
	}
}

// visibleHeaders checks that headers read back hold the key and value
// escapes, in one entry.
func visibleHeaders(t *testing.T, what string, h map[string]string, keyEscapes, valueEscapes []string) {
	t.Helper()
	for k, v := range h {
		visible(t, what+" header key", k)
		visible(t, what+" header value", v)
	}
	for k, v := range h {
		if containsAll(k, keyEscapes) && containsAll(v, valueEscapes) {
			return
		}
	}
	t.Errorf("%s headers read back as %q: no key showing %v with a value showing %v", what, h, keyEscapes, valueEscapes)
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func (s *suite[TTx]) invalidText(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	bad := func(m *storage.Message) {
		m.Name = "name.\xff\x00." + m.Name
		m.Headers["key\x00\xff"] = "value\x00\xfe"
		m.Headers["nul"] = "a\x00b"
	}
	pub, pubTx := s.msg("pub", t0), s.msg("pubtx", t0)
	bad(pub)
	bad(pubTx)
	if err := d.InsertPublished(bg, []*storage.Message{pub}); err != nil {
		t.Fatalf("InsertPublished with NUL and invalid UTF-8: %v", err)
	}
	tx, commit, rollback := s.h.Begin(bg, t, d)
	if err := d.InsertPublishedTx(bg, tx, []*storage.Message{pubTx}); err != nil {
		rollback()
		t.Fatalf("InsertPublishedTx with NUL and invalid UTF-8: %v", err)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*storage.Message{pub, pubTx} {
		got := get(t, d, storage.Published, m.ID)
		visible(t, "published name", got.Name, `\xff`, `\x00`)
		visibleHeaders(t, "published", got.Headers, []string{`\x00`, `\xff`}, []string{`\x00`, `\xfe`})
		if got.Headers["nul"] != `a\x00b` {
			t.Errorf("published header nul = %q, want %q", got.Headers["nul"], `a\x00b`)
		}
	}

	const group = "group.\xff"
	r := s.received("id.\xff\x00", group, "rec", []byte(`{}`))
	bad(r)
	id, claimed, err := d.InsertReceived(bg, r, ids.Token(), t0.Add(-time.Second)) // lease already over
	if err != nil || !claimed {
		t.Fatalf("InsertReceived with NUL and invalid UTF-8: claimed %v err %v", claimed, err)
	}
	got := get(t, d, storage.Received, id)
	if !utf8.ValidString(got.MsgID) || got.MsgID != storage.StorableMsgID(r.MsgID) {
		t.Errorf("received id %q, want %q", got.MsgID, storage.StorableMsgID(r.MsgID))
	}
	visible(t, "received name", got.Name, `\xff`, `\x00`)
	visible(t, "received group", got.Group, `\xff`)
	visibleHeaders(t, "received", got.Headers, []string{`\x00`, `\xff`}, []string{`\x00`, `\xfe`})
	if _, claimed, err := d.InsertReceived(bg, s.received(r.MsgID, group, "rec", nil), ids.Token(), t0.Add(time.Minute)); err != nil || claimed {
		t.Errorf("the same invalid id again: claimed %v err %v; want a duplicate", claimed, err)
	}
	// The processor claims by the group names it was given.
	at := now().Add(time.Minute)
	c, err := d.Claim(bg, storage.Received, storage.ClaimRequest{Now: at, LeaseUntil: at.Add(time.Minute), Token: ids.Token(), Limit: 10, Groups: []string{group}})
	if err != nil || len(c) != 1 || c[0].ID != id {
		t.Errorf("claim by the invalid group: %v %v, want row %d", idsOf(c), err, id)
	}

	inst := storage.Instance{ID: "host\xff/1/1", Hostname: "host\x00\xff", PID: 1, Started: t0, LastSeen: t0}
	if err := d.Heartbeat(bg, inst); err != nil {
		t.Fatalf("Heartbeat with NUL and invalid UTF-8: %v", err)
	}
	insts, err := d.Instances(bg, t0.Add(-time.Minute))
	if err != nil || len(insts) != 1 {
		t.Fatalf("Instances: %+v %v", insts, err)
	}
	visible(t, "instance id", insts[0].ID, `\xff`)
	visible(t, "instance hostname", insts[0].Hostname, `\x00`, `\xff`)
	if err := d.RemoveInstance(bg, inst.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if insts, _ := d.Instances(bg, time.Time{}); len(insts) != 0 {
		t.Errorf("RemoveInstance by the id given to Heartbeat left %d instances", len(insts))
	}
}

func (s *suite[TTx]) failLongErrorText(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	m := s.msg("fail.long", t0.Add(-time.Second))
	s.insert(t, d, m)
	long := strings.Repeat("日本", 100_000/6) // 100 KB of 3-byte characters
	at := t0
	const maxAttempts = 3
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		c := claim(t, d, storage.Published, at, time.Minute, 1)
		if len(c) != 1 {
			t.Fatalf("attempt %d: claimed %d rows", attempt, len(c))
		}
		prefix := fmt.Sprintf("attempt %d: ", attempt)
		next := at.Add(10 * time.Second)
		res, err := d.Fail(bg, storage.Published, lease(c[0]), storage.Failure{
			Error: prefix + "\x00\xff " + long, Now: at, NextAttemptAt: next, MaxAttempts: maxAttempts, ExpiresAt: at.Add(time.Hour),
		})
		if err != nil {
			t.Fatalf("attempt %d: Fail with a 100 KB error text: %v", attempt, err)
		}
		if res.Retries != attempt {
			t.Errorf("attempt %d: retries %d", attempt, res.Retries)
		}
		r := get(t, d, storage.Published, m.ID)
		if !strings.HasPrefix(r.LastError, prefix) {
			t.Errorf("attempt %d: LastError starts %.40q", attempt, r.LastError)
		}
		visible(t, "LastError", r.LastError, `\x00`, `\xff`, "日本")
		at = next
	}
	r := get(t, d, storage.Published, m.ID)
	if r.Status != storage.StatusFailed || r.Retries != maxAttempts {
		t.Errorf("after %d failures: status %s retries %d, want Failed after %d", maxAttempts, r.Status, r.Retries, maxAttempts)
	}
}

func (s *suite[TTx]) release(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	a, b, c := s.msg("release", t0.Add(-time.Second)), s.msg("release", t0.Add(-time.Second)), s.msg("release", t0.Add(-time.Second))
	s.insert(t, d, a, b, c)
	got := claim(t, d, storage.Published, t0, time.Minute, 10)
	if len(got) != 3 {
		t.Fatalf("claimed %d rows, want 3", len(got))
	}
	byID := map[int64]*storage.Message{}
	for _, m := range got {
		byID[m.ID] = m
	}
	// a has one failed attempt behind it: Release must not count another.
	if _, err := d.Fail(bg, storage.Published, lease(byID[a.ID]), storage.Failure{Error: "boom", Now: t0, NextAttemptAt: t0, MaxAttempts: 5}); err != nil {
		t.Fatal(err)
	}
	again := claim(t, d, storage.Published, t0, time.Minute, 10)
	if len(again) != 1 || again[0].ID != a.ID {
		t.Fatalf("claim after Fail: %v, want %d", idsOf(again), a.ID)
	}
	if n, err := d.Release(bg, storage.Published, nil, t0, "nothing"); err != nil || n != 0 {
		t.Errorf("Release of no leases: %d, %v", n, err)
	}
	next := t0.Add(30 * time.Second)
	const reason = "broker unreachable: \x00\xff"
	stale := storage.Lease{ID: c.ID, Token: byID[c.ID].LeaseToken + 1}
	n, err := d.Release(bg, storage.Published, []storage.Lease{lease(again[0]), lease(byID[b.ID]), stale}, next, reason)
	if err != nil || n != 2 {
		t.Fatalf("Release: %d rows, %v; want 2", n, err)
	}
	for _, want := range []struct {
		id      int64
		retries int
	}{{a.ID, 1}, {b.ID, 0}} {
		r := get(t, d, storage.Published, want.id)
		if r.Status != storage.StatusScheduled || r.Retries != want.retries || r.LeaseToken != 0 || !r.LeaseUntil.IsZero() ||
			!r.NextAttemptAt.Equal(next) || !r.ExpiresAt.IsZero() {
			t.Errorf("released row %d: status %s retries %d (want %d) token %d until %v next %v expires %v",
				want.id, r.Status, r.Retries, want.retries, r.LeaseToken, r.LeaseUntil, r.NextAttemptAt, r.ExpiresAt)
		}
		if r.LastError != storage.ValidText(reason) {
			t.Errorf("released row %d: LastError %q, want %q", want.id, r.LastError, storage.ValidText(reason))
		}
	}
	if r := get(t, d, storage.Published, c.ID); r.LeaseToken != byID[c.ID].LeaseToken || r.LastError != "" {
		t.Errorf("Release with a stale token changed the row: token %d error %q", r.LeaseToken, r.LastError)
	}
	if early := claim(t, d, storage.Published, next.Add(-time.Second), time.Minute, 10); len(early) != 0 {
		t.Errorf("claimed %v before the released rows were due", idsOf(early))
	}
	if due := claim(t, d, storage.Published, next, time.Minute, 10); len(due) != 2 {
		t.Errorf("claimed %v at NextAttemptAt, want the 2 released rows", idsOf(due))
	}

	r := s.received("rel-1", "g", "release", nil)
	if _, ok, err := d.InsertReceived(bg, r, ids.Token(), t0.Add(time.Minute)); err != nil || !ok {
		t.Fatalf("InsertReceived: %v %v", ok, err)
	}
	rl := storage.Lease{ID: r.ID, Token: get(t, d, storage.Received, r.ID).LeaseToken}
	if n, err := d.Release(bg, storage.Received, []storage.Lease{rl}, next, strings.Repeat("日本", 20_000)); err != nil || n != 1 {
		t.Fatalf("Release of a received row with a 120 KB reason: %d, %v", n, err)
	}
	if got := get(t, d, storage.Received, r.ID); got.LeaseToken != 0 || got.Retries != 0 || !utf8.ValidString(got.LastError) || !strings.HasPrefix(got.LastError, "日本") {
		t.Errorf("released received row: token %d retries %d error %.20q", got.LeaseToken, got.Retries, got.LastError)
	}
}

func (s *suite[TTx]) permanentError(t *testing.T) {
	d := s.h.New(t)
	m := s.msg("perm.err", now())
	s.insert(t, d, m)
	err := d.InsertPublished(bg, []*storage.Message{m})
	if err == nil {
		t.Fatal("InsertPublished of an id already stored: no error")
	}
	if !errors.Is(err, storage.ErrPermanent) {
		t.Errorf("InsertPublished of an id already stored: %v; want an error that is storage.ErrPermanent", err)
	}
}
