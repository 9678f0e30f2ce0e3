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
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gocap/gocap/internal/topic"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/wire"
)

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
