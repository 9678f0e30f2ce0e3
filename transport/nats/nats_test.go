package nats_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gocap/gocap/internal/testlog"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/nats"
	"github.com/gocap/gocap/transport/transporttest"
	"github.com/gocap/gocap/wire"
)

// deliveries consumes topic as group "conformance" until the test ends.
func deliveries(t *testing.T, tr *nats.Transport, topic string) <-chan transport.Delivery {
	t.Helper()
	got := make(chan transport.Delivery, 16)
	transporttest.Consume(t, tr, "conformance", []string{topic}, func(_ context.Context, d transport.Delivery) error {
		got <- d
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	return got
}

func timeout(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestForeignPublisher publishes as DotNetCore.CAP's NATSTransport.SendAsync
// does — a plain JetStream publish to the topic's subject with CAP's
// headers and Nats-Msg-Id = cap-msg-id — and checks what the consumer gets.
func TestForeignPublisher(t *testing.T) {
	tr, _, iso := newTransport(t, nats.Config{})
	got := deliveries(t, tr, "order.paid")
	js := jetStream(t)
	m := natsgo.NewMsg(iso.subject("order.paid"))
	capHeaders := map[string]string{
		wire.MsgID: "2125444000991662080", wire.MsgName: "order.paid", wire.MsgType: "OrderPaid",
		wire.SentTime: "11/25/2026 10:30:00 +08:00", wire.CorrelationID: "2125444000991662080",
		wire.CorrelationSeq: "0", "x-tenant": "acme",
	}
	for k, v := range capHeaders {
		m.Header.Set(k, v)
	}
	m.Data = []byte(`{"Id":42}`)
	if _, err := js.PublishMsg(timeout(t), m, jetstream.WithMsgID(capHeaders[wire.MsgID])); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if string(d.Body) != `{"Id":42}` {
			t.Errorf("body %q", d.Body)
		}
		if d.Topic != "order.paid" {
			t.Errorf("topic %q, want order.paid (the subject without the prefix)", d.Topic)
		}
		if len(d.Headers) != len(capHeaders) {
			t.Errorf("headers %q, want exactly %q (Nats-Msg-Id left out)", d.Headers, capHeaders)
		}
		for k, v := range capHeaders {
			if d.Headers[k] != v {
				t.Errorf("header %s = %q, want %q", k, d.Headers[k], v)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the foreign message did not arrive")
	}
}

// TestSharesCAPStream creates a stream as CAP's consumer client does (in
// memory, named by the topic's first word, with the subscribed topic as
// its subject) and checks that gocap publishes and consumes on it: it adds
// its subjects and keeps CAP's configuration.
func TestSharesCAPStream(t *testing.T) {
	tr, _, iso := newTransport(t, nats.Config{})
	js := jetStream(t)
	ctx := timeout(t)
	stream := iso.stream("order.paid")
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{iso.subject("order.paid")}, Storage: jetstream.MemoryStorage,
	}); err != nil {
		t.Fatal(err)
	}
	got := deliveries(t, tr, "order.#")
	for i, topic := range []string{"order.paid", "order.shipped"} {
		if err := tr.Send(ctx, topic, transport.Message{Headers: map[string]string{wire.MsgID: fmt.Sprint(i)}, Body: []byte("x")}); err != nil {
			t.Fatalf("Send(%s): %v", topic, err)
		}
	}
	for range 2 {
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("a message on CAP's stream did not arrive")
		}
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Storage != jetstream.MemoryStorage {
		t.Errorf("the stream's storage became %v; CAP created it in memory", cfg.Storage)
	}
	want := []string{iso.subject("order"), iso.subject("order.>")}
	if fmt.Sprint(cfg.Subjects) != fmt.Sprint(want) {
		t.Errorf("stream subjects %q, want %q (order.paid is covered by order.>)", cfg.Subjects, want)
	}
	if s.CachedInfo().State.Msgs != 2 {
		t.Errorf("the stream holds %d messages, want 2", s.CachedInfo().State.Msgs)
	}
}

// TestCAPStorageMismatch: DotNetCore.CAP (default options) updates an
// existing stream with memory storage and its own subjects; the server
// refuses it for the file stream gocap created, so CAP's topics are not
// added (what the package doc says, and why both sides must ask for one
// storage). gocap warns when it finds an existing stream whose storage is
// not Config.Storage, and uses it as it is.
func TestCAPStorageMismatch(t *testing.T) {
	var logs testlog.Buffer
	tr, _, iso := newTransport(t, nats.Config{Logger: logs.Logger(slog.LevelWarn)})
	js := jetStream(t)
	ctx := timeout(t)
	if err := tr.Send(ctx, "order.paid", transport.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	_, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: iso.stream("order"), Storage: jetstream.MemoryStorage,
		Subjects: []string{iso.subject("order.shipped")}})
	if err == nil {
		t.Fatal("CAP's update of gocap's file stream to memory storage succeeded; the package doc says the server refuses it")
	}
	if strings.Contains(logs.String(), "storage") {
		t.Errorf("a warning about the storage of the stream gocap created with Config.Storage: %s", logs.String())
	}

	stream := iso.stream("invoice")
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{iso.subject("invoice.sent")}, Storage: jetstream.MemoryStorage,
	}); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"invoice.sent", "invoice.paid"} {
		if err := tr.Send(ctx, topic, transport.Message{Body: []byte("x")}); err != nil {
			t.Fatalf("Send(%s) to CAP's memory stream: %v", topic, err)
		}
	}
	got := logs.String()
	if strings.Count(got, "storage is not Config.Storage") != 1 || !strings.Contains(got, "stream="+stream) ||
		!strings.Contains(got, "storage=Memory") || !strings.Contains(got, "config_storage=File") {
		t.Errorf("want one warning naming stream %s, its storage Memory and Config.Storage File; logs:\n%s", stream, got)
	}
}

