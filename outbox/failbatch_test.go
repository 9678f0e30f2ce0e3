package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
)

// Failed attempts recorded in batches (#14): the rows of a batch send that
// the broker refuses are recorded with one storage.FailBatcher.FailBatch
// per batch, not one Store.Fail per row, also when Run stops.
func TestFailBatchPostgres(t *testing.T) { runFailBatch[pgx.Tx](t, postgresBackend) }
func TestFailBatchMySQL(t *testing.T)    { runFailBatch[*sql.Tx](t, mysqlBackend) }
func TestFailBatchSQLite(t *testing.T)   { runFailBatch[*sql.Tx](t, sqliteBackend) }

func runFailBatch[TTx any](t *testing.T, be backend[TTx]) {
	t.Run("SendBatchRefused", func(t *testing.T) { testFailBatchRefused(t, be) })
	t.Run("ShutdownWritesFailures", func(t *testing.T) { testShutdownWritesFailures(t, be) })
	t.Run("RefusedText", func(t *testing.T) { testFailBatchRefusedText(t, be) })
}

// failCounter is a driver that counts the Fail and FailBatch calls, and
// the rows of each FailBatch once it returned; gate, when set, holds the first FailBatch
// until it is closed.
type failCounter[TTx any] struct {
	storage.Driver[TTx]
	fails   atomic.Int32
	mu      sync.Mutex
	batches []int
	gate    chan struct{}
	entered chan struct{} // closed when the first FailBatch starts
	once    sync.Once
}

func newFailCounter[TTx any](d storage.Driver[TTx]) *failCounter[TTx] {
	return &failCounter[TTx]{Driver: d, entered: make(chan struct{})}
}

func (c *failCounter[TTx]) Fail(ctx context.Context, kind storage.Kind, lease storage.Lease, f storage.Failure) (storage.FailResult, error) {
	c.fails.Add(1)
	return c.Driver.Fail(ctx, kind, lease, f)
}

func (c *failCounter[TTx]) FailBatch(ctx context.Context, kind storage.Kind, rows []storage.FailedAttempt) ([]storage.FailOutcome, error) {
	c.once.Do(func() {
		close(c.entered)
		if c.gate != nil {
			<-c.gate
		}
	})
	out, err := c.Driver.(storage.FailBatcher).FailBatch(ctx, kind, rows)
	c.mu.Lock()
	c.batches = append(c.batches, len(rows))
	c.mu.Unlock()
	return out, err
}

func (c *failCounter[TTx]) batchSizes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.batches...)
}

// refusingSender is a transport whose broker refuses every message, one
// batch send at a time.
type refusingSender struct {
	transport.Transport
	sent atomic.Int32
	// mark, if set, is added to the refusal of every other message of a batch.
	mark string
}

func (r *refusingSender) Send(context.Context, string, transport.Message) error {
	r.sent.Add(1)
	return errors.New("simulated: the broker refused the message")
}

func (r *refusingSender) SendBatch(_ context.Context, msgs []transport.Outgoing) []error {
	r.sent.Add(int32(len(msgs)))
	errs := make([]error, len(msgs))
	for i := range errs {
		errs[i] = fmt.Errorf("simulated: the broker refused message %d of the batch", i)
		if r.mark != "" && i%2 == 0 {
			errs[i] = fmt.Errorf("%w: %s", errs[i], r.mark)
		}
	}
	return errs
}

