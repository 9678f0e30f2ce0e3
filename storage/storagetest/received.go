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
