package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocap/gocap/alert"
)

// The whole story of a callback center, in process on SQLite: a task to a
// merchant that answers FAIL uses up its attempts, is Failed with both
// attempts on record, and is posted to the DingTalk robot; once the
// merchant is fixed, an operator requeues it on the console and it is
// delivered.
func TestCallbackCenter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var fixed atomic.Bool
	var mu sync.Mutex
	var calls []*http.Request
	merchant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, r.Clone(context.Background()))
		mu.Unlock()
		if fixed.Load() {
			fmt.Fprint(w, "SUCCESS")
			return
		}
		fmt.Fprint(w, "FAIL")
	}))
	defer merchant.Close()

	const secret = "SECtest"
	posts := make(chan string, 10)
	ding := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts, _ := strconv.ParseInt(r.URL.Query().Get("timestamp"), 10, 64)
		if r.URL.Query().Get("sign") != alert.DingTalkSign(secret, ts) {
			t.Errorf("DingTalk post with a bad sign: %s", r.URL.RawQuery)
		}
		body, _ := io.ReadAll(r.Body)
		select {
		case posts <- string(body):
		default:
		}
		fmt.Fprint(w, `{"errcode":0,"errmsg":"ok"}`)
	}))
	defer ding.Close()

	cfg := config{
		Addr:            "127.0.0.1:0",
		DB:              "sqlite",
		SQLitePath:      filepath.Join(t.TempDir(), "cc.db"),
		AllowPrivate:    true,
		Schedule:        []time.Duration{100 * time.Millisecond},
		ConsoleUser:     "ops",
		ConsolePassword: "pw",
		DingTalkURL:     ding.URL + "/robot/send?access_token=t",
		DingTalkSecret:  secret,
		AlertWindow:     100 * time.Millisecond,
		PollInterval:    100 * time.Millisecond,
		Logger:          slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	addrs := make(chan net.Addr, 1)
	runDone := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	go func() { runDone <- run(runCtx, cfg, func(a net.Addr) { addrs <- a }) }()
	defer func() {
		stop()
		select {
		case err := <-runDone:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("run did not return within 30 s of the stop")
		}
	}()
	var base string
	select {
	case a := <-addrs:
		base = "http://" + a.String()
	case err := <-runDone:
		t.Fatalf("run: %v", err)
	case <-ctx.Done():
		t.Fatal("the service did not start")
	}

	// Submit; invalid tasks are refused naming the field.
	for _, bad := range []struct{ body, field string }{
		{`{"url":"ftp://x/","retry_limit":2}`, "url:"},
		{`{"url":"http://","retry_limit":2}`, "url:"},
		{`{"retry_limit":2}`, "url:"},
		{`{"url":"http://x/","method":"PUT","retry_limit":2}`, "method:"},
		{`{"url":"http://x/","retry_limit":0}`, "retry_limit:"},
		{`{"url":"http://x/","retry_limit":51}`, "retry_limit:"},
		{`{"url":"http://x/","retry_limit":2,"params":[1]}`, "params:"},
		{`{"url":"http://x/","retry_limit":2,"delay_seconds":-1}`, "delay_seconds: -1, want 0 to 604800"},
		{`{"url":"http://x/","retry_limit":2,"delay_seconds":604801}`, "delay_seconds: 604801, want 0 to 604800"},
		// 2^55+60 seconds overflows a time.Duration to 60 s.
		{`{"url":"http://x/","retry_limit":2,"delay_seconds":36028797018964028}`, "delay_seconds: 36028797018964028, want 0 to 604800"},
		{`{"url":"http://x/","retry_limit":2,"colour":"red"}`, "colour"},
	} {
		status, body := do(t, ctx, "POST", base+"/tasks", bad.body, "")
		if status != http.StatusBadRequest || !strings.Contains(body, bad.field) {
			t.Errorf("POST %s: %d %s, want 400 naming %s", bad.body, status, body, bad.field)
		}
	}
	status, body := do(t, ctx, "POST", base+"/tasks", fmt.Sprintf(`{"url":%q,"method":"POST",
		"params":{"order":42,"result":"paid"},"retry_limit":2,"expected":"SUCCESS",
		"source_app":"pay","target_app":"shop"}`, merchant.URL+"/notify"), "")
	if status != http.StatusCreated {
		t.Fatalf("POST /tasks: %d %s", status, body)
	}
	var created struct{ ID string }
	if err := json.Unmarshal([]byte(body), &created); err != nil || created.ID == "" {
		t.Fatalf("POST /tasks answered %s (%v)", body, err)
	}
	t.Logf("task %s submitted", created.ID)

	// Two attempts, both FAIL: Failed.
	task := waitTask(t, ctx, base, created.ID, "Failed")
	if len(task.Attempts) != 2 || task.Retries != 2 || !strings.Contains(task.LastError, "FAIL") {
		t.Fatalf("Failed task: %+v", task)
	}
	for _, a := range task.Attempts {
		if a.Outcome == "ok" || a.At.IsZero() || a.DurationMS <= 0 {
			t.Errorf("attempt %+v, want a failure with its time and duration", a)
		}
	}
	if task.URL != merchant.URL+"/notify" || task.Method != "POST" || task.Expected != "SUCCESS" ||
		task.SourceApp != "pay" || task.TargetApp != "shop" || compact(task.Params) != `{"order":42,"result":"paid"}` {
		t.Errorf("task as stored: %+v", task)
	}
	mu.Lock()
	first := calls[0]
	mu.Unlock()
	if first.Method != "POST" || first.Header.Get(HeaderSourceApp) != "pay" || first.Header.Get(HeaderTargetApp) != "shop" {
		t.Errorf("merchant got %s with headers %v", first.Method, first.Header)
	}

	// The robot hears of it.
	select {
	case post := <-posts:
		if !strings.Contains(post, Topic) || !strings.Contains(post, created.ID) {
			t.Errorf("DingTalk post does not name the task: %s", post)
		}
		t.Logf("DingTalk post: %s", post)
	case <-time.After(10 * time.Second):
		t.Fatal("no DingTalk post within 10 s of the failure")
	}

	// The merchant is fixed; the operator requeues the task on the console.
	fixed.Store(true)
	requeue := base + consolePrefix + "/api/published/requeue"
	ids := fmt.Sprintf(`{"ids":[%q]}`, created.ID)
	if status, body := do(t, ctx, "POST", requeue, ids, ""); status != http.StatusUnauthorized {
		t.Errorf("requeue without credentials: %d %s, want 401", status, body)
	}
	if status, body := do(t, ctx, "POST", requeue, ids, "ops:wrong"); status != http.StatusUnauthorized {
		t.Errorf("requeue with a wrong password: %d %s, want 401", status, body)
	}
	if status, body := do(t, ctx, "POST", requeue, ids, "ops:pw"); status != http.StatusOK || compact([]byte(body)) != `{"count":1}` {
		t.Fatalf("requeue: %d %s", status, body)
	}
	task = waitTask(t, ctx, base, created.ID, "Succeeded")
	if len(task.Attempts) != 3 || task.Attempts[2].Outcome != "ok" {
		t.Fatalf("Succeeded task: %+v", task)
	}
	if status, body := do(t, ctx, "GET", base+"/tasks/12345", "", ""); status != http.StatusNotFound {
		t.Errorf("GET an unknown task: %d %s", status, body)
	}
}

