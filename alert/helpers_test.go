package alert_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/alert"
	"github.com/gocap/gocap/internal/testlog"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
)

// request is one request a robot server received.
type request struct {
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
}

// JSON decodes the body.
func (r request) JSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("the body is not JSON: %v: %s", err, r.Body)
	}
	return m
}

// robot is a local HTTP server standing in for a chat robot: it records
// every request and answers with status and body.
type robot struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []request
	status int
	answer string
	block  chan struct{} // if set, the handler waits for it (or the request's end)
}

func newRobot(t *testing.T, status int, answer string) *robot {
	t.Helper()
	r := &robot{status: status, answer: answer}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, request{Path: req.URL.Path, Query: req.URL.Query(), Header: req.Header.Clone(), Body: body})
		status, answer, block := r.status, r.answer, r.block
		r.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-req.Context().Done():
				return
			}
		}
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *robot) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

func (r *robot) count() int { return len(r.requests()) }

// waitFor polls cond every few milliseconds until it holds, failing the
// test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// failed is a received message of topic and group that failed with err.
func failed(id int64, topic, group, err string) outbox.FailedMessage {
	return outbox.FailedMessage{
		Message: &storage.Message{ID: id, Kind: storage.Received, MsgID: fmt.Sprint(id), Name: topic, Group: group},
		Err:     errors.New(err),
		Retries: 3,
	}
}

func newLogger() (*slog.Logger, *testlog.Buffer) {
	var b testlog.Buffer
	return b.Logger(slog.LevelDebug), &b
}

// start makes a notifier for cfg and runs it until the test ends.
func start(t *testing.T, cfg alert.Config) *alert.Notifier {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger, _ = newLogger()
	}
	n, err := alert.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return 10s after its context ended")
		}
	})
	return n
}

// str digs a string out of decoded JSON along path.
func str(t *testing.T, v any, path ...string) string {
	t.Helper()
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: not an object in %v", p, v)
		}
		v = m[p]
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%s: %v is not a string", strings.Join(path, "."), v)
	}
	return s
}
