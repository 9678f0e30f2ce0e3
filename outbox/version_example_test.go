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
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
)

// Run two releases side by side on one database and one broker, as
// DotNetCore.CAP's Version option allows: each outbox sends only the rows
// of its version, and its groups get the suffix "." + Version. Here only
// v1 runs: it sends its message, and v2's waits for a processor of v2.
func ExampleOptions_version() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "gocap-example-")
	defer os.RemoveAll(dir)
	db, _ := sqlite.Open(ctx, filepath.Join(dir, "app.db"))
	defer db.Close()
	store := sqlite.New(db, sqlite.Options{})
	_ = store.Migrate(ctx)
	broker := memory.NewBroker(memory.Options{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	v1, err := outbox.New(store, broker.Transport(), outbox.Options{Logger: quiet, Version: "v1"})
	if err != nil {
		log.Fatal(err)
	}
	v2, err := outbox.New(store, broker.Transport(), outbox.Options{Logger: quiet, Version: "v2"})
	if err != nil {
		log.Fatal(err)
	}
	groups := make(chan string, 2)
	_ = outbox.Subscribe(v1, "order.paid", func(_ context.Context, m outbox.Received[OrderPaid]) error {
		groups <- m.Group
		return nil
	}, outbox.Group("billing"))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- v1.Run(runCtx) }()
	time.Sleep(100 * time.Millisecond) // the consumer binds its queue

	first, _ := v1.PublishWithoutTx(ctx, "order.paid", OrderPaid{ID: 1})
	second, _ := v2.PublishWithoutTx(ctx, "order.paid", OrderPaid{ID: 2})
	select {
	case g := <-groups:
		fmt.Println("v1 received it in group", g)
	case <-time.After(10 * time.Second):
		fmt.Println("not received")
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m, err := store.Get(ctx, storage.Published, first); err == nil && m.Status == storage.StatusSucceeded {
			break
		}
	}
	time.Sleep(200 * time.Millisecond) // v1 polls: it never takes v2's row
	for _, id := range []int64{first, second} {
		m, _ := store.Get(ctx, storage.Published, id)
		fmt.Printf("row of version %s: %s\n", m.Version, m.Status)
	}
	stop()
	<-done
	// Output:
	// v1 received it in group billing.v1
	// row of version v1: Succeeded
	// row of version v2: Scheduled
}
