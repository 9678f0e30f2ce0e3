package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
)

// exampleOutbox is an outbox on a SQLite file in a directory of its own
// and a memory broker, for the examples; stop removes them.
func exampleOutbox(opts outbox.Options) (ob *outbox.Outbox[*sql.Tx], run func(), stop func()) {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "gocap-example-")
	db, err := sqlite.Open(ctx, filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	store := sqlite.New(db, sqlite.Options{})
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	tr := memory.New(memory.Options{})
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.PollInterval = 20 * time.Millisecond
	ob, err = outbox.New(store, tr, opts)
	if err != nil {
		log.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	run = func() {
		go func() { done <- ob.Run(runCtx) }()
		time.Sleep(100 * time.Millisecond) // the consumers bind their queues
	}
	stop = func() {
		cancel()
		<-done
		tr.Close()
		db.Close()
		os.RemoveAll(dir)
	}
	return ob, run, stop
}

// Middleware around every handler call: the outbox's own (Options) and a
// subscription's (WithMiddleware), the first outermost. A middleware may
// stop a call by not calling next.
func ExampleMiddleware() {
	calls := make(chan struct{}, 2)
	logCalls := func(next outbox.Handler) outbox.Handler {
		return func(ctx context.Context, m *outbox.Message) error {
			err := next(ctx, m)
			fmt.Printf("%s %s, attempt %d: %v\n", m.Name, m.Headers["x-note"], m.Retries+1, err)
			calls <- struct{}{}
			return err
		}
	}
	skipTests := func(next outbox.Handler) outbox.Handler {
		return func(ctx context.Context, m *outbox.Message) error {
			if m.Headers["x-note"] == "test" {
				return nil // done, without the handler
			}
			return next(ctx, m)
		}
	}
	ob, run, stop := exampleOutbox(outbox.Options{Middleware: []outbox.Middleware{logCalls}})
	defer stop()
	_ = outbox.Subscribe(ob, "order.paid", func(ctx context.Context, m outbox.Received[OrderPaid]) error {
		fmt.Println("handler got order", m.Value.ID)
		return nil
	}, outbox.WithMiddleware(skipTests))
	run()
	ctx := context.Background()
	_, _ = ob.PublishWithoutTx(ctx, "order.paid", OrderPaid{ID: 1}, outbox.WithHeader("x-note", "test"))
	<-calls
	_, _ = ob.PublishWithoutTx(ctx, "order.paid", OrderPaid{ID: 2}, outbox.WithHeader("x-note", "real"))
	<-calls
	// Output:
	// order.paid test, attempt 1: <nil>
	// handler got order 2
	// order.paid real, attempt 1: <nil>
}

// At most two calls of a slow handler at once, with a time limit on each,
// while the other subscriptions keep the rest of the handler workers.
func ExampleWithConcurrency() {
	ob, run, stop := exampleOutbox(outbox.Options{})
	defer stop()
	var running, most, done atomic.Int32
	_ = outbox.Subscribe(ob, "report.render", func(ctx context.Context, m outbox.Received[[]byte]) error {
		n := running.Add(1)
		defer running.Add(-1)
		for old := most.Load(); n > old && !most.CompareAndSwap(old, n); old = most.Load() {
		}
		time.Sleep(50 * time.Millisecond) // the rendering
		done.Add(1)
		return nil
	}, outbox.WithConcurrency(2), outbox.WithHandlerTimeout(10*time.Second))
	run()
	for range 6 {
		_, _ = ob.PublishWithoutTx(context.Background(), "report.render", []byte("{}"))
	}
	for deadline := time.Now().Add(10 * time.Second); done.Load() < 6 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println("rendered", done.Load(), "at most", most.Load(), "at once")
	// Output: rendered 6 at most 2 at once
}

// A subscriber that replies, and a publisher that asks for the reply (as
// DotNetCore.CAP's callbackName does): the reply carries the request's id
// as cap-corr-id.
func ExampleSubscribeReply() {
	ob, run, stop := exampleOutbox(outbox.Options{})
	defer stop()
	type quote struct {
		Price string `json:"price"`
	}
	_ = outbox.SubscribeReply(ob, "price.ask", func(ctx context.Context, m outbox.Received[OrderPaid]) (quote, error) {
		return quote{Price: "9.90"}, nil
	}, outbox.Group("pricing"))
	replies := make(chan outbox.Received[quote], 1)
	_ = outbox.Subscribe(ob, "price.quoted", func(ctx context.Context, m outbox.Received[quote]) error {
		replies <- m
		return nil
	}, outbox.Group("shop"))
	run()
	id, _ := ob.PublishWithoutTx(context.Background(), "price.ask", OrderPaid{ID: 7}, outbox.WithCallback("price.quoted"))
	r := <-replies
	fmt.Println(r.Value.Price, "in reply to the request:", r.Headers["cap-corr-id"] == fmt.Sprint(id), "sequence", r.Headers["cap-corr-seq"])
	// Output: 9.90 in reply to the request: true sequence 1
}

// Two services on one database and broker, kept apart by their topic
// prefix, as CAP's TopicNamePrefix does: each topic is sent and stored as
// "<prefix>.<topic>".
func ExampleOptions_topicPrefix() {
	ob, run, stop := exampleOutbox(outbox.Options{TopicPrefix: "shop"})
	defer stop()
	names := make(chan string, 1)
	_ = outbox.Subscribe(ob, "order.*", func(ctx context.Context, m outbox.Received[OrderPaid]) error {
		names <- m.Name
		return nil
	})
	run()
	_, _ = ob.PublishWithoutTx(context.Background(), "order.paid", OrderPaid{ID: 1})
	fmt.Println(<-names)
	// Output: shop.order.paid
}
