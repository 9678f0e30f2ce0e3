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
