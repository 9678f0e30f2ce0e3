package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
)

// failingSends is a memory transport whose Send fails for the messages
// fail picks.
type failingSends struct {
	*memory.Transport
	fail func(msg transport.Message) error
}

func (f failingSends) Send(ctx context.Context, name string, msg transport.Message) error {
	if err := f.fail(msg); err != nil {
		return err
	}
	return f.Transport.Send(ctx, name, msg)
}

// testOrderingBacklog: a key's backlog — which SQLite claims as runs, a
// head with the rows after it (storage.ClaimRequest.Run), on both sides —
// keeps its order through a send that fails and a handler call that fails
// in the middle of it: nothing after the failed message is sent or handled
// before it (the rows of a run after it are given back). Ten
// messages of one key commit in one transaction before the outbox runs,
// and the handler holds the first until all ten are stored, so that the
// others wait behind it.
func testOrderingBacklog[TTx any](t *testing.T, be backend[TTx]) {
	env := be.open(t)
	broker := memory.NewBroker(memory.Options{RequeueDelay: 10 * time.Millisecond})
	d := env.driver(t)
	var (
		mu                       sync.Mutex
		sendFailed, handleFailed bool
		calls                    []string
	)
	seqOf := func(body []byte) int {
		var m keyedMsg
		if err := json.Unmarshal(body, &m); err != nil {
			return -1
		}
		return m.Seq
	}
	tr := failingSends{Transport: broker.Transport(), fail: func(msg transport.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if seqOf(msg.Body) == 3 && !sendFailed {
			sendFailed = true
			return errors.New("the send of message 3 fails once")
		}
		return nil
	}}
	ob := newOutbox(t, d, tr, outbox.Options{HandlerConcurrency: 16})
	release := make(chan struct{})
	err := outbox.Subscribe(ob, "ordered.t", func(ctx context.Context, m outbox.Received[keyedMsg]) error {
		if m.Value.Seq == 0 {
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if m.Value.Seq == 5 && !handleFailed {
			handleFailed = true
			calls = append(calls, "5!")
			return errors.New("the handler of message 5 fails once")
		}
		calls = append(calls, fmt.Sprint(m.Value.Seq))
		return nil
	}, outbox.Group("g"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx, commit, _ := env.begin(t)
	for seq := range 10 {
		if _, err := ob.Publish(ctx, tx, "ordered.t", keyedMsg{Key: "k", Seq: seq}, outbox.WithOrderingKey("k")); err != nil {
			t.Fatal(err)
		}
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	// The group's queue is bound before the outbox runs: a send racing its
	// subscription's first Consume would find no queue (ErrUnroutable),
	// and message 0 would wait a minute for its retry.
	bound, cancel := context.WithCancel(ctx)
	cancel()
	if err := broker.Transport().Consume(bound, "g", []string{"ordered.t"}, nil); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitForExplained(t, 20*time.Second, "the ten messages stored on the receive side", func() bool {
		c, err := d.Counts(ctx, storage.Received)
		if err != nil {
			return false
		}
		var n int64
		for _, v := range c {
			n += v
		}
		return n == 10
	}, func() string { return "the rows:\n" + dumpRows(t, d) })
	close(release)
	want := []string{"0", "1", "2", "3", "4", "5!", "5", "6", "7", "8", "9"}
	waitFor(t, 20*time.Second, "the ten messages handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) >= len(want)
	})
	time.Sleep(100 * time.Millisecond) // a call out of turn or a duplicate would show now
	mu.Lock()
	defer mu.Unlock()
	if !sendFailed || !slices.Equal(calls, want) {
		t.Fatalf("handler calls %s (a failed send: %v); want %s", strings.Join(calls, " "), sendFailed, strings.Join(want, " "))
	}
}

// dumpRows describes the rows of both tables of s, for a failure message.
func dumpRows(t *testing.T, s storage.Store) string {
	var b strings.Builder
	for _, kind := range []storage.Kind{storage.Published, storage.Received} {
		ms, err := s.List(context.Background(), storage.Filter{Kind: kind, Limit: 100})
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", kind, err)
			continue
		}
		for _, m := range slices.Backward(ms) {
			fmt.Fprintf(&b, "%s %d %s retries %d next %s lease %d until %s key %q error %q body %s\n", kind, m.ID, m.Status, m.Retries,
				m.NextAttemptAt.Format("15:04:05.000"), m.LeaseToken, m.LeaseUntil.Format("15:04:05.000"), m.OrderingKey, m.LastError, m.Body)
		}
	}
	fmt.Fprintf(&b, "now %s", time.Now().UTC().Format("15:04:05.000"))
	return b.String()
}
