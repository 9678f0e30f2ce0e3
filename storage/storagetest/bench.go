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

// BenchFailBatch measures how fast d records the failed attempts of a
// batch of size leased rows (each iteration claims the size rows, untimed,
// and records a failure of each; the rows stay Scheduled and due):
//
//   - Batch: one FailBatch of the size failures (skipped when d is not a
//     storage.FailBatcher), as the processor's failer writes them;
//   - Single: size Fail calls, one after the other, as the processor
//     recorded them before #14 and still does for a Store without
//     FailBatch.
//
// Both report fails/s; ns/op is the time to record size failures. A
// storage's benchmark calls it with a fresh, migrated store.
func BenchFailBatch(b *testing.B, d storage.Store, size int) {
	gen, err := ids.NewGenerator(-1)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now().UTC().Add(-time.Hour)
	msgs := make([]*storage.Message, size)
	for i := range msgs {
		id := gen.Next()
		msgs[i] = &storage.Message{ID: id, Kind: storage.Published, Name: "order.paid",
			Headers: map[string]string{"cap-msg-id": strconv.FormatInt(id, 10)}, Body: []byte(`{"id":7}`),
			Status: storage.StatusScheduled, Added: t0, NextAttemptAt: t0}
	}
	if err := d.InsertPublished(b.Context(), msgs, storage.InsertOptions{}); err != nil {
		b.Fatal(err)
	}
	// failures claims the rows and returns a failure of each, due again at
	// once, with an error text of a realistic length.
	failures := func(b *testing.B) []storage.FailedAttempt {
		now := time.Now().UTC()
		got, err := d.Claim(b.Context(), storage.Published, storage.ClaimRequest{Now: now, LeaseUntil: now.Add(time.Minute),
			Token: ids.Token(), Limit: size})
		if err != nil || len(got) != size {
			b.Fatalf("claim: %d rows of %d, %v", len(got), size, err)
		}
		rows := make([]storage.FailedAttempt, size)
		for i, m := range got {
			text := "publishing order.paid: broker refused the message: NOT_FOUND - no exchange 'orders' in vhost '/' (" + strconv.Itoa(i) + ")"
			rows[i] = storage.FailedAttempt{Lease: storage.Lease{ID: m.ID, Token: m.LeaseToken}, Failure: storage.Failure{
				Error: text, Now: now, NextAttemptAt: t0, MaxAttempts: 0, ExpiresAt: now.Add(time.Hour),
				Attempt: storage.Attempt{At: now, Duration: 3 * time.Millisecond, Error: text}}}
		}
		return rows
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "fails/s")
	}
	b.Run("Batch", func(b *testing.B) {
		fb, ok := d.(storage.FailBatcher)
		if !ok {
			b.Skip("the storage does not implement storage.FailBatcher")
		}
		for b.Loop() {
			b.StopTimer()
			rows := failures(b)
			b.StartTimer()
			out, err := fb.FailBatch(b.Context(), storage.Published, rows)
			if err != nil || len(out) != size || out[size-1].LeaseLost {
				b.Fatalf("FailBatch: %d outcomes, %v", len(out), err)
			}
		}
		report(b)
	})
	b.Run("Single", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			rows := failures(b)
			b.StartTimer()
			for _, r := range rows {
				if _, err := d.Fail(b.Context(), storage.Published, r.Lease, r.Failure); err != nil {
					b.Fatal(err)
				}
			}
		}
		report(b)
	})
}
