// Command sqlx publishes gocap messages inside sqlx transactions, on
// PostgreSQL (the default) or MariaDB/MySQL (-db mysql): an order and its
// order.placed message commit together, and an order whose transaction
// rolls back leaves neither row nor message.
//
//	go run ./examples/sqlx              # PostgreSQL at GOCAP_POSTGRES_URL
//	go run ./examples/sqlx -db mysql    # MariaDB/MySQL at GOCAP_MYSQL_DSN
//
// A *sqlx.Tx embeds its *sql.Tx: Publish takes tx.Tx. On PostgreSQL,
// gocap's SQLDriver and sqlx share one pgx pool (stdlib.OpenDBFromPool,
// driver name "pgx"); on MySQL they share the *sql.DB. Messages go to the
// in-process broker, where a subscriber prints them. The example creates
// its tables in the database and drops them when it ends.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/mysql"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport/memory"
)

// Order is the application's own data.
type Order struct {
	ID    int64  `db:"id"`
	Item  string `db:"item"`
	Total string `db:"total"`
}

// OrderPlaced is the message published with each order.
type OrderPlaced struct {
	OrderID int64  `json:"order_id"`
	Item    string `json:"item"`
}

func main() {
	kind := flag.String("db", "postgres", "database: postgres or mysql")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dsn := env("GOCAP_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if *kind == "mysql" {
		dsn = env("GOCAP_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/test")
	}
	if err := run(ctx, *kind, dsn, "gocap_sqlx_example"); err != nil {
		log.Fatal(err)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// run places an order that commits and one that rolls back, and shows
// that only the first one's message is delivered; its tables are named
// after name.
func run(ctx context.Context, kind, dsn, name string) error {
	s, err := openShop(ctx, kind, dsn, name)
	if err != nil {
		return err
	}
	defer s.close()
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.ob.Run(runCtx) }()
	defer func() { stopRun(); <-done }()

	id1, err := s.placeOrder(ctx, Order{ID: 1, Item: "book", Total: "19.90"}, false)
	if err != nil {
		return err
	}
	fmt.Printf("order 1 committed with message %d\n", id1)
	id2, err := s.placeOrder(ctx, Order{ID: 2, Item: "lamp", Total: "49.00"}, true)
	if !errors.Is(err, errOutOfStock) {
		return fmt.Errorf("order 2: %v, want %v", err, errOutOfStock)
	}
	fmt.Printf("order 2 rolled back (%v) after publishing message %d\n", err, id2)
	select {
	case m := <-s.got:
		fmt.Printf("delivered: message %s, order %d (%s)\n", m.ID, m.Value.OrderID, m.Value.Item)
	case <-time.After(10 * time.Second):
		return errors.New("order 1's message was not delivered within 10 s")
	}
	if _, err := s.ob.Store().Get(ctx, storage.Published, id2); !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("order 2's message: %v, want it never stored", err)
	}
	fmt.Println("order 2's message was never stored, so never sent")
	return nil
}

// shop is the example's application: sqlx for its orders, an outbox for
// its messages, in one database.
type shop struct {
	db     *sqlx.DB
	ob     *outbox.Outbox[*sql.Tx]
	orders string                            // the orders table
	got    chan outbox.Received[OrderPlaced] // what the subscriber received
	close  func()                            // drops the tables, closes the connections
}

// openShop opens sqlx and gocap on one connection pool of the database
// of kind at dsn, with the tables named after name (a schema and a
// table on PostgreSQL, tables with a prefix on MySQL).
func openShop(ctx context.Context, kind, dsn, name string) (*shop, error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var (
		store   storage.Driver[*sql.Tx]
		db      *sqlx.DB
		drop    []string
		closeDB func()
	)
	switch kind {
	case "postgres":
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return nil, err
		}
		store = postgres.NewSQL(pool, postgres.Options{Schema: name, Logger: quiet})
		db = sqlx.NewDb(stdlib.OpenDBFromPool(pool), "pgx") // sqlx on gocap's pool
		drop = []string{"DROP SCHEMA IF EXISTS " + name + " CASCADE", "DROP TABLE IF EXISTS " + name + "_orders"}
		closeDB = func() { db.Close(); pool.Close() }
	case "mysql":
		var err error
		if db, err = sqlx.Open("mysql", dsn); err != nil {
			return nil, err
		}
		store = mysql.New(db.DB, mysql.Options{TablePrefix: name + "_", Logger: quiet})
		for _, t := range []string{"orders", "published", "received", "instances"} {
			drop = append(drop, "DROP TABLE IF EXISTS "+name+"_"+t)
		}
		closeDB = func() { db.Close() }
	default:
		return nil, fmt.Errorf("-db %q: want postgres or mysql", kind)
	}
	s := &shop{db: db, orders: name + "_orders", got: make(chan outbox.Received[OrderPlaced], 100)}
	s.close = func() {
		for _, q := range drop {
			db.Exec(q)
		}
		closeDB()
	}
	if err := s.setUp(ctx, store, quiet); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// setUp creates the tables and the outbox, and subscribes to order.placed.
func (s *shop) setUp(ctx context.Context, store storage.Driver[*sql.Tx], log *slog.Logger) error {
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, "CREATE TABLE "+s.orders+" (id BIGINT PRIMARY KEY, item TEXT NOT NULL, total TEXT NOT NULL)"); err != nil {
		return fmt.Errorf("creating %s: %w", s.orders, err)
	}
	ob, err := outbox.New(store, memory.New(memory.Options{}), outbox.Options{Logger: log})
	if err != nil {
		return err
	}
	s.ob = ob
	return outbox.Subscribe(ob, "order.placed", func(ctx context.Context, m outbox.Received[OrderPlaced]) error {
		select {
		case s.got <- m:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, outbox.Group("shipping"))
}

var errOutOfStock = errors.New("out of stock")

// placeOrder stores o and publishes order.placed in one sqlx transaction
// and returns the message id. With outOfStock, the transaction fails
// after the publish and rolls back, taking the message with it.
func (s *shop) placeOrder(ctx context.Context, o Order, outOfStock bool) (msgID int64, err error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() // after a commit: sql.ErrTxDone, ignored
	if _, err := tx.NamedExecContext(ctx, "INSERT INTO "+s.orders+" (id, item, total) VALUES (:id, :item, :total)", o); err != nil {
		return 0, err
	}
	msgID, err = s.ob.Publish(ctx, tx.Tx, "order.placed", OrderPlaced{OrderID: o.ID, Item: o.Item})
	if err != nil {
		return 0, err
	}
	if outOfStock {
		return msgID, errOutOfStock
	}
	if err := tx.Commit(); err != nil {
		return msgID, err
	}
	// MySQL has no NOTIFY: wake the processor, or the message waits for
	// its next poll (PostgreSQL's NOTIFY committed with tx).
	s.ob.Wake(storage.Published)
	return msgID, nil
}
