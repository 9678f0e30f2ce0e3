package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/internal/testproxy"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/rabbitmq"
	"github.com/gocap/gocap/wire"
)

// dbEnv is one isolated set of tables on a real database.
type dbEnv[TTx any] struct {
	// name is the schema or table prefix, dsn the database address.
	name, dsn string
	// driver returns a new driver (with its own connections, like another
	// process) on the same tables.
	driver func(t *testing.T) storage.Driver[TTx]
	// begin starts an application transaction.
	begin func(t *testing.T) (tx TTx, commit, rollback func() error)
	// exec runs a business statement in tx.
	exec func(t *testing.T, tx TTx, note string)
}

// backend opens isolated dbEnvs on one kind of database.
type backend[TTx any] struct {
	name string
	open func(t *testing.T) dbEnv[TTx]
	// attach opens a driver on the tables of an existing dbEnv, outside a
	// test (in a child process).
	attach func(dsn, name string) (d storage.Driver[TTx], close func(), err error)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// broker is an exchange of its own on the real RabbitMQ, with a plain
// amqp091 queue that collects everything published to it.
type broker struct {
	url      string
	exchange string
	got      <-chan amqp.Delivery
}

func newBroker(t *testing.T, url string) *broker {
	t.Helper()
	b := &broker{url: url, exchange: testenv.Name("gocap_test_ex")}
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial rabbitmq: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(b.exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := amqp.Dial(url)
		if err == nil {
			if ch, err := c.Channel(); err == nil {
				ch.ExchangeDelete(b.exchange, false, false)
			}
			c.Close()
		}
	})
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "#", b.exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	got, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.got = got
	return b
}

func (b *broker) transport(t *testing.T, url string) transport.Transport {
	t.Helper()
	tr, err := rabbitmq.New(rabbitmq.Config{URL: url, Exchange: b.exchange, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("rabbitmq.New: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// next returns the next message the plain consumer got, or fails after d.
func (b *broker) next(t *testing.T, d time.Duration) amqp.Delivery {
	t.Helper()
	select {
	case m := <-b.got:
		return m
	case <-time.After(d):
		t.Fatalf("no message arrived within %v", d)
		return amqp.Delivery{}
	}
}

// none fails if a message arrives within d.
func (b *broker) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case m := <-b.got:
		t.Fatalf("unexpected message: %s %s", m.RoutingKey, m.Body)
	case <-time.After(d):
	}
}

func newOutbox[TTx any](t *testing.T, d storage.Driver[TTx], tr transport.Transport, opts outbox.Options) *outbox.Outbox[TTx] {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	ob, err := outbox.New(d, tr, opts)
	if err != nil {
		t.Fatalf("outbox.New: %v", err)
	}
	return ob
}

// run starts ob.Run and stops it when the test ends.
func run[TTx any](t *testing.T, ob *outbox.Outbox[TTx]) {
	t.Helper()
	t.Cleanup(startRun(t, ob))
}

// runDefault opens be, a broker, and an outbox with the default options
// on them, run until the test ends.
func runDefault[TTx any](t *testing.T, be backend[TTx]) (dbEnv[TTx], *broker, *outbox.Outbox[TTx]) {
	t.Helper()
	url := testenv.AMQPURL(t)
	env := be.open(t)
	b := newBroker(t, url)
	ob := newOutbox(t, env.driver(t), b.transport(t, url), outbox.Options{})
	run(t, ob)
	return env, b, ob
}

// startRun starts ob.Run and returns what stops it: it ends Run's context
// and waits for Run to return (at most 40 s), once however often it is
// called.
func startRun[TTx any](t *testing.T, ob *outbox.Outbox[TTx]) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(40 * time.Second):
				t.Errorf("Run did not return after its context ended")
			}
		})
	}
}

// waitFor polls cond every 20ms until it holds, failing after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	waitForExplained(t, d, what, cond, nil)
}

