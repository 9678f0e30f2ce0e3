package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/kafka"
	"github.com/gocap/gocap/wire"
)

// permanent reports whether err says retrying cannot help, as the outbox
// decides it.
func permanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// onePartition starts an in-process Kafka whose topics have one partition,
// so that records are read in the order they were written, with broker
// configuration configs.
func onePartition(t *testing.T, configs map[string]string, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...), kfake.BrokerConfigs(configs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// outgoing is a message to topic with id as cap-msg-id and body.
func outgoing(topic, id string, body []byte) transport.Outgoing {
	return transport.Outgoing{Topic: topic, Message: transport.Message{Headers: map[string]string{wire.MsgID: id}, Body: body}}
}

// received consumes topic and returns the ids of the first n records.
func received(t *testing.T, tr *kafka.Transport, topic string, n int) []string {
	t.Helper()
	var s sink
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Consume(ctx, "check", []string{topic}, s.handler(nil)) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("Consume did not return after its context ended")
		}
	}()
	var ids []string
	for _, d := range s.wait(t, n)[:n] {
		ids = append(ids, d.Headers[wire.MsgID])
	}
	return ids
}

// TestOversizedRecordFailsAlone: in a batch, a record larger than
// kafka.MaxRecordBytes fails alone, for good, with an error naming its
// size and the limit, and the others are written. It failed every record
// of the batch with one error that was not permanent, and wrote none.
// A record of exactly MaxRecordBytes, as kafka-go counts it, is written.
func TestOversizedRecordFailsAlone(t *testing.T) {
	brokers := onePartition(t, map[string]string{"message.max.bytes": fmt.Sprint(4 << 20)}, "big")
	tr := newTransport(t, brokers, kafka.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// kafka-go counts a record without key and with the one header
	// cap-msg-id=<one byte> as 36 bytes and its body.
	const overhead = 36
	errs := tr.SendBatch(ctx, []transport.Outgoing{
		outgoing("big", "1", []byte("small")),
		outgoing("big", "2", bytes.Repeat([]byte("x"), kafka.MaxRecordBytes-overhead+1)),
		outgoing("big", "3", bytes.Repeat([]byte("y"), kafka.MaxRecordBytes-overhead)),
		outgoing("big", "4", []byte("small")),
	})
	for _, i := range []int{0, 2, 3} {
		if errs[i] != nil {
			t.Errorf("message %d: %v, want nil", i, errs[i])
		}
	}
	var refused *kafka.RefusedError
	if !permanent(errs[1]) || !errors.As(errs[1], &refused) || errors.Is(errs[1], transport.ErrUnavailable) {
		t.Errorf("oversized message: %v, want a permanent kafka.RefusedError", errs[1])
	} else if msg := errs[1].Error(); !strings.Contains(msg, fmt.Sprint(kafka.MaxRecordBytes+1)) || !strings.Contains(msg, fmt.Sprint(kafka.MaxRecordBytes)+" bytes") {
		t.Errorf("oversized message: %q does not name its size %d and the limit %d", msg, kafka.MaxRecordBytes+1, kafka.MaxRecordBytes)
	}
	if got := received(t, tr, "big", 3); strings.Join(got, ",") != "1,3,4" {
		t.Errorf("records written: ids %v, want 1, 3, 4", got)
	}
}

// TestBrokerRefusedRecordFailsAlone: the broker refuses a record batch
// larger than the topic's max.message.bytes as a whole; the records of
// such a batch are written again one by one, and only the record too large
// by itself fails, for good. Every record of the batch failed with an
// error that was not permanent.
func TestBrokerRefusedRecordFailsAlone(t *testing.T) {
	brokers := onePartition(t, map[string]string{"message.max.bytes": "2000"}, "limited")
	tr := newTransport(t, brokers, kafka.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var msgs []transport.Outgoing
	for i := range 5 { // together more than 2000 bytes, each far less
		msgs = append(msgs, outgoing("limited", fmt.Sprint(i), bytes.Repeat([]byte("s"), 600)))
	}
	msgs = append(msgs, outgoing("limited", "big", bytes.Repeat([]byte("b"), 3000)))
	errs := tr.SendBatch(ctx, msgs)
	for i, err := range errs[:5] {
		if err != nil {
			t.Errorf("message %d of 600 bytes: %v, want nil", i, err)
		}
	}
	if err := errs[5]; !permanent(err) || errors.Is(err, transport.ErrUnavailable) {
		t.Errorf("message of 3000 bytes: %v, want a permanent error", err)
	}
	if got := received(t, tr, "limited", 5); len(got) != 5 {
		t.Errorf("records written: %v, want 5", got)
	}
}
