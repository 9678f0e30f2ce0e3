package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/transport/webhook"
)

// Topic is the topic of every callback task; the dashboard lists them under it.
const Topic = "callback.task"

// Headers naming the applications a task goes between. They are stored
// with the task and sent to the target along with the callback.
const (
	HeaderSourceApp = "X-Source-App"
	HeaderTargetApp = "X-Target-App"
)

// Limits of a task.
const (
	MaxRetryLimit = 50
	MaxDelay      = 7 * 24 * time.Hour
	maxBodyBytes  = 1 << 20
	maxTextLen    = 256
)

// TaskRequest is the body of POST /tasks.
type TaskRequest struct {
	// URL is the callback's destination, http or https.
	URL string `json:"url"`
	// Method is GET or POST; empty means POST. A GET sends Params as its
	// query string, a POST as its JSON body.
	Method string `json:"method"`
	// Params is a JSON object: the callback's parameters.
	Params json.RawMessage `json:"params"`
	// RetryLimit is the number of attempts in all, 1 to 50.
	RetryLimit int `json:"retry_limit"`
	// Expected, if set, is text the 2xx response body must contain for the
	// callback to count as delivered, such as "SUCCESS".
	Expected string `json:"expected"`
	// SourceApp and TargetApp name the applications (optional).
	SourceApp string `json:"source_app"`
	TargetApp string `json:"target_app"`
	// DelaySeconds, if positive, delays the first attempt.
	DelaySeconds int `json:"delay_seconds"`
}

// Task is the answer of GET /tasks/{id}.
type Task struct {
	ID        string          `json:"id"`
	Status    storage.Status  `json:"status"`
	URL       string          `json:"url"`
	Method    string          `json:"method"`
	Params    json.RawMessage `json:"params"`
	Expected  string          `json:"expected,omitempty"`
	SourceApp string          `json:"source_app,omitempty"`
	TargetApp string          `json:"target_app,omitempty"`
	// Retries is the number of failed attempts (zero again after a requeue).
	Retries   int       `json:"retries"`
	LastError string    `json:"last_error,omitempty"`
	Created   time.Time `json:"created"`
	// NextAttempt is when a Scheduled or Delayed task is tried next.
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	// Attempts are the last attempts, oldest first.
	Attempts []TaskAttempt `json:"attempts"`
	// Console is the task's page on the console, relative to the service.
	Console string `json:"console"`
}

// TaskAttempt is one attempt of a task.
type TaskAttempt struct {
	At         time.Time `json:"at"`
	DurationMS float64   `json:"duration_ms"`
	// Outcome is "ok", or the attempt's error.
	Outcome string `json:"outcome"`
}

// api serves the task API.
type api struct {
	ob       processor
	schedule []time.Duration // the retry waits of every task
	logger   *slog.Logger
}

// register adds the API's routes to mux.
func (a *api) register(mux *http.ServeMux) {
	mux.HandleFunc("POST /tasks", a.submit)
	mux.HandleFunc("GET /tasks/{id}", a.get)
}

// submit stores a task as an outbox message: it is then delivered by the
// webhook transport and retried by its own policy.
func (a *api) submit(w http.ResponseWriter, r *http.Request) {
	var req TaskRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "invalid JSON body: more than one value")
		return
	}
	opts, err := a.validate(&req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	id, err := a.ob.PublishWithoutTx(r.Context(), Topic, []byte(req.Params), opts...)
	if err != nil {
		a.logger.Error("storing a task", "err", err)
		writeError(w, http.StatusInternalServerError, "the task could not be stored")
		return
	}
	a.logger.Info("task submitted", "id", id, "url", req.URL, "method", req.Method,
		"source_app", req.SourceApp, "target_app", req.TargetApp)
	writeJSON(w, http.StatusCreated, map[string]string{"id": strconv.FormatInt(id, 10)})
}