// waitForExplained is waitFor whose failure also says what explain
// returns, if it is not nil (the state that did not come to pass).
func waitForExplained(t *testing.T, d time.Duration, what string, cond func() bool, explain func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			if explain != nil {
				t.Fatalf("timed out after %v waiting for %s; %s", d, what, explain())
			}
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getRow(t *testing.T, s storage.Store, kind storage.Kind, id int64) *storage.Message {
	t.Helper()
	m, err := s.Get(context.Background(), kind, id)
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return m
}

type orderPaid struct {
	ID     int    `json:"id"`
	Amount string `json:"amount"`
}

func runCore[TTx any](t *testing.T, be backend[TTx]) {
	t.Run("CommitDelivered", func(t *testing.T) { testCommitDelivered(t, be) })
	t.Run("LateCommitDelivered", func(t *testing.T) { testLateCommit(t, be) })
	t.Run("RollbackNotDelivered", func(t *testing.T) { testRollback(t, be) })
	t.Run("BrokerDownRetried", func(t *testing.T) { testBrokerDown(t, be) })
	t.Run("PermanentFailure", func(t *testing.T) { testPermanentFailure(t, be) })
	t.Run("Cleaner", func(t *testing.T) { testCleaner(t, be) })
	t.Run("TwoProcessors", func(t *testing.T) { testTwoProcessors(t, be) })
	t.Run("BatchPartialFailure", func(t *testing.T) { testBatchPartialFailure(t, be) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, be) })
	t.Run("ProcessorKilled", func(t *testing.T) { testProcessorKilled(t, be) })
	runReceive(t, be)
	runReliability(t, be)
	runDelays(t, be)
	runBatches(t, be)
}

func testCommitDelivered[TTx any](t *testing.T, be backend[TTx]) {
	env, b, ob := runDefault(t, be)

	tx, commit, _ := env.begin(t)
	env.exec(t, tx, "order 7 paid")
	before := time.Now().UTC()
	id, err := ob.Publish(context.Background(), tx, "order.paid", orderPaid{ID: 7, Amount: "9.90"},
		outbox.WithHeader("tenant", "acme"))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}

	m := b.next(t, 10*time.Second)
	if string(m.Body) != `{"id":7,"amount":"9.90"}` {
		t.Errorf("body = %s", m.Body)
	}
	if m.RoutingKey != "order.paid" {
		t.Errorf("routing key = %q", m.RoutingKey)
	}
	sid := strconv.FormatInt(id, 10)
	want := map[string]string{
		wire.MsgID: sid, wire.MsgName: "order.paid", wire.MsgType: "orderPaid",
		wire.CorrelationID: sid, wire.CorrelationSeq: "0", "tenant": "acme",
	}
	for k, v := range want {
		if got := fmt.Sprint(m.Headers[k]); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	sent, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m.Headers[wire.SentTime]))
	if err != nil || sent.Location() != time.UTC || sent.Before(before.Add(-time.Second)) || sent.After(time.Now().Add(time.Second)) {
		t.Errorf("cap-senttime = %v (%v), want RFC 3339 UTC around now", m.Headers[wire.SentTime], err)
	}
	if m.DeliveryMode != amqp.Persistent {
		t.Errorf("delivery mode = %d, want persistent", m.DeliveryMode)
	}
	waitFor(t, 5*time.Second, "row Succeeded", func() bool {
		return getRow(t, ob.Store(), storage.Published, id).Status == storage.StatusSucceeded
	})
	row := getRow(t, ob.Store(), storage.Published, id)
	if d := row.ExpiresAt.Sub(time.Now().UTC()); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("succeeded row expires in %v, want about a day", d)
	}
}

// testLateCommit: a message whose transaction commits well after its
// Publish (so it is due from before the claims' floor, see
// internal/engine/floor.go), while other messages flow, is sent soon
// after the commit all the same.
func testLateCommit[TTx any](t *testing.T, be backend[TTx]) {
	env, b, ob := runDefault(t, be)

	tx, commit, _ := env.begin(t)
	late, err := ob.Publish(context.Background(), tx, "order.paid", orderPaid{ID: 1, Amount: "1.00"})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	lateID := strconv.FormatInt(late, 10)
	want := map[string]bool{lateID: true}
	for i := range 25 { // 2.5 s of other messages, each sent at once: the floor passes the late one's due time
		id, err := ob.PublishWithoutTx(context.Background(), "order.paid", orderPaid{ID: i + 2, Amount: "1.00"})
		if err != nil {
			t.Fatalf("PublishWithoutTx: %v", err)
		}
		want[strconv.FormatInt(id, 10)] = true
		time.Sleep(100 * time.Millisecond)
	}
	if err := commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	committed := time.Now()
	for len(want) > 0 {
		m := b.next(t, 10*time.Second)
		id := fmt.Sprint(m.Headers[wire.MsgID])
		if !want[id] {
			t.Fatalf("message %s arrived, not one of those published (or twice)", id)
		}
		delete(want, id)
		if id == lateID {
			// A claim from the start comes within fullClaimEvery (1 s),
			// at the next poll (PollInterval, 1 s) if idle.
			if d := time.Since(committed); d > 4*time.Second {
				t.Errorf("the late commit's message arrived %v after the commit", d)
			}
		}
	}
}

