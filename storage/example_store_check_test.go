package storage_test

// Focused checks of MemStore, the third-party backend of
// example_store_test.go. The conformance suite (example_conformance_test.go)
// is the full check; these run on their own and pin down the promises of
// the contract one by one.

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
)

var ctx = context.Background()

// t0 is the time the checks start from, in whole milliseconds like the
// time a message id encodes.
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// seq numbers the ids that newID makes.
var seq atomic.Int64

// newID returns a fresh message id made at t (a snowflake id: its time,
// then a sequence number).
func newID(t time.Time) int64 { return storage.MinIDAt(t) + seq.Add(1)%(1<<22) }

// published returns a published message added at added and due at due.
func published(name string, added, due time.Time) *storage.Message {
	return &storage.Message{ID: newID(added), Name: name, Body: []byte(name), Added: added, NextAttemptAt: due}
}

// insert stores msgs outside a transaction.
func insert(t *testing.T, s *MemStore, msgs ...*storage.Message) {
	t.Helper()
	if err := s.InsertPublished(ctx, msgs, storage.InsertOptions{}); err != nil {
		t.Fatalf("InsertPublished: %v", err)
	}
}

// claimAt claims up to limit rows of kind at now, under a lease of a minute.
func claimAt(t *testing.T, s *MemStore, kind storage.Kind, now time.Time, token int64, limit int, groups ...string) []*storage.Message {
	t.Helper()
	got, err := s.Claim(ctx, kind, storage.ClaimRequest{Now: now, LeaseUntil: now.Add(time.Minute), Token: token, Limit: limit, Groups: groups})
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return got
}

