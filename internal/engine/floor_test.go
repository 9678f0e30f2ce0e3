package engine

import (
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
)

// TestDueFloor: claims start from the start until one from the start
// finds fewer rows than its limit, then from lateCommit before it, with
// one from the start again every fullClaimEvery; a full batch from the
// start (a backlog) and a keyed row, claimed or attempted (for a lease),
// turn the floor off.
func TestDueFloor(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	lease := 30 * time.Second
	rows := func(n int, key string) []*storage.Message {
		ms := make([]*storage.Message, n)
		for i := range ms {
			ms[i] = &storage.Message{ID: int64(i + 1), OrderingKey: key}
		}
		return ms
	}
	var f dueFloor
	step := func(at time.Duration, n, limit int, key string, want time.Time) {
		t.Helper()
		now := t0.Add(at)
		from := f.from(now)
		if !from.Equal(want) {
			t.Fatalf("claim at +%v starts at %v, want %v", at, from, want)
		}
		f.claimed(now, from, rows(n, key), limit, lease)
	}
	none := time.Time{}
	step(0, 10, 10, "", none)                  // the first claim: from the start; a full batch
	step(10*time.Millisecond, 3, 10, "", none) // still from the start: the backlog's end
	floor := t0.Add(10 * time.Millisecond).Add(-lateCommit)
	step(20*time.Millisecond, 10, 10, "", floor) // from the floor, even with a full batch
	step(500*time.Millisecond, 0, 10, "", floor) // from the floor
	step(1010*time.Millisecond, 0, 10, "", none) // fullClaimEvery after the last one from the start
	floor = t0.Add(1010 * time.Millisecond).Add(-lateCommit)
	step(1020*time.Millisecond, 1, 10, "k", floor)     // a keyed row...
	step(1030*time.Millisecond, 0, 10, "", none)       // ...turns the floor off for a lease
	step(1030*time.Millisecond+lease, 0, 10, "", none) // then a claim from the start sets it again
	step(1040*time.Millisecond+lease, 0, 10, "", t0.Add(1030*time.Millisecond+lease).Add(-lateCommit))
	step(500*time.Millisecond+lease, 0, 10, "", none) // the clock went back: from the start
	step(2*lease, 0, 10, "", none)                    // the keyed row's lease is over
	step(2*lease+10*time.Millisecond, 0, 10, "", t0.Add(2*lease).Add(-lateCommit))
	// A keyed row attempted without a claim (a received head) turns it
	// off too.
	f.keyed(t0.Add(2*lease+20*time.Millisecond), rows(1, "k"), lease)
	step(2*lease+30*time.Millisecond, 0, 10, "", none)
}
