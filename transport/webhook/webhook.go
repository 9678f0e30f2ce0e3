// Package webhook is gocap's HTTP transport: each message is delivered as
// one HTTP request to a URL, with the outbox's guarantees — it is sent only
// if the publishing transaction commits, retried by the message's retry
// policy until the endpoint accepts it, and kept as Failed, visible and
// requeueable on the dashboard, when it never does. Every attempt's time,
// duration and outcome ("HTTP 500 from https://erp.example/cb: {...}") is
// in the message's attempt history.
//
// # Destinations
//
// A message's destination comes from the first [Route] whose Topic pattern
// matches its topic ('*' one word, '#' any number of words), or from the
// message itself: [To], [Method] and [Expect] are publish options that
// store a per-message URL, method and expected reply with the row (as
// reserved headers the transport does not forward), so any processor
// delivers it identically. The matching route's other settings (secret,
// headers, timeout, check) still apply to such a message.
//
// # Requests
//
// POST (the default), PUT and PATCH send the body as it was published
// (JSON by default, Content-Type application/json when it is JSON). GET,
// HEAD and DELETE send no body: the top-level fields of the JSON object
// body become query parameters (strings as they are, other values as JSON
// text). Every request carries the message's headers (CAP's cap-msg-id,
// cap-msg-name, ... and those of outbox.WithHeader), the route's headers,
// and, with a secret, the Standard Webhooks signature headers
// (webhook-id = the message id, webhook-timestamp, webhook-signature; see
// [Verify] and [Verifier.Middleware] for the receiving side).
//
// # Outcomes
//
// An attempt succeeds on a 2xx status whose body contains the expected
// reply, if one is set (Route.Expect, [Expect]), and passes the check
// function, if one is set (Route.Check, Config.Check). Anything else is a
// failed attempt, retried by the message's policy, whose error names the
// status and the start of the body: "webhook: HTTP 500 from
// https://erp.example/cb: {"error":"db down"}". Redirects are not followed
// (a 3xx fails, naming its Location); a response body is read up to
// Config.MaxResponseBytes (64 KiB), and a longer one fails; a connection
// refused, a TLS error or no answer within the timeout (3 s to connect, 5
// s in all) fails the attempt with the reason. None of them is
// transport.ErrUnavailable: one endpoint being down is a failure of its
// messages, never a reason to pause the dispatch of the others.
//
// # Safety
//
// A destination that resolves to a loopback, private, link-local,
// unspecified, multicast or other non-public address, or to a cloud
// metadata service (169.254.169.254, fd00:ec2::254, ...), is refused: the
// address is checked when the connection is dialed, after name
// resolution, so DNS rebinding cannot get past the check. Such a send
// fails permanently with a [RefusedError]. Config.AllowPrivate allows the
// private kinds (not metadata services), Config.AllowedNets allows given
// networks (metadata services too). Proxies from the environment are not
// used.
//
// # Isolation
//
// At most Config.PerHostConcurrency requests are in flight to one host;
// up to Config.PerHostQueue more sends wait for a slot, each at most its
// timeout, and further sends to that host fail at once as busy. So an
// endpoint that hangs holds a bounded share of the processor's send slots
// (outbox.Options.SendConcurrency), and messages to other hosts are sent
// meanwhile, without delay. A send that fails as busy (or whose context
// ends while it waits for a slot) made no request: its error is a
// transport.ErrBusy, so the processor does not count it as an attempt and
// tries the message again a second later.
//
// # Receiving
//
// The transport only sends: Consume fails with [ErrNoReceive]. To publish
// some topics over HTTP and others over a broker from one outbox, and to
// subscribe through the broker, combine them with transport/route.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gocap/gocap/internal/topic"
	"github.com/gocap/gocap/transport"
)

// Defaults of [Config].
const (
	DefaultConnectTimeout     = 3 * time.Second
	DefaultTimeout            = 5 * time.Second
	DefaultMaxResponseBytes   = 64 << 10
	DefaultErrorBodyBytes     = 200
	DefaultPerHostConcurrency = 8
	DefaultPerHostQueue       = 64
)

// ErrNoReceive is returned by Consume and ConsumeBatch: the webhook
// transport only sends.
var ErrNoReceive = errors.New("webhook: the webhook transport only sends; subscriptions need a broker transport (combine both with transport/route)")

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("webhook: transport closed")