// waitTask polls GET /tasks/{id} until the task has status, for at most 20 s.
func waitTask(t *testing.T, ctx context.Context, base, id, status string) Task {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := do(t, ctx, "GET", base+"/tasks/"+id, "", "")
		var task Task
		if code == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &task); err != nil {
				t.Fatalf("GET /tasks/%s: %v in %s", id, err, body)
			}
			if string(task.Status) == status {
				return task
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s not %s within 20 s: %d %s", id, status, code, body)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("waiting for task %s: %v", id, ctx.Err())
		}
	}
}

// do makes a request (with basic auth "user:password" if set) and returns
// the status and body.
func do(t *testing.T, ctx context.Context, method, url, body, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if user, pass, ok := strings.Cut(auth, ":"); ok {
		req.SetBasicAuth(user, pass)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// compact returns j without spaces.
func compact(j []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, j); err != nil {
		return err.Error()
	}
	return b.String()
}

// testWriter sends the service's logs to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Without -allow-private a tenant's URL inside the network is refused: the
// task fails at once, on its first attempt, and the endpoint is never called.
func TestPrivateRefusedByDefault(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var called atomic.Bool
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called.Store(true)
		fmt.Fprint(w, "SUCCESS")
	}))
	defer internal.Close()
	cfg := config{
		Addr:       "127.0.0.1:0",
		SQLitePath: filepath.Join(t.TempDir(), "cc.db"),
		Schedule:   []time.Duration{100 * time.Millisecond},
		Logger:     slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	addrs := make(chan net.Addr, 1)
	runDone := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	go func() { runDone <- run(runCtx, cfg, func(a net.Addr) { addrs <- a }) }()
	var base string
	select {
	case a := <-addrs:
		base = "http://" + a.String()
	case err := <-runDone:
		t.Fatalf("run: %v", err)
	case <-ctx.Done():
		t.Fatal("the service did not start")
	}
	status, body := do(t, ctx, "POST", base+"/tasks", fmt.Sprintf(`{"url":%q,"retry_limit":5}`, internal.URL), "")
	if status != http.StatusCreated {
		t.Fatalf("POST /tasks: %d %s", status, body)
	}
	var created struct{ ID string }
	if err := json.Unmarshal([]byte(body), &created); err != nil {
		t.Fatal(err)
	}
	task := waitTask(t, ctx, base, created.ID, "Failed")
	if len(task.Attempts) != 1 || !strings.Contains(task.LastError, "refused") || called.Load() {
		t.Errorf("task to a loopback URL: %+v (endpoint called: %v)", task, called.Load())
	}
	stop()
	select {
	case err := <-runDone:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("run did not return within 30 s of the stop")
	}
}
