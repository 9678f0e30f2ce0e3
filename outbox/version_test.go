package outbox_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/transport/rabbitmq"
)

// Two outboxes of versions v1 and v2 share one database and one broker
// (Options.Version, DotNetCore.CAP's Version): each stores its version on
// the rows it publishes and receives, each consumer group receives in its
// version's own queue, and a v2 row left in the table while v2 is stopped
// is never claimed by v1; v2, started again, sends it and drains its
// queue.
func TestVersionsPostgres(t *testing.T) { testVersions(t, postgresBackend) }

// See TestVersionsPostgres.
func TestVersionsMySQL(t *testing.T) { testVersions(t, mysqlBackend) }

// See TestVersionsPostgres.
func TestVersionsSQLite(t *testing.T) { testVersions(t, sqliteBackend) }

// versioned is one outbox of a version, its Run's stop, and what its
// subscription received.
type versioned[TTx any] struct {
	ob   *outbox.Outbox[TTx]
	got  *collector[orderPaid]
	stop func()
}

func startVersion[TTx any](t *testing.T, env dbEnv[TTx], url, exchange, queuePrefix, version string) *versioned[TTx] {
	t.Helper()
	tr, err := rabbitmq.New(rabbitmq.Config{URL: url, Exchange: exchange, QueuePrefix: queuePrefix, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	v := &versioned[TTx]{got: &collector[orderPaid]{}}
	v.ob = newOutbox(t, env.driver(t), tr, outbox.Options{Version: version})
	if err := outbox.Subscribe(v.ob, "version.*", func(_ context.Context, m outbox.Received[orderPaid]) error {
		v.got.add(m)
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.ob.Run(ctx) }()
	stopped := false
	v.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run of version %s: %v", version, err)
			}
		case <-time.After(40 * time.Second):
			t.Errorf("Run of version %s did not return after its context ended", version)
		}
	}
	t.Cleanup(v.stop)
	return v
}

// ids returns the payload ids v's subscription received, and fails if
// one came in another group than the version's.
func (v *versioned[TTx]) ids(t *testing.T, group string) []int {
	t.Helper()
	var out []int
	for _, m := range v.got.all() {
		if m.Group != group {
			t.Errorf("received %d in group %q, want %q", m.Value.ID, m.Group, group)
		}
		out = append(out, m.Value.ID)
	}
	slices.Sort(out)
	return out
}

