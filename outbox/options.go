package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"reflect"
	"slices"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/gocap/gocap/internal/engine"
	"github.com/gocap/gocap/internal/telemetry"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
)

// Defaults of [Options] and [RetryPolicy]: the policy of DotNetCore.CAP.
const (
	DefaultImmediateRetries   = 3
	DefaultRetryInterval      = time.Minute
	DefaultMaxAttempts        = 50
	DefaultSucceededTTL       = 24 * time.Hour
	DefaultFailedTTL          = 15 * 24 * time.Hour
	DefaultCleanInterval      = time.Hour
	DefaultCleanBatch         = 1000
	DefaultPollInterval       = time.Second
	DefaultLease              = time.Minute
	DefaultClaimBatch         = 500
	DefaultSendConcurrency    = 1000
	DefaultHandlerConcurrency = 16
	DefaultShutdownTimeout    = 30 * time.Second
	DefaultHeartbeatInterval  = 10 * time.Second
	DefaultGroup              = "gocap.default"
	DefaultNotifyInterval     = 2 * time.Millisecond
	DefaultGaugeInterval      = 10 * time.Second
)

// RetryPolicy says how often a failed send or handler run is tried again.
//
// By default (DotNetCore.CAP's policy) an attempt that fails is retried at
// once (as soon as a processor can take it) ImmediateRetries times; after
// that it is retried every Interval, until MaxAttempts attempts have been
// made in all. The message is then Failed, and [Options.OnFailed] is
// called once for it. A Schedule of explicit waits, or an exponential
// Backoff, replaces the immediate retries and the Interval.
//
// Options.Retry is the policy of every message that has none of its own;
// [WithRetry] gives one message its policy, [WithSubscriptionRetry] the
// messages received for one subscription. A message's own policy is stored
// with its row when it is published (or received), so any processor, after
// any restart, and a requeue from the dashboard, keep to it. It is stored
// with its waits in whole milliseconds: a wait (Interval, a Schedule's,
// Backoff's Initial or Max) that is positive but under 1ms is an error, in
// Options.Retry too; a fraction of a millisecond above that is dropped.
//
// Only attempts that reached the broker or the handler count. A send that
// fails because the transport cannot reach its broker (the error wraps
// transport.ErrUnavailable: not connected, reconnecting, connection lost
// before the confirm) is no attempt: the row stays Scheduled with its retry
// count unchanged and the reason as its last error, dispatch pauses, and
// the processor probes the transport at most a second apart, so delivery
// resumes within about a second of the broker's return however long the
// outage lasted.
type RetryPolicy struct {
	// ImmediateRetries is the number of retries without waiting after the
	// first failure. Zero means DefaultImmediateRetries (3); use a negative
	// number for none.
	ImmediateRetries int
	// Interval is the wait between the later retries. Zero means
	// DefaultRetryInterval (one minute); negative, or under 1ms, is an
	// error.
	Interval time.Duration
	// MaxAttempts is the number of attempts in all, the first one included.
	// In Options.Retry, zero means DefaultMaxAttempts (50), or, with a
	// Schedule, one more than its waits. WithRetry and WithSubscriptionRetry
	// need it set: below 1 is an error.
	MaxAttempts int
	// Schedule, if set, is the wait before each retry: Schedule[0] after
	// the first failure, Schedule[1] after the second, and so on; past its
	// end the last wait repeats. Every wait must be at least 1ms. See
	// NotifySchedule for the payment-notification style.
	Schedule []time.Duration
	// Backoff, if set (and Schedule is not), makes the waits grow
	// exponentially.
	Backoff *ExponentialBackoff
}

// ExponentialBackoff is a retry wait that starts at Initial and grows by
// Multiplier after each failure up to Max, each wait moved at random by up
// to ±Jitter of itself (0.1 = ±10 %) so that retries of many messages do
// not come in waves.
type ExponentialBackoff struct {
	// Initial is the wait after the first failure; must be at least 1ms.
	Initial time.Duration
	// Max caps the wait; at least Initial. Zero means Initial × 1024.
	Max time.Duration
	// Multiplier is the growth per failure; zero means 2, below 1 is an error.
	Multiplier float64
	// Jitter is the random share of each wait, 0..1.
	Jitter float64
}

