package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/wire"
)

// The processor at its edges, on SQLite and the in-process broker: the
// claim loop between two polls (with a PollInterval far longer than each
// test, anything that leaves due rows waiting for the next poll fails
// it), leases running low while rows wait, the subscription's concurrency
// limit, and what a shutdown past its ShutdownTimeout records.

const longPoll = time.Minute

// brokerDownUntil is the in-process broker, unreachable until a time.
type brokerDownUntil struct {
	*memory.Transport
	up atomic.Int64 // Unix nanoseconds
}

func (b *brokerDownUntil) Send(ctx context.Context, name string, msg transport.Message) error {
	if time.Now().UnixNano() < b.up.Load() {
		return fmt.Errorf("test: broker down: %w", transport.ErrUnavailable)
	}
	return b.Transport.Send(ctx, name, msg)
}

// loopOutbox returns an outbox on a fresh SQLite file sending through
// tr, the database, and the count of deliveries of topic to a consumer
// group bound before it returns.
func loopOutbox(t *testing.T, mem *memory.Transport, tr transport.Transport, opts outbox.Options, topic string) (*outbox.Outbox[*sql.Tx], *sql.DB, *atomic.Int32) {
	t.Helper()
	d, db := sqliteStore(t, "")
	opts.Logger = quietLogger()
	ob, err := outbox.New(d, tr, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		mem.Consume(ctx, "watch", []string{topic}, func(_ context.Context, d transport.Delivery) error {
			if d.Headers["probe"] == "" {
				n.Add(1)
			}
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-consumed })
	sendWhenBound(t, mem, topic, transport.Message{Headers: map[string]string{"probe": "1"}})
	return ob, db, &n
}

// runOutbox runs ob until stop is called or the test ends; stop returns
// once Run has.
func runOutbox(t *testing.T, ob *outbox.Outbox[*sql.Tx]) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ob.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// sendWhenBound sends msg to topic on mem once a consumer group is bound
// to it (a send before finds no queue: memory.ErrUnroutable), waiting at
// most 5 s.
func sendWhenBound(t *testing.T, mem *memory.Transport, topic string, msg transport.Message) {
	t.Helper()
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		err := mem.Send(context.Background(), topic, msg)
		if err == nil {
			return
		}
		if !errors.Is(err, memory.ErrUnroutable) || time.Since(start) > 5*time.Second {
			t.Fatalf("sending to %s: %v", topic, err)
		}
	}
}

// concurrency counts the calls running at once, and the most seen.
type concurrency struct{ running, most atomic.Int32 }

// enter counts a call in; the function it returns counts it out.
func (c *concurrency) enter() (leave func()) {
	n := c.running.Add(1)
	for old := c.most.Load(); n > old && !c.most.CompareAndSwap(old, n); old = c.most.Load() {
	}
	return func() { c.running.Add(-1) }
}

// sqliteStore is a migrated SQLite driver on the file at path (a new one
// in the test's directory if path is empty), and its database.
func sqliteStore(t *testing.T, path string) (*sqlite.Driver, *sql.DB) {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "gocap.db")
	}
	db := sqliteDB(t, path)
	d := sqlite.New(db, sqlite.Options{Logger: quietLogger()})
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d, db
}

