// Package redisstreams is gocap's Redis Streams transport, on go-redis
// (github.com/redis/go-redis/v9), laid out on Redis as DotNetCore.CAP's
// Redis Streams transport lays it out (src/DotNetCore.CAP.RedisStreams/ in
// github.com/dotnetcore/CAP), so that CAP services and gocap share streams:
//
//   - One stream per topic, whose key is the topic name
//     (ITransport.Redis.cs: PublishAsync(message.GetName(), ...)), with
//     Config.StreamPrefix before it if set (CAP has none).
//   - One entry per message (XADD key * ...), with two fields
//     (TransportMessage.Redis.cs): "headers", the headers as a JSON
//     object, and "body", the body as a JSON string of its base64
//     encoding — CAP serializes the byte array with System.Text.Json, so
//     the field holds `"eyJpZCI6NDJ9"`, quotes included, not the raw
//     bytes. Entries from other publishers are accepted too (see
//     delivery in entry.go: a plain body is taken as it is).
//   - One consumer group per gocap group on every stream it consumes,
//     created with XGROUP CREATE key group $ MKSTREAM as CAP creates it
//     (IRedisStream.Manager.Extensions.cs: StreamPosition.NewMessages):
//     a new group receives the entries added after it was created, not the
//     stream's history; an existing group keeps its position.
//   - Entries are read with XREADGROUP ... STREAMS key... > and
//     acknowledged with XACK once the handler returned nil
//     (IConsumerClient.Redis.cs: CommitAsync).
//
// Where gocap differs from CAP, it is so that nothing is lost or stuck:
//
//   - Consumer names. CAP names every consumer of a group after the group,
//     so all its instances share one pending list. gocap names each
//     consumer Config.Consumer (by default host name, process id and a
//     random suffix; "-2", "-3" for a second and third concurrent Consume
//     of one group in a process), so that Redis knows which process holds
//     which entry.
//   - Failed deliveries. CAP leaves an entry whose handler failed pending
//     until its process restarts. gocap claims its own pending entries
//     again (XPENDING, then XCLAIM) once they have been idle
//     Config.RetryDelay, without holding up the new entries meanwhile.
//   - Dead consumers. Entries a consumer read and never acknowledged (it
//     crashed) are taken over by a live consumer of the group with
//     XAUTOCLAIM once idle Config.ClaimIdle. CAP has no such step.
//   - Trimming. CAP adds entries without trimming. Config.MaxLen, if set,
//     trims each stream at XADD to about that many entries (MAXLEN ~).
//     Redis trims regardless of consumer groups: an entry a group has not
//     read yet is lost when trimmed, so set it above the largest backlog a
//     group may have. An entry trimmed while pending is dropped from the
//     pending list by XCLAIM/XAUTOCLAIM (Redis ≥ 7).
//   - Topic patterns. Redis Streams have no wildcards, and CAP subscribes
//     to concrete stream names only. Consume refuses a topic pattern with
//     '*' or '#' with an error naming it, instead of consuming a stream
//     literally named "order.*".
//
// Ordering: one stream is ordered, and a single consumer of a group
// receives its entries in that order. Several consumers of one group share
// a stream's entries and handle them concurrently, so the order across
// them does not hold; nor does it for an entry redelivered after a failure
// or claimed from a dead consumer.
//
// Sending: the entry id XADD returns is Redis's confirmation (the entry is
// in the server's memory, and on disk as the server's AOF/RDB settings
// make it). SendBatch pipelines its XADDs in one round trip and reports
// each one's outcome. A send that failed because Redis could not be
// reached (a dial error, a broken connection, the pool timing out, or a
// server that is loading, read-only after a failover, down in a cluster,
// busy with a script, without enough replicas) wraps
// transport.ErrUnavailable: it is not an attempt. A message Redis can never
// take — an XADD refused with WRONGTYPE (the stream's key holds another
// type) or an ERR reply, or a message that cannot be encoded (an empty
// topic, a header that is not valid UTF-8) — fails with a permanent
// *RefusedError naming the stream: the outbox marks it Failed at once. A
// refusal that may pass with the message unchanged — OOM (maxmemory
// reached with the noeviction policy), MISCONF (snapshots failing),
// NOAUTH, WRONGPASS or NOPERM (credentials and ACL, which an operator
// fixes), MOVED or ASK (a cluster's redirect the client did not follow:
// slots moving, or a plain client on one node of a cluster, which needs
// a cluster client) — is a failed attempt, retried by the message's
// policy.
//
// Receiving: ConsumeBatch (transport.BatchReceiver) hands over the entries
// one XREADGROUP returned, and more that arrive within the linger, in
// batches. A handler result of nil acknowledges an entry (XACK),
// transport.Discard acknowledges it too (after logging it); any other
// error leaves it pending, to be claimed again after Config.RetryDelay.
// After a connection loss Consume reconnects with a backoff of at most
// Config.ReconnectMax (1s by default). Several topics of one Consume are
// read with one XREADGROUP, so on a Redis Cluster they must share a hash
// slot (Redis answers CROSSSLOT otherwise, and Consume returns that error).
package redisstreams

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/internal/adapter"
)

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("redisstreams: transport closed")

