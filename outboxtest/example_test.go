package outboxtest_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/outboxtest"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
)

// OrderPlaced is the example's payload.
type OrderPlaced struct {
	ID    int    `json:"id"`
	Total string `json:"total"`
}

// placeOrder is the code under test: it stores an order and publishes
// its event, and a reminder in a day, in the caller's transaction.
func placeOrder(ctx context.Context, ob *outbox.Outbox[*sql.Tx], tx *sql.Tx, o OrderPlaced) error {
	if _, err := ob.Publish(ctx, tx, "orders.placed", o, outbox.WithHeader("tenant", "acme")); err != nil {
		return err
	}
	_, err := ob.Publish(ctx, tx, "orders.remind", o, outbox.WithDelay(24*time.Hour))
	return err
}

// exampleOutbox returns an outbox on a new SQLite database in dir.
func exampleOutbox(dir string) (*outbox.Outbox[*sql.Tx], *sql.DB) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	store := sqlite.New(db, sqlite.Options{})
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	ob, err := outbox.New(store, memory.New(memory.Options{}), outbox.Options{})
	if err != nil {
		log.Fatal(err)
	}
	return ob, db
}

// exampleT stands for the *testing.T of a test, which an Example has
// not.
type exampleT struct{ testing.TB }

func (exampleT) Helper()                        {}
func (exampleT) Fatalf(format string, a ...any) { log.Fatalf(format, a...) }

// A test of placeOrder asserts, inside its transaction and before it
// commits, what it published: one message of each topic, with its header,
// its delay, and its payload decoded.
func ExampleRequirePublishedTx() {
	var t testing.TB = exampleT{} // in a test: the test's *testing.T
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "outboxtest")
	defer os.RemoveAll(dir)
	ob, db := exampleOutbox(dir)
	defer db.Close()
	defer ob.Close()

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback()
	if err := placeOrder(ctx, ob, tx, OrderPlaced{ID: 7, Total: "12.50"}); err != nil {
		log.Fatal(err)
	}

	placed := outboxtest.RequirePublishedTx[OrderPlaced](ctx, t, ob, tx, "orders.placed",
		&outboxtest.Opts{Headers: map[string]string{"tenant": "acme"}})
	fmt.Printf("placed: %+v\n", placed)
	outboxtest.RequirePublishedTx[OrderPlaced](ctx, t, ob, tx, "orders.remind",
		&outboxtest.Opts{Delay: 24 * time.Hour})
	outboxtest.RequireNotPublishedTx(ctx, t, ob, tx, "orders.cancelled", nil)
	all := outboxtest.RequireManyPublishedTx(ctx, t, ob, tx, []outboxtest.Expected{
		{Topic: "orders.placed"}, {Topic: "orders.remind"},
	})
	fmt.Println("published in order:", all[0].Name, all[1].Name)
	// Output:
	// placed: {ID:7 Total:12.50}
	// published in order: orders.placed orders.remind
}

// Handle runs the handler the subscription of a topic would run, on a
// value, as a delivery would, without a broker: a test of the handler
// sees its error.
func ExampleHandle() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "outboxtest")
	defer os.RemoveAll(dir)
	ob, db := exampleOutbox(dir)
	defer db.Close()
	defer ob.Close()

	err := outbox.Subscribe(ob, "orders.placed", func(ctx context.Context, m outbox.Received[OrderPlaced]) error {
		if m.Value.Total == "" {
			return outbox.Permanent(fmt.Errorf("order %d has no total", m.Value.ID))
		}
		fmt.Printf("handled order %d of tenant %s\n", m.Value.ID, m.Headers["tenant"])
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}

	err = outboxtest.Handle(ctx, ob, "orders.placed", OrderPlaced{ID: 7, Total: "12.50"},
		&outboxtest.HandleOpts{Headers: map[string]string{"tenant": "acme"}})
	fmt.Println("error:", err)
	err = outboxtest.Handle(ctx, ob, "orders.placed", OrderPlaced{ID: 8}, nil)
	fmt.Println("error:", err)
	// Output:
	// handled order 7 of tenant acme
	// error: <nil>
	// error: order 8 has no total
}
