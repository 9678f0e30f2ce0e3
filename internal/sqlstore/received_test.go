package sqlstore

import (
	"slices"
	"strings"
	"testing"

	"github.com/gocap/gocap/storage"
)

func TestReceivedBatch(t *testing.T) {
	long := strings.Repeat("é", 300)
	msgs := []*storage.Message{
		{ID: 1, MsgID: "b", Group: "g"},
		{ID: 2, MsgID: "a", Group: "g"},
		{ID: 3, MsgID: "b", Group: "g"}, // repeats 1
		{ID: 4, MsgID: "b", Group: "h"},
		{ID: 5, MsgID: long, Group: "g", Body: []byte("x")},
		{ID: 6, MsgID: long, Group: "g"}, // repeats 5, by its stored id
	}
	if _, err := NewReceivedBatch(msgs, 0, storage.ValidText, storage.ValidText); err == nil {
		t.Error("a zero token: no error")
	}
	b, err := NewReceivedBatch(msgs, 7, storage.ValidText, storage.ValidText)
	if err != nil {
		t.Fatal(err)
	}
	var rowIDs []int64
	for _, r := range b.Rows {
		rowIDs = append(rowIDs, r.ID)
		if r.Body == nil || r.Headers != "{}" {
			t.Errorf("row %d: body %v headers %q", r.ID, r.Body, r.Headers)
		}
	}
	// Sorted by (msg id, group); the long id is stored as "sha256:...".
	if want := []int64{2, 1, 4, 5}; !slices.Equal(rowIDs, want) {
		t.Fatalf("rows %v, want %v", rowIDs, want)
	}
	if b.Rows[3].MsgID != storage.StorableMsgID(long) {
		t.Errorf("stored id %q", b.Rows[3].MsgID)
	}
	if i := b.Index()[ReceivedKey{"b", "h"}]; i != 2 {
		t.Errorf("index of (b, h) = %d, want 2", i)
	}
	rows := []storage.ReceivedInsert{
		b.Rows[0].Result(2, true, true),   // inserted
		b.Rows[1].Result(99, true, true),  // a Failed row reset
		b.Rows[2].Result(0, false, false), // a duplicate
		b.Rows[3].Result(5, true, true),
	}
	want := []storage.ReceivedInsert{
		{ID: 99, Claimed: true, Reset: true}, {ID: 2, Claimed: true}, {ID: 99}, {}, {ID: 5, Claimed: true}, {ID: 5},
	}
	if got := b.Results(rows); !slices.Equal(got, want) {
		t.Errorf("results %+v, want %+v", got, want)
	}
	base := Base{Name: "test", Classify: func(err error) error { return err }}
	got, err := base.InsertReceivedBatch(nil, 7, storage.ValidText, storage.ValidText, func(*ReceivedBatch, []storage.ReceivedInsert) error {
		t.Error("store called for an empty batch")
		return nil
	})
	if err != nil || len(got) != 0 {
		t.Errorf("empty batch: %v %v", got, err)
	}
}