// Config configures a [Transport]. Client or Options says how to reach
// Redis; every other field has a default.
type Config struct {
	// Client is the Redis client to use (a *redis.Client, a cluster or
	// failover client). Close does not close it: its owner does.
	Client redis.UniversalClient
	// Options are used to make a client when Client is nil: address,
	// password, DB, TLS (TLSConfig) and the rest of go-redis's options.
	// Close closes that client.
	Options *redis.UniversalOptions
	// StreamPrefix is put before a topic to name its stream. Empty (CAP's
	// layout) means the stream is named after the topic.
	StreamPrefix string
	// Consumer names this process's consumers in their groups. Empty means
	// host name, process id and 8 random hex digits ("web-1-4242-9f0c1a2b"):
	// unique, so that the entries a process holds are its own, and claimed
	// by others after ClaimIdle if it dies. A stable name (a pod name) lets
	// a restarted process take its pending entries back at once.
	Consumer string
	// Block is how long one XREADGROUP waits for new entries. An entry
	// that arrives ends the wait at once, so it does not delay delivery; it
	// bounds how long an idle consumer takes to see its retries due and
	// its context end: go-redis applies a context's deadline to a command
	// (with ContextTimeoutEnabled) but does not interrupt a blocking read
	// when the context is cancelled, so stopping a consumer waits up to
	// Block.
	// Zero means 1s, the same bound as the reconnect backoff.
	Block time.Duration
	// BatchSize is the COUNT of an XREADGROUP: how many entries of a
	// stream one read takes, and the largest batch of ConsumeBatch called
	// with max ≤ 0. Zero means 100, the batch gocap's processor asks
	// ConsumeBatch for (one multi-row insert stores it).
	BatchSize int
	// MaxLen, if positive, trims each stream to about MaxLen entries at
	// every XADD (MAXLEN ~: whole macro nodes, which is cheap). Zero means
	// no trimming, as CAP: Redis trims entries that a group has not read
	// yet too, so only set it above the largest backlog a group may build.
	MaxLen int64
	// ClaimIdle is how long an entry read by a consumer stays pending
	// unacknowledged before another consumer of its group takes it over
	// with XAUTOCLAIM (its consumer is presumed dead). It must exceed the
	// longest time a handler takes with a batch, or live consumers' entries
	// are handled twice. Zero means 1 minute, the processor's lease
	// (outbox.Options.Lease): a crashed process's work waits as long in
	// both places. The check runs every ClaimIdle/2.
	ClaimIdle time.Duration
	// RetryDelay is how long an entry whose handler failed stays pending
	// before its consumer claims it and hands it over again, so that a
	// failing store does not spin; new entries keep flowing meanwhile.
	// Zero means 1s, as rabbitmq.Config.RequeueDelay.
	RetryDelay time.Duration
	// ReconnectMin and ReconnectMax bound the backoff of a consumer between
	// attempts while Redis cannot be reached, doubling from ReconnectMin.
	// Zero means 100ms and 1s, so a consumer resumes within about a second
	// of Redis's return. (Sends do not wait: go-redis dials on demand.)
	ReconnectMin, ReconnectMax time.Duration
	// Logger receives connection events. Nil means slog.Default().
	Logger *slog.Logger
}

// Transport is a Redis Streams transport. It is safe for concurrent use.
type Transport struct {
	cfg       Config
	client    redis.UniversalClient
	ownClient bool
	log       *slog.Logger

	closed    chan struct{}
	closeOnce sync.Once
	consumers sync.WaitGroup // running Consumes; Close waits for them

	mu    sync.Mutex
	names map[string]map[int]bool // consumer ordinals in use, by group
}

var (
	_ transport.Transport     = (*Transport)(nil)
	_ transport.BatchSender   = (*Transport)(nil)
	_ transport.BatchReceiver = (*Transport)(nil)
	_ transport.HealthChecker = (*Transport)(nil)
)

