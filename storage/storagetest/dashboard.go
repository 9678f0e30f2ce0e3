// The Dashboard area: List, Counts, Histogram, Requeue and Delete.

package storagetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

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
	if n := count(storage.Filter{MsgID: msgs[4].MsgID + "x"}); n != 0 {
		t.Errorf("by a published message id that is not a number: %d, want 0", n)
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

// listGroup: List's Group filter returns the received rows of that
// consumer group only.
func (s *suite[TTx]) listGroup(t *testing.T) {
	d := s.h.New(t)
	want := map[int64]bool{}
	for i, g := range []string{"a", "b", "b"} {
		m := s.received(fmt.Sprintf("lg-%d", i), g, "list.group", nil)
		if _, err := d.InsertReceived(bg, m, ids.Token(), now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if g == "b" {
			want[m.ID] = true
		}
	}
	rows, err := d.List(bg, storage.Filter{Kind: storage.Received, Group: "b", Limit: 100})
	if err != nil {
		t.Fatalf("List by group: %v", err)
	}
	if len(rows) != len(want) {
		t.Errorf("List by group b: %d rows, want %d", len(rows), len(want))
	}
	for _, r := range rows {
		if r.Group != "b" || !want[r.ID] {
			t.Errorf("List by group b: row %d of group %q", r.ID, r.Group)
		}
	}
	if rows, err := d.List(bg, storage.Filter{Kind: storage.Received, Group: "c", Limit: 100}); err != nil || len(rows) != 0 {
		t.Errorf("List by group c: %d rows %v, want none", len(rows), err)
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
	if _, err := d.Succeed(bg, storage.Published, completed(ok), t0.Add(time.Hour)); err != nil {
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
	hist, err := d.Histogram(bg, storage.Published, t0.Add(-time.Hour), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, b := range hist {
		total += b.Count
		if b.Start.After(time.Now()) || b.Start.Before(t0.Add(-2*time.Minute)) || b.Start.Location() != time.UTC {
			t.Errorf("bucket start %v out of range", b.Start)
		}
		if b.Start.UnixMilli()%time.Minute.Milliseconds() != 0 {
			t.Errorf("bucket start %v is not a multiple of the bucket width since the Unix epoch", b.Start)
		}
	}
	if total != 6 {
		t.Errorf("histogram counts %d rows, want 6", total)
	}
	if hist, err := d.Histogram(bg, storage.Published, t0.Add(time.Hour), time.Minute); err != nil || len(hist) != 0 {
		t.Errorf("histogram of the future: %v %v", hist, err)
	}
	if _, err := d.Histogram(bg, storage.Published, t0.Add(-time.Hour), time.Microsecond); err == nil {
		t.Error("Histogram with a bucket under a millisecond: no error")
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

// requeueDelayed: a Delayed row requeued is sent now, with its policy.
func (s *suite[TTx]) requeueDelayed(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	m := s.delayed("requeue.delayed", t0.Add(24*time.Hour))
	m.Policy = "p1"
	s.insert(t, d, m)
	if c := claim(t, d, storage.Published, t0, time.Minute, 10); len(c) != 0 {
		t.Fatalf("claimed a Delayed row before its due time")
	}
	if n, err := d.Requeue(bg, storage.Published, []int64{m.ID}, t0); err != nil || n != 1 {
		t.Fatalf("Requeue of a Delayed row: %d %v; want 1", n, err)
	}
	r := get(t, d, storage.Published, m.ID)
	if r.Status != storage.StatusScheduled || !r.NextAttemptAt.Equal(t0) || r.Policy != "p1" {
		t.Errorf("requeued Delayed row: status %s next %v policy %q; want Scheduled due at %v with policy p1", r.Status, r.NextAttemptAt, r.Policy, t0)
	}
	counts, err := d.Counts(bg, storage.Published)
	if err != nil || counts[storage.StatusDelayed] != 0 || counts[storage.StatusScheduled] != 1 {
		t.Errorf("Counts after the requeue: %v %v", counts, err)
	}
	if c := claim(t, d, storage.Published, t0, time.Minute, 10); len(c) != 1 || c[0].ID != m.ID || c[0].Policy != "p1" {
		t.Errorf("claim after the requeue: %v, want %d with its policy", idsOf(c), m.ID)
	}
}