// waitCount waits up to within for n to reach want, and returns how long
// it took; the test fails if it did not.
func waitCount(t *testing.T, n *atomic.Int32, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for int(n.Load()) < want {
		if time.Since(start) > within {
			t.Fatalf("%d of %d messages delivered after %v", n.Load(), want, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// TestOutageResumesBeforeThePoll: a send that finds the broker down
// releases its row and pauses dispatch; the claim loop, asleep until its
// next poll, must wake for the probe, so that the message goes out within
// about a second of the broker's return, not at the next poll.
func TestOutageResumesBeforeThePoll(t *testing.T) {
	mem := memory.New(memory.Options{})
	tr := &brokerDownUntil{Transport: mem}
	ob, _, n := loopOutbox(t, mem, tr, outbox.Options{PollInterval: longPoll}, "outage.resume")
	runOutbox(t, ob)
	back := time.Now().Add(1500 * time.Millisecond)
	tr.up.Store(back.UnixNano())
	if _, err := ob.PublishWithoutTx(context.Background(), "outage.resume", map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	waitCount(t, n, 1, 10*time.Second)
	if late := time.Since(back); late > 2500*time.Millisecond {
		t.Errorf("delivered %v after the broker's return", late.Round(time.Millisecond))
	}
}

// TestBacklogWithRunsKeepsClaiming: a claim that found its limit of rows
// also returns the runs of the ordering keys among them (they do not
// count against the limit); the claim loop must claim again at once, not
// go idle until its next poll while rows are due.
func TestBacklogWithRunsKeepsClaiming(t *testing.T) {
	mem := memory.New(memory.Options{})
	ob, db, n := loopOutbox(t, mem, mem, outbox.Options{PollInterval: longPoll, ClaimBatch: 50}, "backlog.runs")
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	const groups = 50
	for g := range groups {
		for i := range 10 {
			var opts []outbox.PublishOption
			if i < 2 { // a run of two rows in every ten
				opts = append(opts, outbox.WithOrderingKey(fmt.Sprint("k", g)))
			}
			if _, err := ob.Publish(context.Background(), tx, "backlog.runs", map[string]int{"g": g, "i": i}, opts...); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	runOutbox(t, ob)
	took := waitCount(t, n, groups*10, 20*time.Second)
	t.Logf("%d messages in %v", groups*10, took.Round(time.Millisecond))
}

// TestReceivedWaitingForASlotKeepsItsLease: deliveries stored leased to
// a process whose handler slots are busy wait for one; a row whose lease
// no longer outlasts its handler's timeout by then must be given back,
// not started, since another process may claim it as its lease ends. Two
// processes share the received table: A, one handler slot, stores four
// deliveries whose handler takes 1.2 s under a 2 s lease; B, four slots,
// claims what A gives back. Each message is handled once.
func TestReceivedWaitingForASlotKeepsItsLease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gocap.db")
	d, _ := sqliteStore(t, path)
	var mu sync.Mutex
	calls := map[string][]string{}
	handler := func(who string) func(ctx context.Context, m outbox.Received[[]byte]) error {
		return func(ctx context.Context, m outbox.Received[[]byte]) error {
			mu.Lock()
			calls[m.ID] = append(calls[m.ID], who)
			mu.Unlock()
			select {
			case <-time.After(1200 * time.Millisecond):
			case <-ctx.Done():
			}
			return nil
		}
	}
	opts := outbox.Options{Logger: quietLogger(), Lease: 2 * time.Second, HandlerTimeout: 1500 * time.Millisecond,
		HandlerConcurrency: 1, PollInterval: 100 * time.Millisecond}
	trA := memory.New(memory.Options{})
	a, err := outbox.New(d, trA, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Subscribe(a, "lease.wait", handler("A"), outbox.Group("g")); err != nil {
		t.Fatal(err)
	}
	opts.HandlerConcurrency = 4
	d2, _ := sqliteStore(t, path)
	b, err := outbox.New(d2, memory.New(memory.Options{}), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Subscribe(b, "lease.wait", handler("B"), outbox.Group("g")); err != nil {
		t.Fatal(err)
	}
	runOutbox(t, a)
	runOutbox(t, b)
	for i := range 4 {
		sendWhenBound(t, trA, "lease.wait", transport.Message{
			Headers: map[string]string{"cap-msg-id": fmt.Sprint(1000 + i), "cap-msg-name": "lease.wait"}, Body: []byte("{}")})
	}
	handled := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(calls)
	}
	for start := time.Now(); handled() < 4; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 15*time.Second {
			t.Fatalf("%d of 4 messages handled after 15 s", handled())
		}
	}
	time.Sleep(2500 * time.Millisecond) // a lease and more: a second call would have started
	mu.Lock()
	defer mu.Unlock()
	for id, c := range calls {
		if len(c) > 1 {
			t.Errorf("message %s handled %d times, by %v", id, len(c), c)
		}
	}
}

// slowSucceed is a SQLite driver whose Succeed takes a while, and tells
// when it is first called.
type slowSucceed struct {
	storage.Driver[*sql.Tx]
	called chan struct{}
	once   sync.Once
}

func (s *slowSucceed) Succeed(ctx context.Context, kind storage.Kind, rows []storage.Completed, expires time.Time) (int64, error) {
	s.once.Do(func() { close(s.called) })
	select {
	case <-time.After(700 * time.Millisecond):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return s.Driver.Succeed(ctx, kind, rows, expires)
}

// hangTopic is the in-process broker, whose sends to one topic hang
// until their context ends; sending, if set, is closed at the first.
type hangTopic struct {
	*memory.Transport
	topic   string
	sending chan struct{}
	once    *sync.Once
}

func (h hangTopic) Send(ctx context.Context, name string, m transport.Message) error {
	if name == h.topic {
		if h.sending != nil {
			h.once.Do(func() { close(h.sending) })
		}
		<-ctx.Done()
		return ctx.Err()
	}
	return h.Transport.Send(ctx, name, m)
}

// TestShutdownRecordsSuccessesAfterItsTimeout: a message sent before Run
// stops is recorded Succeeded, even though the write of its success is
// still under way when the ShutdownTimeout passes (another send hangs
// past it) and the attempts are cancelled.
func TestShutdownRecordsSuccessesAfterItsTimeout(t *testing.T) {
	d, _ := sqliteStore(t, "")
	store := &slowSucceed{Driver: d, called: make(chan struct{})}
	tr := hangTopic{Transport: memory.New(memory.Options{AcceptUnroutable: true}), topic: "shutdown.hang"}
	ob, err := outbox.New[*sql.Tx](store, tr, outbox.Options{Logger: quietLogger(), ShutdownTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := runOutbox(t, ob)
	hang, err := ob.PublishWithoutTx(context.Background(), "shutdown.hang", 1)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := ob.PublishWithoutTx(context.Background(), "shutdown.fast", 1)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-store.called:
	case <-time.After(10 * time.Second):
		t.Fatal("no Succeed after 10 s")
	}
	stop()
	m, err := d.Get(context.Background(), storage.Published, fast)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != storage.StatusSucceeded {
		t.Errorf("the sent message is %s after Run returned, want Succeeded", m.Status)
	}
	if m, err := d.Get(context.Background(), storage.Published, hang); err != nil || m.Status == storage.StatusSucceeded {
		t.Errorf("the hanging message: %v, %v", m, err)
	}
}

// TestShutdownDoesNotCountCancelledAttempts: a send still in flight when
// Run's ShutdownTimeout passes is cancelled; that is no attempt of the
// message: with one attempt allowed it does not end Failed (nor call
// OnFailed), and its lease is given back, so that it is due at once.
func TestShutdownDoesNotCountCancelledAttempts(t *testing.T) {
	d, _ := sqliteStore(t, "")
	sent := make(chan struct{})
	tr := hangTopic{Transport: memory.New(memory.Options{AcceptUnroutable: true}), topic: "shutdown.hang", sending: sent, once: new(sync.Once)}
	var failed atomic.Int32
	ob, err := outbox.New[*sql.Tx](d, tr, outbox.Options{Logger: quietLogger(), ShutdownTimeout: 300 * time.Millisecond,
		OnFailed: func(context.Context, outbox.FailedMessage) { failed.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	stop := runOutbox(t, ob)
	id, err := ob.PublishWithoutTx(context.Background(), "shutdown.hang", 1, outbox.WithRetry(outbox.RetryPolicy{MaxAttempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sent:
	case <-time.After(10 * time.Second):
		t.Fatal("not sent after 10 s")
	}
	stop()
	m, err := d.Get(context.Background(), storage.Published, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != storage.StatusScheduled || m.Retries != 0 || failed.Load() != 0 {
		t.Errorf("after the shutdown cancelled its send: %s, %d failed attempts, %d OnFailed calls (last error %q); want Scheduled, none",
			m.Status, m.Retries, failed.Load(), m.LastError)
	}
	if m.LeaseUntil.After(time.Now()) {
		t.Errorf("its lease runs until %v: want it given back", m.LeaseUntil)
	}
}

// TestShutdownReleasesRowsWaitingForTheLimit: when the ShutdownTimeout
// cancels the call running under a subscription's WithConcurrency limit,
// the rows waiting for that limit get their leases back too (with the
// cancelled one, uncounted), rather than holding them for a whole lease
// after Run returned.
func TestShutdownReleasesRowsWaitingForTheLimit(t *testing.T) {
	d, _ := sqliteStore(t, "")
	tr := memory.New(memory.Options{})
	ob, err := outbox.New(d, tr, outbox.Options{Logger: quietLogger(), ShutdownTimeout: 300 * time.Millisecond, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 10)
	if err := outbox.Subscribe(ob, "wait.limit", func(ctx context.Context, m outbox.Received[[]byte]) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}, outbox.Group("g"), outbox.WithConcurrency(1)); err != nil {
		t.Fatal(err)
	}
	stop := runOutbox(t, ob)
	ctx := context.Background()
	for i := range 3 {
		sendWhenBound(t, tr, "wait.limit", transport.Message{
			Headers: map[string]string{"cap-msg-id": fmt.Sprint(2000 + i), "cap-msg-name": "wait.limit"}, Body: []byte("{}")})
	}
	<-started
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		rows, err := d.List(ctx, storage.Filter{Kind: storage.Received})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 3 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%d rows stored", len(rows))
		}
	}
	time.Sleep(200 * time.Millisecond) // the two others are set aside, waiting for the limit
	stop()
	rows, err := d.List(ctx, storage.Filter{Kind: storage.Received})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		m, err := d.Get(ctx, storage.Received, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if m.LeaseUntil.After(time.Now()) || m.Retries != 0 {
			t.Errorf("row %s: %d failed attempts, still leased for %v after Run returned; want none, released",
				m.MsgID, m.Retries, time.Until(m.LeaseUntil).Round(time.Second))
		}
	}
}

// TestConcurrencyLimitHoldsWhenWaitingRowsRunLow: rows waiting for their
// subscription's WithConcurrency limit longer than their lease allows are
// released when their turn comes, and claimed again; the limit holds
// throughout: never two calls at once under WithConcurrency(1).
func TestConcurrencyLimitHoldsWhenWaitingRowsRunLow(t *testing.T) {
	ob := memOutbox(t, outbox.Options{Lease: 2 * time.Second, HandlerConcurrency: 8})
	var calls concurrency
	var done atomic.Int32
	if err := outbox.Subscribe(ob, "lim.job", func(ctx context.Context, m outbox.Received[[]byte]) error {
		defer calls.enter()()
		select {
		case <-time.After(700 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		done.Add(1)
		return nil
	}, outbox.WithConcurrency(1), outbox.WithHandlerTimeout(1500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	ctx := context.Background()
	const n = 6
	for range n {
		if _, err := ob.PublishWithoutTx(ctx, "lim.job", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "all handled", func() bool {
		c, err := ob.Store().Counts(ctx, storage.Received)
		return err == nil && c[storage.StatusSucceeded] == n
	})
	if m := calls.most.Load(); m > 1 {
		t.Errorf("WithConcurrency(1): at most %d calls ran at once", m)
	}
}

// TestRunSuccessesWrittenBeforeAHandOver: a run of an ordering key under
// WithConcurrency(1): after its first row succeeds, its worker takes over
// the rows waiting for the limit (a hand-over), for longer than the
// row's lease while rows keep coming. The run's successes are written
// before that chain starts: held until the run ends, the first row's
// lease ran out meanwhile and it was handled a second time.
func TestRunSuccessesWrittenBeforeAHandOver(t *testing.T) {
	ob := memOutbox(t, outbox.Options{Lease: 1500 * time.Millisecond, HandlerConcurrency: 4})
	var mu sync.Mutex
	calls := map[string]int{}
	var running concurrency
	k1Started := make(chan struct{}, 10)
	if err := outbox.Subscribe(ob, "lim.t", func(ctx context.Context, m outbox.Received[[]byte]) error {
		defer running.enter()()
		mu.Lock()
		calls[m.ID]++
		mu.Unlock()
		if m.ID == "900001" {
			k1Started <- struct{}{}
		}
		time.Sleep(150 * time.Millisecond)
		return nil
	}, outbox.Group("g"), outbox.WithConcurrency(1), outbox.WithHandlerTimeout(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st := ob.Store()
	// A run of key K, claimable at once (its head's lease already ended).
	for i := int64(1); i <= 3; i++ {
		id := fmt.Sprint(900000 + i)
		m := &storage.Message{ID: 900000 + i, Kind: storage.Received, MsgID: id, Name: "lim.t", Group: "g",
			Headers: map[string]string{wire.MsgID: id, wire.MsgName: "lim.t", wire.OrderingKey: "K"},
			Body:    []byte("x"), Status: storage.StatusScheduled, Added: time.Now().UTC(), OrderingKey: "K"}
		if _, err := st.InsertReceived(ctx, m, 1, time.Now().UTC().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	run(t, ob)
	select {
	case <-k1Started:
	case <-time.After(10 * time.Second):
		t.Fatal("k1 never started")
	}
	// Keep rows of the subscription waiting for 3 s, twice the lease.
	for i := 0; i < 30; i++ {
		if _, err := ob.PublishWithoutTx(ctx, "lim.t", []byte("u")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // the rest handed over, a second call of k1 started if any
	mu.Lock()
	defer mu.Unlock()
	if calls["900001"] != 1 {
		t.Errorf("the run's first row, which succeeded in time, was handled %d times", calls["900001"])
	}
	if m := running.most.Load(); m > 1 {
		t.Errorf("WithConcurrency(1): %d calls at once", m)
	}
}