// validate checks req, normalizes it (method upper case, params {} when
// absent) and returns the publish options that store it.
func (a *api) validate(req *TaskRequest) ([]outbox.PublishOption, error) {
	u, err := url.Parse(req.URL)
	switch {
	case req.URL == "":
		return nil, errors.New("url: required")
	case err != nil:
		return nil, fmt.Errorf("url: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("url: scheme %q, want http or https", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("url: no host")
	case u.User != nil:
		return nil, errors.New("url: credentials in the URL are not allowed")
	case u.Fragment != "":
		return nil, errors.New("url: a fragment is not allowed")
	}
	req.Method = strings.ToUpper(strings.TrimSpace(req.Method))
	switch req.Method {
	case "":
		req.Method = http.MethodPost
	case http.MethodGet, http.MethodPost:
	default:
		return nil, fmt.Errorf("method: %q, want GET or POST", req.Method)
	}
	params := bytes.TrimSpace(req.Params)
	if len(params) == 0 || bytes.Equal(params, []byte("null")) {
		params = []byte("{}")
	}
	if params[0] != '{' {
		return nil, errors.New("params: want a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, params); err != nil {
		return nil, fmt.Errorf("params: %w", err)
	}
	req.Params = buf.Bytes()
	if req.RetryLimit < 1 || req.RetryLimit > MaxRetryLimit {
		return nil, fmt.Errorf("retry_limit: %d, want 1 to %d", req.RetryLimit, MaxRetryLimit)
	}
	for _, f := range []struct{ name, value string }{
		{"expected", req.Expected}, {"source_app", req.SourceApp}, {"target_app", req.TargetApp},
	} {
		if len(f.value) > maxTextLen {
			return nil, fmt.Errorf("%s: longer than %d bytes", f.name, maxTextLen)
		}
		if strings.ContainsFunc(f.value, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("%s: control characters are not allowed", f.name)
		}
	}
	// Bound the seconds before turning them into a Duration: a large count
	// would overflow the multiplication and pass a check on the product.
	if req.DelaySeconds < 0 || req.DelaySeconds > int(MaxDelay/time.Second) {
		return nil, fmt.Errorf("delay_seconds: %d, want 0 to %d", req.DelaySeconds, int(MaxDelay/time.Second))
	}
	delay := time.Duration(req.DelaySeconds) * time.Second
	opts := []outbox.PublishOption{
		webhook.To(req.URL),
		webhook.Method(req.Method),
		outbox.WithRetry(outbox.RetryPolicy{MaxAttempts: req.RetryLimit, Schedule: a.schedule}),
	}
	if req.Expected != "" {
		opts = append(opts, webhook.Expect(req.Expected))
	}
	if req.SourceApp != "" {
		opts = append(opts, outbox.WithHeader(HeaderSourceApp, req.SourceApp))
	}
	if req.TargetApp != "" {
		opts = append(opts, outbox.WithHeader(HeaderTargetApp, req.TargetApp))
	}
	if delay > 0 {
		opts = append(opts, outbox.WithDelay(delay))
	}
	return opts, nil
}

// get answers a task with its status and attempts, read from the outbox's
// published table.
func (a *api) get(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "id: not a task id")
		return
	}
	m, err := a.ob.Store().Get(r.Context(), storage.Published, id)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && m.Name != Topic) {
		writeError(w, http.StatusNotFound, "no task "+r.PathValue("id"))
		return
	}
	if err != nil {
		a.logger.Error("reading a task", "id", id, "err", err)
		writeError(w, http.StatusInternalServerError, "the task could not be read")
		return
	}
	writeJSON(w, http.StatusOK, taskOf(m))
}

// taskOf turns a published row into a Task.
func taskOf(m *storage.Message) Task {
	t := Task{
		ID:        strconv.FormatInt(m.ID, 10),
		Status:    m.Status,
		URL:       m.Headers[webhook.HeaderURL],
		Method:    m.Headers[webhook.HeaderMethod],
		Params:    json.RawMessage(m.Body),
		Expected:  m.Headers[webhook.HeaderExpect],
		SourceApp: m.Headers[HeaderSourceApp],
		TargetApp: m.Headers[HeaderTargetApp],
		Retries:   m.Retries,
		LastError: m.LastError,
		Created:   m.Added.UTC(),
		Attempts:  make([]TaskAttempt, 0, len(m.Attempts)),
		Console:   consolePrefix + "/published/" + strconv.FormatInt(m.ID, 10),
	}
	if !json.Valid(m.Body) {
		t.Params = nil
	}
	if (m.Status == storage.StatusScheduled || m.Status == storage.StatusDelayed) && !m.NextAttemptAt.IsZero() {
		next := m.NextAttemptAt.UTC()
		t.NextAttempt = &next
	}
	for _, at := range m.Attempts {
		outcome := at.Error
		if outcome == "" {
			outcome = "ok"
		}
		t.Attempts = append(t.Attempts, TaskAttempt{
			At:         at.At.UTC(),
			DurationMS: float64(at.Duration.Microseconds()) / 1000,
			Outcome:    outcome,
		})
	}
	return t
}

// writeJSON writes v as the response, with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeError writes {"error": msg} with status.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