// publishFailing commits n published rows: the even ones with a policy
// that makes them Failed at their first failure, the odd ones with one
// that retries them an hour later. It returns their ids.
func publishFailing[TTx any](t *testing.T, env dbEnv[TTx], ob *outbox.Outbox[TTx], n int) []int64 {
	t.Helper()
	tx, commit, _ := env.begin(t)
	ids := make([]int64, n)
	for i := range n {
		policy := outbox.RetryPolicy{ImmediateRetries: -1, Interval: time.Hour, MaxAttempts: 1}
		if i%2 == 1 {
			policy.MaxAttempts = 5
		}
		id, err := ob.Publish(context.Background(), tx, "order.paid", orderPaid{ID: i}, outbox.WithRetry(policy))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// checkFailedOnce checks that each row has one failed attempt recorded:
// retries 1, the broker's refusal as its error and in its history,
// Failed (even) or Scheduled for an hour later (odd). With shortened,
// the error may be the text recorded in place of one the storage refused.
func checkFailedOnce(t *testing.T, s storage.Store, ids []int64, published time.Time, shortened bool) {
	t.Helper()
	for i, id := range ids {
		r := getRow(t, s, storage.Published, id)
		want := storage.StatusFailed
		if i%2 == 1 {
			want = storage.StatusScheduled
		}
		refusal := strings.Contains(r.LastError, "simulated: the broker refused") ||
			shortened && strings.HasPrefix(r.LastError, "the storage refused this attempt's error text")
		if r.Retries != 1 || r.Status != want || !refusal ||
			len(r.Attempts) != 1 || r.Attempts[0].Error != r.LastError || r.LeaseToken != 0 {
			t.Fatalf("row %d (%d): %s, retries %d, error %q, %d attempts, lease %d; want %s after 1 attempt",
				i, id, r.Status, r.Retries, r.LastError, len(r.Attempts), r.LeaseToken, want)
		}
		if want == storage.StatusScheduled && r.NextAttemptAt.Before(published.Add(50*time.Minute)) {
			t.Errorf("row %d retried at %v; want an hour after %v", i, r.NextAttemptAt, published)
		}
	}
}

// testFailBatchRefused: 250 rows whose batch sends (of 100) are all
// refused are recorded with at most one FailBatch per send batch and no
// Fail, each row with its outcome; OnFailed is called once per Failed row.
func testFailBatchRefused[TTx any](t *testing.T, be backend[TTx]) {
	env := be.open(t)
	d := newFailCounter(env.driver(t))
	if _, ok := d.Driver.(storage.FailBatcher); !ok {
		t.Fatalf("the %s driver is no storage.FailBatcher", be.name)
	}
	tr := &refusingSender{Transport: memory.New(memory.Options{})}
	var onFailed atomic.Int32
	ob := newOutbox(t, d, tr, outbox.Options{
		OnFailed: func(context.Context, outbox.FailedMessage) { onFailed.Add(1) },
	})
	const n, sendBatch = 250, 100
	published := time.Now().UTC()
	ids := publishFailing(t, env, ob, n)
	run(t, ob)
	waitFor(t, 30*time.Second, "every row's failure recorded, and OnFailed called", func() bool {
		total := int(d.fails.Load())
		for _, b := range d.batchSizes() {
			total += b
		}
		return total >= n && onFailed.Load() >= n/2
	})
	time.Sleep(100 * time.Millisecond) // no more calls of either
	sizes := d.batchSizes()
	if fails := d.fails.Load(); fails != 0 || len(sizes) > (n+sendBatch-1)/sendBatch {
		t.Errorf("%d rows failed in batch sends of %d: %d Fail calls and FailBatch calls of %v; want no Fail and at most %d FailBatch",
			n, sendBatch, fails, sizes, (n+sendBatch-1)/sendBatch)
	}
	if got := onFailed.Load(); got != n/2 {
		t.Errorf("OnFailed called %d times, want %d", got, n/2)
	}
	checkFailedOnce(t, ob.Store(), ids, published, false)
}

// testShutdownWritesFailures: failures handed over while a FailBatch is
// being written, and Run is stopped, are all written before Run returns.
func testShutdownWritesFailures[TTx any](t *testing.T, be backend[TTx]) {
	env := be.open(t)
	d := newFailCounter(env.driver(t))
	d.gate = make(chan struct{})
	tr := &refusingSender{Transport: memory.New(memory.Options{})}
	ob := newOutbox(t, d, tr, outbox.Options{})
	const n = 250
	published := time.Now().UTC()
	ids := publishFailing(t, env, ob, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx) }()
	select {
	case <-d.entered: // the first batch is being written, and held
	case <-time.After(30 * time.Second):
		t.Fatal("no FailBatch started")
	}
	waitFor(t, 30*time.Second, "every row attempted", func() bool { return tr.sent.Load() >= n })
	cancel()
	time.Sleep(200 * time.Millisecond) // Run is stopping, with failures pending
	close(d.gate)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("Run did not return")
	}
	total := 0
	for _, b := range d.batchSizes() {
		total += b
	}
	if total != n || d.fails.Load() != 0 {
		t.Errorf("FailBatch calls of %v rows and %d Fail calls; want %d rows in all", d.batchSizes(), d.fails.Load(), n)
	}
	checkFailedOnce(t, ob.Store(), ids, published, false)
}

