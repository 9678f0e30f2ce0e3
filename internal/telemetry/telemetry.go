// Package telemetry is gocap's OpenTelemetry instrumentation: the spans
// of a publish, a send and a handler run, the propagation of the trace
// context in the message headers, the counters and histograms of what the
// engine does, and the observable gauges read from the storage.
//
// It uses the OpenTelemetry API only; the application chooses the SDK and
// exporters. The outbox package builds a [Telemetry] from its Options and
// hands its middleware to the engine, which stays free of OpenTelemetry.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/gocap/gocap/internal/engine"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/wire"
)

// ScopeName is the instrumentation scope of gocap's tracer and meter.
const ScopeName = "github.com/gocap/gocap"

// Attribute keys of gocap's own, beside the semantic conventions'.
const (
	// RetriesKey is the number of earlier failed attempts of a message.
	RetriesKey = attribute.Key("gocap.message.retries")
	// TableKey is the table of a row: "published" or "received".
	TableKey = attribute.Key("gocap.table")
	// StatusKey is the status of a row (Delayed, Scheduled, Succeeded, Failed).
	StatusKey = attribute.Key("gocap.status")
)

// Operation names (messaging.operation.name) of gocap's spans.
const (
	OpPublish = "publish"
	OpSend    = "send"
	OpProcess = "process"
)

// DefaultGaugeInterval is the least time between two storage reads of
// the observable gauges.
const DefaultGaugeInterval = 10 * time.Second

// gaugeReadTimeout bounds one storage read of the gauges.
const gaugeReadTimeout = 5 * time.Second

// Config is what a Telemetry needs; every field is required but
// GaugeInterval.
type Config struct {
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator
	// System is the messaging.system attribute (rabbitmq, kafka, ...).
	System string
	// Store is read by the observable gauges.
	Store  storage.Store
	Logger *slog.Logger
	// GaugeInterval is the least time between two storage reads of the
	// gauges; zero means DefaultGaugeInterval.
	GaugeInterval time.Duration
	// Version is the outbox's version (issue #17): the oldest due row the
	// gauge reports is one of this version, which this outbox processes.
	Version string
}

// Telemetry instruments one outbox.
type Telemetry struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	system attribute.KeyValue
	log    *slog.Logger

	published, sent, sendFailures   metric.Int64Counter
	received, handled, handleFailed metric.Int64Counter
	failed                          metric.Int64Counter
	sentLatency, sendDuration       metric.Float64Histogram
	processDuration                 metric.Float64Histogram

	attrs     attrCache
	names     nameCache
	reg       metric.Registration
	closeOnce sync.Once
	gauge     gaugeReader
}

// Buckets of the duration histograms (seconds): the semantic
// conventions' for messaging, and for the publish-to-send latency the
// same stretched to ten minutes, which retries reach.
var (
	durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	latencyBuckets  = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
)

// New makes the instruments of cfg's providers and registers the
// observable gauges' callback; Close unregisters it.
func New(cfg Config) (*Telemetry, error) {
	if cfg.GaugeInterval <= 0 {
		cfg.GaugeInterval = DefaultGaugeInterval
	}
	t := &Telemetry{
		tracer: cfg.TracerProvider.Tracer(ScopeName),
		prop:   cfg.Propagator,
		system: semconv.MessagingSystemKey.String(cfg.System),
		log:    cfg.Logger,
		gauge:  gaugeReader{store: cfg.Store, interval: cfg.GaugeInterval, log: cfg.Logger, version: cfg.Version},
	}
	meter := cfg.MeterProvider.Meter(ScopeName)
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithUnit("{message}"), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string, buckets []float64) metric.Float64Histogram {
		h, err := meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(buckets...))
		errs = append(errs, err)
		return h
	}
	t.published = counter("gocap.messages.published", "Messages stored by Publish (a publish whose transaction rolls back counts too).")
	t.sent = counter("gocap.messages.sent", "Messages the broker confirmed.")
	t.sendFailures = counter("gocap.messages.send.failures", "Sends that failed, by error.type (unavailable: not counted as an attempt).")
	t.received = counter("gocap.messages.received", "Deliveries stored in the received table to be handled.")
	t.handled = counter("gocap.messages.handled", "Handler runs that succeeded.")
	t.handleFailed = counter("gocap.messages.handler.failures", "Handler runs that failed, by error.type.")
	t.failed = counter("gocap.messages.failed", "Messages that became Failed: every attempt used up, or a permanent error.")
	t.sentLatency = histogram("gocap.messages.sent.latency",
		"From Publish (or a delayed message's due time) to the broker's confirmation.", latencyBuckets)
	t.sendDuration = histogram("messaging.client.operation.duration", "Duration of a send to the broker, up to its confirmation.", durationBuckets)
	t.processDuration = histogram("messaging.process.duration", "Duration of a handler run.", durationBuckets)

	rows, err := meter.Int64ObservableGauge("gocap.messages.rows", metric.WithUnit("{row}"),
		metric.WithDescription("Rows by table and status (Succeeded may be the database's estimate on a large table)."))
	errs = append(errs, err)
	age, err := meter.Float64ObservableGauge("gocap.messages.backlog.age", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest due row not yet sent or handled, by table; 0 when none is due."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("telemetry: making the instruments: %w", err)
	}
	t.reg, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		t.gauge.observe(ctx, o, rows, age)
		return nil
	}, rows, age)
	if err != nil {
		return nil, fmt.Errorf("telemetry: registering the gauges: %w", err)
	}
	return t, nil
}

