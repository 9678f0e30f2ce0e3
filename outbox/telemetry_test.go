package outbox_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
)

// TestTelemetryPostgresRabbitMQ and TestTelemetrySQLiteMemory check the
// OpenTelemetry instrumentation with the SDK's span recorder and manual
// metric reader, across a real broker and the in-process one.
func TestTelemetryPostgresRabbitMQ(t *testing.T) { runTelemetry(t, postgresBackend, rabbitTelBroker) }

func TestTelemetrySQLiteMemory(t *testing.T) { runTelemetry(t, sqliteBackend, memoryTelBroker) }

func runTelemetry[TTx any](t *testing.T, be backend[TTx], tb telBroker) {
	t.Run("TraceAcrossBroker", func(t *testing.T) { testTraceAcross(t, be, tb) })
	t.Run("ForeignTraceparent", func(t *testing.T) { testForeignTrace(t, be, tb) })
	t.Run("HandlerFailureAndMetrics", func(t *testing.T) { testTelemetryMetrics(t, be, tb) })
	t.Run("BacklogGauge", func(t *testing.T) { testBacklogGauge(t, be, tb) })
}

// telBroker opens a broker for one test: a transport on it, and a way to
// publish to it as a foreign program does.
type telBroker struct {
	open func(t *testing.T) (tr transport.Transport, foreign func(topic string, headers map[string]string, body string))
}

var rabbitTelBroker = telBroker{open: func(t *testing.T) (transport.Transport, func(string, map[string]string, string)) {
	url := testenv.AMQPURL(t)
	tr, ex := rabbitFor(t, url)
	return tr, func(topic string, headers map[string]string, body string) {
		tbl := amqp.Table{}
		for k, v := range headers {
			tbl[k] = v
		}
		foreignPublish(t, url, ex, topic, tbl, body)
	}
}}

var memoryTelBroker = telBroker{open: func(t *testing.T) (transport.Transport, func(string, map[string]string, string)) {
	tr := memory.New(memory.Options{})
	t.Cleanup(func() { tr.Close() })
	return tr, func(topic string, headers map[string]string, body string) {
		if err := tr.Send(context.Background(), topic, transport.Message{Headers: headers, Body: []byte(body)}); err != nil {
			t.Fatalf("foreign send: %v", err)
		}
	}
}}

// otelKit is an SDK tracer provider recording every span and a meter
// provider read by hand.
type otelKit struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newOtelKit(t *testing.T) *otelKit {
	k := &otelKit{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	k.tp = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(k.spans))
	k.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(k.reader))
	t.Cleanup(func() {
		k.tp.Shutdown(context.Background())
		k.mp.Shutdown(context.Background())
	})
	return k
}

func (k *otelKit) options(o outbox.Options) outbox.Options {
	o.TracerProvider, o.MeterProvider = k.tp, k.mp
	o.Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	return o
}

// ended returns the ended spans named name.
func (k *otelKit) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range k.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// waitSpans waits until n spans named name have ended, and returns them.
func (k *otelKit) waitSpans(t *testing.T, name string, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	waitFor(t, 15*time.Second, "spans "+name, func() bool { return len(k.ended(name)) >= n })
	return k.ended(name)
}

func (k *otelKit) collect(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := k.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect: %v", err)
	}
	return rm
}

// matches reports whether set holds every kv.
func matches(set attribute.Set, kvs []attribute.KeyValue) bool {
	for _, kv := range kvs {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// metricValue sums the points of the metric name whose attributes hold
// kvs: a counter's sum, a histogram's count, a gauge's value.
func metricValue(rm metricdata.ResourceMetrics, name string, kvs ...attribute.KeyValue) (float64, bool) {
	var total float64
	found := false
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes, kvs) {
						total, found = total+float64(p.Value), true
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes, kvs) {
						total, found = total+float64(p.Count), true
					}
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes, kvs) {
						total, found = total+float64(p.Value), true
					}
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes, kvs) {
						total, found = total+p.Value, true
					}
				}
			}
		}
	}
	return total, found
}

