package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/wire"
)

// runReliability runs the cases of malformed input and failing storage: no
// delivery is handed back to the broker for ever, and every one ends as a
// visible row.
func runReliability[TTx any](t *testing.T, be backend[TTx]) {
	t.Run("PoisonDeliveries", func(t *testing.T) { testPoisonDeliveries(t, be) })
	t.Run("UnstorableDelivery", func(t *testing.T) { testUnstorable(t, be) })
	t.Run("LongMultibyteError", func(t *testing.T) { testLongError(t, be) })
}

// foreignPublishAll sends msgs on one channel, with confirms, as a foreign
// program would.
func foreignPublishAll(t *testing.T, url, exchange, routingKey string, msgs []amqp.Publishing) {
	t.Helper()
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	var dcs []*amqp.DeferredConfirmation
	for _, m := range msgs {
		m.DeliveryMode = amqp.Persistent
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, routingKey, false, false, m)
		if err != nil {
			t.Fatal(err)
		}
		dcs = append(dcs, dc)
	}
	for _, dc := range dcs {
		if ok, err := dc.WaitContext(context.Background()); !ok || err != nil {
			t.Fatalf("foreign publish not confirmed: %v", err)
		}
	}
}

// receivedRows returns every received row.
func receivedRows(t *testing.T, s storage.Store) []*storage.Message {
	t.Helper()
	var all []*storage.Message
	var before int64
	for range 100 {
		page, err := s.List(context.Background(), storage.Filter{Kind: storage.Received, BeforeID: before, Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if len(page) < 500 {
			return all
		}
		before = page[len(page)-1].ID
	}
	t.Fatal("too many received rows")
	return nil
}

// testPoisonDeliveries sends 30 deliveries that no database stores as they
// are (over-long ids, NUL and binary headers, ids that are not UTF-8), more
// than the prefetch of 16, then 20 good ones: the good ones are handled
// within 5 s, and every poison one ends as a visible row.
func testPoisonDeliveries[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	tr, ex := rabbitFor(t, url) // prefetch 16
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{})
	var mu sync.Mutex
	handled := map[string]bool{}
	if err := outbox.Subscribe(ob, "order.paid", func(_ context.Context, m outbox.Received[[]byte]) error {
		mu.Lock()
		defer mu.Unlock()
		handled[m.ID] = true
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitConsumers(t, ob)

	var poison []amqp.Publishing
	for i := range 6 {
		poison = append(poison,
			amqp.Publishing{Headers: amqp.Table{"cap-msg-id": fmt.Sprintf("%d-%s", i, strings.Repeat("x", 10000))}, Body: []byte("{}")},
			amqp.Publishing{Headers: amqp.Table{"cap-msg-id": fmt.Sprintf("%d-%s", i, strings.Repeat("é", 1500))}, Body: []byte("{}")},
			amqp.Publishing{Headers: amqp.Table{"cap-msg-id": fmt.Sprintf("nul-%d", i), "x-note": "a\x00b"}, Body: []byte("{}")},
			amqp.Publishing{Headers: amqp.Table{"cap-msg-id": fmt.Sprintf("bin-%d", i), "x-bin": []byte{0xff, 0x00, 0xfe, byte(i)}}, Body: []byte("{}")},
			amqp.Publishing{Headers: amqp.Table{"cap-msg-id": fmt.Sprintf("utf8-\xff\xfe-%d", i)}, Body: []byte("{}")},
		)
	}
	foreignPublishAll(t, url, ex, "order.paid", poison)
	var good []amqp.Publishing
	for i := range 20 {
		good = append(good, amqp.Publishing{Headers: amqp.Table{"cap-msg-id": fmt.Sprintf("good-%d", i)}, Body: []byte("{}")})
	}
	start := time.Now()
	foreignPublishAll(t, url, ex, "order.paid", good)
	waitFor(t, 5*time.Second, "the 20 good messages handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range 20 {
			if !handled[fmt.Sprintf("good-%d", i)] {
				return false
			}
		}
		return true
	})
	t.Logf("20 good messages behind 30 poison ones handled in %v", time.Since(start).Round(time.Millisecond))

	// Every delivery ends as a visible row, Succeeded or Failed.
	waitFor(t, 10*time.Second, "50 received rows, none Scheduled", func() bool {
		rows := receivedRows(t, ob.Store())
		if len(rows) != 50 {
			return false
		}
		for _, r := range rows {
			if r.Status == storage.StatusScheduled {
				return false
			}
		}
		return true
	})
	for _, r := range receivedRows(t, ob.Store()) {
		if !utf8.ValidString(r.MsgID) || len(r.MsgID) > storage.MaxMsgIDBytes {
			t.Errorf("row %d: msg id %.80q is not storable text", r.ID, r.MsgID)
		}
		for k, v := range r.Headers {
			if !utf8.ValidString(k) || !utf8.ValidString(v) || strings.ContainsRune(k+v, 0) {
				t.Errorf("row %d: header %q = %.80q is not valid text", r.ID, k, v)
			}
		}
	}
}

// refusingDriver is a real driver whose InsertReceived refuses some
// messages, as a database refuses a value it cannot hold.
type refusingDriver[TTx any] struct {
	storage.Driver[TTx]
	refuse func(m *storage.Message) error
}

func (d refusingDriver[TTx]) InsertReceived(ctx context.Context, m *storage.Message, token int64, leaseUntil time.Time) (storage.ReceivedInsert, error) {
	if err := d.refuse(m); err != nil {
		return storage.ReceivedInsert{}, err
	}
	return d.Driver.InsertReceived(ctx, m, token, leaseUntil)
}

// testUnstorable checks the last resort: a delivery the storage refuses
// permanently, one it keeps failing on with an error that looks
// transient, and one with a 4-byte character in a header, which a storage
// that cannot hold such characters refuses (a MySQL session in utf8mb3),
// each become a Failed row with the reason and the original headers
// (quoted in ASCII, so that even that storage holds them), OnFailed is
// called once for each, and good deliveries flow.
func testUnstorable[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	tr, ex := rabbitFor(t, url)
	var transientTries atomic.Int32
	d := refusingDriver[TTx]{Driver: env.driver(t), refuse: func(m *storage.Message) error {
		for k, v := range m.Headers { // the fallback row's too
			if i := strings.IndexFunc(k+v, func(r rune) bool { return r > 0xFFFF }); i >= 0 {
				return fmt.Errorf("simulated: incorrect string value %q for a 3-byte character set: %w", (k + v)[i:], storage.ErrPermanent)
			}
		}
		if _, fallback := m.Headers[wire.UnstorableHeaders]; fallback {
			return nil
		}
		switch m.MsgID {
		case "refused-permanently":
			return fmt.Errorf("simulated: value too long for column: %w", storage.ErrPermanent)
		case "refused-transiently":
			transientTries.Add(1)
			return errors.New("simulated: connection reset by peer")
		}
		return nil
	}}
	var failedMu sync.Mutex
	var failed []string
	ob := newOutbox(t, d, tr, outbox.Options{OnFailed: func(_ context.Context, f outbox.FailedMessage) {
		failedMu.Lock()
		defer failedMu.Unlock()
		failed = append(failed, f.Message.MsgID)
	}})
	var handled atomic.Int32
	if err := outbox.Subscribe(ob, "order.paid", func(_ context.Context, m outbox.Received[[]byte]) error {
		if m.ID == "refused-permanently" || m.ID == "refused-transiently" {
			t.Errorf("the handler ran for %s", m.ID)
		}
		handled.Add(1)
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitConsumers(t, ob)
	foreignPublishAll(t, url, ex, "order.paid", []amqp.Publishing{
		{Headers: amqp.Table{"cap-msg-id": "refused-permanently", "x-tenant": "acme"}, Body: []byte(`{"n":1}`)},
		{Headers: amqp.Table{"cap-msg-id": "refused-transiently", "x-tenant": "acme"}, Body: []byte(`{"n":2}`)},
		{Headers: amqp.Table{"cap-msg-id": "refused-4byte", "x-tenant": "acme", "x-note": "party 🎉"}, Body: []byte(`{"n":3}`)},
		{Headers: amqp.Table{"cap-msg-id": "fine-1"}, Body: []byte(`{}`)},
		{Headers: amqp.Table{"cap-msg-id": "fine-2"}, Body: []byte(`{}`)},
	})
	waitFor(t, 30*time.Second, "the three refused deliveries Failed", func() bool {
		n := 0
		for _, r := range receivedRows(t, ob.Store()) {
			if r.Status == storage.StatusFailed {
				n++
			}
		}
		return n == 3 && handled.Load() == 2
	})
	for _, r := range receivedRows(t, ob.Store()) {
		if r.Status != storage.StatusFailed {
			continue
		}
		if !strings.Contains(r.LastError, "could not be stored") || !strings.Contains(r.LastError, "simulated") {
			t.Errorf("%s: last error %q does not give the reason", r.MsgID, r.LastError)
		}
		if q := r.Headers[wire.UnstorableHeaders]; !strings.Contains(q, `"x-tenant": "acme"`) {
			t.Errorf("%s: original headers not kept: %q", r.MsgID, q)
		}
		if len(r.Body) == 0 {
			t.Errorf("%s: body not kept", r.MsgID)
		}
		if r.MsgID == "refused-4byte" {
			if q := r.Headers[wire.UnstorableHeaders]; !strings.Contains(q, `"x-note": "party \U0001f389"`) {
				t.Errorf("%s: original headers not kept in ASCII: %q", r.MsgID, q)
			}
			if strings.ContainsFunc(r.LastError, func(r rune) bool { return r > 0x7F }) {
				t.Errorf("%s: last error %q is not ASCII", r.MsgID, r.LastError)
			}
		}
	}
	if n := transientTries.Load(); n < 5 || n > 30 {
		t.Errorf("the transiently refused delivery was tried %d times; want a bounded number, at least 5", n)
	}
	time.Sleep(300 * time.Millisecond) // OnFailed runs just after the row is marked
	failedMu.Lock()
	defer failedMu.Unlock()
	slices.Sort(failed)
	if !slices.Equal(failed, []string{"refused-4byte", "refused-permanently", "refused-transiently"}) {
		t.Errorf("OnFailed called for %q, want each refused message once", failed)
	}
}

// testLongError: a handler error of 120 KB of multi-byte characters is
// stored cut on a character boundary, and the row ends Failed after the
// policy's attempts with OnFailed called once.
func testLongError[TTx any](t *testing.T, be backend[TTx]) {
	url := testenv.AMQPURL(t)
	env := be.open(t)
	tr, _ := rabbitFor(t, url)
	var onFailed atomic.Int32
	ob := newOutbox(t, env.driver(t), tr, outbox.Options{
		Retry:    outbox.RetryPolicy{ImmediateRetries: 3, MaxAttempts: 3},
		OnFailed: func(context.Context, outbox.FailedMessage) { onFailed.Add(1) },
	})
	var calls atomic.Int32
	if err := outbox.Subscribe(ob, "order.paid", func(context.Context, outbox.Received[orderPaid]) error {
		calls.Add(1)
		return errors.New("xy" + strings.Repeat("日本", 20000)) // a cut at 4,000 bytes splits a character
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitConsumers(t, ob)
	if _, err := ob.PublishWithoutTx(context.Background(), "order.paid", orderPaid{ID: 9}); err != nil {
		t.Fatal(err)
	}
	row := firstReceived(t, ob.Store(), storage.StatusFailed)
	waitFor(t, 5*time.Second, "OnFailed", func() bool { return onFailed.Load() >= 1 })
	time.Sleep(200 * time.Millisecond)
	if row.Retries != 3 || calls.Load() != 3 || onFailed.Load() != 1 {
		t.Errorf("retries %d, handler calls %d, OnFailed calls %d; want 3, 3, 1", row.Retries, calls.Load(), onFailed.Load())
	}
	if !utf8.ValidString(row.LastError) || !strings.HasPrefix(row.LastError, "xy日本") || len(row.LastError) > 20000 {
		t.Errorf("last error: %d bytes, valid %v, starts %.20q", len(row.LastError), utf8.ValidString(row.LastError), row.LastError)
	}
}

// countingHandler counts the log records whose message contains substr.
type countingHandler struct {
	slog.Handler
	substr string
	n      *atomic.Int32
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.substr) {
		h.n.Add(1)
	}
	return nil
}

func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }
