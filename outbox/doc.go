// Package outbox is gocap's API: [New] makes an [Outbox] over a storage
// driver and a transport; [Outbox.Publish] stores a message in the
// application's transaction; [Subscribe] registers a handler; [Outbox.Run]
// is the processor that sends, receives, retries and cleans.
//
// # Observability
//
// An outbox is instrumented with OpenTelemetry through the API alone: the
// application installs the SDK and exporters it wants, globally or in
// Options.TracerProvider, Options.MeterProvider and Options.Propagator.
// Without an SDK the instrumentation costs next to nothing.
//
// Traces follow the semantic conventions for messaging. Publish starts a
// producer span "publish {topic}" (messaging.operation.type create), a
// child of the caller's span, and writes its context into the message
// headers with the propagator (traceparent, tracestate, baggage), so it is
// stored with the row and sent on the wire. The processor's send of the
// row, later and elsewhere, is a producer span "send {topic}" of its own
// trace, linked to the publish span. On receive, the handler runs inside
// a consumer span "process {topic}" whose parent is the context the
// headers carry — from a gocap publisher, DotNetCore.CAP, or any program
// that sets traceparent — so the handler's own spans nest under it, in the
// publisher's trace; a message without one starts a new trace. A failed
// send or handler run records its error (status, exception event,
// error.type); gocap.message.retries gives the number of earlier failed
// attempts. The spans carry messaging.system, messaging.destination.name,
// messaging.message.id, messaging.consumer.group.name,
// messaging.operation.type and .name, and messaging.message.body.size.
//
// Metrics carry the topic (messaging.destination.name), the consumer
// group and error.type, never a message id: gocap.messages.published,
// .sent, .send.failures, .received, .handled, .handler.failures and
// .failed (became Failed) count messages; gocap.messages.sent.latency
// (from Publish, or a delayed message's due time, to the broker's
// confirmation), messaging.client.operation.duration (a send) and
// messaging.process.duration (a handler run) are histograms in seconds;
// the observable gauges gocap.messages.rows (rows by table and status,
// through storage.CountsOf) and gocap.messages.backlog.age (how long the
// oldest due row of each table has waited) read the storage at most once
// per Options.GaugeInterval.
//
// [Outbox.Health] reports whether Run runs, the storage answers and the
// transport reaches its broker (when it implements
// transport.HealthChecker), with the last heartbeat and the backlog;
// [Outbox.LivenessHandler] and [Outbox.ReadinessHandler] serve it to
// probes.
package outbox