// TestDuplicateStoredOnce sends a message twice with one cap-msg-id: the
// stream stores it once (Nats-Msg-Id), and both sends succeed. A message
// without cap-msg-id has no Nats-Msg-Id, and is stored each time.
func TestDuplicateStoredOnce(t *testing.T) {
	tr, _, iso := newTransport(t, nats.Config{})
	ctx := timeout(t)
	m := transport.Message{Headers: map[string]string{wire.MsgID: "2125444000991662080"}, Body: []byte("once")}
	for i := range 2 {
		if err := tr.Send(ctx, "order.paid", m); err != nil {
			t.Fatalf("send %d: %v", i+1, err)
		}
	}
	if errs := tr.SendBatch(ctx, []transport.Outgoing{{Topic: "order.paid", Message: m}}); errs[0] != nil {
		t.Fatalf("SendBatch of the same message: %v", errs[0])
	}
	js := jetStream(t)
	count := func() uint64 {
		s, err := js.Stream(ctx, iso.stream("order.paid"))
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.Msgs
	}
	if n := count(); n != 1 {
		t.Fatalf("the stream holds %d messages after 3 sends of one message id, want 1", n)
	}
	anon := transport.Message{Body: []byte("no id")}
	for range 2 {
		if err := tr.Send(ctx, "order.paid", anon); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 3 {
		t.Fatalf("the stream holds %d messages after 2 sends without an id, want 3", n)
	}
}

// permanent reports whether err says retrying cannot help, as the outbox
// asks it.
func permanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// TestRefused checks that messages the server or NATS refuses fail
// permanently, naming the subject, and not as unavailable.
func TestRefused(t *testing.T) {
	tr, _, iso := newTransport(t, nats.Config{})
	fixed, _, fixedIso := newTransport(t, nats.Config{FixedStreams: true})
	ctx := timeout(t)
	cases := []struct {
		name  string
		tr    *nats.Transport
		topic string
		msg   transport.Message
		want  string
	}{
		{"NoStream", fixed, "order.paid", transport.Message{Body: []byte("x")}, "no stream holds the subject"},
		{"TooLarge", tr, "order.paid", transport.Message{Body: make([]byte, 2<<20)}, "maximum payload"},
		{"LineBreak", tr, "order.paid", transport.Message{Headers: map[string]string{"x-note": "a\r\nb"}, Body: []byte("x")}, `header "x-note"`},
		{"Padded", tr, "order.paid", transport.Message{Headers: map[string]string{"x-note": " a"}, Body: []byte("x")}, `header "x-note"`},
		{"BadName", tr, "order.paid", transport.Message{Headers: map[string]string{"x note": "a"}, Body: []byte("x")}, `header name "x note"`},
		{"Pattern", tr, "order.*", transport.Message{Body: []byte("x")}, "not a pattern"},
		{"Space", tr, "order paid", transport.Message{Body: []byte("x")}, "white space"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.tr.Send(ctx, c.topic, c.msg)
			var re *nats.RefusedError
			if !errors.As(err, &re) || !permanent(err) || errors.Is(err, transport.ErrUnavailable) {
				t.Fatalf("Send: %v, want a permanent *nats.RefusedError", err)
			}
			subject := iso.subject(c.topic)
			if c.tr == fixed {
				subject = fixedIso.subject(c.topic)
			}
			if re.Subject != subject || !strings.Contains(err.Error(), subject) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to name subject %q and say %q", err, subject, c.want)
			}
		})
	}
	// The refusals did not disturb the connection.
	if err := tr.Send(ctx, "order.paid", transport.Message{Body: []byte("fine")}); err != nil {
		t.Errorf("Send after the refusals: %v", err)
	}
}

