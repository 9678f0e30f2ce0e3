package redisstreams_test

import (
	"context"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/redisstreams"
	"github.com/gocap/gocap/wire"
)

// Send and consume directly; an outbox does the same when given the
// transport (outbox.New(store, tr, outbox.Options{})).
func ExampleNew() {
	tr, err := redisstreams.New(redisstreams.Config{
		Options: &redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}}, // Password, DB, TLSConfig: go-redis's options
		MaxLen:  1_000_000,                                                  // trim each stream to about a million entries
		// An entry read by a process that died is taken over after a minute (the default).
		ClaimIdle: time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
	ctx := context.Background()
	// XADD order.paid * headers {"cap-msg-id":"1",...} body "eyJpZCI6NDJ9"
	err = tr.Send(ctx, "order.paid", transport.Message{
		Headers: map[string]string{wire.MsgID: "1", wire.MsgName: "order.paid"},
		Body:    []byte(`{"id":42}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	// Group "billing" on stream order.paid; concrete topics only (no '*' or '#').
	err = tr.Consume(ctx, "billing", []string{"order.paid"}, func(ctx context.Context, d transport.Delivery) error {
		log.Printf("%s: %s", d.Topic, d.Body)
		return nil // XACK only now
	})
	if err != nil {
		log.Fatal(err)
	}
}
