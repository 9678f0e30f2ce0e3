package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
)

// BenchmarkClaimVersion times one claim of 100 due rows of version v1 (each
// iteration then releases them, untimed, due again at once, so that the
// next finds as many), on
// a table of 10,000 due rows of v1, 10,000 of v2 and 40,000 Delayed ones
// of both: the claim loop's query, against the version's range of
// *_pending_version_idx (version isolation, issue #17).
//
//	go test -run '^$' -bench ClaimVersion -count 5 ./storage/postgres/
func BenchmarkClaimVersion(b *testing.B) {
	pool, d, schema := benchSetup(b)
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	var id int64
	for batch := range 60 {
		msgs := make([]*storage.Message, 1000)
		for i := range msgs {
			id++
			m := benchMessage(id)
			m.Version = []string{"v1", "v2"}[batch%2]
			m.NextAttemptAt = t0.Add(-time.Duration(id) * time.Millisecond)
			if batch >= 20 {
				m.Status, m.NextAttemptAt = storage.StatusDelayed, t0.Add(time.Hour+time.Duration(id)*time.Millisecond)
			}
			msgs[i] = m
		}
		if err := d.InsertPublished(ctx, msgs, storage.InsertOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, "ANALYZE "+schema+".published"); err != nil {
		b.Fatal(err)
	}
	var token int64
	for b.Loop() {
		token++
		got, err := d.Claim(ctx, storage.Published, storage.ClaimRequest{Now: t0, LeaseUntil: t0.Add(time.Minute), Token: token, Limit: 100,
			Version: "v1"}) // version
		if err != nil || len(got) != 100 {
			b.Fatalf("claim: %d rows, %v", len(got), err)
		}
		b.StopTimer()
		leases := make([]storage.Lease, len(got))
		for i, m := range got {
			leases[i] = storage.Lease{ID: m.ID, Token: m.LeaseToken}
		}
		if n, err := d.Release(ctx, storage.Published, leases, t0.Add(-time.Hour), ""); err != nil || n != 100 {
			b.Fatalf("release: %d rows, %v", n, err)
		}
		b.StartTimer()
	}
}