// NotifySchedule is the retry schedule of payment-notification callbacks
// (WeChat Pay's): 15 s, 15 s, 30 s, 3 min, 10 min, 20 min, 30 min, 30 min,
// 30 min, 60 min, 3 h, 3 h, 3 h, 6 h, 6 h — 16 attempts over about 25 hours
// with MaxAttempts 16.
var NotifySchedule = []time.Duration{
	15 * time.Second, 15 * time.Second, 30 * time.Second, 3 * time.Minute, 10 * time.Minute,
	20 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 60 * time.Minute,
	3 * time.Hour, 3 * time.Hour, 3 * time.Hour, 6 * time.Hour, 6 * time.Hour,
}

// policy returns r as the engine's policy, with zero fields defaulted;
// explicit says that MaxAttempts must be set (a per-message or
// per-subscription policy).
func (r RetryPolicy) policy(explicit bool) (engine.Policy, error) {
	p := engine.Policy{MaxAttempts: r.MaxAttempts, ImmediateRetries: r.ImmediateRetries, Interval: r.Interval,
		Schedule: slices.Clone(r.Schedule)}
	if explicit && p.MaxAttempts < 1 {
		return p, fmt.Errorf("MaxAttempts %d: a retry policy needs MaxAttempts of at least 1", p.MaxAttempts)
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
		if len(p.Schedule) > 0 {
			p.MaxAttempts = len(p.Schedule) + 1
		}
	}
	switch {
	case p.ImmediateRetries == 0:
		p.ImmediateRetries = DefaultImmediateRetries
	case p.ImmediateRetries < 0:
		p.ImmediateRetries = 0
	}
	if p.Interval == 0 {
		p.Interval = DefaultRetryInterval
	}
	if b := r.Backoff; b != nil && len(p.Schedule) == 0 {
		eb := engine.Backoff{Initial: b.Initial, Max: b.Max, Multiplier: b.Multiplier, Jitter: b.Jitter}
		if eb.Multiplier == 0 {
			eb.Multiplier = 2
		}
		if eb.Max == 0 {
			eb.Max = eb.Initial * 1024
		}
		p.Backoff = &eb
	}
	if err := p.Validate(); err != nil {
		return p, err
	}
	return p, nil
}

// FailedMessage is passed to [Options.OnFailed] when a message has used up
// its attempts, or failed permanently.
type FailedMessage struct {
	// Message is the row as it was claimed for its last attempt; its Status
	// and Retries are those of before that attempt.
	Message *storage.Message
	// Err is the error of the last attempt.
	Err error
	// Retries is the number of failed attempts, the last one included.
	Retries int
}