func testRollback[TTx any](t *testing.T, be backend[TTx]) {
	env, b, ob := runDefault(t, be)

	tx, _, rollback := env.begin(t)
	id, err := ob.Publish(context.Background(), tx, "order.paid", orderPaid{ID: 1})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := rollback(); err != nil {
		t.Fatal(err)
	}
	// A committed message published afterwards arrives; the rolled back one never does.
	tx2, commit2, _ := env.begin(t)
	id2, err := ob.Publish(context.Background(), tx2, "order.paid", orderPaid{ID: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := commit2(); err != nil {
		t.Fatal(err)
	}
	m := b.next(t, 10*time.Second)
	if got := fmt.Sprint(m.Headers[wire.MsgID]); got != strconv.FormatInt(id2, 10) {
		t.Fatalf("got message %s, want %d", got, id2)
	}
	b.none(t, 300*time.Millisecond)
	if _, err := ob.Store().Get(context.Background(), storage.Published, id); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("rolled back row: Get err = %v, want ErrNotFound", err)
	}
}

// testBrokerDown: sends that cannot reach the broker are not attempts:
// the row stays Scheduled with no retry counted and the reason shown, and
// is sent as soon as the broker is back.
func testBrokerDown[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	b := newBroker(t, url)
	proxy := testproxy.New(t, hostPort(t, url))
	tr := b.transport(t, "amqp://guest:guest@"+proxy.Addr()+"/")
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{
		Retry: outbox.RetryPolicy{Interval: 200 * time.Millisecond, MaxAttempts: 2},
	})
	run(t, ob)

	proxy.Down()
	id, err := ob.PublishWithoutTx(context.Background(), "order.paid", orderPaid{ID: 3})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the failed send recorded", func() bool {
		r := getRow(t, ob.Store(), storage.Published, id)
		return r.Status == storage.StatusScheduled && strings.Contains(r.LastError, "not counted")
	})
	time.Sleep(3 * time.Second) // several probes, with MaxAttempts 2
	if r := getRow(t, ob.Store(), storage.Published, id); r.Retries != 0 || r.Status != storage.StatusScheduled {
		t.Errorf("while the broker is unreachable: status %s, retries %d; want Scheduled, 0", r.Status, r.Retries)
	}
	b.none(t, 100*time.Millisecond)
	proxy.Up()
	m := b.next(t, 5*time.Second)
	if got := fmt.Sprint(m.Headers[wire.MsgID]); got != strconv.FormatInt(id, 10) {
		t.Fatalf("got %s, want %d", got, id)
	}
	waitFor(t, 5*time.Second, "row Succeeded", func() bool {
		return getRow(t, ob.Store(), storage.Published, id).Status == storage.StatusSucceeded
	})
	if r := getRow(t, ob.Store(), storage.Published, id); r.Retries != 0 {
		t.Errorf("retries = %d, want the unreachable broker's sends not counted", r.Retries)
	}
}

