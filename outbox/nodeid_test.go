package outbox_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gocap/gocap/internal/testlog"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/transport/memory"
)

// renewalLog is a log that counts the engine's warnings that it moved to
// another snowflake node.
type renewalLog struct{ testlog.Buffer }

func (l *renewalLog) logger() *slog.Logger { return l.Logger(slog.LevelWarn) }

func (l *renewalLog) renewals() int { return strings.Count(l.String(), "moved to a random node") }

// testSharedNodeID: two live outboxes configured with the same NodeID make
// the same ids; neither a Publish fails nor a delivery is lost for it. Two
// publishers on one node publish concurrently (a quarter of the messages
// in an application transaction beside a business row), two subscribers of one
// group on another node store the deliveries concurrently, until each
// side has met a collision (seen as the engine's warning that it moved to
// another node); every message is then handled exactly once.
func testSharedNodeID[TTx any](t *testing.T, be backend[TTx]) {
	env := be.open(t)
	broker := memory.NewBroker(memory.Options{RequeueDelay: 10 * time.Millisecond})
	var pubLog, recvLog renewalLog

	var mu sync.Mutex
	handled := map[int]int{}
	var publishers []*outbox.Outbox[TTx]
	for range 2 {
		ob := newOutbox(t, env.driver(t), broker.Transport(), outbox.Options{NodeID: 7, Logger: pubLog.logger()})
		run(t, ob)
		publishers = append(publishers, ob)
	}
	for range 2 {
		ob := newOutbox(t, env.driver(t), broker.Transport(), outbox.Options{NodeID: 9, Logger: recvLog.logger()})
		err := outbox.Subscribe(ob, "shared.node", func(_ context.Context, m outbox.Received[int]) error {
			mu.Lock()
			handled[m.Value]++
			mu.Unlock()
			return nil
		}, outbox.Group("g"))
		if err != nil {
			t.Fatal(err)
		}
		run(t, ob)
		waitConsumers(t, ob)
	}

	// Publish in rounds, each outbox from 4 goroutines at once, until both
	// sides have collided (or the bound is reached).
	ctx := context.Background()
	const perRound, maxRounds = 200, 25
	total := 0
	deadline := time.Now().Add(60 * time.Second)
	for round := 0; round < maxRounds && time.Now().Before(deadline); round++ {
		var wg sync.WaitGroup
		errs := make(chan error, perRound)
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ob := publishers[g%2]
				for i := g; i < perRound; i += 8 {
					if g%4 != 0 {
						if _, err := ob.PublishWithoutTx(ctx, "shared.node", total+i); err != nil {
							errs <- err
							return
						}
						continue
					}
					// In the application's transaction, beside a business
					// row: a taken id must not abort it.
					tx, commit, rollback := env.begin(t)
					env.exec(t, tx, fmt.Sprint(total+i))
					if _, err := ob.Publish(ctx, tx, "shared.node", total+i); err != nil {
						rollback()
						errs <- err
						return
					}
					if err := commit(); err != nil {
						errs <- fmt.Errorf("commit: %w", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("publish with a shared node id: %v", err)
		}
		total += perRound
		waitFor(t, 60*time.Second, fmt.Sprintf("%d messages handled", total), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(handled) >= total
		})
		if pubLog.renewals() > 0 && recvLog.renewals() > 0 {
			break
		}
	}
	if pubLog.renewals() == 0 || recvLog.renewals() == 0 {
		t.Fatalf("after %d messages: %d renewals by the publishers, %d by the subscribers; want a collision on each side",
			total, pubLog.renewals(), recvLog.renewals())
	}
	t.Logf("%d messages; node renewals: %d by the publishers, %d by the subscribers", total, pubLog.renewals(), recvLog.renewals())

	time.Sleep(200 * time.Millisecond) // a duplicate handling would show by now
	mu.Lock()
	defer mu.Unlock()
	for v := range total {
		if handled[v] != 1 {
			t.Errorf("message %d handled %d times, want once", v, handled[v])
		}
	}
	if len(handled) != total {
		t.Errorf("%d distinct messages handled, want %d", len(handled), total)
	}
}

func TestSharedNodeIDPostgres(t *testing.T) { testSharedNodeID[pgx.Tx](t, postgresBackend) }
func TestSharedNodeIDMySQL(t *testing.T)    { testSharedNodeID(t, mysqlBackend) }
func TestSharedNodeIDSQLite(t *testing.T)   { testSharedNodeID(t, sqliteBackend) }
