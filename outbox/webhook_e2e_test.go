package outbox_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/transport/route"
	"github.com/gocap/gocap/transport/webhook"
	"github.com/gocap/gocap/wire"
)

// The webhook transport end to end: a real database, the outbox's
// processor, and endpoints that are real HTTP servers on loopback.

func TestWebhookPostgres(t *testing.T) { runWebhook(t, postgresBackend) }
func TestWebhookMySQL(t *testing.T)    { runWebhook(t, mysqlBackend) }
func TestWebhookSQLite(t *testing.T)   { runWebhook(t, sqliteBackend) }

func runWebhook[TTx any](t *testing.T, be backend[TTx]) {
	t.Run("ExpectedBodySucceeds", func(t *testing.T) { testWebhookExpected(t, be) })
	t.Run("OtherBodyRetriedThenFailed", func(t *testing.T) { testWebhookOtherBody(t, be) })
	t.Run("AttemptHistory", func(t *testing.T) { testWebhookHistory(t, be) })
	t.Run("PrivateRefused", func(t *testing.T) { testWebhookRefused(t, be) })
	t.Run("HostIsolation", func(t *testing.T) { testWebhookIsolation(t, be) })
	t.Run("BusyNotCounted", func(t *testing.T) { testWebhookBusy(t, be) })
	t.Run("RouteBesideBroker", func(t *testing.T) { testWebhookRoute(t, be) })
}

// endpoint is a local HTTP server answering with the i-th handler for the
// i-th request (the last one repeats), recording every request.
type endpoint struct {
	*httptest.Server
	mu  sync.Mutex
	got []*http.Request
	bod []string
}

func newEndpoint(t *testing.T, handlers ...http.HandlerFunc) *endpoint {
	t.Helper()
	e := &endpoint{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		n := len(e.got)
		e.got = append(e.got, r.Clone(context.Background()))
		e.bod = append(e.bod, string(b))
		e.mu.Unlock()
		handlers[min(n, len(handlers)-1)](w, r)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) requests() ([]*http.Request, []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got), slices.Clone(e.bod)
}

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// testWebhookBusy: sends the transport refuses because their host has
// its requests in flight and waiting sends already (transport.ErrBusy)
// reached no endpoint: they are not attempts. With one attempt allowed,
// every message of a burst far larger than the host's limits is
// delivered, once, and none is counted as failed.
func testWebhookBusy[TTx any](t *testing.T, be backend[TTx]) {
	env := be.open(t)
	slow := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
		io.WriteString(w, "SUCCESS")
	})
	wh := newWebhook(t, webhook.Config{AllowedNets: loopbackNets, PerHostConcurrency: 2, PerHostQueue: 1, Timeout: 2 * time.Second})
	ob := newOutbox(t, env.driver(t), wh, outbox.Options{})
	const n = 12
	tx, commit, _ := env.begin(t)
	var ids []int64
	for i := range n {
		id, err := ob.Publish(context.Background(), tx, "merchant.notify", notify{Order: i}, webhook.To(slow.URL),
			outbox.WithRetry(outbox.RetryPolicy{MaxAttempts: 1}))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	waitFor(t, 30*time.Second, "every message Succeeded or Failed", func() bool {
		c, err := ob.Store().Counts(context.Background(), storage.Published)
		return err == nil && c[storage.StatusSucceeded]+c[storage.StatusFailed] == n
	})
	for _, id := range ids {
		if m := getRow(t, ob.Store(), storage.Published, id); m.Status != storage.StatusSucceeded || m.Retries != 0 {
			t.Errorf("message %d: %s after %d failed attempts (last error %q), want Succeeded after none", id, m.Status, m.Retries, m.LastError)
		}
	}
	reqs, _ := slow.requests()
	if len(reqs) != n {
		t.Errorf("the endpoint had %d requests for %d messages", len(reqs), n)
	}
}

// hang answers nothing until the client gives up or the test ends.
func hang(done <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}
}

var loopbackNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func newWebhook(t *testing.T, cfg webhook.Config) *webhook.Transport {
	t.Helper()
	wh, err := webhook.New(cfg)
	if err != nil {
		t.Fatalf("webhook.New: %v", err)
	}
	t.Cleanup(func() { wh.Close() })
	return wh
}

