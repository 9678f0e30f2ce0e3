// The Received area: de-duplication in InsertReceived, and claims by
// consumer group.

package storagetest

import (
	"strconv"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

func (s *suite[TTx]) receivedDedup(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	first := s.received("42", "billing", "order.paid", []byte(`{"id":42}`))
	tok := ids.Token()
	res, err := d.InsertReceived(bg, first, tok, t0.Add(time.Minute))
	if err != nil || !res.Claimed || res.Reset || res.ID != first.ID {
		t.Fatalf("first insert: %+v err %v; want claimed, not reset, id %d", res, err, first.ID)
	}
	id := res.ID
	if _, err := d.InsertReceived(bg, s.received("43", "billing", "order.paid", nil), 0, t0.Add(time.Minute)); err == nil {
		t.Error("InsertReceived with a zero token: no error")
	}
	r := get(t, d, storage.Received, id)
	if r.Status != storage.StatusScheduled || r.LeaseToken != tok || r.Group != "billing" || r.MsgID != "42" {
		t.Errorf("stored row: %+v", r)
	}
	if again := claim(t, d, storage.Received, t0, time.Minute, 10); len(again) != 0 {
		t.Error("a claimed received row was claimed again")
	}
	dup := s.received("42", "billing", "order.paid", []byte(`{"id":42}`))
	if res, err := d.InsertReceived(bg, dup, ids.Token(), t0.Add(time.Minute)); err != nil || res.Claimed || res.Reset {
		t.Errorf("duplicate: %+v err %v; want neither claimed nor reset", res, err)
	}
	other := s.received("42", "shipping", "order.paid", []byte(`{"id":42}`))
	if res, err := d.InsertReceived(bg, other, ids.Token(), t0.Add(time.Minute)); err != nil || !res.Claimed || res.Reset || res.ID != other.ID {
		t.Errorf("same id, other group: %+v err %v", res, err)
	}
	// After a final failure, a redelivery runs the message again.
	if _, err := d.Fail(bg, storage.Received, storage.Lease{ID: id, Token: tok}, storage.Failure{
		Error: "bad", Now: t0, NextAttemptAt: t0, MaxAttempts: 1, ExpiresAt: t0.Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	tok2 := ids.Token()
	res, err = d.InsertReceived(bg, s.received("42", "billing", "order.paid", []byte(`{}`)), tok2, t0.Add(time.Minute))
	if err != nil || !res.Claimed || !res.Reset || res.ID != id {
		t.Fatalf("redelivery of a Failed message: %+v (want id %d, claimed and reset) err %v", res, id, err)
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
		if _, err := d.InsertReceived(bg, m, ids.Token(), past); err != nil { // lease already over
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

// handledRows stores two received rows of group g and returns them as
// Get reads them: one Succeeded (msgID "done"), one that failed an attempt
// and waits for its retry (msgID "retry": Scheduled, due in an hour, its
// lease ended). Neither is a Failed row: a redelivery of either is a
// duplicate that leaves it alone.
func (s *suite[TTx]) handledRows(t *testing.T, d storage.Store) (done, retry *storage.Message) {
	t.Helper()
	t0 := now()
	d1, d2 := s.received("done", "g", "t", []byte(`done`)), s.received("retry", "g", "t", []byte(`retry`))
	tok := ids.Token()
	for _, m := range []*storage.Message{d1, d2} {
		if res, err := d.InsertReceived(bg, m, tok, t0.Add(time.Minute)); err != nil || !res.Claimed {
			t.Fatalf("InsertReceived: %+v %v", res, err)
		}
	}
	if n, err := d.Succeed(bg, storage.Received, []storage.Completed{{Lease: storage.Lease{ID: d1.ID, Token: tok},
		Attempt: storage.Attempt{At: t0, Duration: time.Millisecond}}}, t0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("Succeed: %d %v", n, err)
	}
	res, err := d.Fail(bg, storage.Received, storage.Lease{ID: d2.ID, Token: tok}, storage.Failure{
		Error: "later", Now: t0, NextAttemptAt: t0.Add(time.Hour), MaxAttempts: 5, ExpiresAt: t0.Add(24 * time.Hour),
	})
	if err != nil || res.Status != storage.StatusScheduled || res.Retries != 1 {
		t.Fatalf("Fail: %+v %v; want Scheduled after 1", res, err)
	}
	return get(t, d, storage.Received, d1.ID), get(t, d, storage.Received, d2.ID)
}

// checkUnchanged fails the test if the row of was, read again, differs
// from was in status, retries, due time, expiry, lease or content.
func checkUnchanged(t *testing.T, d storage.Store, what string, was *storage.Message) {
	t.Helper()
	r := get(t, d, storage.Received, was.ID)
	if r.Status != was.Status || r.Retries != was.Retries || !r.NextAttemptAt.Equal(was.NextAttemptAt) ||
		!r.ExpiresAt.Equal(was.ExpiresAt) || r.LeaseToken != was.LeaseToken || !r.LeaseUntil.Equal(was.LeaseUntil) ||
		r.LastError != was.LastError || string(r.Body) != string(was.Body) {
		t.Errorf("%s: the row changed: status %s retries %d next %v expires %v lease %d until %v error %q body %q; was status %s retries %d next %v expires %v lease %d until %v error %q body %q",
			what, r.Status, r.Retries, r.NextAttemptAt, r.ExpiresAt, r.LeaseToken, r.LeaseUntil, r.LastError, r.Body,
			was.Status, was.Retries, was.NextAttemptAt, was.ExpiresAt, was.LeaseToken, was.LeaseUntil, was.LastError, was.Body)
	}
}

// receivedDuplicateOfHandled: a redelivery of a message already handled
// (Succeeded) or waiting for its retry (Scheduled, lease ended) is a
// duplicate: neither claimed nor reset, the row unchanged. Only a Failed
// row is reset.
func (s *suite[TTx]) receivedDuplicateOfHandled(t *testing.T) {
	d := s.h.New(t)
	done, retry := s.handledRows(t, d)
	for _, was := range []*storage.Message{done, retry} {
		what := "a redelivery of a " + string(was.Status) + " row"
		if was.Status == storage.StatusScheduled {
			what += " waiting for its retry"
		}
		res, err := d.InsertReceived(bg, s.received(was.MsgID, "g", "t", []byte(`redelivered`)), ids.Token(), now().Add(time.Minute))
		if err != nil || res.Claimed || res.Reset || res.Queued {
			t.Errorf("%s: %+v %v; want a duplicate (neither claimed nor reset)", what, res, err)
		}
		checkUnchanged(t, d, what, was)
	}
	if c := claim(t, d, storage.Received, now(), time.Minute, 10); len(c) != 0 {
		t.Errorf("claimed %d rows after the redeliveries, want none", len(c))
	}
}