// Close unregisters the gauges' callback; later calls do nothing.
func (t *Telemetry) Close() error {
	var err error
	t.closeOnce.Do(func() {
		if t.reg != nil {
			if uerr := t.reg.Unregister(); uerr != nil {
				err = fmt.Errorf("telemetry: unregistering the gauges: %w", uerr)
			}
		}
	})
	return err
}

// carrier returns the headers as a propagation carrier.
func carrier(h map[string]string) propagation.MapCarrier { return propagation.MapCarrier(h) }

// Options of every span of a kind, made once.
var (
	producer = trace.WithSpanKind(trace.SpanKindProducer)
	consumer = trace.WithSpanKind(trace.SpanKindConsumer)
)

// StartPublish starts the producer span of a publish of m, a child of
// ctx's span, and writes its context (traceparent, tracestate, baggage)
// into m's headers, so that it is stored with the row and sent with the
// message. It returns ctx with the span, for storing the row, and end,
// which ends the span with the outcome of storing it.
//
// Attributes are set only on a span that records: without an SDK, or
// for a span the sampler dropped, a span costs its start and end alone.
func (t *Telemetry) StartPublish(ctx context.Context, m *storage.Message) (context.Context, func(error)) {
	ctx, span := t.tracer.Start(ctx, t.names.get(OpPublish, m.Name), producer)
	if span.IsRecording() {
		span.SetAttributes(
			t.system,
			semconv.MessagingOperationTypeCreate,
			semconv.MessagingOperationName(OpPublish),
			semconv.MessagingDestinationName(m.Name),
			semconv.MessagingMessageID(m.MsgID),
			semconv.MessagingMessageBodySize(len(m.Body)),
		)
	}
	if m.Headers == nil {
		m.Headers = map[string]string{}
	}
	t.prop.Inject(ctx, carrier(m.Headers))
	msgID := m.MsgID
	return ctx, func(err error) {
		if m.MsgID != msgID && span.IsRecording() {
			// Stored under a new id: the first was taken (storage.ErrIDTaken).
			span.SetAttributes(semconv.MessagingMessageID(m.MsgID))
		}
		if err != nil {
			fail(span, err)
		} else if t.published.Enabled(ctx) {
			t.published.Add(ctx, 1, t.attrs.get(attrKey{set: setTopic, topic: m.Name}, t.system))
		}
		span.End()
	}
}

