// Command gorm publishes gocap messages inside GORM transactions, on
// PostgreSQL (the default) or MariaDB/MySQL (-db mysql): an order and its
// order.placed message commit together, and an order whose transaction
// rolls back leaves neither row nor message.
//
//	go run ./examples/gorm              # PostgreSQL at GOCAP_POSTGRES_URL
//	go run ./examples/gorm -db mysql    # MariaDB/MySQL at GOCAP_MYSQL_DSN
//
// GORM hands its *sql.Tx over in tx.Statement.ConnPool (see sqlTx). On
// PostgreSQL, gocap's SQLDriver and GORM share one pgx pool
// (stdlib.OpenDBFromPool); on MySQL they share the *sql.DB. Messages go
// to the in-process broker, where a subscriber prints them. The example
// creates its tables in the database and drops them when it ends.
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
	gormmysql "gorm.io/driver/mysql"
	gormpg "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/mysql"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport/memory"
)

// Order is the application's own data, a GORM model.
type Order struct {
	ID    int64 `gorm:"primaryKey;autoIncrement:false"`
	Item  string
	Total string
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
	if err := run(ctx, *kind, dsn, "gocap_gorm_example"); err != nil {
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
	s, err := openShop(ctx, kind, dsn, name, false)
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

// shop is the example's application: GORM for its orders, an outbox for
// its messages, in one database.
type shop struct {
	db     *gorm.DB
	ob     *outbox.Outbox[*sql.Tx]
	orders string                            // the orders table
	got    chan outbox.Received[OrderPlaced] // what the subscriber received
	close  func()                            // drops the tables, closes the connections
}

// openShop opens GORM and gocap on one connection pool of the database
// of kind at dsn, with the tables named after name (a schema and a
// table on PostgreSQL, tables with a prefix on MySQL). With prepared,
// GORM runs with PrepareStmt.
func openShop(ctx context.Context, kind, dsn, name string, prepared bool) (*shop, error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var (
		store     storage.Driver[*sql.Tx]
		dialector gorm.Dialector
		drop      []string
		closeDB   func()
	)
	switch kind {
	case "postgres":
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return nil, err
		}
		store = postgres.NewSQL(pool, postgres.Options{Schema: name, Logger: quiet})
		db := stdlib.OpenDBFromPool(pool) // GORM's *sql.DB, on gocap's pool
		dialector = gormpg.New(gormpg.Config{Conn: db})
		drop = []string{"DROP SCHEMA IF EXISTS " + name + " CASCADE", "DROP TABLE IF EXISTS " + name + "_orders"}
		closeDB = func() { db.Close(); pool.Close() }
	case "mysql":
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return nil, err
		}
		store = mysql.New(db, mysql.Options{TablePrefix: name + "_", Logger: quiet})
		dialector = gormmysql.New(gormmysql.Config{Conn: db})
		for _, t := range []string{"orders", "published", "received", "instances"} {
			drop = append(drop, "DROP TABLE IF EXISTS "+name+"_"+t)
		}
		closeDB = func() { db.Close() }
	default:
		return nil, fmt.Errorf("-db %q: want postgres or mysql", kind)
	}
	gdb, err := gorm.Open(dialector, &gorm.Config{PrepareStmt: prepared, Logger: logger.Discard})
	if err != nil {
		closeDB()
		return nil, fmt.Errorf("gorm: %w", err)
	}
	s := &shop{db: gdb, orders: name + "_orders", got: make(chan outbox.Received[OrderPlaced], 100)}
	s.close = func() {
		for _, q := range drop {
			gdb.Exec(q)
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
	if err := s.db.WithContext(ctx).Table(s.orders).AutoMigrate(&Order{}); err != nil {
		return fmt.Errorf("gorm: creating %s: %w", s.orders, err)
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

// placeOrder stores o and publishes order.placed in one GORM transaction
// and returns the message id. With outOfStock, the transaction fails
// after the publish and rolls back, taking the message with it.
func (s *shop) placeOrder(ctx context.Context, o Order, outOfStock bool) (msgID int64, err error) {
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Table(s.orders).Create(&o).Error; err != nil {
			return err
		}
		stx, err := sqlTx(tx)
		if err != nil {
			return err
		}
		msgID, err = s.ob.Publish(ctx, stx, "order.placed", OrderPlaced{OrderID: o.ID, Item: o.Item})
		if err != nil {
			return err
		}
		if outOfStock {
			return errOutOfStock
		}
		return nil
	})
	if err == nil {
		// MySQL has no NOTIFY: wake the processor, or the message waits
		// for its next poll (PostgreSQL's NOTIFY committed with tx).
		s.ob.Wake(storage.Published)
	}
	return msgID, err
}

// sqlTx returns the *sql.Tx of a GORM transaction (inside
// db.Transaction, or after db.Begin): GORM keeps it in
// Statement.ConnPool, wrapped in a *gorm.PreparedStmtTX when PrepareStmt
// is on.
func sqlTx(tx *gorm.DB) (*sql.Tx, error) {
	switch p := tx.Statement.ConnPool.(type) {
	case *sql.Tx:
		return p, nil
	case *gorm.PreparedStmtTX:
		if t, ok := p.Tx.(*sql.Tx); ok {
			return t, nil
		}
	}
	return nil, fmt.Errorf("gorm: %T is not a transaction on a *sql.DB: publish inside db.Transaction", tx.Statement.ConnPool)
}