// TestFullStream: a stream whose limits are reached with Discard: New
// (MaxMsgs, MaxBytes, MaxMsgsPerSubject) fails a send with an error that is
// a failed attempt — neither transport.ErrUnavailable (it was, and looped
// for ever uncounted while pausing every send) nor permanent — and the
// send succeeds once the stream has room. A message larger than the
// stream's MaxMsgSize stays a permanent refusal.
func TestFullStream(t *testing.T) {
	tr, _, iso := newTransport(t, nats.Config{})
	js := jetStream(t)
	ctx := timeout(t)
	limits := map[string]jetstream.StreamConfig{
		"msgs":    {MaxMsgs: 1},
		"bytes":   {MaxBytes: 300},
		"subject": {MaxMsgsPerSubject: 1, DiscardNewPerSubject: true},
	}
	for name, cfg := range limits {
		t.Run(name, func(t *testing.T) {
			cfg.Name, cfg.Subjects, cfg.Discard = iso.stream(name), []string{iso.subject(name + ".>")}, jetstream.DiscardNew
			s, err := js.CreateStream(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			m := transport.Message{Body: make([]byte, 200)}
			if err := tr.Send(ctx, name+".x", m); err != nil {
				t.Fatalf("first send: %v", err)
			}
			err = tr.Send(ctx, name+".x", m)
			if err == nil || errors.Is(err, transport.ErrUnavailable) || permanent(err) {
				t.Fatalf("send to the full stream: %v, want a failed attempt (not ErrUnavailable, not permanent)", err)
			}
			if !strings.Contains(err.Error(), iso.subject(name+".x")) || !strings.Contains(err.Error(), "limit") {
				t.Errorf("error %q, want it to name the subject and the limit", err)
			}
			if err := s.Purge(ctx); err != nil {
				t.Fatal(err)
			}
			if err := tr.Send(ctx, name+".x", m); err != nil {
				t.Errorf("send once the stream has room: %v", err)
			}
		})
	}
	t.Run("MaxMsgSize", func(t *testing.T) {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: iso.stream("small"), Subjects: []string{iso.subject("small.>")}, MaxMsgSize: 16,
		}); err != nil {
			t.Fatal(err)
		}
		err := tr.Send(ctx, "small.x", transport.Message{Body: make([]byte, 32)})
		if !permanent(err) || errors.Is(err, transport.ErrUnavailable) {
			t.Errorf("send of a message larger than the stream's MaxMsgSize: %v, want a permanent error", err)
		}
	})
}