func testPermanentFailure[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	// An exchange with no queue bound: every send is unroutable and fails.
	ex := testenv.Name("gocap_test_unroutable")
	tr, err := rabbitmq.New(rabbitmq.Config{URL: url, Exchange: ex, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	var calls atomic.Int32
	var failed atomic.Pointer[outbox.FailedMessage]
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{
		Retry: outbox.RetryPolicy{Interval: 5 * time.Millisecond},
		OnFailed: func(ctx context.Context, f outbox.FailedMessage) {
			calls.Add(1)
			failed.Store(&f)
		},
	})
	run(t, ob)
	id, err := ob.PublishWithoutTx(context.Background(), "nobody.listens", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "row Failed", func() bool {
		return getRow(t, ob.Store(), storage.Published, id).Status == storage.StatusFailed
	})
	// OnFailed runs right after the row is marked Failed.
	waitFor(t, 5*time.Second, "OnFailed", func() bool { return calls.Load() > 0 })
	r := getRow(t, ob.Store(), storage.Published, id)
	if r.Retries != outbox.DefaultMaxAttempts {
		t.Errorf("retries = %d, want %d", r.Retries, outbox.DefaultMaxAttempts)
	}
	if !errors.Is(failed.Load().Err, rabbitmq.ErrUnroutable) || r.LastError == "" {
		t.Errorf("last error = %q / %v, want unroutable", r.LastError, failed.Load().Err)
	}
	if d := r.ExpiresAt.Sub(time.Now().UTC()); d < 14*24*time.Hour || d > 16*24*time.Hour {
		t.Errorf("failed row expires in %v, want about 15 days", d)
	}
	time.Sleep(200 * time.Millisecond) // room for a wrong second call
	if n := calls.Load(); n != 1 {
		t.Errorf("OnFailed called %d times, want once", n)
	}
	if f := failed.Load(); f.Message.ID != id || f.Retries != outbox.DefaultMaxAttempts {
		t.Errorf("OnFailed got id %d retries %d", f.Message.ID, f.Retries)
	}
}

// rejectingSender fails every send to one topic permanently.
type rejectingSender struct {
	transport.Transport
	topic string
}

func (s rejectingSender) Send(ctx context.Context, topic string, msg transport.Message) error {
	if topic == s.topic {
		return outbox.Permanent(errors.New("rejected by test"))
	}
	return s.Transport.Send(ctx, topic, msg)
}

func testCleaner[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	b := newBroker(t, url)
	ob := newOutbox(t, env.driver(t), rejectingSender{b.transport(t, url), "order.rejected"}, outbox.Options{
		SucceededTTL:  300 * time.Millisecond,
		CleanInterval: 100 * time.Millisecond,
		CleanBatch:    2, // several batches per round
	})
	ctx := context.Background()
	var sent []int64
	for i := range 5 {
		id, err := ob.PublishWithoutTx(ctx, "order.paid", orderPaid{ID: i})
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, id)
	}
	failed, err := ob.PublishWithoutTx(ctx, "order.rejected", orderPaid{ID: 99})
	if err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	for range sent {
		b.next(t, 10*time.Second)
	}
	waitFor(t, 10*time.Second, "succeeded rows cleaned", func() bool {
		for _, id := range sent {
			if _, err := ob.Store().Get(ctx, storage.Published, id); !errors.Is(err, storage.ErrNotFound) {
				return false
			}
		}
		return true
	})
	// The Failed row expires in 15 days: the cleaner keeps it.
	time.Sleep(300 * time.Millisecond)
	if r := getRow(t, ob.Store(), storage.Published, failed); r.Status != storage.StatusFailed || r.Retries != 1 {
		t.Errorf("failed row: status %s retries %d, want Failed after 1 attempt", r.Status, r.Retries)
	}
}

func testBadInput[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	b := newBroker(t, url)
	ob := newOutbox(t, env.driver(t), b.transport(t, url), outbox.Options{})
	ctx := context.Background()
	tx, commit, _ := env.begin(t)
	if _, err := ob.Publish(ctx, tx, "", orderPaid{}); err == nil {
		t.Error("empty topic: no error")
	}
	if _, err := ob.Publish(ctx, tx, "order.*", orderPaid{}); err == nil {
		t.Error("wildcard topic: no error")
	}
	if _, err := ob.Publish(ctx, tx, "bad.payload", make(chan int)); err == nil {
		t.Error("unserializable payload: no error")
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	if n, err := ob.Store().Counts(ctx, storage.Published); err != nil || n[storage.StatusScheduled] != 0 {
		t.Errorf("rows after bad input: %v %v, want none", n, err)
	}
	ob.Close()
	if _, err := ob.PublishWithoutTx(ctx, "order.paid", orderPaid{}); !errors.Is(err, outbox.ErrClosed) {
		t.Errorf("publish after Close: %v, want ErrClosed", err)
	}
}

// exclusiveSender records sends that overlap for the same message id.
type exclusiveSender struct {
	transport.Transport
	mu       sync.Mutex
	inFlight map[string]bool
	overlaps atomic.Int32
}

func (s *exclusiveSender) Send(ctx context.Context, topic string, msg transport.Message) error {
	defer s.enter([]transport.Message{msg})()
	return s.Transport.Send(ctx, topic, msg)
}

// SendBatch marks every message of the batch in flight, as Send does for
// one, and sends through the wrapped transport's SendBatch.
func (s *exclusiveSender) SendBatch(ctx context.Context, msgs []transport.Outgoing) []error {
	ms := make([]transport.Message, len(msgs))
	for i, m := range msgs {
		ms[i] = m.Message
	}
	defer s.enter(ms)()
	return s.Transport.(transport.BatchSender).SendBatch(ctx, msgs)
}

// enter marks msgs in flight, counting those already in flight as
// overlaps, and returns the function that marks them done.
func (s *exclusiveSender) enter(msgs []transport.Message) (leave func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		id := m.Headers[wire.MsgID]
		if s.inFlight[id] {
			s.overlaps.Add(1)
		}
		s.inFlight[id] = true
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, m := range msgs {
			delete(s.inFlight, m.Headers[wire.MsgID])
		}
	}
}

