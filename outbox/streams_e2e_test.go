package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/testproxy"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/wire"
)

// The end-to-end cases of the transports on a streaming broker (NATS
// JetStream, Redis Streams), through publishing and subscribing outboxes
// on real databases. Each transport gives a streamKit (nats_e2e_test.go,
// redis_e2e_test.go); the cases below are the same for both.

// Short broker-side timeouts of the tests' transports: a delivery a cut-off
// subscriber held comes to another subscriber of its group after this
// (NATS: Config.AckWait; Redis: Config.ClaimIdle).
const streamTakeover = 2 * time.Second

// rawMessage is a message as a plain client of the broker reads it.
type rawMessage struct {
	headers map[string]string
	body    []byte
}

// streamNamespace is one test's isolated streams, subjects, keys and
// groups on a real broker.
type streamNamespace struct {
	// addr is the broker's host:port, for a testproxy.
	addr string
	// transport returns a new transport (a connection of its own, as
	// another process has) on the namespace; through proxy when not nil.
	transport func(t testing.TB, proxy *testproxy.Proxy) transport.Transport
	// publish sends a message as a foreign program does: a plain client,
	// the headers as DotNetCore.CAP writes them. withBrokerID false leaves
	// out what makes the broker itself drop a duplicate (NATS's
	// Nats-Msg-Id), as a publisher outside the duplicate window would.
	publish func(t testing.TB, topic string, headers map[string]string, body []byte, withBrokerID bool)
	// stored returns how many messages the broker holds for topic.
	stored func(t testing.TB, topic string) int
	// last returns the newest message on topic, read with a plain client.
	last func(t testing.TB, topic string) (rawMessage, bool)
	// ready reports whether group consumes topic on the broker (its
	// consumer or consumer group exists), so that a publish reaches it.
	ready func(t testing.TB, topic, group string) bool
	// deliveries returns how many deliveries of topic the broker made to
	// group, redeliveries included, and how many of them are not yet
	// acknowledged.
	deliveries func(t testing.TB, topic, group string) (delivered, unacked int)
}

// streamKit opens namespaces on one broker.
type streamKit struct {
	name string
	open func(t testing.TB) *streamNamespace
}

// runStreamE2E runs the end-to-end cases of kit on each backend.
func runStreamE2E(t *testing.T, kit streamKit) {
	t.Run("postgres", func(t *testing.T) { runStreamCases(t, kit, postgresBackend) })
	t.Run("sqlite", func(t *testing.T) { runStreamCases(t, kit, sqliteBackend) })
}

func runStreamCases[TTx any](t *testing.T, kit streamKit, be backend[TTx]) {
	t.Run("CommitDeliveredToEachGroupOnce", func(t *testing.T) { testStreamDelivery(t, kit, be) })
	t.Run("HandlerRetriesAndFailure", func(t *testing.T) { testStreamRetries(t, kit, be) })
	t.Run("DuplicateHandledOnce", func(t *testing.T) { testStreamDuplicate(t, kit, be) })
	t.Run("ForeignPublisherAndReply", func(t *testing.T) { testStreamForeignReply(t, kit, be) })
	t.Run("BrokerOutage", func(t *testing.T) { testStreamOutage(t, kit, be) })
	t.Run("SubscriberCutOff", func(t *testing.T) { testStreamSubscriberCutOff(t, kit, be) })
}

// awaitReady waits until each group consumes topic on the broker.
func awaitReady(t *testing.T, ns *streamNamespace, topic string, groups ...string) {
	t.Helper()
	waitFor(t, 15*time.Second, "the consumers of "+topic, func() bool {
		for _, g := range groups {
			if !ns.ready(t, topic, g) {
				return false
			}
		}
		return true
	})
}

// handledLog records each (group, message id) a handler ran for.
type handledLog struct {
	mu    sync.Mutex
	calls map[string]map[string]int // group → message id → calls
	at    map[string]time.Time      // message id → first call
}

func newHandledLog() *handledLog {
	return &handledLog{calls: map[string]map[string]int{}, at: map[string]time.Time{}}
}

func (l *handledLog) add(group, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls[group] == nil {
		l.calls[group] = map[string]int{}
	}
	l.calls[group][id]++
	if _, ok := l.at[id]; !ok {
		l.at[id] = time.Now()
	}
}

func (l *handledLog) count(group, id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls[group][id]
}

// distinct returns how many distinct messages group handled.
func (l *handledLog) distinct(group string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.calls[group])
}