func testVersions[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	ex := testenv.Name("gocap_test_ex")
	prefix := ex + "."
	t.Cleanup(func() { deleteVersionQueues(url, ex, prefix) })
	ctx := context.Background()

	v1 := startVersion(t, env, url, ex, prefix, "v1")
	v2 := startVersion(t, env, url, ex, prefix, "v2")
	waitQueueConsumers(t, url, prefix+"billing.v1", prefix+"billing.v2")
	store := v1.ob.Store()
	published := func(id int64) *storage.Message { return getRow(t, store, storage.Published, id) }

	// Each publishes one message, in the application's transaction.
	tx, commit, _ := env.begin(t)
	id1, err := v1.ob.Publish(ctx, tx, "version.paid", orderPaid{ID: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	id2, err := v2.ob.PublishWithoutTx(ctx, "version.paid", orderPaid{ID: 2})
	if err != nil {
		t.Fatal(err)
	}
	for id, v := range map[int64]string{id1: "v1", id2: "v2"} {
		waitFor(t, 20*time.Second, "the published rows to be sent", func() bool { return published(id).Status == storage.StatusSucceeded })
		if m := published(id); m.Version != v {
			t.Errorf("published row %d has version %q, want %q", id, m.Version, v)
		}
	}
	// Topics are shared: each version's group gets both, in its own queue.
	waitFor(t, 20*time.Second, "both groups to receive both messages", func() bool { return v1.got.len() == 2 && v2.got.len() == 2 })
	if got := v1.ids(t, "billing.v1"); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("v1 received %v, want [1 2]", got)
	}
	if got := v2.ids(t, "billing.v2"); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("v2 received %v, want [1 2]", got)
	}
	var received []*storage.Message
	waitFor(t, 20*time.Second, "the 4 received rows to be Succeeded", func() bool {
		received, err = store.List(ctx, storage.Filter{Kind: storage.Received, Status: storage.StatusSucceeded, Limit: 100})
		return err == nil && len(received) == 4
	})
	for _, m := range received {
		if want := "billing." + m.Version; m.Group != want || m.Status != storage.StatusSucceeded {
			t.Errorf("received row %d: group %q version %q status %s, want group %q Succeeded", m.ID, m.Group, m.Version, m.Status, want)
		}
	}
	queues := queueDepths(t, url, prefix+"billing.v1", prefix+"billing.v2")
	if queues[0] != 0 || queues[1] != 0 {
		t.Errorf("queue depths %v, want both drained", queues)
	}

	// v2 stops; a row it publishes now stays Scheduled however long v1
	// runs, and the message v1 publishes waits in v2's queue.
	v2.stop()
	left, err := v2.ob.PublishWithoutTx(ctx, "version.paid", orderPaid{ID: 3})
	if err != nil {
		t.Fatal(err)
	}
	id4, err := v1.ob.PublishWithoutTx(ctx, "version.paid", orderPaid{ID: 4})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "v1 to send its row and receive it", func() bool {
		return published(id4).Status == storage.StatusSucceeded && v1.got.len() == 3
	})
	// v1 polls every 50 ms: 20 more polls, with its row sent before them.
	time.Sleep(time.Second)
	if m := published(left); m.Status != storage.StatusScheduled || m.LeaseToken != 0 || m.Retries != 0 || m.Version != "v2" {
		t.Fatalf("v2's row while only v1 runs: status %s lease %d retries %d version %q; want Scheduled, never claimed, of v2",
			m.Status, m.LeaseToken, m.Retries, m.Version)
	}
	if got := v1.ids(t, "billing.v1"); !slices.Equal(got, []int{1, 2, 4}) {
		t.Errorf("v1 received %v, want [1 2 4] (3 is not sent yet)", got)
	}
	if d := queueDepths(t, url, prefix+"billing.v2"); d[0] != 1 {
		t.Errorf("v2's queue holds %d messages, want 1 (message 4, waiting for v2)", d[0])
	}

	// v2 again: it sends its row, and its group gets 3 and 4 from its queue.
	v2b := startVersion(t, env, url, ex, prefix, "v2")
	waitQueueConsumers(t, url, prefix+"billing.v2")
	waitFor(t, 20*time.Second, "v2 to send its row", func() bool { return published(left).Status == storage.StatusSucceeded })
	waitFor(t, 20*time.Second, "v2 to receive 3 and 4", func() bool { return v2b.got.len() == 2 })
	if got := v2b.ids(t, "billing.v2"); !slices.Equal(got, []int{3, 4}) {
		t.Errorf("v2, started again, received %v, want [3 4]", got)
	}
	waitFor(t, 20*time.Second, "v1 to receive 3", func() bool { return v1.got.len() == 4 })
}

// An invalid Options.Version is refused by New, with an error naming it.
func TestVersionInvalid(t *testing.T) {
	d := sqliteBackend.open(t).driver(t)
	for _, v := range []string{"version-longer-than-20", "v 1", "v1/beta"} {
		_, err := outbox.New(d, memory.New(memory.Options{}), outbox.Options{Version: v})
		if err == nil || !strings.Contains(err.Error(), "Options.Version") {
			t.Errorf("New with Version %q: %v, want an error naming Options.Version", v, err)
		}
	}
}

// queueDepths returns the number of ready messages of each queue.
func queueDepths(t *testing.T, url string, queues ...string) []int {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	out := make([]int, len(queues))
	for i, q := range queues {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil {
			t.Fatalf("queue %s: %v", q, err)
		}
		out[i] = st.Messages
		ch.Close()
	}
	return out
}

// waitQueueConsumers waits until each queue exists and has a consumer:
// a message published before its queue is bound would not reach it.
func waitQueueConsumers(t *testing.T, url string, queues ...string) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range queues {
		waitFor(t, 20*time.Second, "a consumer of queue "+q, func() bool {
			ch, err := conn.Channel()
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
			return err == nil && st.Consumers > 0
		})
	}
}

// deleteVersionQueues removes the test's exchange and its versions' queues.
func deleteVersionQueues(url, exchange, queuePrefix string) {
	c, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return
	}
	for _, q := range []string{"billing.v1", "billing.v2"} {
		if _, err := ch.QueueDelete(queuePrefix+q, false, false, false); err != nil && !errors.Is(err, amqp.ErrClosed) {
			return
		}
	}
	ch.ExchangeDelete(exchange, false, false)
}
