// Command observability shows gocap's OpenTelemetry instrumentation: two
// services in one process, "orders" and "billing", each with its own
// outbox and SQLite database, talk over the in-process broker (or over
// RabbitMQ with -amqp). Orders publishes order.paid inside the span of an
// HTTP-like request; billing's handler runs inside the consumer span that
// continues that trace, and its own span nests under it. One of the
// charges fails once and is retried.
//
//	go run ./examples/observability                 # the walkthrough, then exit
//	go run ./examples/observability -serve 5m       # and keep serving the endpoints
//	go run ./examples/observability -amqp amqp://guest:guest@127.0.0.1:5672/
//
// Traces are exported with stdouttrace (to traces.json in the work
// directory, or to stdout with -json), and summed up as a tree per trace.
// Metrics are exposed for Prometheus (the OpenTelemetry Prometheus
// exporter and client_golang's promhttp) on /orders/metrics and
// /billing/metrics, beside each service's /livez and /readyz; the
// walkthrough prints gocap's lines of both metrics endpoints.
//
// The work directory (unless -dir names one) and, with -amqp, the exchange
// and queue of the run (names of their own, printed) are removed at the
// end, also when the run fails or is interrupted (Ctrl-C, SIGTERM).
package main

import (
	"bufio"
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
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/gocap/gocap/examples/internal/cleanup"
	"github.com/gocap/gocap/examples/internal/interrupt"
	"github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/transport/rabbitmq"
)

