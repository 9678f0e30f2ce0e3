// Command quickstart shows gocap end to end with nothing to install: an
// embedded SQLite database and the in-process broker.
//
//	go run ./examples/quickstart            # then open http://127.0.0.1:8080/gocap/
//	go run ./examples/quickstart -serve=false   # the walkthrough only, then exit
//
// It publishes orders in transactions (one rolled back), consumes them in
// two groups, lets one handler fail until its bug is "fixed", requeues the
// Failed message the way the dashboard's button does, and serves the
// dashboard until you press Ctrl-C.
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
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/gocap/gocap/dashboard"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
)

// OrderPaid is the message payload.
type OrderPaid struct {
	OrderID int    `json:"order_id"`
	Amount  string `json:"amount"`
}

func main() {
	serve := flag.Bool("serve", true, "serve the dashboard after the walkthrough, until Ctrl-C")
	addr := flag.String("addr", "127.0.0.1:8080", "dashboard address")
	dbPath := flag.String("db", "", "SQLite file (default: a new one in a temporary directory)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *dbPath, *addr, *serve); err != nil {
		log.Fatal(err)
	}
}

func say(format string, args ...any) { fmt.Printf("• "+format+"\n", args...) }

func run(ctx context.Context, dbPath, addr string, serve bool) error {
	if dbPath == "" {
		dir, err := os.MkdirTemp("", "gocap-quickstart-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dbPath = filepath.Join(dir, "quickstart.db")
	}
	db, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	store := sqlite.New(db, sqlite.Options{})
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, paid INTEGER NOT NULL DEFAULT 0)`); err != nil {
		return err
	}
	say("SQLite database: %s", dbPath)

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil)) // the walkthrough prints what matters
	ob, err := outbox.New(store, memory.New(memory.Options{}), outbox.Options{
		Logger:       quiet,
		PollInterval: 200 * time.Millisecond,
		// A short policy so the demo fails within a second; the default is
		// 3 immediate retries, then one a minute, 50 attempts in all.
		Retry: outbox.RetryPolicy{ImmediateRetries: 2, Interval: 100 * time.Millisecond, MaxAttempts: 4},
		OnFailed: func(_ context.Context, f outbox.FailedMessage) {
			say("OnFailed: %s message %s gave up after %d attempts: %v", f.Message.Kind, f.Message.MsgID, f.Retries, f.Err)
		},
	})
	if err != nil {
		return err
	}

	var bugFixed atomic.Bool
	if err := subscribe(ob, &bugFixed); err != nil {
		return err
	}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	done := make(chan error, 1)
	go func() { done <- ob.Run(runCtx) }()
	time.Sleep(100 * time.Millisecond) // the consumers bind their queues

	for _, o := range []struct {
		id     int
		commit bool
	}{{1, true}, {2, false}, {3, true}} {
		err := outbox.InTx(ctx, db, ob, func(tx *sql.Tx) error {
			id, err := payOrder(ctx, ob, tx, o.id)
			if err != nil {
				return err
			}
			if !o.commit {
				say("order %d: published message %d, then the transaction rolled back: it is never sent", o.id, id)
				return errRollback
			}
			say("order %d: published message %d in the transaction that marked it paid", o.id, id)
			return nil
		})
		if err != nil && !errors.Is(err, errRollback) {
			return err
		}
	}

	// Wait until shipping's handler has failed for good on order 3.
	var failed *storage.Message
	if err := waitFor(ctx, 10*time.Second, func() (bool, error) {
		rows, err := store.List(ctx, storage.Filter{Kind: storage.Received, Status: storage.StatusFailed})
		if len(rows) > 0 {
			failed = rows[0]
		}
		return len(rows) > 0, err
	}); err != nil {
		return fmt.Errorf("waiting for the failure: %w", err)
	}
	say("received message %s (group %s) is Failed after %d attempts: %s", failed.MsgID, failed.Group, failed.Retries, failed.LastError)

	bugFixed.Store(true)
	say("the shipping bug is fixed; requeueing the Failed message, as the dashboard's Requeue button does")
	if _, err := store.Requeue(ctx, storage.Received, []int64{failed.ID}, time.Now().UTC()); err != nil {
		return err
	}
	ob.Wake(storage.Received)
	if err := waitFor(ctx, 10*time.Second, func() (bool, error) {
		m, err := store.Get(ctx, storage.Received, failed.ID)
		return err == nil && m.Status == storage.StatusSucceeded, err
	}); err != nil {
		return fmt.Errorf("waiting for the requeued message: %w", err)
	}
	pub, _ := store.Counts(ctx, storage.Published)
	rec, _ := store.Counts(ctx, storage.Received)
	say("published: %d Succeeded, %d Failed; received: %d Succeeded, %d Failed (order 2 was never sent)",
		pub[storage.StatusSucceeded], pub[storage.StatusFailed], rec[storage.StatusSucceeded], rec[storage.StatusFailed])

	if serve {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("dashboard: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/gocap/", dashboard.New(ob, dashboard.Options{Prefix: "/gocap", Logger: slog.Default()}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		say("dashboard: http://%s/gocap/ — press Ctrl-C to stop", ln.Addr())
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdownCtx)
	}
	stopRun()
	return <-done
}

var errRollback = errors.New("rolled back on purpose")

// subscribe registers the walkthrough's handlers: billing handles
// order.paid; shipping handles every order.* message, and fails on order
// 3 until bugFixed is set.
func subscribe(ob *outbox.Outbox[*sql.Tx], bugFixed *atomic.Bool) error {
	err := outbox.Subscribe(ob, "order.paid", func(_ context.Context, m outbox.Received[OrderPaid]) error {
		say("billing  handled order %d (%s), message %s", m.Value.OrderID, m.Value.Amount, m.ID)
		return nil
	}, outbox.Group("billing"))
	if err != nil {
		return err
	}
	return outbox.Subscribe(ob, "order.*", func(_ context.Context, m outbox.Received[OrderPaid]) error {
		if m.Value.OrderID == 3 && !bugFixed.Load() {
			return fmt.Errorf("shipping: no address on file for order %d", m.Value.OrderID)
		}
		say("shipping handled order %d (attempt %d)", m.Value.OrderID, m.Retries+1)
		return nil
	}, outbox.Group("shipping"))
}

// payOrder marks order id paid and publishes order.paid in tx, and
// returns the message's id: both commit, or neither.
func payOrder(ctx context.Context, ob *outbox.Outbox[*sql.Tx], tx *sql.Tx, id int) (int64, error) {
	if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id, paid) VALUES (?, 1) ON CONFLICT (id) DO UPDATE SET paid = 1`, id); err != nil {
		return 0, err
	}
	return ob.Publish(ctx, tx, "order.paid", OrderPaid{OrderID: id, Amount: "19.90"})
}

func waitFor(ctx context.Context, d time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %v", d)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