func (l *handledLog) firstAt(id string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.at[id]
	return at, ok
}

// subscribeLog subscribes group to topic with a handler that records each
// call in log.
func subscribeLog[TTx any](t *testing.T, ob *outbox.Outbox[TTx], topic, group string, log *handledLog) {
	t.Helper()
	if err := outbox.Subscribe(ob, topic, func(_ context.Context, m outbox.Received[orderPaid]) error {
		log.add(group, m.ID)
		return nil
	}, outbox.Group(group)); err != nil {
		t.Fatal(err)
	}
}

// commitPublish publishes v on topic in a transaction of env with a
// business row, commits it, and returns the message id as text.
func commitPublish[TTx any](t *testing.T, env dbEnv[TTx], ob *outbox.Outbox[TTx], topic string, v orderPaid) string {
	t.Helper()
	tx, commit, _ := env.begin(t)
	env.exec(t, tx, "order "+strconv.Itoa(v.ID))
	id, err := ob.Publish(context.Background(), tx, topic, v)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	return strconv.FormatInt(id, 10)
}

// testStreamDelivery: a publishing service commits messages (and rolls
// one back); a subscribing service's two groups each handle every
// committed message exactly once, and never the rolled back one.
func testStreamDelivery[TTx any](t *testing.T, kit streamKit, be backend[TTx]) {
	ns := kit.open(t)
	pubEnv, subEnv := be.open(t), be.open(t)
	pub := newOutbox(t, pubEnv.driver(t), ns.transport(t, nil), outbox.Options{})
	sub := newOutbox(t, subEnv.driver(t), ns.transport(t, nil), outbox.Options{})
	log := newHandledLog()
	subscribeLog(t, sub, "order.paid", "billing", log)
	subscribeLog(t, sub, "order.paid", "shipping", log)
	run(t, pub)
	run(t, sub)
	awaitReady(t, ns, "order.paid", "billing", "shipping")

	const n = 10
	var committed []string
	var rolledBack int64
	for i := range n {
		committed = append(committed, commitPublish(t, pubEnv, pub, "order.paid", orderPaid{ID: i, Amount: "1.00"}))
		if i == n/2 {
			tx, _, rollback := pubEnv.begin(t)
			id, err := pub.Publish(context.Background(), tx, "order.paid", orderPaid{ID: 999})
			if err != nil {
				t.Fatal(err)
			}
			if err := rollback(); err != nil {
				t.Fatal(err)
			}
			rolledBack = id
		}
	}
	waitFor(t, 20*time.Second, "both groups handled every committed message", func() bool {
		return log.distinct("billing") >= n && log.distinct("shipping") >= n
	})
	time.Sleep(500 * time.Millisecond) // room for a second delivery or the rolled back message
	for _, g := range []string{"billing", "shipping"} {
		for _, id := range committed {
			if c := log.count(g, id); c != 1 {
				t.Errorf("group %s handled message %s %d times, want once", g, id, c)
			}
		}
		if d := log.distinct(g); d != n {
			t.Errorf("group %s handled %d distinct messages, want %d (the rolled back one is %d)", g, d, n, rolledBack)
		}
		if c := log.count(g, strconv.FormatInt(rolledBack, 10)); c != 0 {
			t.Errorf("group %s handled the rolled back message %d times", g, c)
		}
		if delivered, unacked := ns.deliveries(t, "order.paid", g); delivered != n || unacked != 0 {
			t.Errorf("group %s: the broker made %d deliveries, %d unacknowledged; want %d, 0", g, delivered, unacked, n)
		}
	}
	if got := ns.stored(t, "order.paid"); got != n {
		t.Errorf("the broker holds %d messages of order.paid, want %d", got, n)
	}
	ctx := context.Background()
	waitFor(t, 10*time.Second, "every published row Succeeded", func() bool {
		c, err := pub.Store().Counts(ctx, storage.Published)
		return err == nil && c[storage.StatusSucceeded] == n
	})
	waitFor(t, 10*time.Second, "every received row Succeeded", func() bool {
		c, err := sub.Store().Counts(ctx, storage.Received)
		return err == nil && c[storage.StatusSucceeded] == 2*n
	})
}