// New returns a transport for cfg and checks that Redis answers (PING,
// within 5s).
func New(cfg Config) (*Transport, error) {
	if cfg.Client == nil && cfg.Options == nil {
		return nil, errors.New("redisstreams: Config.Client and Config.Options are both nil; set one")
	}
	if cfg.MaxLen < 0 {
		return nil, fmt.Errorf("redisstreams: Config.MaxLen is %d; want 0 (no trimming) or more", cfg.MaxLen)
	}
	if cfg.Consumer == "" {
		cfg.Consumer = defaultConsumer()
	}
	if cfg.Block <= 0 {
		cfg.Block = time.Second
	}
	cfg.Block = max(cfg.Block, time.Millisecond) // BLOCK 0 would wait for ever
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	if cfg.ClaimIdle <= 0 {
		cfg.ClaimIdle = time.Minute
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = 100 * time.Millisecond
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = time.Second
	}
	cfg.ReconnectMax = max(cfg.ReconnectMax, cfg.ReconnectMin)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Transport{
		cfg: cfg, client: cfg.Client, log: cfg.Logger.With("transport", "redisstreams"),
		closed: make(chan struct{}), names: map[string]map[int]bool{},
	}
	if t.client == nil {
		opts := *cfg.Options
		opts.ContextTimeoutEnabled = true // commands honour their context's deadline
		t.client = redis.NewUniversalClient(&opts)
		t.ownClient = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.client.Ping(ctx).Err(); err != nil {
		if t.ownClient {
			t.client.Close()
		}
		return nil, fmt.Errorf("redisstreams: connecting: %w", unavailable(err))
	}
	return t, nil
}

func defaultConsumer() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "gocap"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// Stream returns the key of topic's stream.
func (t *Transport) Stream(topic string) string { return t.cfg.StreamPrefix + topic }

// Consumer returns the consumer name of the first Consume of a group (see
// Config.Consumer).
func (t *Transport) Consumer() string { return t.cfg.Consumer }

// Client returns the Redis client the transport uses.
func (t *Transport) Client() redis.UniversalClient { return t.client }

// Close ends the Consumes, waits for them to return, and closes the
// client if the transport made it; Sends fail with ErrClosed afterwards.
// It is safe to call more than once.
func (t *Transport) Close() error {
	var err error
	t.closeOnce.Do(func() {
		t.mu.Lock() // a Consume starting now either is counted or sees closed
		close(t.closed)
		t.mu.Unlock()
		t.consumers.Wait()
		if t.ownClient {
			err = t.client.Close()
		}
	})
	return err
}

func (t *Transport) isClosed() bool {
	select {
	case <-t.closed:
		return true
	default:
		return false
	}
}

// Healthy reports whether Redis answers a PING now (see
// transport.HealthChecker).
func (t *Transport) Healthy(ctx context.Context) error {
	if t.isClosed() {
		return ErrClosed
	}
	if err := t.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstreams: health: %w", unavailable(err))
	}
	return nil
}

// transientReplies are the prefixes of Redis's error replies that mean it
// cannot serve a command now but will (loading its data, a replica
// after a failover, a cluster that is down or resharding, too many
// clients, a script running, fewer replicas than min-replicas-to-write).
var transientReplies = []string{"LOADING", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "BUSY ", "NOREPLICAS", "ERR max number of clients"}

// reachable reports whether err is a reply of a Redis server that serves
// commands: an error reply, other than a transient one.
func reachable(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	for _, p := range transientReplies {
		if strings.HasPrefix(msg, p) {
			return false
		}
	}
	return true
}

// unavailable wraps with transport.ErrUnavailable an error that means
// Redis was not reached or cannot serve now (see reachable). The caller's
// context ending and Redis's refusals are returned as they are.
func unavailable(err error) error {
	return adapter.Unavailable(err, func(err error) bool { return !reachable(err) })
}

// consumerName returns the name of a new Consume of group, and the
// function that frees it: Config.Consumer for the first, with "-2", "-3"
// for concurrent others.
func (t *Transport) consumerName(group string) (string, func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	used := t.names[group]
	if used == nil {
		used = map[int]bool{}
		t.names[group] = used
	}
	n := 1
	for used[n] {
		n++
	}
	used[n] = true
	name := t.cfg.Consumer
	if n > 1 {
		name += "-" + strconv.Itoa(n)
	}
	return name, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(used, n)
	}
}
