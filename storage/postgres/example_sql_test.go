package postgres_test

import (
	"context"
	"database/sql"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport/memory"
)

// An outbox whose Publish takes a *sql.Tx, for applications on
// database/sql, GORM, sqlx, ent or bun: one pgx pool for gocap's
// processor and, through pgx's stdlib driver, for the application's
// *sql.DB. The NOTIFY that wakes the processor commits with the
// application's transaction, as with pgx.Tx.
func ExampleNewSQL() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@127.0.0.1:5432/shop")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool) // the application's *sql.DB (or GORM's, sqlx's, ...)
	defer db.Close()

	store := postgres.NewSQL(pool, postgres.Options{})
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	ob, err := outbox.New(store, memory.New(memory.Options{}), outbox.Options{})
	if err != nil {
		log.Fatal(err)
	}
	go ob.Run(ctx)

	err = outbox.InTx(ctx, db, ob, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "UPDATE orders SET paid = true WHERE id = $1", 42); err != nil {
			return err
		}
		_, err := ob.Publish(ctx, tx, "order.paid", map[string]int{"order": 42})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
}
