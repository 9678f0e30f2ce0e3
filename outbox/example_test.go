package outbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/mysql"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/transport/rabbitmq"
)

// OrderPaid is an example payload.
type OrderPaid struct {
	ID     int64  `json:"id"`
	Amount string `json:"amount"`
}

// Publish a message in the same PostgreSQL transaction as the business
// change: it is sent if and only if the transaction commits.
func ExampleOutbox_Publish() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/test")
	if err != nil {
		log.Fatal(err)
	}
	store := postgres.New(pool, postgres.Options{})
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	tr, err := rabbitmq.New(rabbitmq.Config{URL: "amqp://guest:guest@127.0.0.1:5672/"})
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
	ob, err := outbox.New(store, tr, outbox.Options{})
	if err != nil {
		log.Fatal(err)
	}
	go ob.Run(ctx) // sends what commits; stops when ctx ends

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "update orders set paid = true where id = $1", 42); err != nil {
			return err
		}
		id, err := ob.Publish(ctx, tx, "order.paid", OrderPaid{ID: 42, Amount: "9.90"},
			outbox.WithHeader("tenant", "acme"))
		fmt.Println("published message", id)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Subscribe a handler in a consumer group. Every message is stored before
// it is acknowledged, de-duplicated by id and group, and retried if the
// handler fails.
func ExampleSubscribe() {
	ctx := context.Background()
	pool, _ := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/test")
	tr, _ := rabbitmq.New(rabbitmq.Config{URL: "amqp://guest:guest@127.0.0.1:5672/"})
	ob, _ := outbox.New(postgres.New(pool, postgres.Options{}), tr, outbox.Options{})

	err := outbox.Subscribe(ob, "order.*", func(ctx context.Context, m outbox.Received[OrderPaid]) error {
		// Record the work and any follow-up message in one transaction.
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "insert into invoices (order_id) values ($1) on conflict do nothing", m.Value.ID); err != nil {
				return err
			}
			_, err := ob.Publish(ctx, tx, "invoice.created", map[string]any{"order": m.Value.ID})
			return err
		})
	}, outbox.Group("billing"))
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(ob.Run(ctx))
}

// With MySQL (or SQLite), Publish takes the application's *sql.Tx, and
// InTx wakes the processor as soon as the transaction commits.
func ExampleInTx() {
	ctx := context.Background()
	db, _ := sql.Open("mysql", "root@tcp(127.0.0.1:3306)/test")
	tr, _ := rabbitmq.New(rabbitmq.Config{URL: "amqp://guest:guest@127.0.0.1:5672/"})
	ob, _ := outbox.New(mysql.New(db, mysql.Options{}), tr, outbox.Options{})
	go ob.Run(ctx)

	err := outbox.InTx(ctx, db, ob, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "update orders set paid = 1 where id = ?", 42); err != nil {
			return err
		}
		_, err := ob.Publish(ctx, tx, "order.paid", OrderPaid{ID: 42})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Trace a message from the publisher's span to the handler's: install an
// OpenTelemetry SDK (here a span recorder) and a W3C propagator, and the
// handler runs inside a span of the publisher's trace.
func ExampleOptions_openTelemetry() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "gocap-example-")
	defer os.RemoveAll(dir)
	db, _ := sqlite.Open(ctx, filepath.Join(dir, "app.db"))
	defer db.Close()
	store := sqlite.New(db, sqlite.Options{})
	_ = store.Migrate(ctx)
	tr := memory.New(memory.Options{})
	defer tr.Close()

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	ob, err := outbox.New(store, tr, outbox.Options{
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		TracerProvider: tp,
		Propagator:     propagation.TraceContext{},
		// Should a send beat the consumer's binding, it is retried soon.
		Retry: outbox.RetryPolicy{Interval: 20 * time.Millisecond},
	})
	if err != nil {
		log.Fatal(err)
	}
	handled := make(chan trace.SpanContext, 1)
	_ = outbox.Subscribe(ob, "order.paid", func(ctx context.Context, m outbox.Received[OrderPaid]) error {
		handled <- trace.SpanContextFromContext(ctx)
		return nil
	}, outbox.Group("billing"))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ob.Run(runCtx) }()
	time.Sleep(100 * time.Millisecond) // the consumer binds its queue

	reqCtx, request := tp.Tracer("app").Start(ctx, "POST /orders/42/pay")
	if _, err := ob.PublishWithoutTx(reqCtx, "order.paid", OrderPaid{ID: 42}); err != nil {
		log.Fatal(err)
	}
	request.End()
	select {
	case sc := <-handled:
		fmt.Println("handler in the request's trace:", sc.TraceID() == request.SpanContext().TraceID())
	case <-time.After(10 * time.Second):
		fmt.Println("not handled")
	}
	stop()
	<-done
	for _, s := range spans.Ended() {
		if s.Name() == "publish order.paid" {
			fmt.Println(s.Name(), "is a child of", s.Parent().SpanID() == request.SpanContext().SpanID())
		}
	}
	// Output:
	// handler in the request's trace: true
	// publish order.paid is a child of true
}

// Serve liveness and readiness probes: 200 while the outbox is running and
// reaches its storage and broker, 503 with the failing part named
// otherwise.
func ExampleOutbox_ReadinessHandler() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "gocap-example-")
	defer os.RemoveAll(dir)
	db, _ := sqlite.Open(ctx, filepath.Join(dir, "app.db"))
	defer db.Close()
	store := sqlite.New(db, sqlite.Options{})
	_ = store.Migrate(ctx)
	ob, _ := outbox.New(store, memory.New(memory.Options{}), outbox.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	mux := http.NewServeMux()
	mux.Handle("/livez", ob.LivenessHandler())
	mux.Handle("/readyz", ob.ReadinessHandler())

	probe := func() {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		var rep outbox.HealthReport
		_ = json.Unmarshal(rec.Body.Bytes(), &rep)
		fmt.Println(rec.Code, rep.Problems)
	}
	probe() // Run has not started

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ob.Run(runCtx) }()
	for i := 0; i < 500 && !ob.Health(ctx).Live; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	probe()
	stop()
	<-done
	// Output:
	// 503 [processor not running]
	// 200 []
}
