package webhook_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/gocap/gocap/transport/webhook"
)

// The Standard Webhooks specification's example, as its libraries test it
// (libraries/go/webhook_test.go TestWebhookSign, and the same values in
// the C#, Java and Python tests).
const (
	specSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp = 1614265330
	specPayload   = `{"test": 2432232314}`
	specSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// TestSpecVector: the transport signs the spec's example to the spec's
// signature (a server captures the header), and Verify accepts it at its
// time.
func TestSpecVector(t *testing.T) {
	h := http.Header{}
	h.Set(webhook.HeaderID, specID)
	h.Set(webhook.HeaderTimestamp, strconv.Itoa(specTimestamp))
	h.Set(webhook.HeaderSignature, specSignature)
	v := webhook.Verifier{Secrets: []string{specSecret}, Now: func() time.Time { return time.Unix(specTimestamp+10, 0) }}
	if err := v.Verify(h, []byte(specPayload)); err != nil {
		t.Errorf("the spec's example does not verify: %v", err)
	}
	if err := v.Verify(h, []byte(specPayload+" ")); !errors.Is(err, webhook.ErrSignature) {
		t.Errorf("a changed payload: %v", err)
	}
	if err := webhook.Verify([]string{specSecret}, h, []byte(specPayload)); !errors.Is(err, webhook.ErrTimestamp) {
		t.Errorf("the spec's example of 2021 at today's time: %v", err)
	}

	// The transport's own signature of the same id and payload: the
	// library computes it for the timestamp the transport sent, and it
	// matches the spec's framing (id.timestamp.payload).
	srv, got := server(t, reply(200, "ok"))
	wh := newTransport(t, webhook.Config{Routes: []webhook.Route{{URL: srv.URL, Secret: specSecret}}})
	m := msg(specPayload)
	m.Headers["cap-msg-id"] = specID
	if err := wh.Send(context.Background(), "a", m); err != nil {
		t.Fatal(err)
	}
	r := received(t, got)
	ts, err := strconv.ParseInt(r.header.Get(webhook.HeaderTimestamp), 10, 64)
	if err != nil || r.header.Get(webhook.HeaderID) != specID {
		t.Fatalf("headers %v", r.header)
	}
	lib, _ := standardwebhooks.NewWebhook(specSecret)
	want, _ := lib.Sign(specID, time.Unix(ts, 0), []byte(specPayload))
	if r.header.Get(webhook.HeaderSignature) != want {
		t.Errorf("signature %q, want %q", r.header.Get(webhook.HeaderSignature), want)
	}
	if ts == specTimestamp {
		t.Error("the timestamp is the spec's, not the attempt's")
	}
}

// TestSignedDelivery: a Go receiver behind Middleware accepts the
// transport's requests, with two signatures during a key rotation, and
// rejects tampered, stale and unsigned ones.
func TestSignedDelivery(t *testing.T) {
	oldKey, newKey := "whsec_"+b64("old key, still accepted"), "whsec_"+b64("the new key")
	var (
		mu     sync.Mutex
		bodies []string
	)
	endpoint := webhook.Middleware([]string{newKey}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b)+"?"+r.URL.RawQuery)
		mu.Unlock()
		io.WriteString(w, "SUCCESS")
	}))
	srv, got := server(t, endpoint.ServeHTTP)
	wh := newTransport(t, webhook.Config{Routes: []webhook.Route{{URL: srv.URL, Secret: oldKey, Secrets: []string{newKey}, Expect: "SUCCESS"}}})
	if err := wh.Send(context.Background(), "a", msg(`{"order":7}`)); err != nil {
		t.Fatalf("signed POST: %v", err)
	}
	r := received(t, got)
	if sigs := strings.Fields(r.header.Get(webhook.HeaderSignature)); len(sigs) != 2 || !strings.HasPrefix(sigs[0], "v1,") {
		t.Errorf("signatures %q, want two v1", sigs)
	}
	for _, secrets := range [][]string{{oldKey}, {newKey}, {"whsec_" + b64("other"), newKey}} {
		if err := webhook.Verify(secrets, r.header, []byte(r.body)); err != nil {
			t.Errorf("Verify with %d secrets: %v", len(secrets), err)
		}
	}
	if err := webhook.Verify([]string{"whsec_" + b64("other")}, r.header, []byte(r.body)); !errors.Is(err, webhook.ErrSignature) {
		t.Errorf("another key: %v", err)
	}
	if err := webhook.Verify([]string{newKey}, r.header, []byte(`{"order":8}`)); !errors.Is(err, webhook.ErrSignature) {
		t.Errorf("tampered body: %v", err)
	}
	tampered := r.header.Clone()
	tampered.Set(webhook.HeaderID, "other")
	if err := webhook.Verify([]string{newKey}, tampered, []byte(r.body)); !errors.Is(err, webhook.ErrSignature) {
		t.Errorf("tampered id: %v", err)
	}
	// A GET is signed over its query string.
	if err := wh.Send(context.Background(), "a", msg(`{"order":9}`, webhook.HeaderMethod, "GET")); err != nil {
		t.Fatalf("signed GET: %v", err)
	}
	mu.Lock()
	if len(bodies) != 2 || bodies[1] != "?order=9" {
		t.Errorf("the handler saw %q", bodies)
	}
	mu.Unlock()

	// The middleware's refusals.
	sign := func(key string, at time.Time, body string) http.Header {
		lib, _ := standardwebhooks.NewWebhook(key)
		sig, _ := lib.Sign("msg_1", at, []byte(body))
		h := http.Header{}
		h.Set(webhook.HeaderID, "msg_1")
		h.Set(webhook.HeaderTimestamp, fmt.Sprint(at.Unix()))
		h.Set(webhook.HeaderSignature, sig)
		return h
	}
	post := func(h http.Header, body string) (int, string) {
		req := httptest.NewRequest("POST", "/", strings.NewReader(body))
		req.Header = h
		rec := httptest.NewRecorder()
		endpoint.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	now := time.Now()
	for _, c := range []struct {
		name   string
		h      http.Header
		body   string
		status int
		text   string
	}{
		{"valid", sign(newKey, now, "x"), "x", 200, "SUCCESS"},
		{"tampered", sign(newKey, now, "x"), "y", 401, "no matching signature"},
		{"stale", sign(newKey, now.Add(-6*time.Minute), "x"), "x", 401, "outside the tolerance"},
		{"future", sign(newKey, now.Add(6*time.Minute), "x"), "x", 401, "outside the tolerance"},
		{"unsigned", http.Header{}, "x", 401, "missing"},
		{"wrong key", sign(oldKey, now, "x"), "x", 401, "no matching signature"},
	} {
		if status, text := post(c.h, c.body); status != c.status || !strings.Contains(text, c.text) {
			t.Errorf("%s: %d %q, want %d %q", c.name, status, text, c.status, c.text)
		}
	}
	// A tolerance of its own.
	v := webhook.Verifier{Secrets: []string{newKey}, Tolerance: 10 * time.Minute}
	if err := v.Verify(sign(newKey, now.Add(-6*time.Minute), "x"), []byte("x")); err != nil {
		t.Errorf("6 min old with a tolerance of 10 min: %v", err)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
