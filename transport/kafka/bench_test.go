package kafka_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/kafka"
	"github.com/gocap/gocap/wire"
)

// BenchmarkSend sends from many goroutines, as the outbox's dispatcher
// does, to the in-process kfake broker: it measures the transport's own
// cost and the writer's batching, not a real broker's.
//
//	go test -run '^$' -bench Send ./transport/kafka/
func BenchmarkSend(b *testing.B) {
	brokers := benchCluster(b)
	tr, err := kafka.New(kafka.Config{Brokers: brokers, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	msg := transport.Message{
		Headers: map[string]string{wire.MsgID: "2125444000991662080", wire.MsgName: "bench"},
		Body:    []byte(`{"id":12345,"amount":"9.90","currency":"EUR"}`),
	}
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := tr.Send(context.Background(), "bench", msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

// BenchmarkSendBatch sends batches of 100 from a few goroutines, as the
// outbox's processor does with a claim; b.N counts messages.
func BenchmarkSendBatch(b *testing.B) {
	brokers := benchCluster(b)
	tr, err := kafka.New(kafka.Config{Brokers: brokers, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	const size = 100
	batch := make([]transport.Outgoing, size)
	for i := range batch {
		batch[i] = transport.Outgoing{Topic: "bench", Message: transport.Message{
			Headers: map[string]string{wire.MsgID: "2125444000991662080", wire.MsgName: "bench"},
			Body:    []byte(`{"id":12345,"amount":"9.90","currency":"EUR"}`),
		}}
	}
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		n := 0
		for pb.Next() {
			if n++; n < size {
				continue // one SendBatch per size iterations
			}
			n = 0
			for _, err := range tr.SendBatch(context.Background(), batch) {
				if err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

func benchCluster(b *testing.B) []string {
	b.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "bench"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c.ListenAddrs()
}
