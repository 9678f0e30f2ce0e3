package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/webhook"
	"github.com/gocap/gocap/wire"
)

// loopback allows the test servers, which listen on 127.0.0.1.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func newTransport(t *testing.T, cfg webhook.Config) *webhook.Transport {
	t.Helper()
	if cfg.AllowedNets == nil && !cfg.AllowPrivate {
		cfg.AllowedNets = loopback
	}
	wh, err := webhook.New(cfg)
	if err != nil {
		t.Fatalf("webhook.New: %v", err)
	}
	t.Cleanup(func() { wh.Close() })
	return wh
}

// msg is a message as the outbox sends it, with options' headers added.
func msg(body string, headers ...string) transport.Message {
	h := wire.Published(42, "merchant.notify", "Notify", time.Now(), nil)
	for i := 0; i+1 < len(headers); i += 2 {
		h[headers[i]] = headers[i+1]
	}
	return transport.Message{Headers: h, Body: []byte(body)}
}

// request is what a test server received.
type request struct {
	method, query string
	header        http.Header
	body          string
}

// server is a local HTTP server that records requests and answers with
// handle.
func server(t *testing.T, handle http.HandlerFunc) (*httptest.Server, <-chan request) {
	t.Helper()
	got := make(chan request, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		select {
		case got <- request{r.Method, r.URL.RawQuery, r.Header.Clone(), string(b)}:
		default:
		}
		handle(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func reply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func received(t *testing.T, got <-chan request) request {
	t.Helper()
	select {
	case r := <-got:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the server received no request")
		return request{}
	}
}

func isPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// TestSendExpected: a 200 whose body holds the expected reply succeeds;
// the request carries the body as JSON, CAP's headers, the route's
// headers, and none of the reserved ones.
func TestSendExpected(t *testing.T) {
	srv, got := server(t, reply(200, `{"code":"SUCCESS"}`))
	wh := newTransport(t, webhook.Config{Routes: []webhook.Route{{
		Topic: "merchant.#", URL: srv.URL + "/cb", Expect: "SUCCESS", Headers: map[string]string{"Authorization": "Bearer t"},
	}}})
	err := wh.Send(context.Background(), "merchant.notify", msg(`{"order":7}`, "x-trace", "abc", webhook.HeaderExpect, "SUCCESS"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	r := received(t, got)
	if r.method != "POST" || r.body != `{"order":7}` || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("request %s %q %q", r.method, r.body, r.header.Get("Content-Type"))
	}
	if r.header.Get(wire.MsgID) != "42" || r.header.Get(wire.MsgName) != "merchant.notify" || r.header.Get("x-trace") != "abc" || r.header.Get("Authorization") != "Bearer t" {
		t.Errorf("headers %v", r.header)
	}
	for k := range r.header {
		if strings.HasPrefix(strings.ToLower(k), webhook.ReservedPrefix) {
			t.Errorf("reserved header %s forwarded", k)
		}
	}
	if r.header.Get(webhook.HeaderSignature) != "" {
		t.Error("signed without a secret")
	}
}

// TestSendFailures: every kind of failed attempt returns an error naming
// it, neither permanent nor transport.ErrUnavailable.
func TestSendFailures(t *testing.T) {
	big := 0
	var bigMu sync.Mutex
	cases := []struct {
		name    string
		handle  http.HandlerFunc
		url     func(srv string) string
		expect  string
		want    []string
		maxTime time.Duration
	}{
		{name: "other body", handle: reply(200, `{"code":"FAIL","msg":"signature mismatch"}`), expect: "SUCCESS",
			want: []string{"HTTP 200 from http://127.0.0.1:", `does not contain "SUCCESS"`, `{"code":"FAIL","msg":"signature mismatch"}`}},
		{name: "500", handle: reply(500, `{"error":"db down"}`), want: []string{"HTTP 500 from http://127.0.0.1:", "/cb", `{"error":"db down"}`}},
		{name: "404", handle: reply(404, "no such page"), want: []string{"HTTP 404 from", "no such page"}},
		{name: "long body quoted in part", handle: reply(502, strings.Repeat("x", 1000)), want: []string{"HTTP 502", strings.Repeat("x", 200) + "…"}},
		{name: "redirect", handle: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, want: []string{"HTTP 302 from", `redirect to "/elsewhere" not followed`}},
		{name: "slow", handle: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
		}, want: []string{"POST http://127.0.0.1:", "no complete response within the timeout of 300ms"}, maxTime: 2 * time.Second},
		{name: "connection refused", url: func(string) string { return "http://" + closedAddr(t) + "/cb" },
			want: []string{"POST http://127.0.0.1:", "connection refused"}},
		{name: "10 MB", handle: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			chunk := []byte(strings.Repeat("y", 32<<10))
			n := 0
			for n < 10<<20 {
				k, err := w.Write(chunk)
				n += k
				if err != nil {
					break
				}
				w.(http.Flusher).Flush()
			}
			bigMu.Lock()
			big = n
			bigMu.Unlock()
		}, want: []string{"HTTP 200 from", "response body larger than 65536 bytes, read no further", strings.Repeat("y", 200) + "…"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, _ := server(t, c.handle)
			url := srv.URL + "/cb"
			if c.url != nil {
				url = c.url(srv.URL)
			}
			wh := newTransport(t, webhook.Config{Timeout: 300 * time.Millisecond, Routes: []webhook.Route{{URL: url, Expect: c.expect}}})
			start := time.Now()
			err := wh.Send(context.Background(), "merchant.notify", msg(`{"order":7}`))
			if err == nil {
				t.Fatal("Send succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if isPermanent(err) || errors.Is(err, transport.ErrUnavailable) {
				t.Errorf("error %v is permanent or ErrUnavailable", err)
			}
			if c.maxTime > 0 && time.Since(start) > c.maxTime {
				t.Errorf("Send took %v", time.Since(start))
			}
			t.Logf("%v (%v)", err, time.Since(start).Round(time.Millisecond))
		})
	}
	srvDone := time.Now().Add(5 * time.Second)
	for {
		bigMu.Lock()
		n := big
		bigMu.Unlock()
		if n > 0 || time.Now().After(srvDone) {
			if n == 0 || n >= 10<<20 {
				t.Errorf("the 10 MB server wrote %d bytes: the response was read to its end", n)
			}
			t.Logf("the 10 MB server wrote %d bytes before the client closed", n)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestPerMessageDestination: To, Method and Expect override the route;
// GET puts the JSON object's fields in the query string.
func TestPerMessageDestination(t *testing.T) {
	srv, got := server(t, reply(200, "ok SUCCESS"))
	wh := newTransport(t, webhook.Config{Routes: []webhook.Route{{Topic: "#", URL: "http://127.0.0.1:1/never"}}})
	err := wh.Send(context.Background(), "merchant.notify", msg(`{"order":7,"name":"a b","paid":true,"tags":["x"],"none":null}`,
		webhook.HeaderURL, srv.URL+"/notify?fixed=1", webhook.HeaderMethod, "GET", webhook.HeaderExpect, "SUCCESS"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	r := received(t, got)
	if r.method != "GET" || r.body != "" {
		t.Errorf("%s with body %q", r.method, r.body)
	}
	if want := "fixed=1&name=a+b&none=&order=7&paid=true&tags=%5B%22x%22%5D"; r.query != want {
		t.Errorf("query %q, want %q", r.query, want)
	}
	// A GET whose body is no JSON object fails permanently.
	err = wh.Send(context.Background(), "merchant.notify", msg(`[1,2]`, webhook.HeaderURL, srv.URL, webhook.HeaderMethod, "GET"))
	if err == nil || !isPermanent(err) {
		t.Errorf("GET with an array body: %v", err)
	}
	// No URL anywhere: permanent.
	wh2 := newTransport(t, webhook.Config{})
	if err := wh2.Send(context.Background(), "x", msg(`{}`)); err == nil || !isPermanent(err) || !strings.Contains(err.Error(), "no destination") {
		t.Errorf("no URL: %v", err)
	}
}

// TestCheckFunc: a route's Check judges 2xx responses.
func TestCheckFunc(t *testing.T) {
	srv, _ := server(t, reply(200, `{"ok":false}`))
	wh := newTransport(t, webhook.Config{Routes: []webhook.Route{{URL: srv.URL, Check: func(status int, h http.Header, body []byte) error {
		if !strings.Contains(string(body), `"ok":true`) {
			return errors.New("not ok")
		}
		return nil
	}}}})
	err := wh.Send(context.Background(), "a", msg(`{}`))
	if err == nil || !strings.Contains(err.Error(), `not ok: {"ok":false}`) {
		t.Errorf("Send: %v", err)
	}
}

// TestRefused: destinations on private addresses are refused by default,
// permanently, also when a name resolves to them; metadata addresses even
// with AllowPrivate.
func TestRefused(t *testing.T) {
	srv, got := server(t, reply(200, "ok"))
	wh, err := webhook.New(webhook.Config{Routes: []webhook.Route{{URL: srv.URL + "/cb"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close()
	err = wh.Send(context.Background(), "a", msg(`{}`))
	var refused *webhook.RefusedError
	if !errors.As(err, &refused) || !isPermanent(err) || !strings.Contains(err.Error(), "127.0.0.1 is a loopback address") {
		t.Fatalf("Send to 127.0.0.1 with the default config: %v", err)
	}
	t.Log(err)
	select {
	case <-got:
		t.Fatal("the refused server got a request")
	default:
	}

	for _, c := range []struct {
		addr, reason string
		allowPrivate bool
	}{
		{"10.1.2.3", "private", false},
		{"169.254.169.254", "cloud-metadata", false},
		{"169.254.169.254", "cloud-metadata", true},
		{"fd00:ec2::254", "cloud-metadata", true},
		{"192.168.0.1", "private", false},
		{"::1", "loopback", false},
		{"0.0.0.0", "unspecified", false},
		{"0.1.2.3", "\"this network\"", false},
		{"100.64.1.1", "shared (carrier-grade NAT)", false},
		{"100.100.100.200", "cloud-metadata", true},
		{"64:ff9b::a9fe:a9fe", "NAT64 cloud-metadata", true}, // 169.254.169.254 through NAT64
		{"2002:a9fe:a9fe::1", "6to4 cloud-metadata", true},   // and through 6to4
		{"64:ff9b::a00:1", "NAT64 private", false},
		{"::ffff:10.0.0.1", "private", false},
	} {
		resolver := func(ctx context.Context, host string) ([]netip.Addr, error) {
			if host != "callback.example" {
				return nil, fmt.Errorf("unexpected host %s", host)
			}
			return []netip.Addr{netip.MustParseAddr(c.addr)}, nil
		}
		wh, err := webhook.New(webhook.Config{AllowPrivate: c.allowPrivate, Resolve: resolver, ConnectTimeout: 500 * time.Millisecond,
			Routes: []webhook.Route{{URL: "http://callback.example/cb"}}})
		if err != nil {
			t.Fatal(err)
		}
		err = wh.Send(context.Background(), "a", msg(`{}`))
		wh.Close()
		if !errors.As(err, &refused) || !isPermanent(err) || refused.Reason != c.reason || !strings.Contains(err.Error(), "destination callback.example refused") {
			t.Errorf("%s (AllowPrivate %v): %v", c.addr, c.allowPrivate, err)
		}
		// The error names what allows the address: AllowPrivate does not
		// allow a metadata service.
		if mentions := strings.Contains(err.Error(), "AllowPrivate"); mentions == strings.HasSuffix(c.reason, "cloud-metadata") {
			t.Errorf("%s: %q names AllowPrivate %v", c.addr, err, mentions)
		}
	}

	// Allowed explicitly: the request goes through.
	for _, cfg := range []webhook.Config{{AllowPrivate: true}, {AllowedNets: loopback}} {
		cfg.Routes = []webhook.Route{{URL: srv.URL}}
		wh := newTransport(t, cfg)
		if err := wh.Send(context.Background(), "a", msg(`{}`)); err != nil {
			t.Errorf("allowed loopback: %v", err)
		}
	}
}

// TestPerHostLimit: PerHostConcurrency requests at most reach one host,
// PerHostQueue more wait, more fail at once as busy; another host is
// served meanwhile.
func TestPerHostLimit(t *testing.T) {
	var inFlight, peak atomic.Int32
	release := make(chan struct{})
	slow, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	fast, _ := server(t, reply(200, "ok"))
	wh := newTransport(t, webhook.Config{PerHostConcurrency: 2, PerHostQueue: 2, Timeout: 10 * time.Second})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 4 {
		wg.Go(func() {
			errs <- wh.Send(context.Background(), "a", msg(`{}`, webhook.HeaderURL, slow.URL))
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for inFlight.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// Once the other two wait, a fifth send fails at once as busy. (A
	// probe sent before they wait joins the queue: its short context ends
	// it.)
	var err error
	for start := time.Now(); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		probe := time.Now()
		err = wh.Send(ctx, "a", msg(`{}`, webhook.HeaderURL, slow.URL))
		cancel()
		if err != nil && strings.Contains(err.Error(), "busy: 2 requests in flight and 2 waiting") {
			if time.Since(probe) > 40*time.Millisecond {
				t.Errorf("the busy send took %v", time.Since(probe))
			}
			if !errors.Is(err, transport.ErrBusy) || errors.Is(err, transport.ErrUnavailable) {
				t.Errorf("the busy send's error is not a transport.ErrBusy (or is an ErrUnavailable): %v", err)
			}
			break
		}
		if err != nil && !errors.Is(err, transport.ErrBusy) {
			t.Errorf("a probe whose context ended while it waited for a slot: %v, not a transport.ErrBusy", err)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("no send was refused as busy: %v", err)
		}
	}
	start := time.Now()
	if err := wh.Send(context.Background(), "a", msg(`{}`, webhook.HeaderURL, fast.URL)); err != nil || time.Since(start) > time.Second {
		t.Errorf("a send to another host: %v after %v", err, time.Since(start))
	}
	close(release)
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case !strings.Contains(err.Error(), "busy"): // one may have found a probe in the queue
			t.Errorf("a send that waited: %v", err)
		}
	}
	if ok < 2 {
		t.Errorf("%d of the 4 sends succeeded", ok)
	}
	if peak.Load() != 2 {
		t.Errorf("peak concurrency at the host %d, want 2", peak.Load())
	}
}

func TestConsume(t *testing.T) {
	wh := newTransport(t, webhook.Config{})
	err := wh.Consume(context.Background(), "g", []string{"a"}, func(context.Context, transport.Delivery) error { return nil })
	if !errors.Is(err, webhook.ErrNoReceive) || !strings.Contains(err.Error(), "transport/route") {
		t.Errorf("Consume: %v", err)
	}
}

func TestClose(t *testing.T) {
	entered := make(chan struct{}, 1)
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
	})
	wh := newTransport(t, webhook.Config{Timeout: 10 * time.Second, Routes: []webhook.Route{{URL: srv.URL}}})
	done := make(chan error, 1)
	go func() { done <- wh.Send(context.Background(), "a", msg(`{}`)) }()
	<-entered
	wh.Close()
	select {
	case err := <-done:
		if !errors.Is(err, webhook.ErrClosed) {
			t.Errorf("Send in flight at Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the send in flight")
	}
	if err := wh.Send(context.Background(), "a", msg(`{}`)); !errors.Is(err, webhook.ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	for _, cfg := range []webhook.Config{
		{Routes: []webhook.Route{{URL: "ftp://x/"}}},
		{Routes: []webhook.Route{{URL: "http:///nohost"}}},
		{Routes: []webhook.Route{{Topic: "a..b", URL: "http://x/"}}},
		{Routes: []webhook.Route{{URL: "http://x/", Secret: "whsec_!!"}}},
		{Routes: []webhook.Route{{URL: "http://x/", Method: "GE T"}}},
		{Routes: []webhook.Route{{URL: "http://x/", Headers: map[string]string{"a": "b\nc"}}}},
	} {
		if _, err := webhook.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg.Routes)
		}
	}
}