// publishCommitted publishes in a business transaction and commits it.
func publishCommitted[TTx any](t *testing.T, env dbEnv[TTx], ob *outbox.Outbox[TTx], topic string, payload any, opts ...outbox.PublishOption) int64 {
	t.Helper()
	tx, commit, _ := env.begin(t)
	env.exec(t, tx, topic)
	id, err := ob.Publish(context.Background(), tx, topic, payload, opts...)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	ob.Wake(storage.Published)
	return id
}

func waitStatus(t *testing.T, ob interface{ Store() storage.Store }, id int64, st storage.Status, within time.Duration) *storage.Message {
	t.Helper()
	var m *storage.Message
	waitFor(t, within, "status "+string(st), func() bool {
		m = getRow(t, ob.Store(), storage.Published, id)
		return m.Status == st
	})
	return m
}

type notify struct {
	Order  int    `json:"order"`
	Amount string `json:"amount"`
}

// testWebhookExpected: a 200 with the expected body makes the message
// Succeeded after one attempt; the endpoint got the JSON body and CAP's
// headers.
func testWebhookExpected[TTx any](t *testing.T, be backend[TTx]) {
	env := be.open(t)
	ep := newEndpoint(t, answer(200, `{"return_code":"SUCCESS"}`))
	wh := newWebhook(t, webhook.Config{AllowedNets: loopbackNets})
	ob := newOutbox(t, env.driver(t), wh, outbox.Options{})
	run(t, ob)
	id := publishCommitted(t, env, ob, "merchant.notify", notify{Order: 7, Amount: "9.90"},
		webhook.To(ep.URL+"/cb"), webhook.Expect("SUCCESS"))
	m := waitStatus(t, ob, id, storage.StatusSucceeded, 10*time.Second)
	if m.Retries != 0 || len(m.Attempts) != 1 || m.Attempts[0].Error != "" {
		t.Errorf("retries %d, attempts %+v", m.Retries, m.Attempts)
	}
	reqs, bodies := ep.requests()
	if len(reqs) != 1 || bodies[0] != `{"order":7,"amount":"9.90"}` || reqs[0].URL.Path != "/cb" ||
		reqs[0].Header.Get(wire.MsgID) != m.MsgID || reqs[0].Header.Get(webhook.HeaderURL) != "" {
		t.Errorf("the endpoint got %d requests: %q %v", len(reqs), bodies, reqs[0].Header)
	}
}

// testWebhookOtherBody: a 200 with another body is a failed attempt,
// retried by the message's policy, Failed after its MaxAttempts with the
// body's start in the last error.
func testWebhookOtherBody[TTx any](t *testing.T, be backend[TTx]) {
	env := be.open(t)
	ep := newEndpoint(t, answer(200, `{"return_code":"FAIL","return_msg":"sign error"}`))
	wh := newWebhook(t, webhook.Config{AllowedNets: loopbackNets})
	ob := newOutbox(t, env.driver(t), wh, outbox.Options{})
	run(t, ob)
	id := publishCommitted(t, env, ob, "merchant.notify", notify{Order: 8}, webhook.To(ep.URL), webhook.Expect("SUCCESS"),
		outbox.WithRetry(outbox.RetryPolicy{Schedule: []time.Duration{50 * time.Millisecond}, MaxAttempts: 3}))
	m := waitStatus(t, ob, id, storage.StatusFailed, 15*time.Second)
	want := `HTTP 200 from ` + ep.URL + `: the body does not contain "SUCCESS": {"return_code":"FAIL","return_msg":"sign error"}`
	if m.Retries != 3 || !strings.Contains(m.LastError, want) || len(m.Attempts) != 3 {
		t.Fatalf("retries %d, last error %q, %d attempts", m.Retries, m.LastError, len(m.Attempts))
	}
	for _, a := range m.Attempts {
		if !strings.Contains(a.Error, want) {
			t.Errorf("attempt error %q", a.Error)
		}
	}
	if reqs, _ := ep.requests(); len(reqs) != 3 || reqs[0].Header.Get(wire.MsgID) != reqs[2].Header.Get(wire.MsgID) {
		t.Errorf("the endpoint got %d requests", len(reqs))
	}
}

