package kafka_test

import (
	"context"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/kafka"
	"github.com/gocap/gocap/wire"
)

// The ordering key is the record key, before KeyHeader; a message without
// it keys by KeyHeader.
func TestOrderingKeyIsRecordKey(t *testing.T) {
	brokers := cluster(t, "keyed")
	tr := newTransport(t, brokers, kafka.Config{KeyHeader: "order-id"})
	ctx := context.Background()
	sent := []transport.Message{
		{Headers: map[string]string{wire.OrderingKey: "k1", "order-id": "o1"}, Body: []byte("1")},
		{Headers: map[string]string{"order-id": "o2"}, Body: []byte("2")},
		{Headers: map[string]string{wire.OrderingKey: "k1"}, Body: []byte("3")},
	}
	for _, m := range sent {
		if err := tr.Send(ctx, "keyed", m); err != nil {
			t.Fatal(err)
		}
	}
	keys := map[string]string{} // body → record key
	parts := map[string][]int{} // record key → partitions
	for p := range 2 {
		conn, err := kafkago.DialLeader(ctx, "tcp", brokers[0], "keyed", p)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		last, err := conn.ReadLastOffset()
		if err != nil {
			t.Fatal(err)
		}
		for off := int64(0); off < last; off++ {
			m, err := conn.ReadMessage(1 << 20)
			if err != nil {
				t.Fatal(err)
			}
			keys[string(m.Value)] = string(m.Key)
			parts[string(m.Key)] = append(parts[string(m.Key)], p)
		}
		conn.Close()
	}
	want := map[string]string{"1": "k1", "2": "o2", "3": "k1"}
	for body, k := range want {
		if keys[body] != k {
			t.Errorf("record %s: key %q, want %q", body, keys[body], k)
		}
	}
	if ps := parts["k1"]; len(ps) != 2 || ps[0] != ps[1] {
		t.Errorf("partitions of key k1: %v, want one", ps)
	}
}