// SendMiddleware wraps a send: one producer span per message, linked to
// the span of its publish (whose context its headers carry), the send
// counters and histograms.
func (t *Telemetry) SendMiddleware(next engine.SendFunc) engine.SendFunc {
	return func(ctx context.Context, ms []*storage.Message) []error {
		spans := make([]trace.Span, len(ms))
		for i, m := range ms {
			name := t.names.get(OpSend, m.Name)
			var span trace.Span
			if sc := trace.SpanContextFromContext(t.prop.Extract(context.Background(), carrier(m.Headers))); sc.IsValid() {
				_, span = t.tracer.Start(ctx, name, producer, trace.WithLinks(trace.Link{SpanContext: sc}))
			} else {
				_, span = t.tracer.Start(ctx, name, producer)
			}
			if span.IsRecording() {
				span.SetAttributes(
					t.system,
					semconv.MessagingOperationTypeSend,
					semconv.MessagingOperationName(OpSend),
					semconv.MessagingDestinationName(m.Name),
					semconv.MessagingMessageID(m.MsgID),
					semconv.MessagingMessageBodySize(len(m.Body)),
					RetriesKey.Int(m.Retries),
				)
			}
			spans[i] = span
		}
		start := time.Now()
		errs := next(ctx, ms)
		end := time.Now()
		took := end.Sub(start).Seconds()
		for i, m := range ms {
			var err error
			if i < len(errs) {
				err = errs[i]
			}
			span := spans[i]
			if err != nil {
				et := errorType(err)
				fail(span, err)
				span.SetAttributes(semconv.ErrorTypeKey.String(et))
				if t.sendFailures.Enabled(ctx) {
					t.sendFailures.Add(ctx, 1, t.attrs.get(attrKey{set: setTopic, topic: m.Name, errType: et}, t.system))
				}
				if t.sendDuration.Enabled(ctx) {
					t.sendDuration.Record(ctx, took, t.attrs.get(attrKey{set: setOpTopic, op: OpSend, topic: m.Name, errType: et}, t.system))
				}
			} else {
				if t.sent.Enabled(ctx) {
					t.sent.Add(ctx, 1, t.attrs.get(attrKey{set: setTopic, topic: m.Name}, t.system))
				}
				if t.sendDuration.Enabled(ctx) {
					t.sendDuration.Record(ctx, took, t.attrs.get(attrKey{set: setOpTopic, op: OpSend, topic: m.Name}, t.system))
				}
				if t.sentLatency.Enabled(ctx) {
					t.sentLatency.Record(ctx, end.Sub(sentFrom(m)).Seconds(), t.attrs.get(attrKey{set: setTopic, topic: m.Name}, t.system))
				}
			}
			span.End()
		}
		return errs
	}
}

// sentFrom is the time a message's delivery latency counts from: its
// due time (cap-senttime) if it was delayed, else when it was published.
func sentFrom(m *storage.Message) time.Time {
	if _, delayed := m.Headers[wire.DelayTime]; delayed {
		if t, ok := wire.ParseSentTime(m.Headers[wire.SentTime]); ok {
			return t
		}
	}
	return m.Added
}

// Handled describes a handler call for [Telemetry.StartHandle].
type Handled struct {
	// ID, Name and Group are the message id, topic and consumer group.
	ID, Name, Group string
	// Headers carry the trace context of the publish.
	Headers  map[string]string
	BodySize int
	// Retries is the number of earlier failed attempts.
	Retries int
}

// StartHandle starts the consumer span of a handler call, continuing the
// trace whose context the message's headers carry (a new trace if they
// carry none), so that the handler's own spans nest under the returned
// context's span. The returned function ends the span with the call's
// outcome and records the handler counters and histogram; call it once.
// The outbox package's tracing middleware is its one caller: the handle
// middleware in the form of every handler middleware.
func (t *Telemetry) StartHandle(ctx context.Context, m Handled) (context.Context, func(error)) {
	ctx = t.prop.Extract(ctx, carrier(m.Headers))
	ctx, span := t.tracer.Start(ctx, t.names.get(OpProcess, m.Name), consumer)
	if span.IsRecording() {
		span.SetAttributes(
			t.system,
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName(OpProcess),
			semconv.MessagingDestinationName(m.Name),
			semconv.MessagingConsumerGroupName(m.Group),
			semconv.MessagingMessageID(m.ID),
			semconv.MessagingMessageBodySize(m.BodySize),
			RetriesKey.Int(m.Retries),
		)
	}
	start := time.Now()
	return ctx, func(err error) { t.handleEnd(ctx, span, m.Name, m.Group, start, err) }
}

func (t *Telemetry) handleEnd(ctx context.Context, span trace.Span, name, group string, start time.Time, err error) {
	took := time.Since(start).Seconds()
	if err != nil {
		et := errorType(err)
		fail(span, err)
		span.SetAttributes(semconv.ErrorTypeKey.String(et))
		if t.handleFailed.Enabled(ctx) {
			t.handleFailed.Add(ctx, 1, t.attrs.get(attrKey{set: setGroup, topic: name, group: group, errType: et}, t.system))
		}
		if t.processDuration.Enabled(ctx) {
			t.processDuration.Record(ctx, took,
				t.attrs.get(attrKey{set: setOpGroup, op: OpProcess, topic: name, group: group, errType: et}, t.system))
		}
	} else {
		if t.handled.Enabled(ctx) {
			t.handled.Add(ctx, 1, t.attrs.get(attrKey{set: setGroup, topic: name, group: group}, t.system))
		}
		if t.processDuration.Enabled(ctx) {
			t.processDuration.Record(ctx, took, t.attrs.get(attrKey{set: setOpGroup, op: OpProcess, topic: name, group: group}, t.system))
		}
	}
	span.End()
}

