package nats_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/nats"
	"github.com/gocap/gocap/wire"
)

var (
	now  = time.Date(2026, 11, 25, 10, 30, 0, 0, time.UTC)
	body = []byte(`{"id":42,"amount":"19.99","currency":"EUR"}`)
)

// benchTransport is newTransport for a benchmark.
func benchTransport(b *testing.B) *nats.Transport {
	b.Helper()
	tr, _, _ := newTransport(b, nats.Config{})
	return tr
}

// BenchmarkSend sends one message per call, one call at a time: the
// round trip of a publish and its acknowledgement.
func BenchmarkSend(b *testing.B) {
	tr := benchTransport(b)
	ctx := context.Background()
	m := transport.Message{Headers: wire.Published(1, "order.paid", "OrderPaid", now, nil), Body: body}
	b.ResetTimer()
	for i := range b.N {
		m.Headers[wire.MsgID] = fmt.Sprint(i)
		if err := tr.Send(ctx, "order.paid", m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendBatch sends batches of 100 messages (the outbox's batch),
// their acknowledgements awaited together; a b.N is one message.
func BenchmarkSendBatch(b *testing.B) {
	tr := benchTransport(b)
	ctx := context.Background()
	const size = 100
	batch := make([]transport.Outgoing, size)
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += size {
		for i := range batch {
			batch[i] = transport.Outgoing{Topic: "order.paid", Message: transport.Message{
				Headers: wire.Published(int64(sent+i), "order.paid", "OrderPaid", now, nil), Body: body,
			}}
		}
		for _, err := range tr.SendBatch(ctx, batch) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}