// CheckFunc judges a 2xx response: nil accepts it, an error fails the
// attempt with that error. body is the response body, up to
// Config.MaxResponseBytes.
type CheckFunc func(status int, header http.Header, body []byte) error

// Route sends the messages whose topic matches Topic to an endpoint.
type Route struct {
	// Topic is a topic pattern ('*' one word, '#' any number of words).
	// Empty means "#": every topic.
	Topic string
	// URL is the endpoint, http or https. It may be empty if every message
	// of the route names its own URL with [To].
	URL string
	// Method is the HTTP method; empty means POST.
	Method string
	// Headers are added to every request (Authorization, ...); they
	// replace message headers of the same name.
	Headers map[string]string
	// Timeout bounds one attempt, from connecting to the end of the
	// response body. Zero means Config.Timeout.
	Timeout time.Duration
	// Expect, if set, must be contained in a 2xx response's body.
	Expect string
	// Check, if set, judges a 2xx response (after Expect); nil means
	// Config.Check.
	Check CheckFunc
	// Secret signs the requests (Standard Webhooks, whsec_<base64>).
	Secret string
	// Secrets sign with several keys at once, during a key rotation: each
	// request carries one signature per secret (Secret included).
	Secrets []string
}

// Config configures a [Transport].
type Config struct {
	// Routes map topics to endpoints; the first matching one applies.
	Routes []Route
	// ConnectTimeout bounds dialing a connection (TCP and TLS). Zero means
	// 3 s.
	ConnectTimeout time.Duration
	// Timeout bounds one attempt of a route without a Timeout. Zero means
	// 5 s.
	Timeout time.Duration
	// MaxResponseBytes is how much of a response body is read; a longer
	// body fails the attempt. Zero means 64 KiB.
	MaxResponseBytes int64
	// ErrorBodyBytes is how much of the body an error quotes. Zero means
	// 200.
	ErrorBodyBytes int
	// PerHostConcurrency bounds the requests in flight to one host (host
	// and port). Zero means 8.
	PerHostConcurrency int
	// PerHostQueue bounds the sends waiting for a slot of one host; more
	// fail at once as busy. Zero means 64; negative means none waits.
	PerHostQueue int
	// AllowPrivate allows destinations on loopback, private, link-local
	// and other non-public addresses. Cloud metadata addresses stay
	// refused unless AllowedNets names them.
	AllowPrivate bool
	// AllowedNets are networks allowed whatever their kind.
	AllowedNets []netip.Prefix
	// Resolve, if set, resolves host names instead of the system
	// resolver. The addresses it returns are checked like any other.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// Check judges the 2xx responses of routes without a Check.
	Check CheckFunc
	// UserAgent is sent with every request. Empty means "gocap-webhook".
	UserAgent string
}

// Transport delivers messages as HTTP requests; see the package
// documentation. It is safe for concurrent use.
type Transport struct {
	cfg    Config
	routes []route
	guard  guard
	client *http.Client
	http   *http.Transport
	hosts  hosts

	life  context.Context // ends when Close is called
	close context.CancelFunc
}

// route is a Route ready for use.
type route struct {
	Route
	sign signer
}

var _ transport.Transport = (*Transport)(nil)