// testStreamRetries: a handler that fails twice succeeds on its third
// attempt; one that always fails ends Failed after the policy's attempts,
// and the broker delivered each message once and has nothing
// unacknowledged: the retries are the outbox's, never the broker's.
func testStreamRetries[TTx any](t *testing.T, kit streamKit, be backend[TTx]) {
	ns := kit.open(t)
	pubEnv, subEnv := be.open(t), be.open(t)
	pub := newOutbox(t, pubEnv.driver(t), ns.transport(t, nil), outbox.Options{})
	var failed atomic.Int32
	sub := newOutbox(t, subEnv.driver(t), ns.transport(t, nil), outbox.Options{
		OnFailed: func(context.Context, outbox.FailedMessage) { failed.Add(1) },
	})
	var flaky, broken atomic.Int32
	if err := outbox.Subscribe(sub, "order.paid", func(context.Context, outbox.Received[orderPaid]) error {
		if flaky.Add(1) <= 2 {
			return errors.New("database busy")
		}
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Subscribe(sub, "order.refunded", func(context.Context, outbox.Received[orderPaid]) error {
		broken.Add(1)
		return errors.New("refund service rejects it")
	}, outbox.Group("billing"), outbox.WithSubscriptionRetry(outbox.RetryPolicy{ImmediateRetries: 3, MaxAttempts: 3})); err != nil {
		t.Fatal(err)
	}
	run(t, pub)
	run(t, sub)
	awaitReady(t, ns, "order.paid", "billing")
	awaitReady(t, ns, "order.refunded", "billing")
	paid := commitPublish(t, pubEnv, pub, "order.paid", orderPaid{ID: 1})
	refunded := commitPublish(t, pubEnv, pub, "order.refunded", orderPaid{ID: 2})

	ctx := context.Background()
	row := func(id string) *storage.Message {
		rows, err := sub.Store().List(ctx, storage.Filter{Kind: storage.Received, MsgID: id})
		if err != nil || len(rows) != 1 {
			return nil
		}
		return rows[0]
	}
	waitFor(t, 20*time.Second, "the flaky handler's message Succeeded", func() bool {
		r := row(paid)
		return r != nil && r.Status == storage.StatusSucceeded
	})
	if r := row(paid); r.Retries != 2 || r.LastError != "database busy" || flaky.Load() != 3 {
		t.Errorf("flaky handler: retries %d, last error %q, calls %d; want 2, database busy, 3", r.Retries, r.LastError, flaky.Load())
	}
	waitFor(t, 20*time.Second, "the broken handler's message Failed", func() bool {
		r := row(refunded)
		return r != nil && r.Status == storage.StatusFailed
	})
	waitFor(t, 5*time.Second, "OnFailed", func() bool { return failed.Load() > 0 })
	// Longer than the broker's redelivery of an unacknowledged delivery.
	time.Sleep(streamTakeover + time.Second)
	if r := row(refunded); r.Retries != 3 || broken.Load() != 3 || failed.Load() != 1 {
		t.Errorf("broken handler: retries %d, calls %d, OnFailed %d; want 3, 3, 1", r.Retries, broken.Load(), failed.Load())
	}
	for _, topic := range []string{"order.paid", "order.refunded"} {
		if delivered, unacked := ns.deliveries(t, topic, "billing"); delivered != 1 || unacked != 0 {
			t.Errorf("%s: the broker made %d deliveries, %d unacknowledged; want 1, 0", topic, delivered, unacked)
		}
	}
	if c, err := sub.Store().Counts(ctx, storage.Received); err != nil || c[storage.StatusSucceeded] != 1 || c[storage.StatusFailed] != 1 {
		t.Errorf("received rows %v (%v), want 1 Succeeded and 1 Failed", c, err)
	}
}

// testStreamDuplicate: the same CAP message put on the broker twice (the
// broker cannot tell: the second copy has no broker-side id) is handled
// once per group; another message is handled too.
func testStreamDuplicate[TTx any](t *testing.T, kit streamKit, be backend[TTx]) {
	ns := kit.open(t)
	env := be.open(t)
	sub := newOutbox(t, env.driver(t), ns.transport(t, nil), outbox.Options{})
	log := newHandledLog()
	subscribeLog(t, sub, "order.paid", "billing", log)
	subscribeLog(t, sub, "order.paid", "shipping", log)
	run(t, sub)
	awaitReady(t, ns, "order.paid", "billing", "shipping")
	capHeaders := func(id string) map[string]string {
		return map[string]string{
			wire.MsgID: id, wire.MsgName: "order.paid", wire.MsgType: "OrderPaid",
			wire.SentTime: "11/25/2026 10:30:00 +08:00", wire.CorrelationID: id, wire.CorrelationSeq: "0",
		}
	}
	ns.publish(t, "order.paid", capHeaders("2125444000991662080"), []byte(`{"id":42}`), true)
	ns.publish(t, "order.paid", capHeaders("2125444000991662080"), []byte(`{"id":42}`), false)
	ns.publish(t, "order.paid", capHeaders("2125444000991662081"), []byte(`{"id":43}`), true)
	if got := ns.stored(t, "order.paid"); got != 3 {
		t.Fatalf("the broker holds %d messages, want 3 (the duplicate stored twice)", got)
	}
	waitFor(t, 15*time.Second, "both messages handled by both groups", func() bool {
		return log.distinct("billing") == 2 && log.distinct("shipping") == 2
	})
	waitFor(t, 10*time.Second, "every delivery acknowledged", func() bool {
		for _, g := range []string{"billing", "shipping"} {
			if delivered, unacked := ns.deliveries(t, "order.paid", g); delivered != 3 || unacked != 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond)
	for _, g := range []string{"billing", "shipping"} {
		for _, id := range []string{"2125444000991662080", "2125444000991662081"} {
			if c := log.count(g, id); c != 1 {
				t.Errorf("group %s handled message %s %d times, want once", g, id, c)
			}
		}
	}
	c, err := sub.Store().Counts(context.Background(), storage.Received)
	if err != nil || c[storage.StatusSucceeded] != 4 || len(receivedRows(t, sub.Store())) != 4 {
		t.Errorf("received rows %v (%v), want 4 (2 messages × 2 groups), Succeeded", c, err)
	}
}

type addition struct {
	A int `json:"a"`
	B int `json:"b"`
}

// testStreamForeignReply: a message written by a plain client as CAP
// writes it, asking for a reply (cap-callback-name), is handled by a typed
// subscription, and its reply arrives on the callback topic with CAP's
// correlation headers.
func testStreamForeignReply[TTx any](t *testing.T, kit streamKit, be backend[TTx]) {
	ns := kit.open(t)
	env := be.open(t)
	sub := newOutbox(t, env.driver(t), ns.transport(t, nil), outbox.Options{})
	var got atomic.Pointer[outbox.Received[addition]]
	if err := outbox.SubscribeReply(sub, "calc.add", func(_ context.Context, m outbox.Received[addition]) (total, error) {
		got.Store(&m)
		return total{Total: m.Value.A + m.Value.B}, nil
	}, outbox.Group("calculator")); err != nil {
		t.Fatal(err)
	}
	run(t, sub)
	awaitReady(t, ns, "calc.add", "calculator")
	const id = "2125444000991662099"
	ns.publish(t, "calc.add", map[string]string{
		wire.MsgID: id, wire.MsgName: "calc.add", wire.MsgType: "Addition",
		wire.SentTime: "11/25/2026 10:30:00 +08:00", wire.CorrelationID: id, wire.CorrelationSeq: "0",
		wire.CallbackName: "calc.add.result", "x-tenant": "acme",
	}, []byte(`{"a":2,"b":3}`), true)

	waitFor(t, 15*time.Second, "the foreign message handled", func() bool { return got.Load() != nil })
	m := got.Load()
	if m.ID != id || m.Name != "calc.add" || m.Group != "calculator" || m.Value != (addition{2, 3}) || m.Headers["x-tenant"] != "acme" {
		t.Errorf("handled %+v", m)
	}
	if want := time.Date(2026, 11, 25, 2, 30, 0, 0, time.UTC); !m.SentTime.Equal(want) {
		t.Errorf("sent time %v, want %v (CAP's invariant form)", m.SentTime, want)
	}
	var reply rawMessage
	waitFor(t, 15*time.Second, "the reply on calc.add.result", func() bool {
		r, ok := ns.last(t, "calc.add.result")
		reply = r
		return ok
	})
	if string(reply.body) != `{"total":5}` {
		t.Errorf("reply body %q, want {\"total\":5}", reply.body)
	}
	want := map[string]string{wire.CorrelationID: id, wire.CorrelationSeq: "1", wire.MsgName: "calc.add.result"}
	for k, v := range want {
		if reply.headers[k] != v {
			t.Errorf("reply header %s = %q, want %q (all: %v)", k, reply.headers[k], v, reply.headers)
		}
	}
	if reply.headers[wire.MsgID] == "" || reply.headers[wire.MsgID] == id {
		t.Errorf("reply cap-msg-id %q, want an id of its own", reply.headers[wire.MsgID])
	}
	waitFor(t, 10*time.Second, "the reply row Succeeded", func() bool {
		c, err := sub.Store().Counts(context.Background(), storage.Published)
		return err == nil && c[storage.StatusSucceeded] == 1
	})
}

// testStreamOutage publishes 20 messages a second for about 10 s while
// the broker is cut off from both services for 4 s: nothing is lost, no
// published row spends an attempt, and delivery to the subscriber resumes
// within a few seconds of the broker's return.
func testStreamOutage[TTx any](t *testing.T, kit streamKit, be backend[TTx]) {
	if testing.Short() {
		t.Skip("a broker outage")
	}
	ns := kit.open(t)
	proxy := testproxy.New(t, ns.addr)
	pubEnv, subEnv := be.open(t), be.open(t)
	pub := newOutbox(t, pubEnv.driver(t), ns.transport(t, proxy), outbox.Options{})
	sub := newOutbox(t, subEnv.driver(t), ns.transport(t, proxy), outbox.Options{})
	log := newHandledLog()
	subscribeLog(t, sub, "order.paid", "billing", log)
	run(t, pub)
	run(t, sub)
	awaitReady(t, ns, "order.paid", "billing")

	type published struct {
		id string
		at time.Time
	}
	var (
		pubMu sync.Mutex
		pubs  []published
	)
	stop := make(chan struct{})
	publishing := make(chan struct{})
	go func() {
		defer close(publishing)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 400; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			tx, commit, _ := pubEnv.begin(t)
			id, err := pub.Publish(context.Background(), tx, "order.paid", orderPaid{ID: i})
			if err == nil {
				err = commit()
			}
			if err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
			pubMu.Lock()
			pubs = append(pubs, published{strconv.FormatInt(id, 10), time.Now()})
			pubMu.Unlock()
		}
	}()
	const outage = 4 * time.Second
	time.Sleep(3 * time.Second)
	proxy.Down()
	down := time.Now()
	time.Sleep(outage)
	proxy.Up()
	up := time.Now()
	time.Sleep(3 * time.Second)
	close(stop)
	<-publishing

	pubMu.Lock()
	all := slices.Clone(pubs)
	pubMu.Unlock()
	waitFor(t, 30*time.Second, "every published message handled", func() bool { return log.distinct("billing") == len(all) })
	resumed := time.Duration(-1)
	during := 0
	for _, p := range all {
		if p.at.Before(down) || p.at.After(up) {
			continue
		}
		during++
		if at, ok := log.firstAt(p.id); ok && (resumed < 0 || at.Sub(up) < resumed) {
			resumed = at.Sub(up)
		}
	}
	if during < 40 {
		t.Fatalf("only %d messages were committed during the %v outage", during, outage)
	}
	t.Logf("%s: %d messages published, %d during the %v outage; delivery to the subscriber resumed %v after the broker's return",
		kit.name, len(all), during, outage, resumed.Round(time.Millisecond))
	if resumed > 5*time.Second {
		t.Errorf("delivery resumed %v after the broker's return, want within 5 s", resumed)
	}
	ctx := context.Background()
	waitFor(t, 10*time.Second, "every published row Succeeded", func() bool {
		c, err := pub.Store().Counts(ctx, storage.Published)
		return err == nil && c[storage.StatusSucceeded] == int64(len(all))
	})
	for _, p := range all {
		n, _ := strconv.ParseInt(p.id, 10, 64)
		if r := getRow(t, pub.Store(), storage.Published, n); r.Retries != 0 {
			t.Errorf("published message %s has %d retries, want 0: an unreachable broker spends no attempt", p.id, r.Retries)
		}
		if c := log.count("billing", p.id); c != 1 {
			t.Errorf("message %s handled %d times, want once", p.id, c)
		}
	}
	waitFor(t, 10*time.Second, "every received row Succeeded", func() bool {
		c, err := sub.Store().Counts(ctx, storage.Received)
		return err == nil && c[storage.StatusSucceeded] == int64(len(all))
	})
}

// holdingDriver is a real driver whose InsertReceived does not return
// until released, as a process that hangs or dies before it stored its
// deliveries: nothing it was handed is acknowledged.
type holdingDriver[TTx any] struct {
	storage.Driver[TTx]
	held    atomic.Int32
	release chan struct{}
}

func (d *holdingDriver[TTx]) InsertReceived(ctx context.Context, m *storage.Message, token int64, leaseUntil time.Time) (storage.ReceivedInsert, error) {
	d.held.Add(1)
	<-d.release
	return storage.ReceivedInsert{}, errors.New("simulated: the process died")
}

// testStreamSubscriberCutOff: a subscriber that received messages and
// stores none of them (it hangs) is cut off from the broker, as a killed
// process is, and stopped; another subscriber of its group gets every one
// of them after the broker's takeover time, and handles each once.
func testStreamSubscriberCutOff[TTx any](t *testing.T, kit streamKit, be backend[TTx]) {
	ns := kit.open(t)
	pubEnv, subEnv := be.open(t), be.open(t)
	pub := newOutbox(t, pubEnv.driver(t), ns.transport(t, nil), outbox.Options{})
	run(t, pub)

	// The first subscriber, through a proxy that plays its death.
	proxy := testproxy.New(t, ns.addr)
	hung := &holdingDriver[TTx]{Driver: subEnv.driver(t), release: make(chan struct{})}
	released := sync.OnceFunc(func() { close(hung.release) })
	t.Cleanup(released)
	first := newOutbox(t, storage.Driver[TTx](hung), ns.transport(t, proxy), outbox.Options{})
	firstLog := newHandledLog()
	subscribeLog(t, first, "order.paid", "billing", firstLog)
	ctx, cancel := context.WithCancel(context.Background())
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Run(ctx) }()
	t.Cleanup(cancel)
	awaitReady(t, ns, "order.paid", "billing")

	const n = 10
	var ids []string
	for i := range n {
		ids = append(ids, commitPublish(t, pubEnv, pub, "order.paid", orderPaid{ID: i}))
	}
	waitFor(t, 15*time.Second, "the first subscriber holding deliveries", func() bool { return hung.held.Load() > 0 })
	waitFor(t, 10*time.Second, "every message on the broker", func() bool {
		c, err := pub.Store().Counts(context.Background(), storage.Published)
		return err == nil && c[storage.StatusSucceeded] == n
	})
	// NATS: the pull consumer fetched them all; Redis: the consumer read
	// what one XREADGROUP returned, and waits in the handler.
	_, held := ns.deliveries(t, "order.paid", "billing")
	if held == 0 {
		t.Fatal("the first subscriber holds no unacknowledged delivery")
	}
	t.Logf("%s: the cut-off subscriber holds %d unacknowledged deliveries of %d", kit.name, held, n)
	proxy.Down() // its connections die with it
	cut := time.Now()
	released()
	cancel()
	select {
	case err := <-firstDone:
		if err != nil {
			t.Errorf("the first subscriber's Run: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("the first subscriber's Run did not return")
	}

	second := newOutbox(t, subEnv.driver(t), ns.transport(t, nil), outbox.Options{})
	log := newHandledLog()
	subscribeLog(t, second, "order.paid", "billing", log)
	run(t, second)
	waitFor(t, 30*time.Second, "the second subscriber handled every message", func() bool { return log.distinct("billing") == n })
	t.Logf("%s: the %d messages (%d held by the cut-off subscriber) handled by another %v after the cut (takeover time %v)",
		kit.name, n, held, time.Since(cut).Round(time.Millisecond), streamTakeover)
	waitFor(t, 10*time.Second, "every delivery acknowledged", func() bool {
		_, unacked := ns.deliveries(t, "order.paid", "billing")
		return unacked == 0
	})
	time.Sleep(300 * time.Millisecond)
	for _, id := range ids {
		if c := log.count("billing", id); c != 1 {
			t.Errorf("message %s handled %d times by the second subscriber, want once", id, c)
		}
	}
	if d := firstLog.distinct("billing"); d != 0 {
		t.Errorf("the cut-off subscriber handled %d messages; its store never returned", d)
	}
	waitFor(t, 10*time.Second, "every received row Succeeded", func() bool {
		c, err := second.Store().Counts(context.Background(), storage.Received)
		return err == nil && c[storage.StatusSucceeded] == n
	})
	if rows := receivedRows(t, second.Store()); len(rows) != n {
		t.Errorf("%d received rows, want %d", len(rows), n)
	}
}

// describe names a rawMessage in a failure.
func (m rawMessage) String() string { return fmt.Sprintf("%v %q", m.headers, m.body) }