// textRefuser is a driver that refuses, as a database refuses a value it
// cannot hold, every error text containing mark: a FailBatch with such a
// row, and a Fail of such a text.
type textRefuser[TTx any] struct {
	*failCounter[TTx]
	mark    string
	refused atomic.Int32 // FailBatch calls refused
}

func (r *textRefuser[TTx]) FailBatch(ctx context.Context, kind storage.Kind, rows []storage.FailedAttempt) ([]storage.FailOutcome, error) {
	for _, row := range rows {
		if strings.Contains(row.Failure.Error, r.mark) {
			r.refused.Add(1)
			return nil, fmt.Errorf("simulated: invalid byte sequence in row %d: %w", row.ID, storage.ErrPermanent)
		}
	}
	return r.failCounter.FailBatch(ctx, kind, rows)
}

func (r *textRefuser[TTx]) Fail(ctx context.Context, kind storage.Kind, lease storage.Lease, f storage.Failure) (storage.FailResult, error) {
	if strings.Contains(f.Error, r.mark) {
		r.fails.Add(1)
		return storage.FailResult{}, fmt.Errorf("simulated: invalid byte sequence: %w", storage.ErrPermanent)
	}
	return r.failCounter.Fail(ctx, kind, lease, f)
}

// testFailBatchRefusedText: when the storage refuses a batch for the
// error text of some of its rows, every row is recorded alone, those
// with a shortened text, so that each row's retry count advances.
func testFailBatchRefusedText[TTx any](t *testing.T, be backend[TTx]) {
	env := be.open(t)
	const mark = "TEXT-THE-STORAGE-REFUSES"
	d := &textRefuser[TTx]{failCounter: newFailCounter(env.driver(t)), mark: mark}
	tr := &refusingSender{Transport: memory.New(memory.Options{}), mark: mark}
	ob := newOutbox(t, d, tr, outbox.Options{})
	const n = 40
	published := time.Now().UTC()
	ids := publishFailing(t, env, ob, n)
	run(t, ob)
	waitFor(t, 30*time.Second, "every row's failure recorded", func() bool {
		for _, id := range ids {
			if getRow(t, ob.Store(), storage.Published, id).Retries == 0 {
				return false
			}
		}
		return true
	})
	if d.refused.Load() == 0 {
		t.Error("no FailBatch was refused: the test did not test the fallback")
	}
	checkFailedOnce(t, ob.Store(), ids, published, true)
	shortened := 0
	for _, id := range ids {
		r := getRow(t, ob.Store(), storage.Published, id)
		if strings.Contains(r.LastError, mark) {
			t.Errorf("row %d: the refused text was stored: %q", id, r.LastError)
		}
		if strings.HasPrefix(r.LastError, "the storage refused this attempt's error text") {
			shortened++
		}
	}
	if shortened == 0 || shortened == n {
		t.Errorf("%d of %d rows with a shortened error text; want those whose text was refused alone", shortened, n)
	}
}