// OrderPaid is the message payload.
type OrderPaid struct {
	OrderID int    `json:"order_id"`
	Amount  string `json:"amount"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9464", "address of the metrics and health endpoints")
	amqpURL := flag.String("amqp", "", "RabbitMQ URL (default: the in-process broker)")
	n := flag.Int("n", 3, "orders to publish")
	serve := flag.Duration("serve", 0, "keep serving the endpoints this long after the walkthrough")
	jsonOut := flag.Bool("json", false, "print stdouttrace's JSON to stdout instead of traces.json")
	dir := flag.String("dir", "", "work directory (default: a new temporary one)")
	flag.Parse()
	// An interrupt cancels run's ctx, so that run stops and removes what
	// it created.
	interrupt.Main("the run's work directory, queue and exchange", func(ctx context.Context) error {
		return run(ctx, *addr, *amqpURL, *n, *serve, *jsonOut, *dir)
	})
}

// service is one application: its database, outbox and telemetry.
type service struct {
	name   string
	db     *sql.DB
	tr     transport.Transport
	ob     *outbox.Outbox[*sql.Tx]
	tp     *sdktrace.TracerProvider
	mp     *sdkmetric.MeterProvider
	tracer trace.Tracer
	reg    *prometheus.Registry
}

// close releases what newService opened, in reverse: the outbox (stopping
// Run), the telemetry (flushing the spans), the transport and the database.
func (s *service) close() {
	if s.ob != nil {
		s.ob.Close()
	}
	s.tp.Shutdown(context.Background())
	s.mp.Shutdown(context.Background())
	if s.tr != nil {
		s.tr.Close()
	}
	if s.db != nil {
		s.db.Close()
	}
}

// run is the walkthrough; however it returns, it removes what it created.
func run(ctx context.Context, addr, amqpURL string, n int, serve time.Duration, jsonOut bool, dir string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if dir == "" {
		d, err := os.MkdirTemp("", "gocap-observability-")
		if err != nil {
			return fmt.Errorf("work directory: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	traceOut := io.Writer(os.Stdout)
	if !jsonOut {
		f, err := os.Create(filepath.Join(dir, "traces.json"))
		if err != nil {
			return fmt.Errorf("traces file: %w", err)
		}
		defer f.Close()
		traceOut = f
	}
	summary := &treeExporter{}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	// The transport of each service: two handles on one in-process
	// broker, or two RabbitMQ connections, on an exchange and a queue of
	// this run's own: a queue named like the group ("billing") could be
	// another application's on a shared broker.
	var newTransport func() (transport.Transport, error)
	if amqpURL == "" {
		broker := memory.NewBroker(memory.Options{})
		newTransport = func() (transport.Transport, error) { return broker.Transport(), nil }
	} else {
		exchange := "gocap.observability." + strconv.FormatInt(ids.Token()%1_000_000, 10)
		cfg := rabbitmq.Config{URL: amqpURL, Exchange: exchange, QueuePrefix: exchange + ".", Logger: logger}
		newTransport = func() (transport.Transport, error) { return rabbitmq.New(cfg) }
		fmt.Printf("RabbitMQ exchange %s, queue %sbilling, removed at the end\n", exchange, cfg.QueuePrefix)
		defer func() {
			if err := cleanup.RabbitMQ(amqpURL, exchange, cfg.QueuePrefix+"billing"); err != nil {
				log.Printf("removing the exchange and queue: %v", err)
			}
		}()
	}
	newService := func(name string) (*service, error) {
		s := &service{name: name, reg: prometheus.NewRegistry()}
		res := resource.NewSchemaless(attribute.String("service.name", name))
		exp, err := stdouttrace.New(stdouttrace.WithWriter(traceOut), stdouttrace.WithPrettyPrint())
		if err != nil {
			return nil, fmt.Errorf("%s: stdouttrace: %w", name, err)
		}
		prom, err := otelprom.New(otelprom.WithRegisterer(s.reg), otelprom.WithoutScopeInfo())
		if err != nil {
			return nil, fmt.Errorf("%s: prometheus exporter: %w", name, err)
		}
		s.tp = sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(exp),
			sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(summary)))
		s.mp = sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(prom))
		s.tracer = s.tp.Tracer("example/" + name)
		ok := false
		defer func() {
			if !ok {
				s.close()
			}
		}()
		s.db, err = sqlite.Open(ctx, filepath.Join(dir, name+".db"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		store := sqlite.New(s.db, sqlite.Options{Logger: logger})
		if err := store.Migrate(ctx); err != nil {
			return nil, fmt.Errorf("%s: migrate: %w", name, err)
		}
		if s.tr, err = newTransport(); err != nil {
			return nil, fmt.Errorf("%s: transport: %w", name, err)
		}
		s.ob, err = outbox.New(store, s.tr, outbox.Options{
			Logger:         logger,
			PollInterval:   100 * time.Millisecond,
			TracerProvider: s.tp,
			MeterProvider:  s.mp,
			Propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
			GaugeInterval:  time.Second,
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		ok = true
		return s, nil
	}
	orders, err := newService("orders")
	if err != nil {
		return err
	}
	defer orders.close()
	billing, err := newService("billing")
	if err != nil {
		return err
	}
	defer billing.close()

	// Billing charges the card of each paid order; the second charge
	// fails once and is retried.
	var (
		mu      sync.Mutex
		charged = map[int]int{}
		done    = make(chan int, n)
	)
	err = outbox.Subscribe(billing.ob, "order.paid", func(ctx context.Context, m outbox.Received[OrderPaid]) error {
		_, span := billing.tracer.Start(ctx, "charge card")
		defer span.End()
		mu.Lock()
		charged[m.Value.OrderID]++
		attempt := charged[m.Value.OrderID]
		mu.Unlock()
		if m.Value.OrderID == 2 && attempt == 1 {
			err := errors.New("card processor timed out")
			span.RecordError(err)
			return err
		}
		done <- m.Value.OrderID
		return nil
	}, outbox.Group("billing"))
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	for _, s := range []*service{orders, billing} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.ob.Run(ctx); err != nil {
				log.Printf("%s: Run: %v", s.name, err)
			}
		}()
	}
	defer wg.Wait()
	defer cancel()

	mux := http.NewServeMux()
	for _, s := range []*service{orders, billing} {
		mux.Handle("/"+s.name+"/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
		mux.Handle("/"+s.name+"/livez", s.ob.LivenessHandler())
		mux.Handle("/"+s.name+"/readyz", s.ob.ReadinessHandler())
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		<-served
	}()
	fmt.Printf("endpoints on http://%s/{orders,billing}/{metrics,livez,readyz}\n", ln.Addr())

	// Wait until billing consumes, so that order.paid is routable.
	if err := waitReady(ctx, "http://"+ln.Addr().String()+"/billing/readyz"); err != nil {
		return err
	}
	if err := interrupt.Sleep(ctx, 300*time.Millisecond); err != nil {
		return err
	}

	// Orders: each order is paid inside a request span, and order.paid
	// published in the same transaction as the order's update.
	if _, err := orders.db.ExecContext(ctx, "create table orders (id integer primary key, paid integer)"); err != nil {
		return fmt.Errorf("orders table: %w", err)
	}
	for i := 1; i <= n; i++ {
		rctx, span := orders.tracer.Start(ctx, "POST /orders/{id}/pay", trace.WithSpanKind(trace.SpanKindServer))
		err := outbox.InTx(rctx, orders.db, orders.ob, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(rctx, "insert into orders (id, paid) values (?, 1)", i); err != nil {
				return err
			}
			_, err := orders.ob.Publish(rctx, tx, "order.paid", OrderPaid{OrderID: i, Amount: fmt.Sprintf("%d.00", 10*i)})
			return err
		})
		span.End()
		if err != nil {
			return fmt.Errorf("order %d: %w", i, err)
		}
	}
	charging := time.After(30 * time.Second)
	for range n {
		select {
		case <-done:
		case <-charging:
			return errors.New("the orders were not all charged within 30 s")
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	// Let the last outcomes be recorded, then flush the spans.
	if err := interrupt.Sleep(ctx, 500*time.Millisecond); err != nil {
		return err
	}
	for _, s := range []*service{orders, billing} {
		if err := s.tp.ForceFlush(ctx); err != nil {
			return fmt.Errorf("%s: flush: %w", s.name, err)
		}
	}
	fmt.Println()
	fmt.Println("traces:")
	summary.print(os.Stdout)

	for _, s := range []*service{orders, billing} {
		fmt.Printf("\nGET /%s/metrics (gocap's and messaging lines):\n", s.name)
		if err := printMetrics(ctx, "http://"+ln.Addr().String()+"/"+s.name+"/metrics"); err != nil {
			return err
		}
	}
	fmt.Printf("\nGET /orders/readyz:\n")
	if err := printURL(ctx, "http://"+ln.Addr().String()+"/orders/readyz", func(string) bool { return true }); err != nil {
		return err
	}
	if serve > 0 {
		fmt.Printf("\nserving for %v\n", serve)
		select {
		case <-time.After(serve):
		case err := <-served:
			return fmt.Errorf("serve: %w", err)
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// waitReady polls a readiness endpoint until it answers 200, for at most
// ten seconds.
func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within 10 s", url)
		}
		if err := interrupt.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func printMetrics(ctx context.Context, url string) error {
	return printURL(ctx, url, func(line string) bool {
		return (strings.HasPrefix(line, "gocap_") || strings.HasPrefix(line, "messaging_") ||
			strings.HasPrefix(line, "# HELP gocap_") || strings.HasPrefix(line, "# HELP messaging_")) &&
			!strings.Contains(line, "_bucket{")
	})
}

func printURL(ctx context.Context, url string, keep func(string) bool) error {
	reqCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(reqCtx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if keep(sc.Text()) {
			fmt.Println(sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// treeExporter keeps the ended spans and prints them as one tree per
// trace, with each span's service, and the links of send spans.
type treeExporter struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (e *treeExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.spans = append(e.spans, spans...)
	return nil
}

func (e *treeExporter) Shutdown(context.Context) error { return nil }

func (e *treeExporter) print(w io.Writer) {
	e.mu.Lock()
	spans := slices.Clone(e.spans)
	e.mu.Unlock()
	slices.SortFunc(spans, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	known := map[trace.SpanID]bool{}
	for _, s := range spans {
		known[s.SpanContext().SpanID()] = true
	}
	var roots []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if p := s.Parent(); p.IsValid() && known[p.SpanID()] {
			children[p.SpanID()] = append(children[p.SpanID()], s)
		} else {
			roots = append(roots, s)
		}
	}
	var walk func(s sdktrace.ReadOnlySpan, depth int)
	walk = func(s sdktrace.ReadOnlySpan, depth int) {
		svc := ""
		if v, ok := s.Resource().Set().Value("service.name"); ok {
			svc = v.AsString()
		}
		line := fmt.Sprintf("%s%-8s %s [%s] %v", strings.Repeat("  ", depth), svc, s.Name(), s.SpanKind(),
			s.EndTime().Sub(s.StartTime()).Round(10*time.Microsecond))
		for _, kv := range s.Attributes() {
			switch kv.Key {
			case "messaging.message.id", "gocap.message.retries", "error.type":
				line += fmt.Sprintf(" %s=%s", kv.Key, kv.Value.String())
			}
		}
		if s.SpanKind() == trace.SpanKindProducer && strings.HasPrefix(s.Name(), "publish ") {
			line += fmt.Sprintf(" span=%s", s.SpanContext().SpanID())
		}
		if s.Status().Description != "" {
			line += fmt.Sprintf(" status=%q", s.Status().Description)
		}
		for _, l := range s.Links() {
			line += fmt.Sprintf(" link=%s/%s", l.SpanContext.TraceID(), l.SpanContext.SpanID())
		}
		fmt.Fprintln(w, line)
		for _, c := range children[s.SpanContext().SpanID()] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		fmt.Fprintf(w, "trace %s\n", r.SpanContext().TraceID())
		walk(r, 1)
	}
}
