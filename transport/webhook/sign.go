package webhook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The Standard Webhooks headers (https://www.standardwebhooks.com/).
const (
	// HeaderID is the message's id: its cap-msg-id, the same on every
	// attempt, so a receiver can de-duplicate.
	HeaderID = standardwebhooks.HeaderWebhookID
	// HeaderTimestamp is the attempt's time in Unix seconds.
	HeaderTimestamp = standardwebhooks.HeaderWebhookTimestamp
	// HeaderSignature is "v1,<base64 HMAC-SHA256 of id.timestamp.body>",
	// one per secret, separated by spaces.
	HeaderSignature = standardwebhooks.HeaderWebhookSignature
)

// DefaultTolerance is how far a signature's timestamp may be from the
// receiver's clock, either way, for [Verify].
const DefaultTolerance = 5 * time.Minute

// Errors of [Verify]; the error returned wraps one of them.
var (
	// ErrMissingHeaders: webhook-id, webhook-timestamp or
	// webhook-signature is absent, or the timestamp is no number.
	ErrMissingHeaders = errors.New("webhook: missing or malformed signature headers")
	// ErrSignature: no signature matches any of the secrets.
	ErrSignature = errors.New("webhook: no matching signature")
	// ErrTimestamp: the timestamp is outside the tolerance.
	ErrTimestamp = errors.New("webhook: signature timestamp outside the tolerance")
)

// signer signs requests with one key per secret.
type signer []*standardwebhooks.Webhook

// newSigner decodes secrets in the whsec_ form (the prefix is optional;
// the rest is the base64 key).
func newSigner(secrets []string) (signer, error) {
	var s signer
	for i, sec := range secrets {
		if sec == "" {
			continue
		}
		if strings.TrimPrefix(sec, "whsec_") == "" {
			return nil, fmt.Errorf("webhook: secret %d is empty after its whsec_ prefix", i)
		}
		wh, err := standardwebhooks.NewWebhook(sec)
		if err != nil {
			return nil, fmt.Errorf("webhook: secret %d is not whsec_<base64>: %w", i, err)
		}
		s = append(s, wh)
	}
	return s, nil
}

// sign returns the webhook-signature value: one "v1,..." per key.
func (s signer) sign(id string, ts time.Time, payload []byte) (string, error) {
	sigs := make([]string, 0, len(s))
	for _, wh := range s {
		sig, err := wh.Sign(id, ts, payload)
		if err != nil {
			return "", fmt.Errorf("webhook: signing: %w", err)
		}
		sigs = append(sigs, sig)
	}
	return strings.Join(sigs, " "), nil
}

// Verify checks a request signed by this transport (or by any Standard
// Webhooks sender): one of the signatures in header must be the
// HMAC-SHA256, under one of secrets, of the webhook-id, the
// webhook-timestamp and body, and the timestamp must be within
// [DefaultTolerance] of now. Several secrets verify during a key rotation.
// For a GET, HEAD or DELETE request the signed payload is the raw query
// string (r.URL.RawQuery), which carries the parameters; otherwise the
// body.
func Verify(secrets []string, header http.Header, body []byte) error {
	return Verifier{Secrets: secrets}.Verify(header, body)
}

// Verifier verifies signed requests; see [Verify].
type Verifier struct {
	// Secrets are the accepted secrets, whsec_<base64>.
	Secrets []string
	// Tolerance is how far the timestamp may be from now. Zero means
	// DefaultTolerance.
	Tolerance time.Duration
	// MaxBody bounds the body Middleware reads. Zero means 1 MiB.
	MaxBody int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verify checks header and body as [Verify] does, with v's settings.
func (v Verifier) Verify(header http.Header, body []byte) error {
	s, err := newSigner(v.Secrets)
	if err != nil {
		return err
	}
	if len(s) == 0 {
		return errors.New("webhook: Verify: no secret")
	}
	id, ts, sig := header.Get(HeaderID), header.Get(HeaderTimestamp), header.Get(HeaderSignature)
	if id == "" || ts == "" || sig == "" {
		return ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: webhook-timestamp %q", ErrMissingHeaders, ts)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	at := time.Unix(sec, 0)
	if d := now().Sub(at); d > tol || d < -tol {
		return fmt.Errorf("%w: signed at %s, %v from now (tolerance %v)", ErrTimestamp, at.UTC().Format(time.RFC3339), d.Round(time.Second), tol)
	}
	for _, wh := range s {
		if wh.VerifyIgnoringTimestamp(body, header) == nil {
			return nil
		}
	}
	return ErrSignature
}

// Middleware returns a handler that verifies each request's signature (see
// [Verify]) before passing it to next, with the body restored, and answers
// 401 Unauthorized to a request whose signature or timestamp does not
// verify, and 413 to a body over v.MaxBody.
func (v Verifier) Middleware(next http.Handler) http.Handler {
	limit := v.MaxBody
	if limit <= 0 {
		limit = 1 << 20
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		if err != nil {
			http.Error(w, "webhook: reading the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if int64(len(body)) > limit {
			http.Error(w, "webhook: body too large", http.StatusRequestEntityTooLarge)
			return
		}
		payload := body
		if bodiless(r.Method) {
			payload = []byte(r.URL.RawQuery)
		}
		if err := v.Verify(r.Header, payload); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// Middleware is Verifier{Secrets: secrets}.Middleware(next).
func Middleware(secrets []string, next http.Handler) http.Handler {
	return Verifier{Secrets: secrets}.Middleware(next)
}

// bodiless reports whether requests with method m carry their parameters
// in the query string.
func bodiless(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodDelete
}
