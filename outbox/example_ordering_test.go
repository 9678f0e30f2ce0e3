package outbox_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
)

// Publish the events of one order with its id as ordering key: they are
// sent, and handled, one at a time in publish order, while other orders'
// events go on concurrently.
func ExampleWithOrderingKey() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "gocap-example-")
	defer os.RemoveAll(dir)
	db, _ := sqlite.Open(ctx, filepath.Join(dir, "app.db"))
	defer db.Close()
	store := sqlite.New(db, sqlite.Options{})
	_ = store.Migrate(ctx)
	tr := memory.New(memory.Options{})
	defer tr.Close()
	ob, err := outbox.New(store, tr, outbox.Options{
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		OrderingFailure: outbox.BlockKey, // the default: a Failed event holds its order's later ones
	})
	if err != nil {
		log.Fatal(err)
	}
	handled := make(chan string, 3)
	_ = outbox.Subscribe(ob, "order.#", func(_ context.Context, m outbox.Received[[]byte]) error {
		handled <- m.Name
		return nil
	}, outbox.Group("shipping"))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ob.Run(runCtx) }()
	time.Sleep(100 * time.Millisecond) // the consumer binds its queue

	for _, topic := range []string{"order.created", "order.paid", "order.shipped"} {
		if _, err := ob.PublishWithoutTx(ctx, topic, []byte(`{"order":42}`), outbox.WithOrderingKey("order-42")); err != nil {
			log.Fatal(err)
		}
	}
	for range 3 {
		select {
		case name := <-handled:
			fmt.Println(name)
		case <-time.After(10 * time.Second):
			fmt.Println("not handled")
		}
	}
	stop()
	<-done
	// Output:
	// order.created
	// order.paid
	// order.shipped
}
