// The Insert area: InsertPublished and InsertPublishedTx.

package storagetest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

func (s *suite[TTx]) txCommitAndRollback(t *testing.T) {
	d := s.h.New(t)
	committed, rolledBack := s.msg("tx.commit", now()), s.msg("tx.rollback", now())
	tx, commit, _ := s.h.Begin(bg, t, d)
	if err := d.InsertPublishedTx(bg, tx, []*storage.Message{committed}, storage.InsertOptions{Notify: true}); err != nil {
		t.Fatal(err)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	tx, _, rollback := s.h.Begin(bg, t, d)
	if err := d.InsertPublishedTx(bg, tx, []*storage.Message{rolledBack, s.msg("tx.rollback", now())}, storage.InsertOptions{Notify: true}); err != nil {
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
	// Notify asks a Listener to notify; other stores ignore it.
	if err := d.InsertPublished(bg, []*storage.Message{a, b}, storage.InsertOptions{Notify: true}); err != nil {
		t.Fatalf("InsertPublished with Notify: %v", err)
	}
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
	if err := d.InsertPublishedTx(bg, tx, []*storage.Message{m, bin, empty}, storage.InsertOptions{}); err != nil {
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
	if res, err := d.InsertReceived(bg, r, ids.Token(), now().Add(time.Minute)); err != nil || !res.Claimed {
		t.Fatalf("InsertReceived: %+v %v", res, err)
	}
	if got := get(t, d, storage.Received, r.ID); !bytes.Equal(got.Body, large) || got.MsgID != r.MsgID || got.Group != r.Group {
		t.Errorf("received large/non-ASCII row did not round-trip")
	}
}

// policyRoundTrip: the Policy a row is inserted with is returned by every
// read, and kept by the changes of its life, on both tables.
func (s *suite[TTx]) policyRoundTrip(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	const policy = `{"retries":[1,5,30],"max":7,"note":"naïve ✓"}`
	check := func(what string, kind storage.Kind, m *storage.Message) {
		t.Helper()
		if m.Policy != policy {
			t.Errorf("%s: %s row %d has policy %q, want %q", what, kind, m.ID, m.Policy, policy)
		}
	}
	// Published, in a transaction and without one.
	a, b, plain := s.msg("policy", t0.Add(-time.Second)), s.delayed("policy", t0.Add(time.Minute)), s.msg("policy", t0.Add(-time.Second))
	a.Policy, b.Policy = policy, policy
	tx, commit, _ := s.h.Begin(bg, t, d)
	if err := d.InsertPublishedTx(bg, tx, []*storage.Message{a}, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	s.insert(t, d, b, plain)
	check("get after InsertPublishedTx", storage.Published, get(t, d, storage.Published, a.ID))
	check("get after InsertPublished", storage.Published, get(t, d, storage.Published, b.ID))
	if r := get(t, d, storage.Published, plain.ID); r.Policy != "" {
		t.Errorf("row inserted without a policy has %q", r.Policy)
	}
	c := claim(t, d, storage.Published, t0, time.Minute, 10)
	if len(c) != 2 {
		t.Fatalf("claimed %d rows, want 2", len(c))
	}
	for _, m := range c {
		if m.ID == a.ID {
			check("claim", storage.Published, m)
			if _, err := d.Fail(bg, storage.Published, lease(m), storage.Failure{Error: "x", Now: t0, NextAttemptAt: t0, MaxAttempts: 1, ExpiresAt: t0.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	check("get after Fail", storage.Published, get(t, d, storage.Published, a.ID))
	if n, err := d.Requeue(bg, storage.Published, []int64{a.ID, b.ID}, t0); err != nil || n != 2 {
		t.Fatalf("Requeue: %d %v", n, err)
	}
	check("get after Requeue", storage.Published, get(t, d, storage.Published, a.ID))
	rows, err := d.List(bg, storage.Filter{Kind: storage.Published, Name: "policy"})
	if err != nil || len(rows) != 3 {
		t.Fatalf("List: %d rows, %v", len(rows), err)
	}
	for _, r := range rows {
		if r.ID != plain.ID {
			check("List", storage.Published, r)
		}
	}
	// Received: stored by InsertReceived, kept by Fail and by the reset
	// of a redelivery.
	r := s.received("policy-1", "g", "policy", nil)
	r.Policy = policy
	tok := ids.Token()
	if res, err := d.InsertReceived(bg, r, tok, t0.Add(time.Minute)); err != nil || !res.Claimed {
		t.Fatalf("InsertReceived: %+v %v", res, err)
	}
	check("get after InsertReceived", storage.Received, get(t, d, storage.Received, r.ID))
	if _, err := d.Fail(bg, storage.Received, storage.Lease{ID: r.ID, Token: tok}, storage.Failure{Error: "x", Now: t0, NextAttemptAt: t0, MaxAttempts: 1, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	check("get after Fail", storage.Received, get(t, d, storage.Received, r.ID))
	again := s.received("policy-1", "g", "policy", nil)
	if res, err := d.InsertReceived(bg, again, ids.Token(), t0); err != nil || !res.Reset {
		t.Fatalf("redelivery: %+v %v", res, err)
	}
	check("get after a reset", storage.Received, get(t, d, storage.Received, r.ID))
	if _, err := d.Requeue(bg, storage.Received, []int64{r.ID}, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	rc := claim(t, d, storage.Received, t0.Add(2*time.Minute), time.Minute, 10)
	if len(rc) != 1 {
		t.Fatalf("received claim: %d rows", len(rc))
	}
	check("claim", storage.Received, rc[0])
}