// Options configure an [Outbox]. The zero value is valid: every zero field
// takes its default.
type Options struct {
	// Logger receives the processor's logs. Nil means slog.Default().
	Logger *slog.Logger

	// NodeID is the snowflake node id (1..1023) of this process, embedded in
	// every message id it makes. Zero picks one at random at New. Two
	// processes that share a node id can make the same id in the same
	// millisecond. The storage then stores nothing of the second insert and
	// reports the id taken (storage.ErrIDTaken); the outbox moves to a
	// random node, logs a warning naming both nodes, and inserts the
	// message again under a new id (at most 3 times), so that neither a
	// Publish nor a delivery fails or is lost for it, and the application's
	// transaction is not aborted. With k processes on random node ids the
	// chance that any two share one is about k²/2048; give each instance
	// its own NodeID (from a pod ordinal, say) to avoid the warnings and
	// the retried inserts.
	NodeID int64

	// Serializer turns payloads into bodies and back. Nil means JSON.
	// A []byte payload is always sent untouched.
	Serializer Serializer

	// Retry is the retry policy for sending and for handlers.
	Retry RetryPolicy

	// SucceededTTL is how long a Succeeded row is kept. Zero means one day.
	SucceededTTL time.Duration
	// FailedTTL is how long a Failed row is kept. Zero means 15 days.
	FailedTTL time.Duration
	// CleanInterval is how often expired rows are deleted. Zero means hourly.
	CleanInterval time.Duration
	// CleanBatch is how many rows one delete statement removes at most.
	CleanBatch int

	// PollInterval is how often the processor looks for due rows when
	// nothing told it of new ones. Zero means one second.
	PollInterval time.Duration
	// Lease is how long a claimed row stays reserved for the processor that
	// claimed it. A send is cancelled at half the lease, and a handler call
	// at its HandlerTimeout (below the lease), so a row is never worked on
	// by two processors at once; a row whose processor died
	// is taken by another when the lease ends. Zero means one minute.
	Lease time.Duration
	// ClaimBatch is the largest number of rows claimed by one query.
	ClaimBatch int
	// SendConcurrency is the number of messages being sent at once. Sends
	// are pipelined by the transport, so this is what lets dispatch reach
	// the broker's confirm throughput. A transport that implements
	// transport.BatchSender (RabbitMQ does) gets the claimed rows in
	// batches of up to 100, several batches at once. Zero means 1000.
	SendConcurrency int
	// HandlerConcurrency is the number of subscriber handlers running at
	// once. Zero means 16.
	HandlerConcurrency int
	// HandlerTimeout is the time each handler call has to finish (see
	// [Timeout]; [WithHandlerTimeout] sets it for one subscription). Zero
	// means half of Lease, 30 seconds by default; it must be below Lease.
	HandlerTimeout time.Duration
	// Middleware wraps every handler call of every subscription, the first
	// outermost, inside gocap's own recovery, tracing and timeout and
	// outside the subscription's WithMiddleware (see [Middleware]).
	Middleware []Middleware

	// DefaultGroup is the consumer group of subscriptions that name none.
	DefaultGroup string
	// GroupPrefix is put before every group name.
	GroupPrefix string
	// TopicPrefix, if set, is put before every topic with a dot, as
	// DotNetCore.CAP's TopicNamePrefix is (src/DotNetCore.CAP/CAP.Options.cs):
	// Publish("orders.paid") with TopicPrefix "shop" stores and sends the
	// message as "shop.orders.paid" (its Name, cap-msg-name, the routing
	// key or topic on every transport), a subscription to "orders.*"
	// subscribes to "shop.orders.*", and a reply goes to the prefixed
	// callback topic. Handlers see the prefixed name in Received.Name.
	// Services that share a database and a broker but not a prefix do not
	// see each other's messages. It must be a topic name without
	// wildcards, and a topic with the prefix and its dot at most 255 bytes
	// (see Publish): Publish and Subscribe refuse a topic that does not
	// fit with it.
	TopicPrefix string
	// Version isolates this outbox from the outboxes of other versions
	// that share its database and broker, as DotNetCore.CAP's
	// CapOptions.Version does (src/DotNetCore.CAP/CAP.Options.cs: "used to
	// isolate data between different instances or deployments"). It lets two
	// releases of a service run side by side on one database during a
	// migration, each processing its own messages:
	//
	//   - Rows carry the version (storage.Message.Version): a published row the
	//     version of the outbox that published it, a received row that of the
	//     outbox that received it. CAP writes its Version column on every
	//     insert (StoreMessageAsync and StoreReceivedMessageAsync in
	//     src/DotNetCore.CAP.PostgreSql/IDataStorage.PostgreSql.cs).
	//   - Every background query of the processor touches only rows of its
	//     version: claims of due rows (sends, handler runs, retries, due
	//     delayed messages; storage.ClaimRequest.Version) and NextDue, as CAP's
	//     GetMessagesOfNeedRetryAsync and ScheduleMessagesOfDelayedAsync
	//     filter on "Version" = @Version (same file). Succeed, Fail and
	//     Release act on leases this processor holds, so on its rows only.
	//     The health report's and the gauge's oldest due row is of the version.
	//   - Consumer groups get the suffix "." + Version, as CAP's
	//     SetSubscribeAttribute gives them
	//     (src/DotNetCore.CAP/Internal/IConsumerServiceSelector.Default.cs:
	//     group + "." + Version), so each version has its own queues (RabbitMQ)
	//     or consumer groups (Kafka) and receives every message once.
	//
	// Not isolated, as in CAP: the cleaner deletes the expired rows of every
	// version (CAP's DeleteExpiresAsync has no condition on the version), the
	// dashboard shows every version (with a filter by version), and topics
	// are shared: a message published by one version reaches the groups of
	// every version subscribed to its topic. (CAP's RabbitMQ transport also
	// suffixes the exchange name for versions other than "v1",
	// src/DotNetCore.CAP.RabbitMQ/IConnectionChannelPool.Default.cs; gocap's
	// transports do not: give each version its own exchange in the transport's
	// options for that.)
	//
	// Empty, the default, is no version: rows with the empty version and group
	// names without a suffix, as before versions existed, so existing
	// deployments are unaffected (the empty version is a version of its own:
	// an outbox with a version never takes rows without one). CAP's default
	// is "v1": set Version to "v1" to share consumer groups with CAP services
	// that keep theirs. A version has at most 20 bytes (CAP's VARCHAR(20)) of
	// ASCII letters, digits, '.', '_' and '-' (storage.CheckVersion).
	Version string

	// ShutdownTimeout bounds how long Run waits for attempts in flight when
	// its context ends. Zero means 30 seconds.
	ShutdownTimeout time.Duration
	// HeartbeatInterval is how often the processor records that it is
	// alive (shown on the dashboard). Zero means 10 seconds.
	HeartbeatInterval time.Duration
	// NotifyInterval is, for a storage that notifies processors of
	// commits (PostgreSQL's LISTEN/NOTIFY), the least time between two
	// publishes of this outbox that ask for a notification. PostgreSQL
	// commits notifying transactions one at a time, without group commit,
	// so notifying from every transaction would cap concurrent publishers
	// at one commit per WAL flush; after each notification the processor
	// polls every NotifyInterval for a while, and so finds the rows of the
	// publishes that did not notify as promptly. Should the notifying
	// transaction roll back, or commit long after the others, their rows
	// wait at most for the next notification or PollInterval. Zero means
	// 2 ms; a negative value notifies from every publish.
	//
	// Under a sustained load the processor claims and completes a batch
	// every NotifyInterval, and each batch costs the database about as
	// much as a few messages do: on a small machine a longer interval
	// (10–25 ms) buys throughput with latency (BENCHMARKS.md, "CPU time
	// per message").
	NotifyInterval time.Duration

	// OnFailed, if set, is called once for each message that becomes Failed
	// (DotNetCore.CAP's FailedThresholdCallback). It runs on the processor's
	// goroutine: keep it short.
	OnFailed func(ctx context.Context, f FailedMessage)

	// TracerProvider makes the spans of publishes, sends and handler runs
	// (see the package doc, Observability). Nil means the global one,
	// otel.GetTracerProvider(): without an SDK installed, spans cost
	// next to nothing.
	TracerProvider trace.TracerProvider
	// MeterProvider makes gocap's counters, histograms and gauges. Nil
	// means the global one, otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Propagator writes the trace context of a publish into the message
	// headers (traceparent, tracestate, baggage) and reads it from
	// received ones. Nil means the global one,
	// otel.GetTextMapPropagator(), which propagates nothing until the
	// application sets one (for example
	// propagation.NewCompositeTextMapPropagator(propagation.TraceContext{},
	// propagation.Baggage{})).
	Propagator propagation.TextMapPropagator
	// MessagingSystem is the messaging.system attribute of spans and
	// metrics. Empty means the name of the transport's package
	// ("rabbitmq", "kafka", "memory").
	MessagingSystem string
	// GaugeInterval is the least time between two storage reads of the
	// observable gauges (rows by status, age of the oldest due row),
	// however often the metrics are collected. Zero means 10 seconds.
	GaugeInterval time.Duration

	// OrderingFailure is what a message with an ordering key (see
	// WithOrderingKey) that becomes Failed does to the messages after it
	// of its key: BlockKey (the default) holds them until it is requeued
	// and succeeds, or is deleted, from the dashboard; SkipKey lets them
	// go on. It applies to sending and to handling in this process.
	OrderingFailure OrderingFailure
}