// testWebhookHistory: 500, 404, a redirect, a timeout and a 10 MB body
// are each a failed attempt with its own error, then a 200 with the
// expected reply succeeds; the history shows all of them in order. A
// refused connection fails its attempts too.
func testWebhookHistory[TTx any](t *testing.T, be backend[TTx]) {
	env := be.open(t)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	huge := func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		chunk := []byte(strings.Repeat("z", 32<<10))
		for n := 0; n < 10<<20; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
	ep := newEndpoint(t,
		answer(500, `{"error":"db down"}`),
		answer(404, "no such page"),
		func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/moved", http.StatusMovedPermanently)
		},
		hang(done),
		huge,
		answer(200, "SUCCESS"),
	)
	wh := newWebhook(t, webhook.Config{AllowedNets: loopbackNets, Timeout: 300 * time.Millisecond,
		Routes: []webhook.Route{{Topic: "merchant.#", URL: ep.URL + "/cb", Expect: "SUCCESS"}}})
	ob := newOutbox(t, env.driver(t), wh, outbox.Options{})
	run(t, ob)
	id := publishCommitted(t, env, ob, "merchant.notify", notify{Order: 9},
		outbox.WithRetry(outbox.RetryPolicy{Schedule: []time.Duration{50 * time.Millisecond}, MaxAttempts: 10}))
	m := waitStatus(t, ob, id, storage.StatusSucceeded, 20*time.Second)
	wants := []string{
		"HTTP 500 from " + ep.URL + `/cb: {"error":"db down"}`,
		"HTTP 404 from " + ep.URL + "/cb: no such page",
		`HTTP 301 from ` + ep.URL + `/cb: redirect to "/moved" not followed`,
		"POST " + ep.URL + "/cb: no complete response within the timeout of 300ms",
		"HTTP 200 from " + ep.URL + "/cb: response body larger than 65536 bytes, read no further: zzz",
		"",
	}
	if len(m.Attempts) != len(wants) || m.Retries != len(wants)-1 {
		t.Fatalf("retries %d, attempts %+v", m.Retries, m.Attempts)
	}
	for i, a := range m.Attempts {
		if (wants[i] == "") != (a.Error == "") || !strings.Contains(a.Error, wants[i]) {
			t.Errorf("attempt %d: %q, want %q", i+1, a.Error, wants[i])
		}
		if i > 0 && a.At.Before(m.Attempts[i-1].At) {
			t.Errorf("attempt %d at %v, before attempt %d", i+1, a.At, i)
		}
	}
	if d := m.Attempts[3].Duration; d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("the timed-out attempt lasted %v", d)
	}

	// A refused connection, in a history of its own.
	closed := newEndpoint(t, answer(200, "SUCCESS"))
	addr := closed.URL
	closed.Close()
	id = publishCommitted(t, env, ob, "merchant.notify", notify{Order: 10}, webhook.To(addr),
		outbox.WithRetry(outbox.RetryPolicy{Schedule: []time.Duration{50 * time.Millisecond}, MaxAttempts: 2}))
	m = waitStatus(t, ob, id, storage.StatusFailed, 10*time.Second)
	if len(m.Attempts) != 2 || !strings.Contains(m.Attempts[0].Error, "POST "+addr+": dial tcp") ||
		!strings.Contains(m.Attempts[1].Error, "connection refused") {
		t.Errorf("attempts %+v", m.Attempts)
	}
}

// testWebhookRefused: with the default configuration, a 127.0.0.1 URL is
// refused, permanently: Failed after one attempt, naming the refusal.
func testWebhookRefused[TTx any](t *testing.T, be backend[TTx]) {
	env := be.open(t)
	ep := newEndpoint(t, answer(200, "SUCCESS"))
	wh := newWebhook(t, webhook.Config{})
	ob := newOutbox(t, env.driver(t), wh, outbox.Options{})
	run(t, ob)
	id := publishCommitted(t, env, ob, "merchant.notify", notify{Order: 11}, webhook.To(ep.URL+"/cb"))
	m := waitStatus(t, ob, id, storage.StatusFailed, 10*time.Second)
	if m.Retries != 1 || len(m.Attempts) != 1 ||
		!strings.Contains(m.LastError, "destination 127.0.0.1 refused: 127.0.0.1 is a loopback address") {
		t.Errorf("retries %d, last error %q", m.Retries, m.LastError)
	}
	if reqs, _ := ep.requests(); len(reqs) != 0 {
		t.Errorf("the refused endpoint got %d requests", len(reqs))
	}
}

