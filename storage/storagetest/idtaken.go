// The IDTaken area: an insert whose id is that of a stored row of another
// message stores nothing and says so (storage.ErrIDTaken), leaving the
// stored row and the application's transaction as they were.

package storagetest

import (
	"errors"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// wantIDTaken fails the test unless err is storage.ErrIDTaken and
// storage.ErrPermanent.
func wantIDTaken(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, storage.ErrIDTaken) || !errors.Is(err, storage.ErrPermanent) {
		t.Errorf("%s with a stored id: %v; want an error that is storage.ErrIDTaken and storage.ErrPermanent", what, err)
	}
}

// wantAbsent fails the test if a row of kind with id is stored.
func wantAbsent(t *testing.T, d storage.Store, kind storage.Kind, id int64, what string) {
	t.Helper()
	if _, err := d.Get(bg, kind, id); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("%s: %s row %d: err = %v, want ErrNotFound (nothing of a failed insert stored)", what, kind, id, err)
	}
}

// idTakenPublished: InsertPublished of a stored id, alone or with a new
// message, stores nothing and leaves the stored row alone.
func (s *suite[TTx]) idTakenPublished(t *testing.T) {
	d := s.h.New(t)
	stored := s.msg("taken.stored", now())
	s.insert(t, d, stored)
	again := s.msg("taken.again", now())
	again.ID = stored.ID
	wantIDTaken(t, "InsertPublished of one message", d.InsertPublished(bg, []*storage.Message{again}, storage.InsertOptions{Notify: true}))
	fresh := s.msg("taken.fresh", now())
	wantIDTaken(t, "InsertPublished of two messages", d.InsertPublished(bg, []*storage.Message{fresh, again}, storage.InsertOptions{}))
	wantAbsent(t, d, storage.Published, fresh.ID, "InsertPublished of a new and a taken id")
	if got := get(t, d, storage.Published, stored.ID); got.Name != "taken.stored" {
		t.Errorf("stored row renamed %q by an insert of its id", got.Name)
	}
	// Under the new id it is stored.
	again.ID = s.id()
	s.insert(t, d, again, fresh)
}

// idTakenPublishedTx: InsertPublishedTx of a stored id, alone or with a
// new message, stores nothing and leaves the transaction usable: what is
// inserted before and after it commits.
func (s *suite[TTx]) idTakenPublishedTx(t *testing.T) {
	d := s.h.New(t)
	stored := s.msg("taken.stored", now())
	s.insert(t, d, stored)
	before, fresh, after := s.msg("taken.before", now()), s.msg("taken.fresh", now()), s.msg("taken.after", now())
	again := s.msg("taken.again", now())
	again.ID = stored.ID
	tx, commit, rollback := s.h.Begin(bg, t, d)
	committed := false
	defer func() { // a failed check must not leave the transaction open
		if !committed {
			_ = rollback()
		}
	}()
	if err := d.InsertPublishedTx(bg, tx, []*storage.Message{before}, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	wantIDTaken(t, "InsertPublishedTx of one message", d.InsertPublishedTx(bg, tx, []*storage.Message{again}, storage.InsertOptions{Notify: true}))
	wantIDTaken(t, "InsertPublishedTx of two messages", d.InsertPublishedTx(bg, tx, []*storage.Message{fresh, again}, storage.InsertOptions{}))
	if err := d.InsertPublishedTx(bg, tx, []*storage.Message{after}, storage.InsertOptions{}); err != nil {
		t.Fatalf("InsertPublishedTx after a taken id: %v; want the transaction still usable", err)
	}
	committed = true
	if err := commit(); err != nil {
		t.Fatalf("commit after a taken id: %v; want the transaction still usable", err)
	}
	for _, m := range []*storage.Message{before, after} {
		if got := get(t, d, storage.Published, m.ID); got.Name != m.Name {
			t.Errorf("row %d committed as %q, want %q", m.ID, got.Name, m.Name)
		}
	}
	wantAbsent(t, d, storage.Published, fresh.ID, "InsertPublishedTx of a new and a taken id")
	if got := get(t, d, storage.Published, stored.ID); got.Name != "taken.stored" {
		t.Errorf("stored row renamed %q by an insert of its id", got.Name)
	}
}

// idTakenReceived: InsertReceived of a message whose id is that of a
// stored row of another message id stores nothing and leaves that row
// alone, even a Failed one (which a duplicate of its own would reset).
func (s *suite[TTx]) idTakenReceived(t *testing.T) {
	d := s.h.New(t)
	t0 := now()
	stored := s.received("taken-1", "g", "t", []byte(`1`))
	tok := ids.Token()
	if _, err := d.InsertReceived(bg, stored, tok, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Fail(bg, storage.Received, storage.Lease{ID: stored.ID, Token: tok}, storage.Failure{
		Error: "boom", Now: t0, NextAttemptAt: t0, Permanent: true, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, other := range []*storage.Message{
		s.received("taken-2", "g", "t", []byte(`2`)), // another message id
		s.received("taken-1", "h", "t", []byte(`3`)), // another group
	} {
		other.ID = stored.ID
		_, err := d.InsertReceived(bg, other, ids.Token(), t0.Add(time.Minute))
		wantIDTaken(t, "InsertReceived", err)
	}
	got := get(t, d, storage.Received, stored.ID)
	if got.MsgID != "taken-1" || got.Group != "g" || got.Status != storage.StatusFailed || string(got.Body) != "1" {
		t.Errorf("stored Failed row after inserts of its id: msg id %q group %q status %s body %q; want it unchanged",
			got.MsgID, got.Group, got.Status, got.Body)
	}
}

// idTakenReceivedBatch: InsertReceivedBatch with one message whose id is
// taken stores none of the batch.
func (s *suite[TTx]) idTakenReceivedBatch(t *testing.T) {
	d, bi := newAs[storage.ReceivedBatchInserter](t, s)
	t0 := now()
	stored := s.received("taken-1", "g", "t", []byte(`1`))
	if _, err := d.InsertReceived(bg, stored, ids.Token(), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	fresh, other := s.received("taken-2", "g", "t", nil), s.received("taken-3", "g", "t", nil)
	other.ID = stored.ID
	_, err := bi.InsertReceivedBatch(bg, []*storage.Message{fresh, other}, ids.Token(), t0.Add(time.Minute))
	wantIDTaken(t, "InsertReceivedBatch", err)
	wantAbsent(t, d, storage.Received, fresh.ID, "InsertReceivedBatch of a new and a taken id")
	if got := get(t, d, storage.Received, stored.ID); got.MsgID != "taken-1" {
		t.Errorf("stored row has msg id %q after a batch with its id, want taken-1", got.MsgID)
	}
}
