package nats_test

import (
	"context"
	"log"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/nats"
	"github.com/gocap/gocap/wire"
)

// Send and consume directly; an outbox does the same when given the
// transport (outbox.New(store, tr, outbox.Options{})).
func ExampleNew() {
	tr, err := nats.New(nats.Config{
		URL:      "nats://127.0.0.1:4222",
		Replicas: 3,                     // on a three-server cluster
		MaxAge:   72 * time.Hour,        // what the streams it creates keep
		Storage:  jetstream.FileStorage, // the default; CAP creates memory streams
		AckWait:  time.Minute,           // redelivery of what a crashed process held
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
	ctx := context.Background()
	// Stream "order" (the topic's first word), subject "order.paid",
	// Nats-Msg-Id "1": a second send of message 1 is stored once.
	err = tr.Send(ctx, "order.paid", transport.Message{
		Headers: map[string]string{wire.MsgID: "1", wire.MsgName: "order.paid"},
		Body:    []byte(`{"id":42}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	// Durable pull consumers "gocap-billing-order" and "gocap-billing-order__"
	// (subjects "order" and "order.>").
	err = tr.Consume(ctx, "billing", []string{"order.#"}, func(ctx context.Context, d transport.Delivery) error {
		log.Printf("%s: %s", d.Topic, d.Body)
		return nil // acknowledged only now
	})
	if err != nil {
		log.Fatal(err)
	}
}
