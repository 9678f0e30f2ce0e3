package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/gocap/gocap/internal/engine"
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
)

// RetryPolicy says how often a failed send or handler run is tried again.
//
// An attempt that fails is retried at once (as soon as a processor can take
// it) ImmediateRetries times; after that it is retried every Interval, until
// MaxAttempts attempts have been made in all. The message is then Failed,
// and [Options.OnFailed] is called once for it.
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
	// DefaultRetryInterval (one minute).
	Interval time.Duration
	// MaxAttempts is the number of attempts in all, the first one included.
	// Zero means DefaultMaxAttempts (50).
	MaxAttempts int
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
	// millisecond; the primary key then rejects the second insert, so
	// Publish fails instead of losing a message. With k processes on random
	// node ids the chance that any two share one is about k²/2048; give each
	// instance its own NodeID (from a pod ordinal, say) to rule it out.
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
	// claimed it. An attempt is cancelled at half the lease, so a row is
	// never worked on by two processors at once; a row whose processor died
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

	// DefaultGroup is the consumer group of subscriptions that name none.
	DefaultGroup string
	// GroupPrefix is put before every group name.
	GroupPrefix string

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
	NotifyInterval time.Duration

	// OnFailed, if set, is called once for each message that becomes Failed
	// (DotNetCore.CAP's FailedThresholdCallback). It runs on the processor's
	// goroutine: keep it short.
	OnFailed func(ctx context.Context, f FailedMessage)
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
	r := &o.Retry
	if r.ImmediateRetries == 0 {
		r.ImmediateRetries = DefaultImmediateRetries
	} else if r.ImmediateRetries < 0 {
		r.ImmediateRetries = 0
	}
	if r.Interval == 0 {
		r.Interval = DefaultRetryInterval
	}
	if r.MaxAttempts == 0 {
		r.MaxAttempts = DefaultMaxAttempts
	}
	if r.Interval < 0 || r.MaxAttempts < 0 {
		return o, fmt.Errorf("outbox: Options.Retry: Interval %v and MaxAttempts %d must not be negative", r.Interval, r.MaxAttempts)
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
	switch {
	case o.NotifyInterval == 0:
		o.NotifyInterval = DefaultNotifyInterval
	case o.NotifyInterval < 0:
		o.NotifyInterval = 0
	}
	return o, nil
}

// engineConfig is the engine's configuration for o, which has its defaults.
func (o Options) engineConfig(store storage.Store, tr transport.Transport) engine.Config {
	node := o.NodeID
	if node == 0 {
		node = -1 // random
	}
	c := engine.Config{
		Store:              store,
		Transport:          tr,
		Logger:             o.Logger,
		NodeID:             node,
		Retry:              engine.Retry(o.Retry),
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
	}
	if o.OnFailed != nil {
		c.OnFailed = func(ctx context.Context, m *storage.Message, err error, retries int) {
			o.OnFailed(ctx, FailedMessage{Message: m, Err: err, Retries: retries})
		}
	}
	return c
}
