package sqlite_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// TestClaimRuns: SQLite honours ClaimRequest.Run (the conformance suite
// also accepts a Store that ignores it): a claim leases each keyed head
// with the rows that follow it, up to Run rows and the first that is not
// due, and so does SucceedClaimNext.
func TestClaimRuns(t *testing.T) {
	ctx := context.Background()
	d, _ := newDriver(t)
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	gen, err := ids.NewGenerator(1)
	if err != nil {
		t.Fatal(err)
	}
	var k []*storage.Message
	for i := range 8 {
		id := gen.Next()
		due := t0.Add(-time.Second)
		if i == 6 {
			due = t0.Add(time.Hour) // the runs stop before it
		}
		k = append(k, &storage.Message{ID: id, Kind: storage.Published, MsgID: strconv.FormatInt(id, 10), Name: "t",
			Headers: map[string]string{}, Body: []byte("{}"), Status: storage.StatusScheduled, Added: t0, NextAttemptAt: due,
			OrderingKey: "k"})
	}
	if err := d.InsertPublished(ctx, k, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	req := func(run int) storage.ClaimRequest {
		return storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: ids.Token(), Limit: 10, Run: run}
	}
	got, err := d.Claim(ctx, storage.Published, req(4))
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{k[0].ID, k[1].ID, k[2].ID, k[3].ID}; !slices.Equal(sorted(got), want) {
		t.Fatalf("claim with Run 4: %v, want the first four rows %v", sorted(got), want)
	}
	done := make([]storage.Completed, len(got))
	for i, m := range got {
		done[i] = storage.Completed{Lease: storage.Lease{ID: m.ID, Token: m.LeaseToken}}
	}
	_, next, err := d.SucceedClaimNext(ctx, storage.Published, done, t0.Add(time.Hour), req(4))
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{k[4].ID, k[5].ID}; !slices.Equal(sorted(next), want) {
		t.Fatalf("SucceedClaimNext with Run 4: %v, want %v (the run stops before the row not due)", sorted(next), want)
	}
}

func sorted(ms []*storage.Message) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	slices.Sort(out)
	return out
}
