package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/wire"
)

// keyedMsg is the payload of the ordering tests: the key's sequence number.
type keyedMsg struct {
	Key string `json:"key"`
	Seq int    `json:"seq"`
}

// orderCheck records the handled messages of each key: inversions (a
// sequence number lower than one handled before), overlaps (two of a key
// handled at once) and what was handled.
type orderCheck struct {
	mu         sync.Mutex
	last       map[string]int
	busy       map[string]bool
	handled    map[string]int
	total      int
	inversions int
	overlaps   int
}

func newOrderCheck() *orderCheck {
	return &orderCheck{last: map[string]int{}, busy: map[string]bool{}, handled: map[string]int{}}
}

// handle records m; fail, if set, is the handler's outcome for it.
func (c *orderCheck) handle(m keyedMsg, fail func(keyedMsg) error) error {
	c.mu.Lock()
	if c.busy[m.Key] {
		c.overlaps++
	}
	c.busy[m.Key] = true
	c.mu.Unlock()
	time.Sleep(time.Duration(m.Seq%3) * 200 * time.Microsecond) // let others overtake if they can
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy[m.Key] = false
	if fail != nil {
		if err := fail(m); err != nil {
			return err
		}
	}
	if last, ok := c.last[m.Key]; ok && m.Seq < last {
		c.inversions++
	}
	c.last[m.Key] = m.Seq
	c.handled[m.Key]++
	c.total++
	return nil
}

func (c *orderCheck) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// orderedPair starts two outboxes on one database and one memory broker,
// both sending and both subscribed to "ordered.t" in group "g" with
// handler concurrency 16, handling with check.
func orderedPair[TTx any](t *testing.T, be backend[TTx], opts outbox.Options, check *orderCheck, fail func(keyedMsg) error) (obs []*outbox.Outbox[TTx], store storage.Store) {
	env := be.open(t)
	broker := memory.NewBroker(memory.Options{RequeueDelay: 10 * time.Millisecond})
	opts.HandlerConcurrency = 16
	for range 2 {
		d := env.driver(t)
		ob := newOutbox(t, d, broker.Transport(), opts)
		err := outbox.Subscribe(ob, "ordered.t", func(_ context.Context, m outbox.Received[keyedMsg]) error {
			if m.Headers[wire.OrderingKey] != m.Value.Key {
				return outbox.Permanent(fmt.Errorf("header %q, want %q", m.Headers[wire.OrderingKey], m.Value.Key))
			}
			return check.handle(m.Value, fail)
		}, outbox.Group("g"))
		if err != nil {
			t.Fatal(err)
		}
		obs, store = append(obs, ob), d
	}
	for _, ob := range obs {
		run(t, ob)
	}
	return obs, store
}