// testWebhookIsolation: while one endpoint hangs until its timeout with
// more messages than the processor has send slots (150 here; the claim
// loop claims again once ClaimBatch/2 are free), messages to another
// endpoint arrive as fast as with no hanging endpoint at all: the hanging
// host holds 8 requests in flight and 64 waiting, and its other messages
// fail at once as busy (retried later) instead of taking the slots.
func testWebhookIsolation[TTx any](t *testing.T, be backend[TTx]) {
	env := be.open(t)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	slow := newEndpoint(t, hang(done))
	const timeout = 2 * time.Second
	wh := newWebhook(t, webhook.Config{AllowedNets: loopbackNets, Timeout: timeout})
	ob := newOutbox(t, env.driver(t), wh, outbox.Options{SendConcurrency: 150, ClaimBatch: 50})
	run(t, ob)

	// latencies publishes n messages to a fresh fast endpoint and returns
	// the time from each commit to its arrival.
	latencies := func(n int) []time.Duration {
		t.Helper()
		var mu sync.Mutex
		arrived := map[string]time.Time{}
		fast := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			arrived[r.Header.Get(wire.MsgID)] = time.Now()
			mu.Unlock()
			io.WriteString(w, "SUCCESS")
		})
		committed := map[string]time.Time{}
		for i := range n {
			id := publishCommitted(t, env, ob, "merchant.notify", notify{Order: i}, webhook.To(fast.URL))
			committed[strconv.FormatInt(id, 10)] = time.Now()
		}
		waitFor(t, 20*time.Second, "the fast endpoint's messages", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(arrived) == n
		})
		var ds []time.Duration
		for id, at := range committed {
			ds = append(ds, arrived[id].Sub(at))
		}
		slices.Sort(ds)
		return ds
	}
	base := latencies(20)

	// Messages to the hanging endpoint: twice the send slots, but on
	// SQLite, whose single writer releases the sends refused as busy
	// between the other writes, fewer: 100, of which 28 are refused.
	slowCount := 300
	if be.name == "sqlite" {
		slowCount = 100
	}
	tx, commit, _ := env.begin(t)
	for i := range slowCount {
		if _, err := ob.Publish(context.Background(), tx, "merchant.notify", notify{Order: 1000 + i}, webhook.To(slow.URL),
			outbox.WithRetry(outbox.RetryPolicy{Schedule: []time.Duration{time.Hour}, MaxAttempts: 5})); err != nil {
			t.Fatal(err)
		}
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	ob.Wake(storage.Published)
	waitFor(t, 10*time.Second, "the hanging endpoint's first requests", func() bool {
		reqs, _ := slow.requests()
		return len(reqs) >= 8
	})
	time.Sleep(100 * time.Millisecond) // the rest are claimed, waiting or released as busy
	start := time.Now()
	during := latencies(20)
	elapsed := time.Since(start)
	reqs, _ := slow.requests()
	t.Logf("commit->arrival at the healthy endpoint: alone p50 %v max %v; beside a hanging endpoint (timeout %v, %d messages, %d requests reached it so far) p50 %v max %v; 20 messages in %v",
		base[len(base)/2].Round(time.Millisecond), base[len(base)-1].Round(time.Millisecond), timeout, slowCount, len(reqs),
		during[len(during)/2].Round(time.Millisecond), during[len(during)-1].Round(time.Millisecond), elapsed.Round(time.Millisecond))
	if worst := during[len(during)-1]; worst > timeout/2 {
		t.Errorf("a message to the healthy endpoint took %v beside the hanging one (timeout %v)", worst, timeout)
	}
	if len(reqs) > 8 {
		t.Errorf("the hanging endpoint had %d requests while the first were in flight: the per-host limit is 8", len(reqs))
	}
}

