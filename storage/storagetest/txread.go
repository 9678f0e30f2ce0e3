// The TxRead area: storage.TxReader, for a Store that implements it.

package storagetest

import (
	"slices"
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
)

// txRead checks ListPublishedTx: a transaction sees its own uncommitted
// rows with the committed ones, filtered and ordered as List does, and a
// rolled-back transaction's rows are gone from the next one.
func (s *suite[TTx]) txRead(t *testing.T) {
	d := s.h.New(t)
	r, ok := d.(storage.TxReader[TTx])
	if !ok {
		t.Skipf("%T does not implement storage.TxReader", d)
	}
	committed := s.msg("txread.a", now())
	s.insert(t, d, committed)

	tx, _, rollback := s.h.Begin(bg, t, d)
	mine, other := s.msg("txread.a", now()), s.msg("txread.b", now())
	later := s.delayed("txread.a", now().Add(time.Hour))
	if err := d.InsertPublishedTx(bg, tx, []*storage.Message{mine, other, later}, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	list := func(f storage.Filter) []int64 {
		t.Helper()
		got, err := r.ListPublishedTx(bg, tx, f)
		if err != nil {
			t.Fatalf("ListPublishedTx(%+v): %v", f, err)
		}
		for _, m := range got {
			if m.Kind != storage.Published || m.MsgID == "" || len(m.Body) == 0 {
				t.Errorf("ListPublishedTx(%+v): row %d not read whole: %+v", f, m.ID, m)
			}
		}
		return idsOf(got)
	}
	want := []int64{later.ID, mine.ID, committed.ID} // newest first
	if got := list(storage.Filter{Name: "txread.a"}); !slices.Equal(got, want) {
		t.Errorf("rows of txread.a in the transaction = %v, want %v (its own, then the committed one)", got, want)
	}
	if got := list(storage.Filter{Kind: storage.Published, Name: "txread.a", Limit: 2}); !slices.Equal(got, want[:2]) {
		t.Errorf("first page of 2 = %v, want %v", got, want[:2])
	}
	if got := list(storage.Filter{Status: storage.StatusDelayed}); !slices.Equal(got, []int64{later.ID}) {
		t.Errorf("Delayed rows = %v, want %v", got, []int64{later.ID})
	}
	if got := list(storage.Filter{MsgID: other.MsgID}); !slices.Equal(got, []int64{other.ID}) {
		t.Errorf("rows with msg id %s = %v, want %v", other.MsgID, got, []int64{other.ID})
	}
	if _, err := r.ListPublishedTx(bg, tx, storage.Filter{Kind: storage.Received}); err == nil {
		t.Error("ListPublishedTx of kind received: no error")
	}
	var nilTx TTx
	if _, err := r.ListPublishedTx(bg, nilTx, storage.Filter{}); err == nil {
		t.Error("ListPublishedTx with a nil transaction: no error")
	}
	if err := rollback(); err != nil {
		t.Fatal(err)
	}

	tx, _, rollback = s.h.Begin(bg, t, d)
	defer rollback()
	if got := list(storage.Filter{}); !slices.Equal(got, []int64{committed.ID}) {
		t.Errorf("rows after the rollback = %v, want only the committed %d", got, committed.ID)
	}
}
