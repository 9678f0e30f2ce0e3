package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"maps"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/wire"
)

// inputOutbox is an outbox on a SQLite file of its own and the in-memory
// transport, not run: for the checks Publish and Subscribe make of their
// input.
func inputOutbox(t *testing.T, opts outbox.Options) *outbox.Outbox[*sql.Tx] {
	t.Helper()
	d := sqlite.New(sqliteDB(t, filepath.Join(t.TempDir(), "gocap.db")), sqlite.Options{Logger: quietLogger()})
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	ob := newOutbox(t, d, memory.New(memory.Options{}), opts)
	t.Cleanup(func() { ob.Close() })
	return ob
}

// requireNothingPublished fails t if ob's store holds a published row.
func requireNothingPublished(t *testing.T, ob *outbox.Outbox[*sql.Tx]) {
	t.Helper()
	rows, err := ob.Store().List(context.Background(), storage.Filter{Kind: storage.Published, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		t.Errorf("a refused publish wrote row %d (%q)", r.ID, r.Name)
	}
}

// TestRetryWaitsUnderAMillisecond: a policy is stored with its waits in
// whole milliseconds, so a positive wait under 1ms would be stored as no
// wait, refused when read back at the first failure, and the message
// retried under the default policy (50 attempts) instead of its own. It
// is refused by Publish, Subscribe and New, naming the wait.
func TestRetryWaitsUnderAMillisecond(t *testing.T) {
	ctx := context.Background()
	ob := inputOutbox(t, outbox.Options{})
	for _, c := range []struct {
		p    outbox.RetryPolicy
		want string
	}{
		{outbox.RetryPolicy{MaxAttempts: 2, Schedule: []time.Duration{500 * time.Microsecond}}, "Schedule[0] = 500µs"},
		{outbox.RetryPolicy{MaxAttempts: 2, Schedule: []time.Duration{time.Second, time.Nanosecond}}, "Schedule[1] = 1ns"},
		{outbox.RetryPolicy{MaxAttempts: 2, Interval: 999 * time.Microsecond}, "Interval = 999µs"},
		{outbox.RetryPolicy{MaxAttempts: 2, Backoff: &outbox.ExponentialBackoff{Initial: 100 * time.Microsecond}}, "Backoff.Initial = 100µs"},
		{outbox.RetryPolicy{MaxAttempts: 2, Backoff: &outbox.ExponentialBackoff{Initial: time.Second, Max: 200 * time.Microsecond}}, "Backoff.Max = 200µs"},
	} {
		_, err := ob.PublishWithoutTx(ctx, "pay.notify", orderPaid{}, outbox.WithRetry(c.p))
		if err == nil || !containsAll(err.Error(), "pay.notify", "WithRetry", c.want, "whole milliseconds", "at least 1ms") {
			t.Errorf("Publish with %+v: %v, want an error naming %q", c.p, err, c.want)
		}
		err = outbox.Subscribe(ob, "pay.notify", func(context.Context, outbox.Received[orderPaid]) error { return nil },
			outbox.Group("billing"), outbox.WithSubscriptionRetry(c.p))
		if err == nil || !containsAll(err.Error(), "WithSubscriptionRetry", c.want, "whole milliseconds") {
			t.Errorf("Subscribe with %+v: %v, want an error naming %q", c.p, err, c.want)
		}
		d := sqlite.New(sqliteDB(t, filepath.Join(t.TempDir(), "new.db")), sqlite.Options{Logger: quietLogger()})
		if _, err := outbox.New(d, memory.New(memory.Options{}), outbox.Options{Logger: quietLogger(), Retry: c.p}); err == nil ||
			!containsAll(err.Error(), "Options.Retry", c.want) {
			t.Errorf("New with Options.Retry %+v: %v, want an error naming %q", c.p, err, c.want)
		}
	}
	requireNothingPublished(t, ob)
	// A millisecond is kept.
	id, err := ob.PublishWithoutTx(ctx, "pay.notify", orderPaid{}, outbox.WithRetry(outbox.RetryPolicy{
		MaxAttempts: 2, Schedule: []time.Duration{time.Millisecond}}))
	if err != nil {
		t.Fatalf("a schedule of 1ms: %v", err)
	}
	if row := getRow(t, ob.Store(), storage.Published, id); row.Policy != `{"max":2,"imm":3,"ivl":60000,"sch":[1]}` {
		t.Errorf("stored policy %s, want the schedule of 1 ms", row.Policy)
	}
}

// TestTopicValidation: Publish refuses a topic that a broker or a storage
// would not carry as it is (white space, control characters, invalid
// UTF-8, over 255 bytes: MySQL cut such a name to 255 characters and the
// message was sent under the cut name, Succeeded, and never reached the
// subscriber of its topic); Subscribe refuses such a pattern; both count
// Options.TopicPrefix in the length. Names CAP applications use still pass.
func TestTopicValidation(t *testing.T) {
	ctx := context.Background()
	ob := inputOutbox(t, outbox.Options{})
	noop := func(context.Context, outbox.Received[orderPaid]) error { return nil }
	for _, c := range []struct{ topic, want string }{
		{"a b", `"a b" has white space`},
		{"order.paid\n", "white space"},
		{"a\x00b", `"a\x00b" has a control character (U+0000`},
		{"a\xffb", `"a\xffb" is not valid UTF-8`},
		{"orders." + strings.Repeat("x", 300), "is 307 bytes long: at most 255"},
	} {
		_, err := ob.PublishWithoutTx(ctx, c.topic, orderPaid{})
		if err == nil || !containsAll(err.Error(), "outbox: publish", c.want) {
			t.Errorf("Publish to %q: %v, want an error saying %q", c.topic, err, c.want)
		}
		err = outbox.Subscribe(ob, c.topic, noop, outbox.Group("billing"))
		if err == nil || !containsAll(err.Error(), "outbox: subscribe", c.want) {
			t.Errorf("Subscribe to %q: %v, want an error saying %q", c.topic, err, c.want)
		}
		if _, err := ob.PublishWithoutTx(ctx, "a.b", orderPaid{}, outbox.WithCallback(c.topic)); err == nil || !containsAll(err.Error(), "WithCallback", c.want) {
			t.Errorf("WithCallback(%q): %v, want an error saying %q", c.topic, err, c.want)
		}
	}
	requireNothingPublished(t, ob)
	for _, name := range []string{"sample.rabbitmq.mysql", "order-paid_v2:eu", "tenant/a.order", "订单.已支付", strings.Repeat("x", 255)} {
		if _, err := ob.PublishWithoutTx(ctx, name, orderPaid{}); err != nil {
			t.Errorf("Publish to %q: %v", name, err)
		}
	}

	// With a prefix: "tenant_a." + the topic must fit 255 bytes.
	pre := inputOutbox(t, outbox.Options{TopicPrefix: "tenant_a"})
	fits, over := strings.Repeat("x", 255-len("tenant_a.")), strings.Repeat("x", 256-len("tenant_a."))
	if _, err := pre.PublishWithoutTx(ctx, fits, orderPaid{}); err != nil {
		t.Errorf("Publish of %d bytes with the prefix: %v", len(fits)+len("tenant_a."), err)
	}
	want := `is 256 bytes long with Options.TopicPrefix "tenant_a": at most 255`
	if _, err := pre.PublishWithoutTx(ctx, over, orderPaid{}); err == nil || !containsAll(err.Error(), "outbox: publish", want) {
		t.Errorf("Publish of 256 bytes with the prefix: %v, want an error saying %q", err, want)
	}
	if err := outbox.Subscribe(pre, over, noop, outbox.Group("billing")); err == nil || !containsAll(err.Error(), "outbox: subscribe", want) {
		t.Errorf("Subscribe to 256 bytes with the prefix: %v, want an error saying %q", err, want)
	}
	if err := outbox.Subscribe(pre, fits, noop, outbox.Group("billing")); err != nil {
		t.Errorf("Subscribe to 255 bytes with the prefix: %v", err)
	}
	d := sqlite.New(sqliteDB(t, filepath.Join(t.TempDir(), "new.db")), sqlite.Options{Logger: quietLogger()})
	if _, err := outbox.New(d, memory.New(memory.Options{}), outbox.Options{Logger: quietLogger(), TopicPrefix: strings.Repeat("p", 254)}); err == nil ||
		!containsAll(err.Error(), "Options.TopicPrefix", "254 bytes long") {
		t.Errorf("New with a prefix of 254 bytes: %v, want an error", err)
	}
}

// TestReplyToCallbackOverLongWithPrefix: a reply goes to the callback
// topic with this side's prefix; a callback name too long with it is a
// permanent failure of the message, not a retry of a Publish that can
// never succeed.
func TestReplyToCallbackOverLongWithPrefix(t *testing.T) {
	ob := inputOutbox(t, outbox.Options{TopicPrefix: "tenant_a"})
	if err := outbox.SubscribeReply(ob, "calc.add", func(context.Context, outbox.Received[orderPaid]) (int, error) { return 1, nil },
		outbox.Group("calc")); err != nil {
		t.Fatal(err)
	}
	err := ob.HandleDirect(context.Background(), "calc", "calc.add", orderPaid{}, outbox.WithCallback(strings.Repeat("r", 250)))
	var perm *outbox.PermanentError
	if !errors.As(err, &perm) || !containsAll(err.Error(), "cap-callback-name", `Options.TopicPrefix "tenant_a"`) {
		t.Errorf("reply to a callback of 250 bytes with a prefix: %v, want a permanent error", err)
	}
}

// TestReceivedNamesTakenAsTheyCame: a foreign publisher's message whose
// name Publish would refuse is still received, stored and handled (the
// receive side loses nothing over a name).
func TestReceivedNamesTakenAsTheyCame(t *testing.T) {
	tr := memory.New(memory.Options{})
	d := sqlite.New(sqliteDB(t, filepath.Join(t.TempDir(), "gocap.db")), sqlite.Options{Logger: quietLogger()})
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	ob := newOutbox(t, d, tr, outbox.Options{})
	got := make(chan string, 1)
	if err := outbox.Subscribe(ob, "#", func(_ context.Context, m outbox.Received[orderPaid]) error {
		got <- m.Name
		return nil
	}, outbox.Group("audit")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	name := "foreign topic\twith spaces"
	waitFor(t, 5*time.Second, `the group bound to "#"`, func() bool { // unroutable until Run's consumer binds it
		return tr.Send(context.Background(), name, transport.Message{Body: []byte(`{"id":1}`)}) == nil
	})
	select {
	case n := <-got:
		if n != name {
			t.Errorf("handled as %q, want %q", n, name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a delivery named with white space was not handled in 10 s")
	}
}

// TestWithHeaderAndGocapHeaders: a header of the application's named like
// one of gocap's replaces gocap's value, except those that say what the
// message is, as WithHeader's doc lists them: the id and name, the delay
// headers of a delayed message, the ordering key of a keyed one.
func TestWithHeaderAndGocapHeaders(t *testing.T) {
	ctx := context.Background()
	ob := inputOutbox(t, outbox.Options{})
	mine := map[string]string{wire.MsgID: "mine", wire.MsgName: "mine", wire.CorrelationID: "corr-mine",
		wire.SentTime: "sent-mine", wire.DelayTime: "delay-mine", wire.OrderingKey: "key-mine"}
	headers := func(id int64) map[string]string { return getRow(t, ob.Store(), storage.Published, id).Headers }

	// An ordering key is set with WithOrderingKey, which checks it, not
	// with a header.
	if _, err := ob.PublishWithoutTx(ctx, "a.b", orderPaid{}, outbox.WithHeaders(mine)); err == nil ||
		!strings.Contains(err.Error(), "WithOrderingKey") {
		t.Errorf("a gocap-ordering-key header without WithOrderingKey: %v, want an error naming WithOrderingKey", err)
	}

	// Neither delayed nor keyed: all but the id and name are the application's.
	unkeyed := maps.Clone(mine)
	delete(unkeyed, wire.OrderingKey)
	id, err := ob.PublishWithoutTx(ctx, "a.b", orderPaid{}, outbox.WithHeaders(unkeyed))
	if err != nil {
		t.Fatal(err)
	}
	h := headers(id)
	if h[wire.MsgID] != strconv.FormatInt(id, 10) || h[wire.MsgName] != "a.b" {
		t.Errorf("cap-msg-id %q, cap-msg-name %q: want gocap's", h[wire.MsgID], h[wire.MsgName])
	}
	for _, k := range []string{wire.CorrelationID, wire.SentTime, wire.DelayTime} {
		if h[k] != mine[k] {
			t.Errorf("%s = %q, want the application's %q", k, h[k], mine[k])
		}
	}

	// Delayed and keyed: the delay headers and the key are gocap's.
	due := time.Now().Add(time.Hour).UTC()
	id, err = ob.PublishWithoutTx(ctx, "a.b", orderPaid{}, outbox.WithHeaders(mine), outbox.WithDeliverAt(due),
		outbox.WithOrderingKey("order-1"))
	if err != nil {
		t.Fatal(err)
	}
	h = headers(id)
	if got, ok := wire.ParseSentTime(h[wire.SentTime]); !ok || !got.Equal(due) {
		t.Errorf("cap-senttime %q, want the due time %v", h[wire.SentTime], due)
	}
	if d, ok := wire.ParseDelay(h[wire.DelayTime]); !ok || d < 59*time.Minute || d > time.Hour {
		t.Errorf("cap-delaytime %q, want the delay (about an hour)", h[wire.DelayTime])
	}
	if h[wire.OrderingKey] != "order-1" {
		t.Errorf("gocap-ordering-key %q, want the key", h[wire.OrderingKey])
	}
	if h[wire.CorrelationID] != "corr-mine" {
		t.Errorf("cap-corr-id %q, want the application's", h[wire.CorrelationID])
	}
}
