package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/wire"
)

// runDelays runs the cases of delayed messages and retry policies.
func runDelays[TTx any](t *testing.T, be backend[TTx]) {
	t.Run("DelayedSentWhenDue", func(t *testing.T) { testDelayedSentWhenDue(t, be) })
	t.Run("DelayedRolledBack", func(t *testing.T) { testDelayedRolledBack(t, be) })
	t.Run("DelayedSurvivesRestart", func(t *testing.T) { testDelayedSurvivesRestart(t, be) })
	t.Run("DelayedTwoProcessors", func(t *testing.T) { testDelayedTwoProcessors(t, be) })
	t.Run("RetryScheduleHonoured", func(t *testing.T) { testRetrySchedule(t, be) })
	t.Run("PerMessagePolicy", func(t *testing.T) { testPerMessagePolicy(t, be) })
	t.Run("PerSubscriptionPolicy", func(t *testing.T) { testPerSubscriptionPolicy(t, be) })
	t.Run("DelayAndPolicyBadInput", func(t *testing.T) { testDelayBadInput(t, be) })
}

// testDelayedSentWhenDue: a delayed message is stored Delayed, is not sent
// before its due time, is sent promptly after it, and carries CAP's
// delayed headers.
func testDelayedSentWhenDue[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	b := newBroker(t, url)
	ob := newOutbox(t, env.driver(t), b.transport(t, url), outbox.Options{PollInterval: time.Second})
	run(t, ob)

	const delay = 1500 * time.Millisecond
	tx, commit, _ := env.begin(t)
	env.exec(t, tx, "order")
	start := time.Now()
	id, err := ob.Publish(context.Background(), tx, "order.unpaid.timeout", orderPaid{ID: 1}, outbox.WithDelay(delay))
	if err != nil {
		t.Fatal(err)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	due := start.Add(delay)
	row := getRow(t, ob.Store(), storage.Published, id)
	if row.Status != storage.StatusDelayed || row.NextAttemptAt.Before(due.Add(-50*time.Millisecond)) || row.NextAttemptAt.After(due.Add(50*time.Millisecond)) {
		t.Errorf("stored as %s due %v, want Delayed due about %v", row.Status, row.NextAttemptAt, due.UTC())
	}
	b.none(t, time.Until(due)-100*time.Millisecond)
	m := b.next(t, 5*time.Second)
	late := time.Since(due)
	t.Logf("sent %v after its due time", late.Round(time.Millisecond))
	if late > 500*time.Millisecond {
		t.Errorf("sent %v after its due time", late)
	}
	if got := fmt.Sprint(m.Headers[wire.MsgID]); got != strconv.FormatInt(id, 10) {
		t.Fatalf("got %s, want %d", got, id)
	}
	if got := fmt.Sprint(m.Headers[wire.DelayTime]); got != "00:00:01.5000000" {
		t.Errorf("cap-delaytime = %q, want CAP's TimeSpan form 00:00:01.5000000", got)
	}
	sent, ok := wire.ParseSentTime(fmt.Sprint(m.Headers[wire.SentTime]))
	if !ok || sent.Sub(due).Abs() > 50*time.Millisecond {
		t.Errorf("cap-senttime = %v, want the due time %v (as CAP sets it)", m.Headers[wire.SentTime], due.UTC())
	}
	waitFor(t, 5*time.Second, "row Succeeded", func() bool {
		return getRow(t, ob.Store(), storage.Published, id).Status == storage.StatusSucceeded
	})

	// A delay shorter than the poll interval: the processor, which was
	// sleeping until its next poll, wakes for the due time.
	short, err := ob.PublishWithoutTx(context.Background(), "order.unpaid.timeout", orderPaid{ID: 2},
		outbox.WithDelay(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	shortDue := time.Now().Add(300 * time.Millisecond)
	m = b.next(t, 5*time.Second)
	if late := time.Since(shortDue); late > 200*time.Millisecond {
		t.Errorf("a 300 ms delay with a 1 s poll interval: sent %v after its due time", late)
	}
	if got := fmt.Sprint(m.Headers[wire.MsgID]); got != strconv.FormatInt(short, 10) {
		t.Fatalf("got %s, want %d", got, short)
	}
}

func testDelayedRolledBack[TTx any](t *testing.T, be backend[TTx]) {
	env, b, ob := runDefault(t, be)
	tx, _, rollback := env.begin(t)
	id, err := ob.Publish(context.Background(), tx, "order.unpaid.timeout", orderPaid{ID: 2}, outbox.WithDelay(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := rollback(); err != nil {
		t.Fatal(err)
	}
	b.none(t, time.Second)
	if _, err := ob.Store().Get(context.Background(), storage.Published, id); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("rolled back delayed row: %v, want ErrNotFound", err)
	}
}

// testDelayedSurvivesRestart: the processor that knew of the message stops
// before it is due; a new one, in another "process", sends it.
func testDelayedSurvivesRestart[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	b := newBroker(t, url)
	first := newOutbox(t, env.driver(t), b.transport(t, url), outbox.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	id, err := first.PublishWithoutTx(context.Background(), "report.ready", orderPaid{ID: 3}, outbox.WithDelay(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b.none(t, time.Second)
	second := newOutbox(t, env.driver(t), b.transport(t, url), outbox.Options{PollInterval: 200 * time.Millisecond})
	run(t, second)
	m := b.next(t, 5*time.Second)
	if got := fmt.Sprint(m.Headers[wire.MsgID]); got != strconv.FormatInt(id, 10) {
		t.Fatalf("got %s, want %d", got, id)
	}
}

// testDelayedTwoProcessors: two processors on one database send each
// delayed message once.
func testDelayedTwoProcessors[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	b := newBroker(t, url)
	a := newOutbox(t, env.driver(t), b.transport(t, url), outbox.Options{})
	c := newOutbox(t, env.driver(t), b.transport(t, url), outbox.Options{})
	run(t, a)
	run(t, c)
	const n = 40
	want := map[string]bool{}
	for i := range n {
		pub := a
		if i%2 == 1 {
			pub = c
		}
		id, err := pub.PublishWithoutTx(context.Background(), "report.ready", orderPaid{ID: i},
			outbox.WithDelay(time.Duration(500+10*i)*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		want[strconv.FormatInt(id, 10)] = true
	}
	got := map[string]int{}
	for range n {
		m := b.next(t, 10*time.Second)
		got[fmt.Sprint(m.Headers[wire.MsgID])]++
	}
	b.none(t, 500*time.Millisecond)
	for id := range want {
		if got[id] != 1 {
			t.Errorf("message %s sent %d times", id, got[id])
		}
	}
}

// failingSender fails every send, counting them.
type failingSender struct {
	transport.Transport
	mu    sync.Mutex
	times []time.Time
}

func (s *failingSender) Send(ctx context.Context, topic string, msg transport.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.times = append(s.times, time.Now())
	return errors.New("endpoint says no")
}

// testRetrySchedule: a per-message schedule is honoured: the attempt
// times recorded on the row are spaced as the schedule says.
func testRetrySchedule[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	b := newBroker(t, url)
	tr := &failingSender{Transport: b.transport(t, url)}
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{PollInterval: time.Second})
	run(t, ob)
	schedule := []time.Duration{300 * time.Millisecond, 600 * time.Millisecond, 900 * time.Millisecond}
	id, err := ob.PublishWithoutTx(context.Background(), "pay.notify", orderPaid{ID: 4},
		outbox.WithRetry(outbox.RetryPolicy{Schedule: schedule, MaxAttempts: 4}))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the row Failed", func() bool {
		return getRow(t, ob.Store(), storage.Published, id).Status == storage.StatusFailed
	})
	row := getRow(t, ob.Store(), storage.Published, id)
	if row.Retries != 4 || len(row.Attempts) != 4 {
		t.Fatalf("retries %d, %d attempts recorded; want 4 and 4", row.Retries, len(row.Attempts))
	}
	for i, w := range schedule {
		gap := row.Attempts[i+1].At.Sub(row.Attempts[i].At)
		t.Logf("wait %d: %v (schedule %v)", i+1, gap.Round(time.Millisecond), w)
		if gap < w-20*time.Millisecond || gap > w+300*time.Millisecond {
			t.Errorf("attempt %d came %v after attempt %d; the schedule says %v", i+2, gap, i+1, w)
		}
		if row.Attempts[i].Error != "endpoint says no" {
			t.Errorf("attempt %d recorded error %q", i+1, row.Attempts[i].Error)
		}
	}
}

// testPerMessagePolicy: a message's own policy beats the default, and a
// requeue from the dashboard keeps it.
func testPerMessagePolicy[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	b := newBroker(t, url)
	tr := &failingSender{Transport: b.transport(t, url)}
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{
		Retry: outbox.RetryPolicy{MaxAttempts: 2, ImmediateRetries: -1, Interval: 100 * time.Millisecond},
	})
	run(t, ob)
	ctx := context.Background()
	plain, err := ob.PublishWithoutTx(ctx, "pay.notify", orderPaid{ID: 5})
	if err != nil {
		t.Fatal(err)
	}
	own, err := ob.PublishWithoutTx(ctx, "pay.notify", orderPaid{ID: 6},
		outbox.WithRetry(outbox.RetryPolicy{MaxAttempts: 4, Schedule: []time.Duration{100 * time.Millisecond}}))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[int64]int{plain: 2, own: 4} {
		waitFor(t, 10*time.Second, "Failed", func() bool {
			return getRow(t, ob.Store(), storage.Published, id).Status == storage.StatusFailed
		})
		if r := getRow(t, ob.Store(), storage.Published, id); r.Retries != want {
			t.Errorf("message %d Failed after %d attempts, want %d", id, r.Retries, want)
		}
	}
	// A requeue keeps the message's own policy.
	if _, err := ob.Store().Requeue(ctx, storage.Published, []int64{own}, time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	ob.Wake(storage.Published)
	waitFor(t, 10*time.Second, "Failed again", func() bool {
		r := getRow(t, ob.Store(), storage.Published, own)
		return r.Status == storage.StatusFailed && r.Retries > 0
	})
	if r := getRow(t, ob.Store(), storage.Published, own); r.Retries != 4 {
		t.Errorf("after a requeue the message Failed after %d attempts, want its own 4", r.Retries)
	}
}

// testPerSubscriptionPolicy: the received rows of a subscription follow
// its policy, not the default.
func testPerSubscriptionPolicy[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	tr, _ := rabbitFor(t, url)
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{
		Retry: outbox.RetryPolicy{MaxAttempts: 6, ImmediateRetries: -1, Interval: 50 * time.Millisecond},
	})
	var calls sync.Map
	count := func(group string) func(context.Context, outbox.Received[orderPaid]) error {
		return func(context.Context, outbox.Received[orderPaid]) error {
			n, _ := calls.LoadOrStore(group, new(int))
			*n.(*int)++
			return errors.New("not today")
		}
	}
	if err := outbox.Subscribe(ob, "invoice.#", count("billing"), outbox.Group("billing"),
		outbox.WithSubscriptionRetry(outbox.RetryPolicy{MaxAttempts: 3, Schedule: []time.Duration{50 * time.Millisecond}})); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Subscribe(ob, "invoice.#", count("audit"), outbox.Group("audit")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitConsumers(t, ob)
	if _, err := ob.PublishWithoutTx(context.Background(), "invoice.created", orderPaid{ID: 7}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "both received rows Failed", func() bool {
		rows := receivedRows(t, ob.Store())
		failed := 0
		for _, r := range rows {
			if r.Status == storage.StatusFailed {
				failed++
			}
		}
		return failed == 2
	})
	for _, r := range receivedRows(t, ob.Store()) {
		want := map[string]int{"billing": 3, "audit": 6}[r.Group]
		if r.Retries != want {
			t.Errorf("group %s: Failed after %d attempts, want %d", r.Group, r.Retries, want)
		}
		if (r.Group == "billing") != (r.Policy != "") {
			t.Errorf("group %s: stored policy %q", r.Group, r.Policy)
		}
	}
}

// testDelayBadInput: bad delays and policies are refused with a clear
// error and nothing is written; a due time in the past sends at once.
func testDelayBadInput[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	b := newBroker(t, url)
	ob := newOutbox(t, env.driver(t), b.transport(t, url), outbox.Options{})
	ctx := context.Background()
	for _, c := range []struct {
		opt  outbox.PublishOption
		want string
	}{
		{outbox.WithDelay(-time.Second), "negative"},
		{outbox.WithDeliverAt(time.Time{}), "zero"},
		{outbox.WithRetry(outbox.RetryPolicy{MaxAttempts: 0}), "MaxAttempts"},
		{outbox.WithRetry(outbox.RetryPolicy{MaxAttempts: 3, Schedule: []time.Duration{time.Second, 0}}), "Schedule[1]"},
		{outbox.WithRetry(outbox.RetryPolicy{MaxAttempts: 3, Schedule: []time.Duration{-time.Second}}), "Schedule[0]"},
	} {
		_, err := ob.PublishWithoutTx(ctx, "pay.notify", orderPaid{}, c.opt)
		if err == nil || !containsAll(err.Error(), c.want, "pay.notify") {
			t.Errorf("error %v, want one naming %q and the topic", err, c.want)
		}
	}
	if err := outbox.Subscribe(ob, "x", func(context.Context, outbox.Received[[]byte]) error { return nil },
		outbox.WithSubscriptionRetry(outbox.RetryPolicy{MaxAttempts: -1})); err == nil || !containsAll(err.Error(), "MaxAttempts") {
		t.Errorf("Subscribe with a bad policy: %v", err)
	}
	if counts, err := ob.Store().Counts(ctx, storage.Published); err != nil || counts[storage.StatusScheduled]+counts[storage.StatusDelayed] != 0 {
		t.Errorf("rows written by refused publishes: %v %v", counts, err)
	}
	run(t, ob)
	id, err := ob.PublishWithoutTx(ctx, "report.ready", orderPaid{ID: 8}, outbox.WithDeliverAt(time.Now().Add(-time.Hour)))
	if err != nil {
		t.Fatalf("a due time in the past: %v", err)
	}
	m := b.next(t, 5*time.Second)
	if got := fmt.Sprint(m.Headers[wire.MsgID]); got != strconv.FormatInt(id, 10) {
		t.Fatalf("got %s, want %d", got, id)
	}
	if _, ok := m.Headers[wire.DelayTime]; ok {
		t.Error("a message due in the past carries cap-delaytime")
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