// mustGet returns row id of kind.
func mustGet(t *testing.T, s *MemStore, kind storage.Kind, id int64) *storage.Message {
	t.Helper()
	m, err := s.Get(ctx, kind, id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return m
}

// TestMemStoreTx checks that a Tx's rows are visible only after Commit, dropped
// by Rollback, and all refused when one id was stored meanwhile.
func TestMemStoreTx(t *testing.T) {
	s := NewMemStore()
	a, b := published("a", t0, t0), published("b", t0, t0)
	tx := s.Begin()
	if err := s.InsertPublishedTx(ctx, tx, []*storage.Message{a}, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, storage.Published, a.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("row visible before commit: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, storage.Published, a.ID); got.Status != storage.StatusScheduled || got.MsgID != strconv.FormatInt(a.ID, 10) {
		t.Errorf("committed row: %+v", got)
	}
	if err := tx.Rollback(); err == nil {
		t.Error("Rollback after Commit: no error")
	}

	rb := s.Begin()
	if err := s.InsertPublishedTx(ctx, rb, []*storage.Message{b}, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := rb.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, storage.Published, b.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("rolled back row: %v", err)
	}

	// Two transactions insert the same id: the second commit stores nothing.
	c, d := published("c", t0, t0), published("d", t0, t0)
	tx1, tx2 := s.Begin(), s.Begin()
	for _, tx := range []*Tx{tx1, tx2} {
		if err := s.InsertPublishedTx(ctx, tx, []*storage.Message{c}, storage.InsertOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.InsertPublishedTx(ctx, tx2, []*storage.Message{d}, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := tx1.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := tx2.Commit(); !errors.Is(err, storage.ErrPermanent) {
		t.Errorf("commit of an id stored meanwhile: %v, want ErrPermanent", err)
	}
	if _, err := s.Get(ctx, storage.Published, d.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a failed commit stored part of its rows: %v", err)
	}
	if err := s.InsertPublishedTx(ctx, s.Begin(), []*storage.Message{a}, storage.InsertOptions{}); !errors.Is(err, storage.ErrPermanent) {
		t.Errorf("insert of a stored id in a transaction: %v, want ErrPermanent", err)
	}
}

// TestMemStoreClaimAndLease checks due-first claims, leases that hide a row
// until LeaseUntil, stale leases recording nothing, and argument checks.
func TestMemStoreClaimAndLease(t *testing.T) {
	s := NewMemStore()
	late, early, future := published("late", t0, t0.Add(-time.Second)), published("early", t0, t0.Add(-time.Minute)), published("future", t0, t0.Add(time.Hour))
	insert(t, s, late, future, early)
	if got := claimAt(t, s, storage.Published, t0, 1, 1); len(got) != 1 || got[0].ID != early.ID || got[0].LeaseToken != 1 {
		t.Fatalf("first claim: %+v, want the row due first", got)
	}
	if got := claimAt(t, s, storage.Published, t0, 2, 10); len(got) != 1 || got[0].ID != late.ID {
		t.Fatalf("second claim: %+v, want only the other due row", got)
	}
	// The lease ends at LeaseUntil: hidden just before, claimable at it.
	if got := claimAt(t, s, storage.Published, t0.Add(time.Minute-time.Nanosecond), 3, 10); len(got) != 0 {
		t.Errorf("claimed %d leased rows", len(got))
	}
	again := claimAt(t, s, storage.Published, t0.Add(time.Minute), 4, 1)
	if len(again) != 1 || again[0].ID != early.ID {
		t.Fatalf("claim when the lease ended: %+v", again)
	}
	stale := storage.Lease{ID: early.ID, Token: 1}
	if n, err := s.Succeed(ctx, storage.Published, []storage.Completed{{Lease: stale}}, t0); err != nil || n != 0 {
		t.Errorf("stale Succeed: %d %v", n, err)
	}
	if _, err := s.Fail(ctx, storage.Published, stale, storage.Failure{MaxAttempts: 5}); !errors.Is(err, storage.ErrLeaseLost) {
		t.Errorf("stale Fail: %v, want ErrLeaseLost", err)
	}
	if n, err := s.Release(ctx, storage.Published, []storage.Lease{stale}, t0, "x"); err != nil || n != 0 {
		t.Errorf("stale Release: %d %v", n, err)
	}
	for _, req := range []storage.ClaimRequest{{Token: 0, Limit: 1}, {Token: 1, Limit: 0}} {
		if _, err := s.Claim(ctx, storage.Published, req); err == nil {
			t.Errorf("Claim(%+v): no error", req)
		}
	}
	if _, err := s.Claim(ctx, storage.Kind(9), storage.ClaimRequest{Token: 1, Limit: 1}); err == nil {
		t.Error("Claim of an unknown kind: no error")
	}
}

// TestMemStoreFailAndRelease checks retry counting up to MaxAttempts, cut
// error texts, Release keeping the count, and permanent failures.
func TestMemStoreFailAndRelease(t *testing.T) {
	s := NewMemStore()
	m := published("m", t0, t0)
	insert(t, s, m)
	at := t0
	for attempt := 1; attempt <= 3; attempt++ {
		c := claimAt(t, s, storage.Published, at, int64(attempt), 1)
		if len(c) != 1 || c[0].ID != m.ID {
			t.Fatalf("attempt %d: claimed %+v", attempt, c)
		}
		next := at.Add(time.Second)
		res, err := s.Fail(ctx, storage.Published, storage.Lease{ID: m.ID, Token: c[0].LeaseToken}, storage.Failure{
			Error: strings.Repeat("x", 2*maxErrorBytes), Now: at, NextAttemptAt: next, MaxAttempts: 3, ExpiresAt: at.Add(time.Hour),
		})
		if err != nil || res.Retries != attempt {
			t.Fatalf("attempt %d: %+v %v", attempt, res, err)
		}
		r := mustGet(t, s, storage.Published, m.ID)
		if len(r.LastError) > maxErrorBytes || !strings.HasSuffix(r.LastError, "[truncated]") || r.LeaseToken != 0 {
			t.Errorf("attempt %d: error of %d bytes, token %d", attempt, len(r.LastError), r.LeaseToken)
		}
		wantFailed := attempt == 3
		if (res.Status == storage.StatusFailed) != wantFailed || r.Status != res.Status || r.ExpiresAt.IsZero() != !wantFailed {
			t.Errorf("attempt %d: result %s, row %s expires %v", attempt, res.Status, r.Status, r.ExpiresAt)
		}
		at = next
	}
	// Release keeps the retry count; Permanent fails at once.
	p := published("p", at, at)
	insert(t, s, p)
	c := claimAt(t, s, storage.Published, at, 10, 1)
	if n, err := s.Release(ctx, storage.Published, []storage.Lease{{ID: p.ID, Token: c[0].LeaseToken}}, at.Add(time.Hour), "down\x00"); err != nil || n != 1 {
		t.Fatalf("Release: %d %v", n, err)
	}
	if r := mustGet(t, s, storage.Published, p.ID); r.Retries != 0 || r.LastError != `down\x00` || !r.NextAttemptAt.Equal(at.Add(time.Hour)) || r.LeaseToken != 0 {
		t.Errorf("released row: %+v", r)
	}
	c = claimAt(t, s, storage.Published, at.Add(time.Hour), 11, 1)
	if res, err := s.Fail(ctx, storage.Published, storage.Lease{ID: p.ID, Token: c[0].LeaseToken}, storage.Failure{Permanent: true, MaxAttempts: 50}); err != nil || res.Status != storage.StatusFailed || res.Retries != 1 {
		t.Errorf("permanent Fail: %+v %v", res, err)
	}
}

// TestMemStoreReceived checks de-duplication on (StorableMsgID, group), the
// reset of a Failed duplicate, the text rules and claims by group.
func TestMemStoreReceived(t *testing.T) {
	s := NewMemStore()
	recv := func(msgID, group string) *storage.Message {
		return &storage.Message{ID: newID(t0), MsgID: msgID, Group: group, Name: "n", Body: []byte(msgID), Added: t0}
	}
	first := recv("42", "billing")
	if res, err := s.InsertReceived(ctx, first, 1, t0.Add(time.Minute)); err != nil || res != (storage.ReceivedInsert{ID: first.ID, Claimed: true}) {
		t.Fatalf("first: %+v %v", res, err)
	}
	if res, err := s.InsertReceived(ctx, recv("42", "billing"), 2, t0.Add(time.Minute)); err != nil || res != (storage.ReceivedInsert{ID: first.ID}) {
		t.Errorf("duplicate: %+v %v", res, err)
	}
	if _, err := s.Fail(ctx, storage.Received, storage.Lease{ID: first.ID, Token: 1}, storage.Failure{Error: "e", MaxAttempts: 1, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	later := recv("42", "billing")
	later.Added = t0.Add(time.Second)
	if res, err := s.InsertReceived(ctx, later, 3, t0.Add(time.Minute)); err != nil || res != (storage.ReceivedInsert{ID: first.ID, Claimed: true, Reset: true}) {
		t.Fatalf("redelivery of a Failed row: %+v %v", res, err)
	}
	r := mustGet(t, s, storage.Received, first.ID)
	if r.Status != storage.StatusScheduled || r.Retries != 0 || r.LastError != "" || !r.ExpiresAt.IsZero() || r.LeaseToken != 3 || string(r.Body) != "42" {
		t.Errorf("reset row: %+v", r)
	}
	if _, err := s.InsertReceived(ctx, recv("43", "billing"), 0, t0); err == nil {
		t.Error("InsertReceived with a zero token: no error")
	}

	// A long or invalid id is stored, and de-duplicated, by StorableMsgID;
	// an invalid group as ValidText makes it, and claimed by its name.
	long := strings.Repeat("é", storage.MaxMsgIDBytes)
	odd := recv(long, "g\xff")
	if res, err := s.InsertReceived(ctx, odd, 4, t0); err != nil || !res.Claimed {
		t.Fatalf("long id: %+v %v", res, err)
	}
	if r := mustGet(t, s, storage.Received, odd.ID); r.MsgID != storage.StorableMsgID(long) || r.Group != `g\xff` {
		t.Errorf("stored id %q group %q", r.MsgID, r.Group)
	}
	if res, _ := s.InsertReceived(ctx, recv(long, "g\xff"), 5, t0); res.Claimed || res.ID != odd.ID {
		t.Errorf("long id again: %+v", res)
	}
	if got := claimAt(t, s, storage.Received, t0, 6, 10, "g\xff"); len(got) != 1 || got[0].ID != odd.ID {
		t.Errorf("claim by the invalid group: %+v", got)
	}
	if got := claimAt(t, s, storage.Received, t0.Add(time.Hour), 7, 10, []string{}...); len(got) != 0 {
		t.Errorf("claim with an empty, non-nil group list: %d rows", len(got))
	}
	if got, err := s.List(ctx, storage.Filter{Kind: storage.Received, MsgID: long}); err != nil || len(got) != 1 {
		t.Errorf("List by the long id: %d rows %v", len(got), err)
	}

	// Deleting a row frees its id and group for a new delivery.
	if n, err := s.Delete(ctx, storage.Received, []int64{odd.ID, odd.ID}); err != nil || n != 1 {
		t.Errorf("Delete: %d %v", n, err)
	}
	if res, _ := s.InsertReceived(ctx, recv(long, "g\xff"), 8, t0); !res.Claimed || res.Reset {
		t.Errorf("delivery after Delete: %+v", res)
	}
}

// TestMemStoreDashboard checks List's paging and filters, Counts, Histogram's
// epoch-aligned buckets and Requeue sparing rows in flight.
func TestMemStoreDashboard(t *testing.T) {
	s := NewMemStore()
	var msgs []*storage.Message
	for i := range 12 {
		m := published("even", t0.Add(time.Duration(i)*time.Minute), t0)
		if i%2 == 1 {
			m.Name, m.Body = "odd", []byte("odd")
		}
		msgs = append(msgs, m)
	}
	insert(t, s, msgs...)
	var seen []int64
	for before := int64(0); ; {
		page, err := s.List(ctx, storage.Filter{Kind: storage.Published, BeforeID: before, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			seen = append(seen, m.ID)
		}
		before = page[len(page)-1].ID
	}
	for i, id := range seen {
		if id != msgs[len(msgs)-1-i].ID {
			t.Fatalf("listing %v is not newest first", seen)
		}
	}
	if rows, _ := s.List(ctx, storage.Filter{Kind: storage.Published, Name: "odd", Group: "ignored"}); len(rows) != 6 {
		t.Errorf("by name: %d rows, want 6", len(rows))
	}
	if rows, _ := s.List(ctx, storage.Filter{Kind: storage.Published, Content: "ev"}); len(rows) != 6 {
		t.Errorf("by content: %d rows, want 6", len(rows))
	}

	c := claimAt(t, s, storage.Published, t0, 1, 3)
	if _, err := s.Succeed(ctx, storage.Published, []storage.Completed{{Lease: storage.Lease{ID: c[0].ID, Token: 1}}}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fail(ctx, storage.Published, storage.Lease{ID: c[1].ID, Token: 1}, storage.Failure{Permanent: true, ExpiresAt: t0.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	counts, err := s.Counts(ctx, storage.Published)
	if err != nil || len(counts) != len(storage.Statuses) || counts[storage.StatusScheduled] != 10 || counts[storage.StatusSucceeded] != 1 || counts[storage.StatusFailed] != 1 {
		t.Errorf("Counts: %v %v", counts, err)
	}

	// Buckets of 7 minutes start at multiples of 7 minutes since the Unix
	// epoch, whatever the time of day; rows added before since are left out.
	const width = 7 * time.Minute
	hist, err := s.Histogram(ctx, storage.Published, t0.Add(2*time.Minute), width)
	if err != nil {
		t.Fatal(err)
	}
	want := map[time.Time]int64{}
	for _, m := range msgs[2:] {
		ms := m.Added.UnixMilli()
		want[time.UnixMilli(ms-ms%width.Milliseconds()).UTC()]++
	}
	got := map[time.Time]int64{}
	for _, b := range hist {
		got[b.Start] += b.Count
		if b.Start.UnixMilli()%width.Milliseconds() != 0 || b.Start.Location() != time.UTC {
			t.Errorf("bucket start %v", b.Start)
		}
	}
	if len(got) != len(want) {
		t.Errorf("histogram buckets %v, want %v", got, want)
	}
	for start, n := range want {
		if got[start] != n {
			t.Errorf("bucket %v: %d rows, want %d", start, got[start], n)
		}
	}
	if _, err := s.Histogram(ctx, storage.Published, t0, time.Microsecond); err == nil {
		t.Error("Histogram with a sub-millisecond bucket: no error")
	}

	// Requeue: the Succeeded and the Failed rows, not the one in flight.
	at := t0.Add(time.Second)
	if n, err := s.Requeue(ctx, storage.Published, []int64{c[0].ID, c[1].ID, c[2].ID, c[0].ID}, at); err != nil || n != 2 {
		t.Errorf("Requeue: %d %v, want 2", n, err)
	}
	if r := mustGet(t, s, storage.Published, c[2].ID); r.LeaseToken != 1 {
		t.Error("Requeue broke a lease in flight")
	}
	if r := mustGet(t, s, storage.Published, c[1].ID); r.Status != storage.StatusScheduled || r.Retries != 0 || !r.ExpiresAt.IsZero() || !r.NextAttemptAt.Equal(at) {
		t.Errorf("requeued row: %+v", r)
	}
}

// TestMemStoreDeleteExpired checks that DeleteExpired removes expired rows in
// batches of at most limit, and refuses a limit that is not positive.
func TestMemStoreDeleteExpired(t *testing.T) {
	s := NewMemStore()
	var leases []storage.Completed
	for range 5 {
		m := published("e", t0, t0)
		insert(t, s, m)
		leases = append(leases, storage.Completed{Lease: storage.Lease{ID: m.ID, Token: 1}})
	}
	claimAt(t, s, storage.Published, t0, 1, 5)
	if _, err := s.Succeed(ctx, storage.Published, leases[:4], t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteExpired(ctx, storage.Published, t0, 0); err == nil {
		t.Error("DeleteExpired with a zero limit: no error")
	}
	if n, err := s.DeleteExpired(ctx, storage.Published, t0.Add(time.Minute), 3); err != nil || n != 3 {
		t.Errorf("first batch: %d %v, want 3", n, err)
	}
	if n, err := s.DeleteExpired(ctx, storage.Published, t0.Add(time.Minute), 3); err != nil || n != 1 {
		t.Errorf("second batch: %d %v, want 1", n, err)
	}
	if counts, _ := s.Counts(ctx, storage.Published); counts[storage.StatusScheduled] != 1 {
		t.Errorf("the leased Scheduled row was removed: %v", counts)
	}
}

// TestMemStoreInstances checks Heartbeat's upsert, Instances' order and
// RemoveInstance by id (as given) and by age.
func TestMemStoreInstances(t *testing.T) {
	s := NewMemStore()
	a := storage.Instance{ID: "a\xff", Hostname: "h\x00", PID: 1, Started: t0, LastSeen: t0}
	b := storage.Instance{ID: "b", PID: 2, Started: t0.Add(-time.Hour), LastSeen: t0.Add(-time.Hour)}
	for _, inst := range []storage.Instance{a, b} {
		if err := s.Heartbeat(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	a.LastSeen, a.Started = t0.Add(time.Second), t0.Add(time.Hour)
	if err := s.Heartbeat(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := s.Instances(ctx, time.Time{})
	if err != nil || len(got) != 2 || got[0].ID != "b" || got[1].ID != `a\xff` || got[1].Hostname != `h\x00` ||
		!got[1].LastSeen.Equal(a.LastSeen) || !got[1].Started.Equal(t0) {
		t.Fatalf("Instances: %+v %v", got, err)
	}
	if err := s.RemoveInstance(ctx, "", t0.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveInstance(ctx, a.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Instances(ctx, time.Time{}); len(got) != 0 {
		t.Errorf("left %+v", got)
	}
}

// TestMemStoreConcurrentClaims checks that concurrent claimers never share a row.
func TestMemStoreConcurrentClaims(t *testing.T) {
	s := NewMemStore()
	const rows = 200
	for range rows {
		insert(t, s, published("race", t0, t0))
	}
	var mu sync.Mutex
	claimed := map[int64]int{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for {
				got, err := s.Claim(ctx, storage.Published, storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: int64(w + 1), Limit: 3})
				if err != nil || len(got) == 0 {
					return
				}
				mu.Lock()
				for _, m := range got {
					claimed[m.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claimed) != rows {
		t.Errorf("claimed %d rows, want %d", len(claimed), rows)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("row %d claimed %d times", id, n)
		}
	}
}
