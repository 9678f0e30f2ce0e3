package ids

import (
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
)

// The generator's epoch is the one the storage contract documents.
func TestIDsEncodeTheirTime(t *testing.T) {
	g, err := NewGenerator(-1)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Millisecond)
	id := g.Next()
	at := storage.IDTime(id)
	if at.Before(before.Truncate(time.Millisecond)) || at.After(time.Now()) {
		t.Errorf("id %d encodes %v, made at %v", id, at, before)
	}
	if m := storage.MinIDAt(at); m > id || storage.MinIDAt(at.Add(time.Millisecond)) <= id {
		t.Errorf("MinIDAt(%v) = %d does not bound id %d", at, m, id)
	}
	if Token() == 0 {
		t.Error("zero token")
	}
}
