package outbox_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/wire"
)

// testOrderingRestart: a key's order holds across a restart. Two outboxes
// on one database and one broker publish keyed messages, send them and
// handle them in one group; while the messages flow, one of the two is
// stopped and a new one takes its place (a release rolled out process by
// process), and later the other one too. Every message is handled, each
// key's in publish order and one at a time, whoever sends and handles it.
func testOrderingRestart[TTx any](t *testing.T, be backend[TTx]) {
	const keys, perKey, publishers = 40, 30, 4
	env := be.open(t)
	broker := memory.NewBroker(memory.Options{RequeueDelay: 10 * time.Millisecond})
	check := newOrderCheck()

	// start runs a new outbox on the shared database and broker, sending
	// and subscribed to the keyed topic; stop ends its Run and waits for it.
	type instance struct {
		ob   *outbox.Outbox[TTx]
		stop func()
	}
	start := func() instance {
		ob := newOutbox(t, env.driver(t), broker.Transport(), outbox.Options{HandlerConcurrency: 16})
		err := outbox.Subscribe(ob, "ordered.t", func(_ context.Context, m outbox.Received[keyedMsg]) error {
			if m.Headers[wire.OrderingKey] != m.Value.Key {
				return outbox.Permanent(fmt.Errorf("header %q, want %q", m.Headers[wire.OrderingKey], m.Value.Key))
			}
			return check.handle(m.Value, nil)
		}, outbox.Group("g"))
		if err != nil {
			t.Fatal(err)
		}
		stop := startRun(t, ob)
		t.Cleanup(stop)
		return instance{ob: ob, stop: stop}
	}

	var mu sync.Mutex // guards live
	live := []instance{start(), start()}
	publisher := func(p int) *outbox.Outbox[TTx] {
		mu.Lock()
		defer mu.Unlock()
		return live[p%2].ob
	}

	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range perKey {
				for k := p; k < keys; k += publishers {
					key := fmt.Sprintf("key-%d", k)
					// Each key is published by one goroutine, in sequence,
					// through whichever instance is live in its slot.
					if _, err := publisher(p).PublishWithoutTx(ctx, "ordered.t", keyedMsg{Key: key, Seq: seq}, outbox.WithOrderingKey(key)); err != nil {
						errs <- err
						return
					}
				}
				time.Sleep(time.Millisecond) // keep the flow going while the instances are replaced
			}
		}()
	}

	// Replace each instance in turn while messages are published, sent
	// and handled.
	const total = keys * perKey
	for i, at := range []int{total / 4, total / 2} {
		waitFor(t, 60*time.Second, fmt.Sprintf("%d messages handled", at), func() bool { return check.count() >= at })
		mu.Lock()
		old := live[i]
		mu.Unlock()
		old.stop()
		next := start()
		mu.Lock()
		live[i] = next
		mu.Unlock()
		t.Logf("instance %d replaced after %d messages handled", i, check.count())
	}

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Well within the lease (a minute): a row left leased by a stopped
	// instance, and the rest of its key behind it, would fail the test.
	allHandled := func() bool {
		check.mu.Lock()
		defer check.mu.Unlock()
		for k := range keys {
			if check.last[fmt.Sprintf("key-%d", k)] != perKey-1 {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(25 * time.Second); !allHandled(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			reportPending(t, env.driver(t))
			t.Fatalf("timed out after 25s waiting for every keyed message handled (%d handled)", check.count())
		}
	}
	time.Sleep(100 * time.Millisecond) // a late duplicate would show now
	check.mu.Lock()
	defer check.mu.Unlock()
	// A graceful stop finishes the attempts in flight and records them,
	// so no message is handled twice either.
	if check.inversions != 0 || check.overlaps != 0 || check.total != total {
		t.Errorf("%d handled (want %d), %d inversions, %d overlaps; want none", check.total, total, check.inversions, check.overlaps)
	}
}

// reportPending logs, for each table and ordering key, the oldest row
// that is not Succeeded and how many such rows the key has.
func reportPending(t *testing.T, s storage.Store) {
	t.Helper()
	for _, kind := range []storage.Kind{storage.Published, storage.Received} {
		oldest, count := map[string]*storage.Message{}, map[string]int{}
		for _, st := range []storage.Status{storage.StatusScheduled, storage.StatusDelayed, storage.StatusFailed} {
			before := int64(0)
			for range 100 { // pages of 100, newest first
				rows, err := s.List(context.Background(), storage.Filter{Kind: kind, Status: st, BeforeID: before, Limit: 100})
				if err != nil {
					t.Errorf("List %s %s: %v", kind, st, err)
					break
				}
				for _, m := range rows {
					oldest[m.OrderingKey] = m
					count[m.OrderingKey]++
				}
				if len(rows) < 100 {
					break
				}
				before = rows[len(rows)-1].ID
			}
		}
		for key, m := range oldest {
			t.Logf("%s key %q: %d rows not Succeeded; the oldest, %d: %s, group %q, retries %d, lease until %v (token %d), due %v, error %q",
				kind, key, count[key], m.ID, m.Status, m.Group, m.Retries, m.LeaseUntil, m.LeaseToken, m.NextAttemptAt, m.LastError)
		}
	}
}

func TestOrderingRestartPostgres(t *testing.T) { testOrderingRestart[pgx.Tx](t, postgresBackend) }
func TestOrderingRestartMySQL(t *testing.T)    { testOrderingRestart(t, mysqlBackend) }
func TestOrderingRestartSQLite(t *testing.T)   { testOrderingRestart(t, sqliteBackend) }