// testOrderingAcceptance is the acceptance scenario of ordering keys, with
// fewer messages (examples/ordering runs 10,000): messages over 100 keys
// published by 8 goroutines (each key always by the same goroutine and
// outbox), two outboxes dispatching and both subscribed with handler
// concurrency 16; every key's messages are handled once each, in order,
// one at a time, and unkeyed ones alongside.
func testOrderingAcceptance[TTx any](t *testing.T, be backend[TTx]) {
	const keys, perKey, publishers = 100, 20, 8
	check := newOrderCheck()
	obs, _ := orderedPair(t, be, outbox.Options{}, check, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ob := obs[p%2]
			for seq := range perKey {
				for k := p; k < keys; k += publishers {
					key := fmt.Sprintf("key-%d", k)
					if _, err := ob.PublishWithoutTx(ctx, "ordered.t", keyedMsg{Key: key, Seq: seq}, outbox.WithOrderingKey(key)); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, 50*time.Second, "every keyed message handled", func() bool { return check.count() >= keys*perKey })
	time.Sleep(100 * time.Millisecond) // a duplicate would show now
	check.mu.Lock()
	defer check.mu.Unlock()
	if check.inversions != 0 || check.overlaps != 0 || check.total != keys*perKey {
		t.Errorf("%d handled (want %d), %d inversions, %d overlaps; want none", check.total, keys*perKey, check.inversions, check.overlaps)
	}
}

// testOrderingFailure: a key whose message fails for good is blocked
// under BlockKey (the others go on, the dashboard's BlockedKeys shows it
// with the messages waiting) and goes on under SkipKey.
func testOrderingFailure[TTx any](t *testing.T, be backend[TTx], policy outbox.OrderingFailure) {
	check := newOrderCheck()
	bad := errors.New("bad message")
	fixed := false // guarded by check.mu, under which fail runs
	fail := func(m keyedMsg) error {
		if !fixed && m.Key == "bad" && m.Seq == 1 {
			return outbox.Permanent(bad)
		}
		return nil
	}
	obs, store := orderedPair(t, be, outbox.Options{OrderingFailure: policy}, check, fail)
	ctx := context.Background()
	for seq := range 4 {
		for _, key := range []string{"bad", "good"} {
			if _, err := obs[0].PublishWithoutTx(ctx, "ordered.t", keyedMsg{Key: key, Seq: seq}, outbox.WithOrderingKey(key)); err != nil {
				t.Fatal(err)
			}
		}
	}
	handled := func(key string) int {
		check.mu.Lock()
		defer check.mu.Unlock()
		return check.handled[key]
	}
	waitFor(t, 20*time.Second, "the good key handled", func() bool { return handled("good") == 4 })
	ki := store.(storage.KeyInspector)
	if policy == outbox.SkipKey {
		waitFor(t, 20*time.Second, "the bad key's other messages handled", func() bool { return handled("bad") == 3 })
		return
	}
	var blocked []storage.BlockedKey
	waitFor(t, 20*time.Second, "the bad key blocked", func() bool {
		var err error
		blocked, err = ki.BlockedKeys(ctx, storage.Received, 10)
		return err == nil && len(blocked) == 1 && blocked[0].Waiting == 2
	})
	time.Sleep(300 * time.Millisecond) // time enough to handle the rest, were it not blocked
	if n := handled("bad"); n != 1 {
		t.Errorf("bad key: %d handled under BlockKey, want 1 (the one before the Failed message)", n)
	}
	if b := blocked[0]; b.OrderingKey != "bad" || b.Group != "g" || !strings.Contains(b.Head.LastError, "bad message") {
		t.Errorf("blocked key %+v (head %+v)", b, b.Head)
	}
	// Requeued (the cause gone), the Failed message goes first, then the
	// ones it held back.
	check.mu.Lock()
	fixed = true
	check.mu.Unlock()
	if n, err := store.Requeue(ctx, storage.Received, []int64{blocked[0].Head.ID}, time.Now().UTC()); err != nil || n != 1 {
		t.Fatalf("Requeue: %d %v", n, err)
	}
	obs[0].Wake(storage.Received)
	obs[1].Wake(storage.Received)
	waitFor(t, 20*time.Second, "the bad key handled after the requeue", func() bool { return handled("bad") == 4 })
	check.mu.Lock()
	defer check.mu.Unlock()
	if check.inversions != 0 || check.overlaps != 0 {
		t.Errorf("%d inversions, %d overlaps; want none", check.inversions, check.overlaps)
	}
}

// testOrderingVersions: a key's sequence is that of one version (issue
// #17). An outbox of version v1 published keyed messages and never ran (a
// retired release); an outbox of version v2 sharing the database and
// broker sends and handles its own messages of the same key, in order,
// one at a time — the v1 rows, pending for good, hold no key of v2 — and
// its received rows are of v2, in group "g.v2"; the v1 rows stay unsent.
func testOrderingVersions[TTx any](t *testing.T, be backend[TTx]) {
	env := be.open(t)
	broker := memory.NewBroker(memory.Options{RequeueDelay: 10 * time.Millisecond})
	ctx := context.Background()
	old := newOutbox(t, env.driver(t), broker.Transport(), outbox.Options{Version: "v1"})
	for seq := range 3 {
		if _, err := old.PublishWithoutTx(ctx, "ordered.t", keyedMsg{Key: "k", Seq: -1}, outbox.WithOrderingKey("k")); err != nil {
			t.Fatalf("publish %d of v1: %v", seq, err)
		}
	}
	check := newOrderCheck()
	d := env.driver(t)
	ob := newOutbox(t, d, broker.Transport(), outbox.Options{Version: "v2", HandlerConcurrency: 16})
	err := outbox.Subscribe(ob, "ordered.t", func(_ context.Context, m outbox.Received[keyedMsg]) error {
		if m.Value.Seq < 0 {
			return outbox.Permanent(errors.New("a message of v1 reached v2"))
		}
		return check.handle(m.Value, nil)
	}, outbox.Group("g"))
	if err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	const n = 10
	for seq := range n {
		if _, err := ob.PublishWithoutTx(ctx, "ordered.t", keyedMsg{Key: "k", Seq: seq}, outbox.WithOrderingKey("k")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "v2's keyed messages handled while v1's wait", func() bool { return check.count() >= n })
	check.mu.Lock()
	if check.inversions != 0 || check.overlaps != 0 || check.total != n {
		t.Errorf("%d handled (want %d), %d inversions, %d overlaps; want none", check.total, n, check.inversions, check.overlaps)
	}
	check.mu.Unlock()
	rec, err := d.List(ctx, storage.Filter{Kind: storage.Received, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rec {
		if m.Version != "v2" || m.Group != "g.v2" || m.OrderingKey != "k" {
			t.Errorf("received row %d: version %q group %q key %q, want v2, g.v2, k", m.ID, m.Version, m.Group, m.OrderingKey)
		}
	}
	pub, err := d.List(ctx, storage.Filter{Kind: storage.Published, Version: "v1", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range pub {
		if m.Status != storage.StatusScheduled || m.Retries != 0 {
			t.Errorf("v1 row %d: %s after %d retries, want Scheduled and never attempted", m.ID, m.Status, m.Retries)
		}
	}
	if len(rec) != n || len(pub) != 3 {
		t.Errorf("%d received rows (want %d), %d published rows of v1 (want 3)", len(rec), n, len(pub))
	}
}

// testOrderingUnstorable: a keyed delivery the storage refuses becomes a
// Failed row that keeps its key, so under BlockKey the key's later
// messages wait behind it (the dashboard shows the key blocked) instead of
// overtaking it; the handler never runs for it.
func testOrderingUnstorable[TTx any](t *testing.T, be backend[TTx]) {
	env := be.open(t)
	broker := memory.NewBroker(memory.Options{RequeueDelay: 10 * time.Millisecond})
	d := refusingDriver[TTx]{Driver: env.driver(t), refuse: func(m *storage.Message) error {
		if _, fallback := m.Headers[wire.UnstorableHeaders]; !fallback && strings.Contains(string(m.Body), `"seq":1}`) {
			return fmt.Errorf("simulated: value too long for column: %w", storage.ErrPermanent)
		}
		return nil
	}}
	check := newOrderCheck()
	ob := newOutbox(t, d, broker.Transport(), outbox.Options{HandlerConcurrency: 16})
	if err := outbox.Subscribe(ob, "ordered.t", func(_ context.Context, m outbox.Received[keyedMsg]) error {
		if m.Value.Seq == 1 {
			t.Errorf("the handler ran for the refused delivery")
		}
		return check.handle(m.Value, nil)
	}, outbox.Group("g")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	ctx := context.Background()
	for seq := range 4 {
		if _, err := ob.PublishWithoutTx(ctx, "ordered.t", keyedMsg{Key: "k", Seq: seq}, outbox.WithOrderingKey("k")); err != nil {
			t.Fatal(err)
		}
	}
	ki := env.driver(t).(storage.KeyInspector)
	var blocked []storage.BlockedKey
	waitFor(t, 20*time.Second, "the key blocked by the refused delivery", func() bool {
		var err error
		blocked, err = ki.BlockedKeys(ctx, storage.Received, 10)
		return err == nil && len(blocked) == 1 && blocked[0].Waiting == 2
	})
	if h := blocked[0].Head; blocked[0].OrderingKey != "k" || h.Headers[wire.UnstorableHeaders] == "" || !strings.Contains(h.LastError, "could not be stored") {
		t.Errorf("blocked key %q, head %+v: want key k, the refused delivery's Failed row", blocked[0].OrderingKey, h)
	}
	time.Sleep(300 * time.Millisecond) // time enough to handle the rest, were it not blocked
	check.mu.Lock()
	defer check.mu.Unlock()
	if check.handled["k"] != 1 || check.inversions != 0 {
		t.Errorf("%d handled, %d inversions; want only the message before the refused one", check.handled["k"], check.inversions)
	}
}

func runOrdering[TTx any](t *testing.T, be backend[TTx]) {
	t.Run("Acceptance", func(t *testing.T) { testOrderingAcceptance(t, be) })
	t.Run("Versions", func(t *testing.T) { testOrderingVersions(t, be) })
	t.Run("FailureBlocks", func(t *testing.T) { testOrderingFailure(t, be, outbox.BlockKey) })
	t.Run("FailureSkips", func(t *testing.T) { testOrderingFailure(t, be, outbox.SkipKey) })
	t.Run("Unstorable", func(t *testing.T) { testOrderingUnstorable(t, be) })
	t.Run("Backlog", func(t *testing.T) { testOrderingBacklog(t, be) })
}

func TestOrderingPostgres(t *testing.T) { runOrdering[pgx.Tx](t, postgresBackend) }
func TestOrderingMySQL(t *testing.T)    { runOrdering(t, mysqlBackend) }
func TestOrderingSQLite(t *testing.T)   { runOrdering(t, sqliteBackend) }

// WithOrderingKey refuses keys that cannot be stored as they are, and New
// an unknown OrderingFailure.
func TestWithOrderingKeyBadInput(t *testing.T) {
	env := sqliteBackend.open(t)
	ob := newOutbox(t, env.driver(t), memory.New(memory.Options{AcceptUnroutable: true}), outbox.Options{})
	ctx := context.Background()
	for _, c := range []struct{ key, want string }{
		{"", "empty"},
		{strings.Repeat("k", storage.MaxOrderingKeyBytes+1), "201 bytes"},
		{"a\xffb", "UTF-8"},
		{"a\x00b", "NUL"},
	} {
		_, err := ob.PublishWithoutTx(ctx, "t", "x", outbox.WithOrderingKey(c.key))
		if err == nil || !strings.Contains(err.Error(), "WithOrderingKey") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("WithOrderingKey(%q): %v, want an error about %s", c.key, err, c.want)
		}
	}
	id, err := ob.PublishWithoutTx(ctx, "t", "x", outbox.WithOrderingKey(strings.Repeat("é", storage.MaxOrderingKeyBytes/2)))
	if err != nil {
		t.Fatalf("a key of the largest size: %v", err)
	}
	if m := getRow(t, ob.Store(), storage.Published, id); m.OrderingKey != strings.Repeat("é", 100) || m.Headers[wire.OrderingKey] != m.OrderingKey {
		t.Errorf("stored key %q, header %q", m.OrderingKey, m.Headers[wire.OrderingKey])
	}
	if _, err := outbox.New(env.driver(t), memory.New(memory.Options{}), outbox.Options{OrderingFailure: 7}); err == nil ||
		!strings.Contains(err.Error(), "OrderingFailure") {
		t.Errorf("New with OrderingFailure 7: %v, want an error naming it", err)
	}
}
