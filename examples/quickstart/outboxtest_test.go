package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/outboxtest"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
)

// payOrder publishes order.paid in the transaction that marks the order
// paid, and nothing is left of it when that transaction rolls back; the
// walkthrough's handlers do what it tells: billing takes order.paid,
// shipping every order.* and fails on order 3 until its bug is fixed.
func TestPayOrderAndHandlers(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "quickstart.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := sqlite.New(db, sqlite.Options{Logger: quiet})
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE orders (id INTEGER PRIMARY KEY, paid INTEGER NOT NULL DEFAULT 0)`); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.New(store, memory.New(memory.Options{}), outbox.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := payOrder(ctx, ob, tx, 5); err != nil {
		t.Fatal(err)
	}
	got := outboxtest.RequirePublishedTx[OrderPaid](ctx, t, ob, tx, "order.paid", nil)
	if got != (OrderPaid{OrderID: 5, Amount: "19.90"}) {
		t.Errorf("payOrder published %+v, want order 5 paid 19.90", got)
	}
	var paid int
	if err := tx.QueryRowContext(ctx, `SELECT paid FROM orders WHERE id = 5`).Scan(&paid); err != nil || paid != 1 {
		t.Errorf("order 5 in the transaction: paid = %d, %v; want 1", paid, err)
	}
	outboxtest.RequireNotPublished(ctx, t, ob, "order.paid", nil) // not committed yet
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	outboxtest.RequireNotPublished(ctx, t, ob, "order.paid", nil)

	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int{1, 3} {
		if _, err := payOrder(ctx, ob, tx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	paidOrders := outboxtest.RequirePublishedCount(ctx, t, ob, "order.paid", 2, nil)
	if first := outboxtest.Decode[OrderPaid](t, ob, paidOrders[0]); first.OrderID != 1 {
		t.Errorf("the first order.paid is of order %d, want 1", first.OrderID)
	}

	var bugFixed atomic.Bool
	if err := subscribe(ob, &bugFixed); err != nil {
		t.Fatal(err)
	}
	billing := &outboxtest.HandleOpts{Group: "billing"}
	shipping := &outboxtest.HandleOpts{Group: "shipping"}
	if err := outboxtest.Handle(ctx, ob, "order.paid", OrderPaid{OrderID: 3, Amount: "19.90"}, billing); err != nil {
		t.Errorf("billing on order 3: %v", err)
	}
	err = outboxtest.Handle(ctx, ob, "order.paid", OrderPaid{OrderID: 3, Amount: "19.90"}, shipping)
	if err == nil || !strings.Contains(err.Error(), "no address on file for order 3") {
		t.Errorf("shipping on order 3 before the fix: %v, want its error", err)
	}
	if err := outboxtest.Handle(ctx, ob, "order.paid", OrderPaid{OrderID: 1, Amount: "19.90"}, shipping); err != nil {
		t.Errorf("shipping on order 1: %v", err)
	}
	bugFixed.Store(true)
	if err := outboxtest.Handle(ctx, ob, "order.paid", OrderPaid{OrderID: 3, Amount: "19.90"}, shipping); err != nil {
		t.Errorf("shipping on order 3 after the fix: %v", err)
	}
	if err := outboxtest.Handle(ctx, ob, "order.shipped", OrderPaid{OrderID: 1}, shipping); err != nil {
		t.Errorf("shipping on order.shipped (its order.* pattern): %v", err)
	}
	if err := outboxtest.Handle(ctx, ob, "order.shipped", OrderPaid{OrderID: 1}, billing); err == nil {
		t.Error("billing handled order.shipped: it subscribes to order.paid only")
	}
}