func testTwoProcessors[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	b := newBroker(t, url)
	// Both processors share one recording wrapper, so overlapping sends of
	// one id by the two are seen.
	shared := &exclusiveSender{Transport: b.transport(t, url), inFlight: map[string]bool{}}
	opts := outbox.Options{ClaimBatch: 7, SendConcurrency: 8}
	ob1 := newOutbox(t, env.driver(t), shared, opts)
	ob2 := newOutbox(t, env.driver(t), shared, opts)
	run(t, ob1)
	run(t, ob2)
	const n = 400
	want := map[string]bool{}
	ctx := context.Background()
	for i := range n {
		ob := ob1
		if i%2 == 1 {
			ob = ob2
		}
		tx, commit, _ := env.begin(t)
		id, err := ob.Publish(ctx, tx, "order.paid", orderPaid{ID: i})
		if err != nil {
			t.Fatal(err)
		}
		if err := commit(); err != nil {
			t.Fatal(err)
		}
		want[strconv.FormatInt(id, 10)] = true
	}
	got := map[string]int{}
	for len(got) < n {
		m := b.next(t, 20*time.Second)
		id := fmt.Sprint(m.Headers[wire.MsgID])
		if !want[id] {
			t.Fatalf("unknown message %s", id)
		}
		got[id]++
	}
	b.none(t, 300*time.Millisecond)
	for id, c := range got {
		if c != 1 {
			t.Errorf("message %s delivered %d times", id, c)
		}
	}
	if o := shared.overlaps.Load(); o != 0 {
		t.Errorf("%d concurrent double sends", o)
	}
}

// testBatchPartialFailure sends one claim of rows, half of them to a topic
// no queue is bound to, as batches: each row gets its own outcome.
func testBatchPartialFailure[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	ex := testenv.Name("gocap_test_partial")
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial rabbitmq: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(ex, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if ch, err := conn.Channel(); err == nil {
			ch.ExchangeDelete(ex, false, false)
		}
	})
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "order.paid", ex, false, nil); err != nil {
		t.Fatal(err)
	}
	got, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := rabbitmq.New(rabbitmq.Config{URL: url, Exchange: ex, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	var _ transport.BatchSender = tr // this test is about batches
	var failedCalls atomic.Int32
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{
		Retry:    outbox.RetryPolicy{ImmediateRetries: -1, Interval: 5 * time.Millisecond, MaxAttempts: 3},
		OnFailed: func(context.Context, outbox.FailedMessage) { failedCalls.Add(1) },
	})
	// Committed before Run, so that the first claim takes them all.
	const n = 40
	ctx := context.Background()
	routable, unroutable := map[string]bool{}, []int64{}
	tx, commit, _ := env.begin(t)
	for i := range n {
		topic := "order.paid"
		if i%2 == 1 {
			topic = "nobody.listens"
		}
		id, err := ob.Publish(ctx, tx, topic, orderPaid{ID: i})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			unroutable = append(unroutable, id)
		} else {
			routable[strconv.FormatInt(id, 10)] = true
		}
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	arrived := map[string]int{}
	for range n / 2 {
		select {
		case m := <-got:
			id := fmt.Sprint(m.Headers[wire.MsgID])
			if !routable[id] {
				t.Fatalf("message %s arrived; it was not sent to order.paid", id)
			}
			arrived[id]++
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d routable messages arrived", len(arrived), n/2)
		}
	}
	waitFor(t, 20*time.Second, "unroutable rows Failed", func() bool {
		for _, id := range unroutable {
			if getRow(t, ob.Store(), storage.Published, id).Status != storage.StatusFailed {
				return false
			}
		}
		return true
	})
	for _, id := range unroutable {
		r := getRow(t, ob.Store(), storage.Published, id)
		if r.Retries != 3 || !strings.Contains(r.LastError, "unroutable") {
			t.Errorf("unroutable row %d: retries %d, last error %q; want 3 and unroutable", id, r.Retries, r.LastError)
		}
	}
	for id := range routable {
		n, _ := strconv.ParseInt(id, 10, 64)
		waitFor(t, 5*time.Second, "routable row Succeeded", func() bool {
			return getRow(t, ob.Store(), storage.Published, n).Status == storage.StatusSucceeded
		})
		if r := getRow(t, ob.Store(), storage.Published, n); r.Retries != 0 || arrived[id] != 1 {
			t.Errorf("routable row %s: retries %d, arrived %d times; want 0 and once", id, r.Retries, arrived[id])
		}
	}
	waitFor(t, 5*time.Second, "OnFailed for each unroutable row", func() bool { return failedCalls.Load() == n/2 })
	select {
	case m := <-got:
		t.Errorf("unexpected extra delivery of %v", m.Headers[wire.MsgID])
	case <-time.After(100 * time.Millisecond):
	}
}