func (o Options) withDefaults() (Options, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.NodeID < 0 || o.NodeID > 1023 {
		return o, fmt.Errorf("outbox: Options.NodeID %d out of range 1..1023 (0 = random)", o.NodeID)
	}
	if o.Serializer == nil {
		o.Serializer = JSON{}
	}
	if _, err := o.Retry.policy(false); err != nil {
		return o, fmt.Errorf("outbox: Options.Retry: %w", err)
	}
	if err := o.OrderingFailure.check(); err != nil {
		return o, err
	}
	durations := []struct {
		p    *time.Duration
		def  time.Duration
		name string
	}{
		{&o.SucceededTTL, DefaultSucceededTTL, "SucceededTTL"},
		{&o.FailedTTL, DefaultFailedTTL, "FailedTTL"},
		{&o.CleanInterval, DefaultCleanInterval, "CleanInterval"},
		{&o.PollInterval, DefaultPollInterval, "PollInterval"},
		{&o.Lease, DefaultLease, "Lease"},
		{&o.ShutdownTimeout, DefaultShutdownTimeout, "ShutdownTimeout"},
		{&o.HeartbeatInterval, DefaultHeartbeatInterval, "HeartbeatInterval"},
		{&o.GaugeInterval, DefaultGaugeInterval, "GaugeInterval"},
	}
	for _, d := range durations {
		if *d.p == 0 {
			*d.p = d.def
		}
		if *d.p < 0 {
			return o, fmt.Errorf("outbox: Options.%s %v must not be negative", d.name, *d.p)
		}
	}
	ints := []struct {
		p    *int
		def  int
		name string
	}{
		{&o.CleanBatch, DefaultCleanBatch, "CleanBatch"},
		{&o.ClaimBatch, DefaultClaimBatch, "ClaimBatch"},
		{&o.SendConcurrency, DefaultSendConcurrency, "SendConcurrency"},
		{&o.HandlerConcurrency, DefaultHandlerConcurrency, "HandlerConcurrency"},
	}
	for _, n := range ints {
		if *n.p == 0 {
			*n.p = n.def
		}
		if *n.p < 0 {
			return o, fmt.Errorf("outbox: Options.%s %d must not be negative", n.name, *n.p)
		}
	}
	if o.DefaultGroup == "" {
		o.DefaultGroup = DefaultGroup
	}
	if err := o.handlerDefaults(); err != nil {
		return o, err
	}
	if err := o.checkVersion(); err != nil {
		return o, err
	}
	switch {
	case o.NotifyInterval == 0:
		o.NotifyInterval = DefaultNotifyInterval
	case o.NotifyInterval < 0:
		o.NotifyInterval = 0
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	if o.MeterProvider == nil {
		o.MeterProvider = otel.GetMeterProvider()
	}
	if o.Propagator == nil {
		o.Propagator = otel.GetTextMapPropagator()
	}
	return o, nil
}

// telemetry makes the instrumentation of an outbox on store and tr for o,
// which has its defaults.
func (o Options) telemetry(store storage.Store, tr transport.Transport) (*telemetry.Telemetry, error) {
	system := o.MessagingSystem
	if system == "" {
		system = systemOf(tr)
	}
	tel, err := telemetry.New(telemetry.Config{
		TracerProvider: o.TracerProvider,
		MeterProvider:  o.MeterProvider,
		Propagator:     o.Propagator,
		System:         system,
		Store:          store,
		Logger:         o.Logger,
		GaugeInterval:  o.GaugeInterval,
		Version:        o.Version,
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: New: %w", err)
	}
	return tel, nil
}

// systemOf names a transport's messaging system after its package:
// "rabbitmq" for transport/rabbitmq's.
func systemOf(tr transport.Transport) string {
	t := reflect.TypeOf(tr)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if p := t.PkgPath(); p != "" {
		return path.Base(p)
	}
	return "unknown"
}

// engineConfig is the engine's configuration for o, which has its defaults.
func (o Options) engineConfig(store storage.Store, tr transport.Transport, tel *telemetry.Telemetry) engine.Config {
	node := o.NodeID
	if node == 0 {
		node = -1 // random
	}
	retry, _ := o.Retry.policy(false) // checked by withDefaults
	c := engine.Config{
		Store:              store,
		Transport:          tr,
		Logger:             o.Logger,
		NodeID:             node,
		Version:            o.Version,
		Retry:              retry,
		SucceededTTL:       o.SucceededTTL,
		FailedTTL:          o.FailedTTL,
		CleanInterval:      o.CleanInterval,
		CleanBatch:         o.CleanBatch,
		PollInterval:       o.PollInterval,
		Lease:              o.Lease,
		ClaimBatch:         o.ClaimBatch,
		SendConcurrency:    o.SendConcurrency,
		HandlerConcurrency: o.HandlerConcurrency,
		ShutdownTimeout:    o.ShutdownTimeout,
		HeartbeatInterval:  o.HeartbeatInterval,
		NotifyInterval:     o.NotifyInterval,
		FailedHoldsKey:     o.OrderingFailure == BlockKey,
	}
	c.SendMiddleware = []func(engine.SendFunc) engine.SendFunc{tel.SendMiddleware}
	c.OnReceived = tel.Received
	c.OnFailed = func(ctx context.Context, m *storage.Message, err error, retries int) {
		tel.Failed(ctx, m)
		if o.OnFailed != nil {
			o.OnFailed(ctx, FailedMessage{Message: m, Err: err, Retries: retries})
		}
	}
	return c
}
