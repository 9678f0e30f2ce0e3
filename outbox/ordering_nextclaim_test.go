package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
)

// claimCounter is the SQLite storage, counting the claims that found rows
// and the rows SucceedClaimNext handed on.
type claimCounter struct {
	*sqlite.Driver
	claims, next atomic.Int64
}

func (c *claimCounter) Claim(ctx context.Context, kind storage.Kind, req storage.ClaimRequest) ([]*storage.Message, error) {
	ms, err := c.Driver.Claim(ctx, kind, req)
	if len(ms) > 0 {
		c.claims.Add(1)
	}
	return ms, err
}

func (c *claimCounter) SucceedClaimNext(ctx context.Context, kind storage.Kind, done []storage.Completed, expiresAt time.Time, req storage.ClaimRequest) (int64, []*storage.Message, error) {
	n, ms, err := c.Driver.SucceedClaimNext(ctx, kind, done, expiresAt, req)
	c.next.Add(int64(len(ms)))
	return n, ms, err
}

// TestOrderingNextClaimSQLite: with a Store that is a storage.NextClaimer,
// the processor hands a key's next row on with the Succeed of the one
// before (#18): 20 messages of one key, committed together, are sent and
// handled in order with a claim or two, not a claim per message.
func TestOrderingNextClaimSQLite(t *testing.T) {
	const n = 20
	env := sqliteBackend.open(t)
	d := &claimCounter{Driver: env.driver(t).(*sqlite.Driver)}
	broker := memory.NewBroker(memory.Options{})
	ob := newOutbox[*sql.Tx](t, d, broker.Transport(), outbox.Options{PollInterval: time.Hour})
	check := newOrderCheck()
	if err := outbox.Subscribe(ob, "ordered.t", func(_ context.Context, m outbox.Received[keyedMsg]) error {
		return check.handle(m.Value, nil)
	}, outbox.Group("g")); err != nil {
		t.Fatal(err)
	}
	// The group's queue is bound once Run consumes: a send before that is
	// unroutable, a failure, and its retry a claim. A second topic of the
	// group tells when: the broker routes it once the group is bound.
	if err := outbox.Subscribe(ob, "probe.t", func(context.Context, outbox.Received[string]) error { return nil }, outbox.Group("g")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitFor(t, 10*time.Second, "group g bound", func() bool {
		return broker.Transport().Send(context.Background(), "probe.t", transport.Message{Body: []byte(`"probe"`)}) == nil
	})
	tx, commit, _ := env.begin(t)
	for seq := range n {
		if _, err := ob.Publish(context.Background(), tx, "ordered.t", keyedMsg{Key: "k", Seq: seq}, outbox.WithOrderingKey("k")); err != nil {
			t.Fatal(err)
		}
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	ob.Wake(storage.Published) // committed outside outbox.InTx, which would wake it
	waitFor(t, 20*time.Second, fmt.Sprintf("%d messages handled", n), func() bool { return check.count() == n })
	check.mu.Lock()
	defer check.mu.Unlock()
	if check.inversions != 0 || check.overlaps != 0 {
		t.Errorf("%d inversions, %d overlaps; want none", check.inversions, check.overlaps)
	}
	// The first row of the key is claimed on the published side; every
	// later one comes with the Succeed of the one before, or is stored
	// leased as the head of its key as it is received. (The probe's
	// delivery is stored leased: no claim.)
	if c := d.claims.Load(); c > 3 {
		t.Errorf("%d claims found rows, %d rows handed on by SucceedClaimNext; want at most 3 claims for %d messages of one key", c, d.next.Load(), n)
	}
	if next := d.next.Load(); next < n-1 {
		t.Errorf("SucceedClaimNext handed on %d rows, want at least the %d sends after the first", next, n-1)
	}
}