// Received counts a delivery stored to be handled.
func (t *Telemetry) Received(m *storage.Message) {
	ctx := context.Background()
	if t.received.Enabled(ctx) {
		t.received.Add(ctx, 1, t.attrs.get(attrKey{set: setGroup, topic: m.Name, group: m.Group}, t.system))
	}
}

// Failed counts a message that became Failed.
func (t *Telemetry) Failed(ctx context.Context, m *storage.Message) {
	if t.failed.Enabled(ctx) {
		t.failed.Add(ctx, 1, t.attrs.get(attrKey{set: setTable, kind: m.Kind, topic: m.Name, group: m.Group}, t.system))
	}
}

// fail records err on span.
func fail(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// errorType is the error.type of a failed send or handler run: a few
// values, so that metrics keep a bounded cardinality.
func errorType(err error) string {
	switch {
	case errors.Is(err, transport.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case engine.IsPermanent(err):
		return "permanent"
	default:
		return "_OTHER"
	}
}

// attrCache keeps the attribute sets of the measurements, so that a
// measurement costs no allocation once its topic has been seen. It is
// bounded: past maxCached sets, new ones are made for each measurement.
type attrCache struct {
	mu   sync.RWMutex
	sets map[attrKey]metric.MeasurementOption
}

const maxCached = 10000

// attrSet names the attributes a set holds beside messaging.system and
// the topic (and error.type, when errType is set).
type attrSet uint8

const (
	setTopic   attrSet = iota + 1 // the topic
	setOpTopic                    // the operation name and the topic
	setGroup                      // the topic and the consumer group
	setOpGroup                    // the operation name, topic and group
	setTable                      // the table, topic and group (if any)
)

type attrKey struct {
	set              attrSet
	kind             storage.Kind
	op, topic, group string
	errType          string
}

func (c *attrCache) get(k attrKey, sys attribute.KeyValue) metric.MeasurementOption {
	c.mu.RLock()
	o, ok := c.sets[k]
	c.mu.RUnlock()
	if ok {
		return o
	}
	kvs := []attribute.KeyValue{sys, semconv.MessagingDestinationName(k.topic)}
	switch k.set {
	case setOpTopic:
		kvs = append(kvs, semconv.MessagingOperationName(k.op))
	case setGroup:
		kvs = append(kvs, semconv.MessagingConsumerGroupName(k.group))
	case setOpGroup:
		kvs = append(kvs, semconv.MessagingOperationName(k.op), semconv.MessagingConsumerGroupName(k.group))
	case setTable:
		kvs = append(kvs, TableKey.String(k.kind.String()))
		if k.group != "" {
			kvs = append(kvs, semconv.MessagingConsumerGroupName(k.group))
		}
	}
	if k.errType != "" {
		kvs = append(kvs, semconv.ErrorTypeKey.String(k.errType))
	}
	o = metric.WithAttributeSet(attribute.NewSet(kvs...))
	c.mu.Lock()
	if c.sets == nil {
		c.sets = map[attrKey]metric.MeasurementOption{}
	}
	if len(c.sets) < maxCached {
		c.sets[k] = o
	}
	c.mu.Unlock()
	return o
}

// nameCache keeps the span names ("send order.paid") by operation and
// topic, bounded as attrCache is.
type nameCache struct {
	mu    sync.RWMutex
	names map[[2]string]string
}

func (c *nameCache) get(op, topic string) string {
	k := [2]string{op, topic}
	c.mu.RLock()
	n, ok := c.names[k]
	c.mu.RUnlock()
	if ok {
		return n
	}
	n = op + " " + topic
	c.mu.Lock()
	if c.names == nil {
		c.names = map[[2]string]string{}
	}
	if len(c.names) < maxCached {
		c.names[k] = n
	}
	c.mu.Unlock()
	return n
}