// testWebhookRoute: one outbox sends merchant.* over HTTP and order.* over
// the in-process broker, and its subscription receives through the
// broker; each message arrives only where it should.
func testWebhookRoute[TTx any](t *testing.T, be backend[TTx]) {
	env := be.open(t)
	ep := newEndpoint(t, answer(200, "SUCCESS"))
	wh := newWebhook(t, webhook.Config{AllowedNets: loopbackNets,
		Routes: []webhook.Route{{Topic: "merchant.#", URL: ep.URL + "/notify", Expect: "SUCCESS"}}})
	broker := memory.New(memory.Options{})
	rt, err := route.New(route.Rule{Pattern: "merchant.#", Transport: wh}, route.Default(broker))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	var _ transport.Transport = rt
	ob := newOutbox(t, env.driver(t), rt, outbox.Options{})
	got := make(chan string, 10)
	if err := outbox.Subscribe(ob, "order.#", func(ctx context.Context, m outbox.Received[notify]) error {
		got <- m.Name + " " + m.Value.Amount
		return nil
	}, outbox.Group("billing")); err != nil {
		t.Fatal(err)
	}
	run(t, ob)
	time.Sleep(100 * time.Millisecond) // the group's queue is bound

	tx, commit, _ := env.begin(t)
	env.exec(t, tx, "both")
	hookID, err := ob.Publish(context.Background(), tx, "merchant.notify", notify{Order: 1, Amount: "http"})
	if err != nil {
		t.Fatal(err)
	}
	brokerID, err := ob.Publish(context.Background(), tx, "order.paid", notify{Order: 2, Amount: "broker"})
	if err != nil {
		t.Fatal(err)
	}
	if err := commit(); err != nil {
		t.Fatal(err)
	}
	ob.Wake(storage.Published)
	waitStatus(t, ob, hookID, storage.StatusSucceeded, 10*time.Second)
	waitStatus(t, ob, brokerID, storage.StatusSucceeded, 10*time.Second)
	select {
	case m := <-got:
		if m != "order.paid broker" {
			t.Errorf("the subscriber got %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the subscriber got nothing")
	}
	select {
	case m := <-got:
		t.Errorf("the subscriber also got %q", m)
	case <-time.After(200 * time.Millisecond):
	}
	reqs, bodies := ep.requests()
	if len(reqs) != 1 || reqs[0].URL.Path != "/notify" || bodies[0] != `{"order":1,"amount":"http"}` {
		t.Errorf("the endpoint got %d requests: %q", len(reqs), bodies)
	}
}

// TestWebhookRouteRabbitMQ: one outbox on PostgreSQL sends merchant.*
// over HTTP and order.* to RabbitMQ; each arrives only where it should.
func TestWebhookRouteRabbitMQ(t *testing.T) {
	url := testenv.AMQPURL(t)
	env := postgresBackend.open(t)
	ep := newEndpoint(t, answer(200, "SUCCESS"))
	wh := newWebhook(t, webhook.Config{AllowedNets: loopbackNets,
		Routes: []webhook.Route{{Topic: "merchant.#", URL: ep.URL + "/notify", Expect: "SUCCESS"}}})
	b := newBroker(t, url)
	rt, err := route.New(route.Rule{Pattern: "merchant.#", Transport: wh}, route.Default(b.transport(t, url)))
	if err != nil {
		t.Fatal(err)
	}
	ob := newOutbox(t, env.driver(t), rt, outbox.Options{})
	run(t, ob)
	var ids []int64
	for i, topic := range []string{"merchant.notify", "order.paid", "merchant.refund", "order.shipped"} {
		ids = append(ids, publishCommitted(t, env, ob, topic, notify{Order: i, Amount: topic}))
	}
	for _, id := range ids {
		waitStatus(t, ob, id, storage.StatusSucceeded, 10*time.Second)
	}
	var brokered []string
	for range 2 {
		m := b.next(t, 5*time.Second)
		brokered = append(brokered, m.RoutingKey)
	}
	b.none(t, 200*time.Millisecond)
	slices.Sort(brokered)
	_, bodies := ep.requests()
	slices.Sort(bodies)
	if strings.Join(brokered, ",") != "order.paid,order.shipped" ||
		strings.Join(bodies, ",") != `{"order":0,"amount":"merchant.notify"},{"order":2,"amount":"merchant.refund"}` {
		t.Errorf("RabbitMQ got %v, the endpoint got %v", brokered, bodies)
	}
}
