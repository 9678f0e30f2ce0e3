package main

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
)

// Publishing in a GORM transaction: commit ⇒ the order is stored and its
// message delivered; rollback ⇒ neither, on PostgreSQL (with and without
// GORM's PrepareStmt) and on MariaDB/MySQL.
func TestGORMTransactions(t *testing.T) {
	for _, c := range []struct {
		name, kind string
		prepared   bool
		dsn        func(testing.TB) string
	}{
		{"postgres", "postgres", false, testenv.PostgresURL},
		{"postgres-prepared", "postgres", true, testenv.PostgresURL},
		{"mysql", "mysql", false, testenv.MySQLDSN},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			s, err := openShop(ctx, c.kind, c.dsn(t), testenv.Name("gocap_gorm"), c.prepared)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.close)
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- s.ob.Run(runCtx) }()
			t.Cleanup(func() { stop(); <-done })

			rolledBack, err := s.placeOrder(ctx, Order{ID: 1, Item: "lamp", Total: "49.00"}, true)
			if !errors.Is(err, errOutOfStock) {
				t.Fatalf("rolled back order: %v, want %v", err, errOutOfStock)
			}
			committed, err := s.placeOrder(ctx, Order{ID: 2, Item: "book", Total: "19.90"}, false)
			if err != nil {
				t.Fatalf("committed order: %v", err)
			}
			select {
			case m := <-s.got:
				if m.ID != strconv.FormatInt(committed, 10) || m.Value != (OrderPlaced{OrderID: 2, Item: "book"}) {
					t.Errorf("delivered message %s %+v, want %d for order 2", m.ID, m.Value, committed)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the committed order's message was not delivered within 10 s")
			}
			if _, err := s.ob.Store().Get(ctx, storage.Published, rolledBack); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("the rolled back order's message: %v, want %v", err, storage.ErrNotFound)
			}
			var ids []int64
			if err := s.db.Table(s.orders).Order("id").Pluck("id", &ids).Error; err != nil {
				t.Fatal(err)
			}
			if len(ids) != 1 || ids[0] != 2 {
				t.Errorf("orders stored: %v, want [2]", ids)
			}
			select {
			case m := <-s.got:
				t.Errorf("another message was delivered: %s %+v", m.ID, m.Value)
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
}

// sqlTx refuses a GORM handle that is not in a transaction.
func TestSQLTxOutsideTransaction(t *testing.T) {
	s, err := openShop(context.Background(), "postgres", testenv.PostgresURL(t), testenv.Name("gocap_gorm"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	if tx, err := sqlTx(s.db); err == nil {
		t.Errorf("sqlTx outside a transaction = %v, want an error", tx)
	}
}

// The program itself runs to the end on PostgreSQL.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, "postgres", testenv.PostgresURL(t), testenv.Name("gocap_gorm")); err != nil {
		t.Fatal(err)
	}
}
