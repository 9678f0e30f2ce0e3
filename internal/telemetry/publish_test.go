package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/gocap/gocap/internal/telemetry"
	"github.com/gocap/gocap/storage"
)

// A publish stored under a new id, after its first was taken
// (storage.ErrIDTaken), ends with a span that names the id it was stored
// under.
func TestPublishSpanNamesTheStoredID(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tel, err := telemetry.New(telemetry.Config{TracerProvider: tp, MeterProvider: mp, Propagator: propagation.TraceContext{}, System: "test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	m := &storage.Message{ID: 1, MsgID: "1", Name: "orders.paid", Headers: map[string]string{}}
	_, end := tel.StartPublish(context.Background(), m)
	m.ID, m.MsgID = 2, "2"
	end(nil)
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans ended, want 1", len(spans))
	}
	for _, a := range spans[0].Attributes() {
		if a.Key == semconv.MessagingMessageIDKey {
			if got := a.Value.AsString(); got != "2" {
				t.Errorf("messaging.message.id = %q, want the stored id 2", got)
			}
			return
		}
	}
	t.Error("no messaging.message.id attribute")
}
