package redisstreams_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/redisstreams"
	"github.com/gocap/gocap/wire"
)

// benchMsg is a message of the size gocap sends: CAP's headers and a
// small JSON body.
func benchMsg(i int) transport.Message {
	return transport.Message{Headers: map[string]string{
		wire.MsgID: fmt.Sprint(2125444000991662080 + i), wire.MsgName: "order.paid", wire.MsgType: "OrderPaid",
		wire.SentTime: "2026-11-25T10:30:00Z", wire.CorrelationID: fmt.Sprint(2125444000991662080 + i), wire.CorrelationSeq: "0",
	}, Body: []byte(`{"id":42,"amount":"19.90"}`)}
}

// BenchmarkSendBatch sends batches of 100 (the processor's) with
// SendBatch: one pipeline of XADDs each.
func BenchmarkSendBatch(b *testing.B) {
	tr, _ := newTransport(b, redisstreams.Config{})
	msgs := batchOf100()
	ctx := context.Background()
	for b.Loop() {
		for _, err := range tr.SendBatch(ctx, msgs) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "msg/s")
}

func batchOf100() []transport.Outgoing {
	msgs := make([]transport.Outgoing, 100)
	for i := range msgs {
		msgs[i] = transport.Outgoing{Topic: "order.paid", Message: benchMsg(i)}
	}
	return msgs
}

// BenchmarkConsumeBatch consumes b.N×100 preloaded entries with
// ConsumeBatch (max 100 and a linger of 2ms, as the processor asks) and a
// handler that returns at once: read, decode, XACK.
func BenchmarkConsumeBatch(b *testing.B) {
	tr, _ := newTransport(b, redisstreams.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := direct(b).XGroupCreateMkStream(ctx, tr.Stream("order.paid"), "bench", "$").Err(); err != nil {
		b.Fatal(err)
	}
	msgs := batchOf100()
	for range b.N {
		for _, err := range tr.SendBatch(ctx, msgs) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	n := int64(b.N * len(msgs))
	var got atomic.Int64
	all := make(chan struct{})
	ended := make(chan error, 1)
	b.ResetTimer()
	go func() {
		ended <- tr.ConsumeBatch(ctx, "bench", []string{"order.paid"}, 100, 2*time.Millisecond, func(_ context.Context, ds []transport.Delivery) []error {
			if got.Add(int64(len(ds))) == n {
				close(all)
			}
			return make([]error, len(ds))
		})
	}()
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		b.Fatalf("%d of %d consumed after 60s", got.Load(), n)
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msg/s")
	cancel()
	if err := <-ended; err != nil {
		b.Error(err)
	}
}
