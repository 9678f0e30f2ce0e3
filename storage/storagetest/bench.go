package storagetest

import (
	"strconv"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/storage"
)

// BenchReceivedBatch measures how fast d stores received messages in
// batches of size (each iteration stores size new messages):
//
//   - Batch: one InsertReceivedBatch of the size messages (skipped when d
//     is not a storage.ReceivedBatchInserter);
//   - Single: size InsertReceived calls, one after the other, as the
//     processor stores deliveries without batches.
//
// Both report msgs/s. A storage's benchmark calls it with a fresh,
// migrated store.
func BenchReceivedBatch(b *testing.B, d storage.Store, size int) {
	gen, err := ids.NewGenerator(-1)
	if err != nil {
		b.Fatal(err)
	}
	batch := func() []*storage.Message {
		msgs := make([]*storage.Message, size)
		now := time.Now().UTC()
		for i := range msgs {
			id := gen.Next()
			sid := strconv.FormatInt(id, 10)
			msgs[i] = &storage.Message{
				ID: id, Kind: storage.Received, MsgID: sid, Group: "billing", Name: "order.paid",
				Headers: map[string]string{"cap-msg-id": sid, "cap-msg-name": "order.paid", "cap-msg-group": "billing"},
				Body:    []byte(`{"id":7,"amount":"9.90"}`), Added: now,
			}
		}
		return msgs
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "msgs/s")
	}
	b.Run("Batch", func(b *testing.B) {
		bi, ok := d.(storage.ReceivedBatchInserter)
		if !ok {
			b.Skip("the storage does not implement storage.ReceivedBatchInserter")
		}
		for b.Loop() {
			b.StopTimer()
			msgs := batch()
			b.StartTimer()
			if _, err := bi.InsertReceivedBatch(bg, msgs, ids.Token(), time.Now().Add(time.Minute)); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("Single", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			msgs := batch()
			b.StartTimer()
			for _, m := range msgs {
				if _, err := d.InsertReceived(bg, m, ids.Token(), time.Now().Add(time.Minute)); err != nil {
					b.Fatal(err)
				}
			}
		}
		report(b)
	})
}

// BenchClaim measures a claim of 100 unkeyed due rows out of a backlog of
// backlog Scheduled rows (each iteration claims 100 rows and releases
// them, due again), in claims/s: the cost that ordering keys (#18) must
// not raise for rows without a key. A storage's benchmark calls it with a
// fresh, migrated store.
func BenchClaim(b *testing.B, d storage.Store, backlog int) {
	gen, err := ids.NewGenerator(-1)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now().UTC().Add(-time.Hour)
	for n := 0; n < backlog; n += 1000 {
		msgs := make([]*storage.Message, min(1000, backlog-n))
		for i := range msgs {
			id := gen.Next()
			msgs[i] = &storage.Message{ID: id, Kind: storage.Published, Name: "order.paid",
				Headers: map[string]string{"cap-msg-id": strconv.FormatInt(id, 10)}, Body: []byte(`{"id":7}`),
				Status: storage.StatusScheduled, Added: t0, NextAttemptAt: t0.Add(time.Duration(n+i) * time.Millisecond)}
		}
		if err := d.InsertPublished(b.Context(), msgs, storage.InsertOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		now := time.Now().UTC()
		got, err := d.Claim(b.Context(), storage.Published, storage.ClaimRequest{Now: now, LeaseUntil: now.Add(time.Minute),
			Token: ids.Token(), Limit: 100})
		if err != nil || len(got) != 100 {
			b.Fatalf("claim: %d rows, %v", len(got), err)
		}
		leases := make([]storage.Lease, len(got))
		for i, m := range got {
			leases[i] = storage.Lease{ID: m.ID, Token: m.LeaseToken}
		}
		if _, err := d.Release(b.Context(), storage.Published, leases, t0, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
}