// New checks cfg and returns a transport.
func New(cfg Config) (*Transport, error) {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.ErrorBodyBytes <= 0 {
		cfg.ErrorBodyBytes = DefaultErrorBodyBytes
	}
	if cfg.PerHostConcurrency <= 0 {
		cfg.PerHostConcurrency = DefaultPerHostConcurrency
	}
	switch {
	case cfg.PerHostQueue == 0:
		cfg.PerHostQueue = DefaultPerHostQueue
	case cfg.PerHostQueue < 0:
		cfg.PerHostQueue = 0
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "gocap-webhook"
	}
	t := &Transport{
		cfg:   cfg,
		guard: guard{allowPrivate: cfg.AllowPrivate, allowed: cfg.AllowedNets},
		hosts: hosts{limit: cfg.PerHostConcurrency, queue: cfg.PerHostQueue, m: map[string]*host{}},
	}
	t.life, t.close = context.WithCancel(context.Background())
	for i, r := range cfg.Routes {
		if r.Topic == "" {
			r.Topic = "#"
		}
		if err := topic.Validate(r.Topic); err != nil {
			return nil, fmt.Errorf("webhook: route %d: %w", i, err)
		}
		if r.URL != "" {
			if _, err := parseURL(r.URL); err != nil {
				return nil, fmt.Errorf("webhook: route %d (%s): %w", i, r.Topic, err)
			}
		}
		r.Method = strings.ToUpper(r.Method)
		if r.Method != "" && !validMethod(r.Method) {
			return nil, fmt.Errorf("webhook: route %d (%s): invalid method %q", i, r.Topic, r.Method)
		}
		for k, v := range r.Headers {
			if err := validHeader(k, v); err != nil {
				return nil, fmt.Errorf("webhook: route %d (%s): %w", i, r.Topic, err)
			}
		}
		if r.Timeout <= 0 {
			r.Timeout = cfg.Timeout
		}
		if r.Check == nil {
			r.Check = cfg.Check
		}
		s, err := newSigner(append([]string{r.Secret}, r.Secrets...))
		if err != nil {
			return nil, fmt.Errorf("webhook: route %d (%s): %w", i, r.Topic, err)
		}
		t.routes = append(t.routes, route{Route: r, sign: s})
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	t.http = &http.Transport{
		Proxy:                 nil, // a proxy would be dialed instead of the checked address
		DialContext:           t.dial(dialer),
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		MaxConnsPerHost:       cfg.PerHostConcurrency,
		MaxIdleConnsPerHost:   cfg.PerHostConcurrency,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	t.client = &http.Client{
		Transport: t.http,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return t, nil
}

// dial connects to the address a request names, checking each address it
// resolves to when it is dialed (net.Dialer.Control).
func (t *Transport) dial(base *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("webhook: dial %s: %w", addr, err)
		}
		d := *base
		d.Control = t.guard.control(host)
		if t.cfg.Resolve == nil {
			return d.DialContext(ctx, network, addr)
		}
		if _, err := netip.ParseAddr(host); err == nil {
			return d.DialContext(ctx, network, addr)
		}
		ips, err := t.cfg.Resolve(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("webhook: resolving %s: %w", host, err)
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("webhook: resolving %s: no address", host)
		}
		var errs []error
		for _, ip := range ips {
			c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
}

// Consume returns ErrNoReceive: the transport only sends.
func (t *Transport) Consume(context.Context, string, []string, transport.Handler) error {
	return ErrNoReceive
}

// ConsumeBatch returns ErrNoReceive: the transport only sends.
func (t *Transport) ConsumeBatch(context.Context, string, []string, int, time.Duration, transport.BatchHandler) error {
	return ErrNoReceive
}

// Close ends the requests in flight and closes idle connections; later
// sends fail with ErrClosed.
func (t *Transport) Close() error {
	t.close()
	t.http.CloseIdleConnections()
	return nil
}

// permanent marks an error retrying cannot fix, as outbox.Permanent does.
type permanent struct{ error }

func (p permanent) Unwrap() error   { return p.error }
func (p permanent) Permanent() bool { return true }

// parseURL accepts absolute http and https URLs.
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("webhook: invalid URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("webhook: URL %q: the scheme must be http or https", display(u))
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("webhook: URL %q has no host", display(u))
	}
	return u, nil
}

// display shows u in errors: without its user information and query,
// which may hold credentials.
func display(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = nil, "", false, "", ""
	return c.String()
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

func validHeader(k, v string) error {
	if k == "" || strings.ContainsAny(k, " \t\r\n:\x00") {
		return fmt.Errorf("header name %q is not valid in HTTP", k)
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return fmt.Errorf("header %s: its value holds a line break or NUL, not valid in HTTP", k)
	}
	return nil
}

// queryOf turns a JSON object's top-level fields into query parameters:
// strings as they are, null as empty, anything else as its JSON text.
func queryOf(body []byte) (url.Values, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, fmt.Errorf("a GET, HEAD or DELETE request takes its parameters from a JSON object body: %w", err)
	}
	q := url.Values{}
	for k, raw := range fields {
		var s string
		switch {
		case json.Unmarshal(raw, &s) == nil:
		case string(raw) == "null":
		default:
			var b bytes.Buffer
			if err := json.Compact(&b, raw); err != nil {
				return nil, fmt.Errorf("field %q: %w", k, err)
			}
			s = b.String()
		}
		q.Set(k, s)
	}
	return q, nil
}
