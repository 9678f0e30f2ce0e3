package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
)

// HandleDirect runs a subscription's handler on the message a publish
// would send, without a broker, storage rows or Run: for tests (package
// outboxtest wraps it).
func ExampleOutbox_HandleDirect() {
	ctx := context.Background()
	ob, done := sqliteOutbox()
	defer done()
	err := outbox.Subscribe(ob, "order.paid", func(ctx context.Context, m outbox.Received[OrderPaid]) error {
		fmt.Printf("order %d paid %s, group %s\n", m.Value.ID, m.Value.Amount, m.Group)
		return nil
	}, outbox.Group("billing"))
	if err != nil {
		log.Fatal(err)
	}
	err = ob.HandleDirect(ctx, "billing", "order.paid", OrderPaid{ID: 1, Amount: "9.90"})
	fmt.Println("error:", err)
	// Output:
	// order 1 paid 9.90, group billing
	// error: <nil>
}

// Serializer is the one the outbox encodes payloads with: a body read
// from the storage decodes with it.
func ExampleOutbox_Serializer() {
	ob, done := sqliteOutbox()
	defer done()
	var p OrderPaid
	if err := ob.Serializer().Unmarshal([]byte(`{"id":3,"amount":"1.00"}`), &p); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%T %+v\n", ob.Serializer(), p)
	// Output: outbox.JSON {ID:3 Amount:1.00}
}

// sqliteOutbox returns an outbox on a new SQLite database in a temporary
// directory, and the function that closes and removes them.
func sqliteOutbox() (*outbox.Outbox[*sql.Tx], func()) {
	dir, err := os.MkdirTemp("", "outbox-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	ob, err := outbox.New(sqlite.New(db, sqlite.Options{}), memory.New(memory.Options{}), outbox.Options{})
	if err != nil {
		log.Fatal(err)
	}
	return ob, func() {
		ob.Close()
		db.Close()
		os.RemoveAll(dir)
	}
}