// TestSubjectsReplaced removes a published topic's subject from its
// stream, as CAP's consumer client does when it updates the stream with
// its own subjects, and checks that the next send adds it again.
func TestSubjectsReplaced(t *testing.T) {
	tr, _, iso := newTransport(t, nats.Config{})
	ctx := timeout(t)
	m := transport.Message{Body: []byte("x")}
	if err := tr.Send(ctx, "order.paid", m); err != nil {
		t.Fatal(err)
	}
	js := jetStream(t)
	s, err := js.Stream(ctx, iso.stream("order"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Subjects = []string{iso.subject("order.other")}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := tr.Send(ctx, "order.paid", m); err != nil {
		t.Fatalf("Send after the subject left its stream: %v", err)
	}
	if s, err = js.Stream(ctx, iso.stream("order")); err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 2 {
		t.Errorf("the stream holds %d messages, want 2", n)
	}
}

// TestPatternsNATSCannotExpress checks that Consume refuses, naming it, a
// pattern whose stream cannot be named or whose '#' is not the last word.
func TestPatternsNATSCannotExpress(t *testing.T) {
	tr, _, _ := newTransport(t, nats.Config{})
	for _, p := range []string{"#", "*.paid", "order.#.eu", "order.>"} {
		err := tr.Consume(timeout(t), "g", []string{p}, func(context.Context, transport.Delivery) error { return nil })
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", p)) {
			t.Errorf("Consume(%q): %v, want an error naming the pattern", p, err)
		}
	}
}

// TestHealthy checks the health check against a server that answers and
// one cut off.
func TestHealthy(t *testing.T) {
	tr, proxy, _ := newTransport(t, nats.Config{})
	if err := tr.Healthy(timeout(t)); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	proxy.Down()
	deadline := time.Now().Add(5 * time.Second)
	for tr.Healthy(timeout(t)) == nil {
		if time.Now().After(deadline) {
			t.Fatal("Healthy still nil 5s after the connection was cut")
		}
		time.Sleep(20 * time.Millisecond)
	}
	proxy.Up()
	deadline = time.Now().Add(5 * time.Second)
	for {
		err := tr.Healthy(timeout(t))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Healthy still failing 5s after the connection came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tr.Close()
	if err := tr.Healthy(timeout(t)); !errors.Is(err, nats.ErrClosed) {
		t.Errorf("Healthy after Close: %v, want ErrClosed", err)
	}
}

// TestConnectionLossLosesNothing sends messages in batches while the
// connection is cut twice, resending what failed as unavailable (as the
// outbox does), with a consumer handling them meanwhile, and checks that
// every message arrives.
func TestConnectionLossLosesNothing(t *testing.T) {
	const n, per = 600, 10
	// Deliveries whose acknowledgement the cut lost come again after the
	// ack wait: 2s keeps the test short.
	tr, proxy, _ := newTransport(t, nats.Config{AckWait: 2 * time.Second})
	var (
		mu       sync.Mutex
		seen     = map[string]int{}
		handling = make(chan struct{}, 1)
	)
	transporttest.ConsumeBatch(t, tr, "survivors", []string{"order.paid"}, 10, 5*time.Millisecond, func(_ context.Context, ds []transport.Delivery) []error {
		mu.Lock()
		for _, d := range ds {
			seen[d.Headers[wire.MsgID]]++
		}
		mu.Unlock()
		select {
		case handling <- struct{}{}:
		default:
		}
		// A slow store (4 workers: 800 msg/s at most), so that a backlog
		// builds and deliveries are in hand and on the wire at the cuts.
		time.Sleep(50 * time.Millisecond)
		return make([]error, len(ds))
	})
	time.Sleep(300 * time.Millisecond)

	cut := func() {
		proxy.Down()
		time.Sleep(300 * time.Millisecond)
		proxy.Up()
	}
	var unavailable, cuts int
	deadline := time.Now().Add(60 * time.Second)
	for start := 0; start < n; start += per {
		if start == n/3 || start == 2*n/3 {
			<-handling // the consumer is busy: cut during sending and receiving
			go cut()
			cuts++
		}
		batch := make([]transport.Outgoing, per)
		for i := range batch {
			batch[i] = transport.Outgoing{Topic: "order.paid", Message: transport.Message{
				Headers: map[string]string{wire.MsgID: fmt.Sprint(start + i)}, Body: []byte("x"),
			}}
		}
		for len(batch) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("sending still failing after 60s")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs := tr.SendBatch(ctx, batch)
			cancel()
			var again []transport.Outgoing
			for i, err := range errs {
				switch {
				case err == nil:
				case errors.Is(err, transport.ErrUnavailable):
					unavailable++
					again = append(again, batch[i])
				default:
					t.Fatalf("message %s: %v, want nil or ErrUnavailable", batch[i].Headers[wire.MsgID], err)
				}
			}
			if batch = again; len(batch) > 0 {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	var missing []string
	for time.Now().Before(deadline) {
		mu.Lock()
		missing = missing[:0]
		for i := range n {
			if seen[fmt.Sprint(i)] == 0 {
				missing = append(missing, fmt.Sprint(i))
			}
		}
		mu.Unlock()
		if len(missing) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d messages never arrived after %d cuts: %v", len(missing), n, cuts, missing)
	}
	time.Sleep(3 * time.Second) // deliveries whose ack a cut lost come again after the ack wait
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	if unavailable == 0 {
		t.Error("no send failed as unavailable: the cuts did not fall into sending")
	}
	t.Logf("%d messages all arrived across %d cuts; %d sends failed as unavailable and were sent again; %d deliveries came twice", n, cuts, unavailable, dups)
}

// TestFailedDeliveryWaits checks that a delivery whose handler failed
// comes again only after Config.RequeueDelay (a nak with a delay, not an
// immediate redelivery loop).
func TestFailedDeliveryWaits(t *testing.T) {
	const delay = 700 * time.Millisecond
	tr, _, _ := newTransport(t, nats.Config{RequeueDelay: delay})
	calls := make(chan time.Time, 4)
	var n atomic.Int32
	transporttest.Consume(t, tr, "waiting", []string{"order.paid"}, func(context.Context, transport.Delivery) error {
		calls <- time.Now()
		if n.Add(1) == 1 {
			return errors.New("failing on purpose")
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	if err := tr.Send(timeout(t), "order.paid", transport.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	var at [2]time.Time
	for i := range at {
		select {
		case at[i] = <-calls:
		case <-time.After(10 * time.Second):
			t.Fatalf("delivery %d did not come", i+1)
		}
	}
	if gap := at[1].Sub(at[0]); gap < delay-100*time.Millisecond {
		t.Errorf("the failed delivery came again after %v, want about the requeue delay %v", gap, delay)
	}
}

// TestSlowHandlerKeptAlive checks that a batch whose handler takes longer
// than the ack wait is not delivered again meanwhile: the transport tells
// the server it is in progress.
func TestSlowHandlerKeptAlive(t *testing.T) {
	tr, _, _ := newTransport(t, nats.Config{AckWait: time.Second})
	var (
		mu    sync.Mutex
		calls int
	)
	transporttest.ConsumeBatch(t, tr, "slow", []string{"order.paid"}, 10, 0, func(_ context.Context, ds []transport.Delivery) []error {
		mu.Lock()
		calls += len(ds)
		mu.Unlock()
		time.Sleep(2500 * time.Millisecond) // 2.5 ack waits
		return make([]error, len(ds))
	})
	time.Sleep(300 * time.Millisecond)
	if err := tr.Send(timeout(t), "order.paid", transport.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second) // the handler's call, and one ack wait after it
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Errorf("the message was handed over %d times, want once", calls)
	}
}