func attrOf(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func wantAttrs(t *testing.T, s sdktrace.ReadOnlySpan, want map[string]any) {
	t.Helper()
	for k, w := range want {
		v, ok := attrOf(s, k)
		if !ok {
			t.Errorf("span %q: no attribute %s", s.Name(), k)
			continue
		}
		if got := v.AsInterface(); got != w {
			t.Errorf("span %q: %s = %v (%T), want %v (%T)", s.Name(), k, got, got, w, w)
		}
	}
}

// testTraceAcross: the caller's span, the publish span, the handler's
// process span and a span the handler starts share one trace; the send
// span is linked to the publish span.
func testTraceAcross[TTx any](t *testing.T, be backend[TTx], tb telBroker) {
	env := be.open(t)
	tr, _ := tb.open(t)
	k := newOtelKit(t)
	ob := newOutbox(t, env.driver(t), tr, k.options(outbox.Options{}))
	app := k.tp.Tracer("app")
	got := make(chan outbox.Received[orderPaid], 1)
	if err := outbox.Subscribe(ob, "order.paid", func(ctx context.Context, m outbox.Received[orderPaid]) error {
		_, s := app.Start(ctx, "bill")
		s.End()
		got <- m
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitConsumers(t, ob)

	ctx, root := app.Start(context.Background(), "checkout")
	tx, commit, _ := env.begin(t)
	id, err := ob.Publish(ctx, tx, "order.paid", orderPaid{ID: 1, Amount: "3.00"})
	if err != nil {
		t.Fatal(err)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	root.End()
	var m outbox.Received[orderPaid]
	select {
	case m = <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("the message was not handled")
	}
	if tp := m.Headers["traceparent"]; !strings.Contains(tp, root.SpanContext().TraceID().String()) {
		t.Errorf("received traceparent %q does not carry the trace %s", tp, root.SpanContext().TraceID())
	}

	publish := k.waitSpans(t, "publish order.paid", 1)[0]
	send := k.waitSpans(t, "send order.paid", 1)[0]
	process := k.waitSpans(t, "process order.paid", 1)[0]
	bill := k.waitSpans(t, "bill", 1)[0]
	traceID := root.SpanContext().TraceID()
	if publish.SpanContext().TraceID() != traceID || publish.Parent().SpanID() != root.SpanContext().SpanID() {
		t.Errorf("publish span is not a child of the caller's span")
	}
	if publish.SpanKind() != trace.SpanKindProducer || process.SpanKind() != trace.SpanKindConsumer || send.SpanKind() != trace.SpanKindProducer {
		t.Errorf("span kinds: publish %v, send %v, process %v", publish.SpanKind(), send.SpanKind(), process.SpanKind())
	}
	if process.SpanContext().TraceID() != traceID || process.Parent().SpanID() != publish.SpanContext().SpanID() || !process.Parent().IsRemote() {
		t.Errorf("process span: trace %s parent %s, want trace %s parent %s (remote)", process.SpanContext().TraceID(),
			process.Parent().SpanID(), traceID, publish.SpanContext().SpanID())
	}
	if bill.Parent().SpanID() != process.SpanContext().SpanID() || bill.SpanContext().TraceID() != traceID {
		t.Errorf("the handler's span is not a child of the process span")
	}
	if links := send.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != publish.SpanContext().SpanID() {
		t.Errorf("send span links = %v, want the publish span", links)
	}
	if send.SpanContext().TraceID() == traceID {
		t.Errorf("the send span is in the publish trace; it should be linked to it instead")
	}
	sid := m.ID
	if sid != strconv.FormatInt(id, 10) {
		t.Errorf("received id %q, want %d", sid, id)
	}
	wantAttrs(t, publish, map[string]any{
		"messaging.operation.type": "create", "messaging.operation.name": "publish",
		"messaging.destination.name": "order.paid", "messaging.message.id": sid,
		"messaging.message.body.size": int64(len(`{"id":1,"amount":"3.00"}`)),
	})
	wantAttrs(t, send, map[string]any{
		"messaging.operation.type": "send", "messaging.destination.name": "order.paid", "messaging.message.id": sid,
		"gocap.message.retries": int64(0),
	})
	wantAttrs(t, process, map[string]any{
		"messaging.operation.type": "process", "messaging.destination.name": "order.paid", "messaging.message.id": sid,
		"messaging.consumer.group.name": "billing", "gocap.message.retries": int64(0),
	})
	if v, _ := attrOf(process, "messaging.system"); v.AsString() == "" {
		t.Errorf("process span has no messaging.system")
	}
}

// testForeignTrace: a message from another publisher that carries a
// traceparent continues that trace; one without starts a new trace.
func testForeignTrace[TTx any](t *testing.T, be backend[TTx], tb telBroker) {
	env := be.open(t)
	tr, foreign := tb.open(t)
	k := newOtelKit(t)
	ob := newOutbox(t, env.driver(t), tr, k.options(outbox.Options{}))
	var mu sync.Mutex
	handlerSpans := map[int]trace.SpanContext{}
	if err := outbox.Subscribe(ob, "order.paid", func(ctx context.Context, m outbox.Received[orderPaid]) error {
		mu.Lock()
		defer mu.Unlock()
		handlerSpans[m.Value.ID] = trace.SpanContextFromContext(ctx)
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitConsumers(t, ob)
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	// As DotNetCore.CAP's OpenTelemetry package, or any W3C propagator, sends it.
	foreign("order.paid", map[string]string{
		"cap-msg-id": "771", "cap-msg-name": "order.paid", "traceparent": "00-" + traceID + "-" + spanID + "-01",
		"baggage": "tenant=acme",
	}, `{"id":1}`)
	foreign("order.paid", map[string]string{"cap-msg-id": "772", "cap-msg-name": "order.paid"}, `{"id":2}`)
	spans := k.waitSpans(t, "process order.paid", 2)
	for _, s := range spans {
		v, _ := attrOf(s, "messaging.message.id")
		switch v.AsString() {
		case "771":
			if s.SpanContext().TraceID().String() != traceID || s.Parent().SpanID().String() != spanID || !s.Parent().IsRemote() {
				t.Errorf("foreign traceparent not continued: trace %s parent %s", s.SpanContext().TraceID(), s.Parent().SpanID())
			}
		case "772":
			if s.Parent().IsValid() || s.SpanContext().TraceID().String() == traceID {
				t.Errorf("a message without traceparent: parent %v, trace %s; want a new trace", s.Parent(), s.SpanContext().TraceID())
			}
		default:
			t.Errorf("unexpected process span for message %q", v.AsString())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if sc := handlerSpans[1]; sc.TraceID().String() != traceID {
		t.Errorf("the handler's context is in trace %s, want %s", sc.TraceID(), traceID)
	}
}

// testTelemetryMetrics: a known workload — five messages handled, one
// handler failure retried, one message failing for good on each side —
// gives the counters and histograms their values, and the failing
// handler's span records the error and the retry.
func testTelemetryMetrics[TTx any](t *testing.T, be backend[TTx], tb telBroker) {
	env := be.open(t)
	tr, _ := tb.open(t)
	k := newOtelKit(t)
	ob := newOutbox(t, env.driver(t), tr, k.options(outbox.Options{}))
	var failedOnce sync.Once
	var handled sync.WaitGroup
	handled.Add(5)
	if err := outbox.Subscribe(ob, "order.paid", func(ctx context.Context, m outbox.Received[orderPaid]) error {
		var err error
		if m.Value.ID == 0 {
			failedOnce.Do(func() { err = errors.New("boom: the ledger is locked") })
		}
		if err == nil {
			handled.Done()
		}
		return err
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Subscribe(ob, "order.bad", func(ctx context.Context, m outbox.Received[orderPaid]) error {
		return outbox.Permanent(errors.New("never"))
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitConsumers(t, ob)
	ctx := context.Background()
	for i := range 5 {
		if _, err := ob.PublishWithoutTx(ctx, "order.paid", orderPaid{ID: i}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ob.PublishWithoutTx(ctx, "order.bad", orderPaid{ID: 9}); err != nil {
		t.Fatal(err)
	}
	// No group is bound to this topic: the broker refuses it, and it has one attempt.
	if _, err := ob.PublishWithoutTx(ctx, "nobody.listens", orderPaid{ID: 10}, outbox.WithRetry(outbox.RetryPolicy{MaxAttempts: 1})); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { handled.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the messages were not handled")
	}
	k.waitSpans(t, "process order.paid", 6)
	k.waitSpans(t, "process order.bad", 1)
	k.waitSpans(t, "send nobody.listens", 1)

	topic := func(s string) attribute.KeyValue { return attribute.String("messaging.destination.name", s) }
	group := attribute.String("messaging.consumer.group.name", "billing")
	want := []struct {
		name string
		kvs  []attribute.KeyValue
		v    float64
	}{
		{"gocap.messages.published", []attribute.KeyValue{topic("order.paid")}, 5},
		{"gocap.messages.published", nil, 7},
		{"gocap.messages.sent", []attribute.KeyValue{topic("order.paid")}, 5},
		{"gocap.messages.sent", nil, 6},
		{"gocap.messages.send.failures", []attribute.KeyValue{topic("nobody.listens"), attribute.String("error.type", "_OTHER")}, 1},
		{"gocap.messages.received", []attribute.KeyValue{topic("order.paid"), group}, 5},
		{"gocap.messages.handled", []attribute.KeyValue{topic("order.paid"), group}, 5},
		{"gocap.messages.handler.failures", []attribute.KeyValue{topic("order.paid"), group, attribute.String("error.type", "_OTHER")}, 1},
		{"gocap.messages.handler.failures", []attribute.KeyValue{topic("order.bad"), attribute.String("error.type", "permanent")}, 1},
		{"gocap.messages.failed", []attribute.KeyValue{attribute.String("gocap.table", "received"), topic("order.bad"), group}, 1},
		{"gocap.messages.failed", []attribute.KeyValue{attribute.String("gocap.table", "published"), topic("nobody.listens")}, 1},
		{"gocap.messages.sent.latency", []attribute.KeyValue{topic("order.paid")}, 5},
		{"messaging.client.operation.duration", []attribute.KeyValue{topic("order.paid"), attribute.String("messaging.operation.name", "send")}, 5},
		{"messaging.process.duration", []attribute.KeyValue{topic("order.paid"), group}, 6},
		{"messaging.process.duration", []attribute.KeyValue{topic("order.paid"), attribute.String("error.type", "_OTHER")}, 1},
	}
	// The Failed outcomes are recorded after the spans end: wait for them.
	waitFor(t, 10*time.Second, "every metric at its value", func() bool {
		rm := k.collect(t)
		for _, w := range want {
			if v, _ := metricValue(rm, w.name, w.kvs...); v != w.v {
				return false
			}
		}
		return true
	})
	rm := k.collect(t)
	for _, w := range want {
		if v, ok := metricValue(rm, w.name, w.kvs...); !ok || v != w.v {
			t.Errorf("%s%v = %v (found %v), want %v", w.name, w.kvs, v, ok, w.v)
		}
	}

	// The failed run records the error, the retry its retry count.
	spans := k.ended("process order.paid")
	var failed, retried []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Status().Code == codes.Error {
			failed = append(failed, s)
		} else if v, _ := attrOf(s, "gocap.message.retries"); v.AsInt64() == 1 {
			retried = append(retried, s)
		}
	}
	if len(failed) != 1 || len(retried) != 1 {
		t.Fatalf("%d failed and %d retried process spans, want 1 and 1", len(failed), len(retried))
	}
	f := failed[0]
	if !strings.Contains(f.Status().Description, "boom") ||
		!slices.ContainsFunc(f.Events(), func(e sdktrace.Event) bool { return e.Name == "exception" }) {
		t.Errorf("failed span: status %+v, events %v; want the error recorded", f.Status(), f.Events())
	}
	wantAttrs(t, f, map[string]any{"error.type": "_OTHER", "gocap.message.retries": int64(0)})
	fid, _ := attrOf(f, "messaging.message.id")
	rid, _ := attrOf(retried[0], "messaging.message.id")
	if fid != rid || f.SpanContext().TraceID() != retried[0].SpanContext().TraceID() {
		t.Errorf("the retry is not of the failed message in its trace")
	}
	if s := k.ended("send nobody.listens")[0]; s.Status().Code != codes.Error {
		t.Errorf("the refused send's span has status %+v", s.Status())
	}
}

// testBacklogGauge: the age of the oldest due row rises while no
// processor runs, and falls to zero once it has sent the row.
func testBacklogGauge[TTx any](t *testing.T, be backend[TTx], tb telBroker) {
	env := be.open(t)
	tr, _ := tb.open(t)
	// The subscribing service, on a database of its own, binds its queue
	// first, so that the message is routable when it is sent.
	subEnv := be.open(t)
	sub := newOutbox(t, subEnv.driver(t), tr, outbox.Options{})
	var got collector[orderPaid]
	if err := outbox.Subscribe(sub, "order.paid", func(ctx context.Context, m outbox.Received[orderPaid]) error {
		got.add(m)
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, sub)
	waitConsumers(t, sub)

	k := newOtelKit(t)
	ob := newOutbox(t, env.driver(t), tr, k.options(outbox.Options{GaugeInterval: time.Millisecond}))
	published := attribute.String("gocap.table", "published")
	age := func() float64 {
		t.Helper()
		v, ok := metricValue(k.collect(t), "gocap.messages.backlog.age", published)
		if !ok {
			t.Fatal("no backlog age reported")
		}
		return v
	}
	if a := age(); a != 0 {
		t.Fatalf("backlog age %v on an empty table", a)
	}
	if _, err := ob.PublishWithoutTx(context.Background(), "order.paid", orderPaid{ID: 1}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	first := age()
	time.Sleep(300 * time.Millisecond)
	second := age()
	if first < 0.2 || second < first+0.2 {
		t.Fatalf("backlog age %v then %v while the processor is stopped, want rising from 0.3 s", first, second)
	}
	if v, _ := metricValue(k.collect(t), "gocap.messages.rows", published, attribute.String("gocap.status", "Scheduled")); v != 1 {
		t.Errorf("Scheduled published rows = %v, want 1", v)
	}
	run(t, ob)
	waitFor(t, 15*time.Second, "the message handled", func() bool { return got.len() == 1 })
	waitFor(t, 10*time.Second, "the row counted Succeeded", func() bool {
		v, _ := metricValue(k.collect(t), "gocap.messages.rows", published, attribute.String("gocap.status", "Succeeded"))
		return v == 1
	})
	if a := age(); a != 0 {
		t.Errorf("backlog age %v after the row was sent, want 0", a)
	}
}

// TestTelemetryHandlerPanic: a handler's panic ends its span with the
// panic as the error, and the engine still retries the message.
func TestTelemetryHandlerPanic(t *testing.T) {
	env := sqliteBackend.open(t)
	tr, _ := memoryTelBroker.open(t)
	k := newOtelKit(t)
	ob := newOutbox(t, env.driver(t), tr, k.options(outbox.Options{}))
	var once sync.Once
	done := make(chan struct{})
	if err := outbox.Subscribe(ob, "order.paid", func(ctx context.Context, m outbox.Received[orderPaid]) error {
		once.Do(func() { panic("the ledger exploded") })
		close(done)
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitConsumers(t, ob)
	if _, err := ob.PublishWithoutTx(context.Background(), "order.paid", orderPaid{ID: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the message was not handled after the panic")
	}
	spans := k.waitSpans(t, "process order.paid", 2)
	var panicked int
	for _, s := range spans {
		if s.Status().Code == codes.Error && strings.Contains(s.Status().Description, "panic: the ledger exploded") {
			panicked++
		}
	}
	if panicked != 1 {
		t.Errorf("%d process spans record the panic, want 1", panicked)
	}
}
