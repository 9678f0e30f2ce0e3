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
// meanwhile, without delay.
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
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gocap/gocap/internal/topic"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/wire"
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

// Send delivers msg to its destination with one HTTP request and returns
// nil if the endpoint accepted it; see the package documentation.
func (t *Transport) Send(ctx context.Context, topicName string, msg transport.Message) error {
	if t.life.Err() != nil {
		return ErrClosed
	}
	r := t.route(topicName)
	req, err := t.request(topicName, r, msg)
	if err != nil {
		return permanent{err}
	}
	shown := display(req.URL)
	release, err := t.hosts.acquire(ctx, req.URL.Host, r.Timeout)
	if err != nil {
		return err
	}
	defer release()

	rctx, cancel := context.WithTimeoutCause(ctx, r.Timeout, errTimeout)
	defer cancel()
	stop := context.AfterFunc(t.life, cancel)
	defer stop()
	if err := t.signRequest(req, r, msg); err != nil {
		return permanent{err}
	}
	resp, err := t.client.Do(req.WithContext(rctx))
	if err != nil {
		return t.requestError(ctx, rctx, r.Timeout, req.Method, shown, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, t.cfg.MaxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("webhook: HTTP %d from %s: reading the body (%d bytes read): %w",
			resp.StatusCode, shown, len(body), t.cause(ctx, rctx, r.Timeout, err))
	}
	return t.judge(r, msg, shown, resp, body)
}

// errTimeout is the cause of an attempt's deadline.
var errTimeout = errors.New("timeout")

// route returns the first route matching topicName, or a route of the
// defaults.
func (t *Transport) route(topicName string) *route {
	for i := range t.routes {
		if topic.Match(t.routes[i].Topic, topicName) {
			return &t.routes[i]
		}
	}
	return &route{Route: Route{Timeout: t.cfg.Timeout, Check: t.cfg.Check}}
}

// header returns msg's header name, looked up case-insensitively.
func header(msg transport.Message, name string) (string, bool) {
	if v, ok := msg.Headers[name]; ok {
		return v, true
	}
	for k, v := range msg.Headers {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// request builds the request of msg, without its signature. Its errors are
// permanent: the same message always gets them.
func (t *Transport) request(topicName string, r *route, msg transport.Message) (*http.Request, error) {
	raw := r.URL
	if u, ok := header(msg, HeaderURL); ok {
		raw = u
	}
	if raw == "" {
		return nil, fmt.Errorf("webhook: no destination for topic %q: no route with a URL matches it and the message has no webhook.To URL", topicName)
	}
	u, err := parseURL(raw)
	if err != nil {
		return nil, err
	}
	method := r.Method
	if m, ok := header(msg, HeaderMethod); ok && m != "" {
		method = strings.ToUpper(m)
	}
	if method == "" {
		method = http.MethodPost
	}
	if !validMethod(method) {
		return nil, fmt.Errorf("webhook: invalid HTTP method %q", method)
	}
	var body io.Reader
	if bodiless(method) {
		q, err := queryOf(msg.Body)
		if err != nil {
			return nil, fmt.Errorf("webhook: %s %s: the parameters: %w", method, display(u), err)
		}
		if len(q) > 0 {
			all := u.Query()
			for k, vs := range q {
				all[k] = append(all[k], vs...)
			}
			u.RawQuery = all.Encode()
		}
	} else {
		body = bytes.NewReader(msg.Body)
	}
	req, err := http.NewRequest(method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("webhook: %s %s: %w", method, display(u), err)
	}
	for k, v := range msg.Headers {
		if reserved(k) {
			continue
		}
		if err := validHeader(k, v); err != nil {
			return nil, fmt.Errorf("webhook: %s %s: message %w", method, display(u), err)
		}
		req.Header.Set(k, v)
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		ct := "application/octet-stream"
		if json.Valid(msg.Body) {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", t.cfg.UserAgent)
	}
	return req, nil
}

// signRequest adds the Standard Webhooks headers, if the route has a
// secret; the timestamp is the attempt's.
func (t *Transport) signRequest(req *http.Request, r *route, msg transport.Message) error {
	if len(r.sign) == 0 {
		return nil
	}
	id, _ := header(msg, wire.MsgID)
	if id == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		id = "msg_" + hex.EncodeToString(b[:])
	}
	now := time.Now()
	payload := msg.Body
	if bodiless(req.Method) {
		payload = []byte(req.URL.RawQuery)
	}
	sig, err := r.sign.sign(id, now, payload)
	if err != nil {
		return err
	}
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, fmt.Sprint(now.Unix()))
	req.Header.Set(HeaderSignature, sig)
	return nil
}

// requestError explains a request that got no response.
func (t *Transport) requestError(ctx, rctx context.Context, timeout time.Duration, method, shown string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // it repeats the method and the URL
	}
	var refused *RefusedError
	if errors.As(err, &refused) {
		return fmt.Errorf("webhook: %s %s: %w", method, shown, refused)
	}
	return fmt.Errorf("webhook: %s %s: %w", method, shown, t.cause(ctx, rctx, timeout, err))
}

// cause names a request's timeout as such.
func (t *Transport) cause(ctx, rctx context.Context, timeout time.Duration, err error) error {
	if ctx.Err() == nil && errors.Is(context.Cause(rctx), errTimeout) {
		return fmt.Errorf("no complete response within the timeout of %v: %w", timeout, context.DeadlineExceeded)
	}
	if t.life.Err() != nil {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// judge decides whether a response accepts the message.
func (t *Transport) judge(r *route, msg transport.Message, shown string, resp *http.Response, body []byte) error {
	status := resp.StatusCode
	if int64(len(body)) > t.cfg.MaxResponseBytes {
		return fmt.Errorf("webhook: HTTP %d from %s: response body larger than %d bytes, read no further: %s",
			status, shown, t.cfg.MaxResponseBytes, t.excerpt(body))
	}
	if status >= 300 && status < 400 {
		return fmt.Errorf("webhook: HTTP %d from %s: redirect to %q not followed", status, shown, resp.Header.Get("Location"))
	}
	if status < 200 || status >= 300 {
		return fmt.Errorf("webhook: HTTP %d from %s: %s", status, shown, t.excerpt(body))
	}
	expect := r.Expect
	if e, ok := header(msg, HeaderExpect); ok {
		expect = e
	}
	if expect != "" && !bytes.Contains(body, []byte(expect)) {
		return fmt.Errorf("webhook: HTTP %d from %s: the body does not contain %q: %s", status, shown, expect, t.excerpt(body))
	}
	if r.Check != nil {
		if err := r.Check(status, resp.Header, body); err != nil {
			return fmt.Errorf("webhook: HTTP %d from %s: %w: %s", status, shown, err, t.excerpt(body))
		}
	}
	return nil
}

// excerpt quotes the start of body for an error.
func (t *Transport) excerpt(body []byte) string {
	if len(body) == 0 {
		return "(empty body)"
	}
	cut := len(body) > t.cfg.ErrorBodyBytes
	if cut {
		body = body[:t.cfg.ErrorBodyBytes]
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(body), ""))
	if cut {
		s += "…"
	}
	return s
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
