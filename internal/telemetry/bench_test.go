package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gocap/gocap/internal/engine"
	"github.com/gocap/gocap/internal/telemetry"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/wire"
)

// The cost of the instrumentation itself, per message, without a
// database or broker: a send of a batch of 100 rows and a handler run
// through the middleware, and the span and header injection of a
// publish. "none" is the engine without the middleware; "noop" the
// global providers with no SDK installed (the default); "sdk" the SDK
// recording every span into a batch span processor whose exporter drops
// them, and every metric.

type variant struct {
	name string
	tel  func(b *testing.B) *telemetry.Telemetry // nil: no instrumentation
}

func variants() []variant {
	mk := func(b *testing.B, sdk bool) *telemetry.Telemetry {
		cfg := telemetry.Config{
			TracerProvider: otel.GetTracerProvider(), MeterProvider: otel.GetMeterProvider(),
			Propagator: otel.GetTextMapPropagator(), System: "bench",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		if sdk {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
				sdktrace.WithBatcher(tracetest.NewNoopExporter()))
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			b.Cleanup(func() { tp.Shutdown(context.Background()); mp.Shutdown(context.Background()) })
			cfg.TracerProvider, cfg.MeterProvider, cfg.Propagator = tp, mp, propagation.TraceContext{}
		}
		t, err := telemetry.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { t.Close() })
		return t
	}
	return []variant{
		{"none", nil},
		{"noop", func(b *testing.B) *telemetry.Telemetry { return mk(b, false) }},
		{"sdk", func(b *testing.B) *telemetry.Telemetry { return mk(b, true) }},
	}
}

func rows(n int) []*storage.Message {
	ms := make([]*storage.Message, n)
	now := time.Now().UTC()
	for i := range ms {
		id := int64(1_000_000 + i)
		ms[i] = &storage.Message{ID: id, Kind: storage.Published, MsgID: strconv.FormatInt(id, 10), Name: "order.paid",
			Headers: wire.Published(id, "order.paid", "OrderPaid", now, map[string]string{
				"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}),
			Body: []byte(`{"id":12345,"amount":"9.90"}`), Added: now}
	}
	return ms
}

// BenchmarkSend reports the cost per message of a batch of 100 sends.
func BenchmarkSend(b *testing.B) {
	for _, v := range variants() {
		b.Run(v.name, func(b *testing.B) {
			ms := rows(100)
			errs := make([]error, len(ms))
			send := engine.SendFunc(func(ctx context.Context, ms []*storage.Message) []error { return errs })
			if v.tel != nil {
				send = v.tel(b).SendMiddleware(send)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				send(ctx, ms)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ms)), "ns/msg")
		})
	}
}

// BenchmarkHandle reports the cost of a handler run.
func BenchmarkHandle(b *testing.B) {
	for _, v := range variants() {
		b.Run(v.name, func(b *testing.B) {
			m := rows(1)[0]
			m.Kind, m.Group = storage.Received, "billing"
			handle := func(ctx context.Context, m *storage.Message) error { return nil }
			if v.tel != nil {
				tel, next := v.tel(b), handle
				handle = func(ctx context.Context, m *storage.Message) error {
					ctx, end := tel.StartHandle(ctx, telemetry.Handled{ID: m.MsgID, Name: m.Name, Group: m.Group,
						Headers: m.Headers, BodySize: len(m.Body), Retries: m.Retries})
					err := next(ctx, m)
					end(err)
					return err
				}
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				handle(ctx, m)
			}
		})
	}
}

// BenchmarkPublish reports the cost of a publish's span and header
// injection.
func BenchmarkPublish(b *testing.B) {
	for _, v := range variants()[1:] {
		b.Run(v.name, func(b *testing.B) {
			tel := v.tel(b)
			m := rows(1)[0]
			delete(m.Headers, "traceparent")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_, end := tel.StartPublish(ctx, m)
				end(nil)
			}
		})
	}
}
