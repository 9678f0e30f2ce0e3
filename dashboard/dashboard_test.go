package dashboard_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/dashboard"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
)

// fixture is an outbox on a real SQLite database with rows in every state.
type fixture struct {
	ob              *outbox.Outbox[*sql.Tx]
	failed, xss, ok int64
	scheduled       []int64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "dash.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store := sqlite.New(db, sqlite.Options{})
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ob, err := outbox.New(store, memory.New(memory.Options{}), outbox.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ob: ob}
	for i := range 7 {
		id, err := ob.PublishWithoutTx(ctx, "order.paid", map[string]int{"n": i})
		if err != nil {
			t.Fatal(err)
		}
		f.scheduled = append(f.scheduled, id)
	}
	f.xss, _ = ob.PublishWithoutTx(ctx, "evil.topic", []byte(`<script>alert(1)</script>`))
	// Make one Failed and one Succeeded through the storage contract.
	now := time.Now().UTC()
	claimed, err := store.Claim(ctx, storage.Published, storage.ClaimRequest{Now: now.Add(time.Second), LeaseUntil: now.Add(time.Minute), Token: 77, Limit: 2})
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %d %v", len(claimed), err)
	}
	f.failed, f.ok = claimed[0].ID, claimed[1].ID
	if _, err := store.Fail(ctx, storage.Published, storage.Lease{ID: f.failed, Token: 77}, storage.Failure{
		Error: "broker said <no>", Now: now, NextAttemptAt: now, MaxAttempts: 1, ExpiresAt: now.Add(time.Hour),
		Attempt: storage.Attempt{At: now, Duration: time.Millisecond, Error: "broker said <no>"}}); err != nil {
		t.Fatal(err)
	}
	done := []storage.Completed{{Lease: storage.Lease{ID: f.ok, Token: 77}, Attempt: storage.Attempt{At: now, Duration: time.Millisecond}}}
	if _, err := store.Succeed(ctx, storage.Published, done, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return f
}

func serve(t *testing.T, h http.Handler, method, target string, body io.Reader, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, body)
	r.RemoteAddr = "127.0.0.1:50000"
	r.Host = "127.0.0.1:8080" // not httptest's example.com, refused without Authorize
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	if method == http.MethodPost && r.Header.Get("Content-Type") == "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestPages(t *testing.T) {
	f := newFixture(t)
	h := dashboard.New(f.ob, dashboard.Options{Prefix: "/ops/gocap", PageSize: 3})
	cases := []struct {
		target string
		status int
		want   []string
	}{
		{"/ops/gocap/", 200, []string{"Overview", `href="/ops/gocap/static/style.css"`, "serving loopback clients only", `data-count="published.Failed"`, "<svg"}},
		{"/ops/gocap/published", 200, []string{"Older messages", "before="}},
		{"/ops/gocap/published?status=Failed", 200, []string{strconv.FormatInt(f.failed, 10), "broker said &lt;no&gt;"}},
		{"/ops/gocap/published?name=evil.topic", 200, []string{strconv.FormatInt(f.xss, 10)}},
		{"/ops/gocap/published?content=alert", 200, []string{strconv.FormatInt(f.xss, 10)}},
		{"/ops/gocap/published/" + strconv.FormatInt(f.xss, 10), 200, []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "cap-msg-name"}},
		{"/ops/gocap/published/" + strconv.FormatInt(f.scheduled[2], 10), 200, []string{"&#34;n&#34;: 2", "json"}},
		{"/ops/gocap/published/12345", 404, []string{"not found"}},
		{"/ops/gocap/published/abc", 400, []string{"not a message id"}},
		{"/ops/gocap/published?status=Lost", 400, []string{"unknown status"}},
		{"/ops/gocap/nothing", 404, nil},
		{"/ops/gocap/static/app.js", 200, []string{"api/stats"}},
		{"/ops/gocap/received", 200, []string{"No messages match", `name="group"`}},
		{"/ops/gocap/received?group=billing&status=Failed", 200, []string{"No messages match"}},
		{"/ops/gocap/received/123", 404, []string{"not found"}},
		{"/ops/gocap/api/received", 200, []string{`"messages":[]`}},
		{"/ops/gocap/api/received/123", 404, []string{`"error"`}},
		{"/ops/gocap/api/histogram", 200, []string{`"received"`}},
	}
	for _, c := range cases {
		w := serve(t, h, "GET", c.target, nil, nil)
		if w.Code != c.status {
			t.Errorf("GET %s: %d, want %d", c.target, w.Code, c.status)
			continue
		}
		body := w.Body.String()
		for _, s := range c.want {
			if !strings.Contains(body, s) {
				t.Errorf("GET %s: body lacks %q", c.target, s)
			}
		}
		if strings.Contains(body, "<script>alert") {
			t.Errorf("GET %s: unescaped message content", c.target)
		}
		if !strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: no CSP", c.target)
		}
	}
}

func TestPagingVisitsEveryMessageOnce(t *testing.T) {
	f := newFixture(t)
	h := dashboard.New(f.ob, dashboard.Options{PageSize: 3})
	seen := map[string]bool{}
	next := ""
	for range 10 {
		w := serve(t, h, "GET", "/api/published?limit=3&before="+next, nil, nil)
		if next == "" {
			w = serve(t, h, "GET", "/api/published?limit=3", nil, nil)
		}
		var page struct {
			Messages []struct{ ID string } `json:"messages"`
			Next     string                `json:"next"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil {
			t.Fatal(err, w.Body.String())
		}
		for _, m := range page.Messages {
			if seen[m.ID] {
				t.Fatalf("message %s on two pages", m.ID)
			}
			seen[m.ID] = true
		}
		if page.Next == "" {
			break
		}
		next = page.Next
	}
	if len(seen) != 8 {
		t.Errorf("paged through %d messages, want 8", len(seen))
	}
}

func TestActions(t *testing.T) {
	f := newFixture(t)
	h := dashboard.New(f.ob, dashboard.Options{Prefix: "/gocap"})
	store := f.ob.Store()
	ctx := context.Background()

	// Requeue one from its page: redirect back, row Scheduled again.
	form := url.Values{"id": {strconv.FormatInt(f.failed, 10)}, "back": {"/gocap/published/" + strconv.FormatInt(f.failed, 10)}}
	w := serve(t, h, "POST", "/gocap/published/requeue", strings.NewReader(form.Encode()), map[string]string{"Sec-Fetch-Site": "same-origin"})
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/gocap/published/") {
		t.Fatalf("requeue: %d %s", w.Code, w.Header().Get("Location"))
	}
	if m, _ := store.Get(ctx, storage.Published, f.failed); m.Status != storage.StatusScheduled || m.Retries != 0 {
		t.Errorf("requeued row: %s retries %d", m.Status, m.Retries)
	}

	// Cross-site POST: refused, nothing changes.
	form = url.Values{"id": {strconv.FormatInt(f.ok, 10)}}
	w = serve(t, h, "POST", "/gocap/published/delete", strings.NewReader(form.Encode()), map[string]string{"Sec-Fetch-Site": "cross-site"})
	if w.Code != http.StatusForbidden {
		t.Errorf("cross-site delete: %d, want 403", w.Code)
	}
	if _, err := store.Get(ctx, storage.Published, f.ok); err != nil {
		t.Errorf("cross-site delete removed the row: %v", err)
	}
	w = serve(t, h, "POST", "/gocap/published/delete", strings.NewReader(form.Encode()), map[string]string{"Origin": "https://evil.example"})
	if w.Code != http.StatusForbidden {
		t.Errorf("delete with a foreign Origin: %d, want 403", w.Code)
	}

	// Delete through the JSON API.
	w = serve(t, h, "POST", "/gocap/api/published/delete", strings.NewReader(`{"ids":["`+strconv.FormatInt(f.ok, 10)+`"]}`),
		map[string]string{"Content-Type": "application/json"})
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"count":1`) {
		t.Errorf("API delete: %d %s", w.Code, w.Body.String())
	}
	if _, err := store.Get(ctx, storage.Published, f.ok); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted row: %v", err)
	}

	// Requeue all Failed matching a filter.
	fail := func(id int64) {
		now := time.Now().UTC()
		store.Requeue(ctx, storage.Published, []int64{id}, now)
		c, _ := store.Claim(ctx, storage.Published, storage.ClaimRequest{Now: now.Add(time.Second), LeaseUntil: now.Add(time.Minute), Token: 5, Limit: 100})
		for _, m := range c {
			store.Fail(ctx, storage.Published, storage.Lease{ID: m.ID, Token: 5}, storage.Failure{Error: "x", Now: now, NextAttemptAt: now, MaxAttempts: 1,
				ExpiresAt: now.Add(time.Hour), Attempt: storage.Attempt{At: now, Error: "x"}})
		}
	}
	fail(f.failed)
	form = url.Values{"all_failed": {"1"}, "filter": {"name=order.paid"}}
	w = serve(t, h, "POST", "/gocap/published/requeue", strings.NewReader(form.Encode()), nil)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("requeue all: %d %s", w.Code, w.Body.String())
	}
	// Only the Failed rows named order.paid; the Failed evil.topic row stays.
	counts, _ := store.Counts(ctx, storage.Published)
	evil, _ := store.Get(ctx, storage.Published, f.xss)
	if counts[storage.StatusFailed] != 1 || evil.Status != storage.StatusFailed {
		t.Errorf("after requeue all matching name=order.paid: %v, evil.topic %s", counts, evil.Status)
	}

	// The received table's actions answer too (no such row: nothing changes).
	for _, target := range []string{"/gocap/api/received/requeue", "/gocap/api/received/delete"} {
		w := serve(t, h, "POST", target, strings.NewReader(`{"ids":["1"]}`), map[string]string{"Content-Type": "application/json"})
		if w.Code != 200 || !strings.Contains(w.Body.String(), `"count":0`) {
			t.Errorf("POST %s: %d %s", target, w.Code, w.Body.String())
		}
	}
	w = serve(t, h, "POST", "/gocap/received/requeue", strings.NewReader("id=1"), nil)
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/gocap/received?done=") {
		t.Errorf("form requeue of received: %d %s", w.Code, w.Header().Get("Location"))
	}

	// Bad input.
	for _, c := range []struct{ target, body, ctype string }{
		{"/gocap/published/requeue", "id=abc", ""},
		{"/gocap/published/requeue", "", ""},
		{"/gocap/api/published/requeue", `{"ids":[1]}`, "application/json"},
		{"/gocap/api/published/requeue", `{}`, "application/json"},
	} {
		w := serve(t, h, "POST", c.target, strings.NewReader(c.body), map[string]string{"Content-Type": c.ctype})
		if w.Code != http.StatusBadRequest {
			t.Errorf("POST %s %q: %d, want 400", c.target, c.body, w.Code)
		}
	}
	if w := serve(t, h, "GET", "/gocap/published/requeue", nil, nil); w.Code == 200 && strings.Contains(w.Body.String(), "Done") {
		t.Error("a GET performed a requeue")
	}
}

func TestAccess(t *testing.T) {
	f := newFixture(t)
	open := dashboard.New(f.ob, dashboard.Options{})
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "192.0.2.10:4000"
	w := httptest.NewRecorder()
	open.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Errorf("remote client without an authorizer: %d, want 403", w.Code)
	}
	r.RemoteAddr = "[::1]:4000"
	r.Host = "[::1]:8080"
	w = httptest.NewRecorder()
	open.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Errorf("IPv6 loopback client: %d", w.Code)
	}
	// Behind a reverse proxy on the same host every client is loopback.
	for _, h := range []string{"X-Forwarded-For", "Forwarded", "X-Real-IP", "x-forwarded-for"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "127.0.0.1:4000"
		r.Host = "localhost:8080"
		r.Header.Set(h, "203.0.113.7")
		w := httptest.NewRecorder()
		open.ServeHTTP(w, r)
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "proxy") {
			t.Errorf("loopback request with %s: %d %q, want 403 explaining the proxy", h, w.Code, w.Body.String())
		}
	}

	guarded := dashboard.New(f.ob, dashboard.Options{Authorize: func(r *http.Request) (string, error) {
		if u, p, ok := r.BasicAuth(); ok && u == "ops" && p == "secret" {
			return "ops", nil
		}
		return "", errors.New("bad credentials")
	}})
	for _, path := range []string{"/", "/published", "/api/stats"} {
		w := serve(t, guarded, "GET", path, nil, nil)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("GET %s without credentials: %d, want 401", path, w.Code)
		}
	}
	r = httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "192.0.2.10:4000"
	r.SetBasicAuth("ops", "secret")
	w = httptest.NewRecorder()
	guarded.ServeHTTP(w, r)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "Signed in as ops") || strings.Contains(w.Body.String(), "loopback clients only") {
		t.Errorf("authorized remote client: %d", w.Code)
	}
}

// TestHostCheck: without Authorize, only requests for a loopback host name
// are served. A page on attacker.example whose name is re-bound to
// 127.0.0.1 (DNS rebinding) is same-origin with itself and reaches the
// dashboard from loopback, so its requests, which say Host:
// attacker.example, must be refused, reads and actions alike.
func TestHostCheck(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(dashboard.New(f.ob, dashboard.Options{Prefix: "/gocap"}))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	do := func(host, method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		// What the attacker's page sends: a same-origin request.
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("Origin", "http://"+host)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	evil := "attacker.example:" + port
	id := strconv.FormatInt(f.failed, 10)
	st, body := do(evil, "GET", "/gocap/api/published?limit=2", "")
	if st != http.StatusForbidden || !strings.Contains(body, `"`+evil+`"`) || !strings.Contains(body, "Authorize") || strings.Contains(body, id) {
		t.Errorf("GET list with Host %s: %d %.200q, want 403 naming the host and Authorize", evil, st, body)
	}
	st, body = do(evil, "POST", "/gocap/api/published/delete", `{"ids":["`+id+`"]}`)
	if st != http.StatusForbidden {
		t.Errorf("POST delete with Host %s: %d %q, want 403", evil, st, body)
	}
	if _, err := f.ob.Store().Get(context.Background(), storage.Published, f.failed); err != nil {
		t.Errorf("row %s after a delete for Host %s: %v", id, evil, err)
	}

	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:" + port, true},
		{"127.0.0.1", true},
		{"127.8.9.10:" + port, true},
		{"localhost:" + port, true},
		{"LocalHost", true},
		{"[::1]:" + port, true},
		{"[::1]", true},
		{"[::ffff:127.0.0.1]:" + port, true},
		{evil, false},
		{"attacker.example", false},
		{"localhost.attacker.example:" + port, false},
		{"127.0.0.1.nip.io:" + port, false},
		{"gocap.localhost:" + port, false},
		{"0.0.0.0:" + port, false},
		{"192.0.2.1:" + port, false},
		{"[::2]:" + port, false},
	} {
		st, body := do(c.host, "GET", "/gocap/api/stats", "")
		if c.ok && st != 200 {
			t.Errorf("Host %s: %d %q, want 200", c.host, st, body)
		}
		if !c.ok && st != http.StatusForbidden {
			t.Errorf("Host %s: %d %.100q, want 403", c.host, st, body)
		}
	}
	st, _ = do("127.0.0.1:"+port, "POST", "/gocap/api/published/delete", `{"ids":["`+id+`"]}`)
	if _, err := f.ob.Store().Get(context.Background(), storage.Published, f.failed); st != 200 || err == nil {
		t.Errorf("delete for Host 127.0.0.1: %d, row still there: %v", st, err == nil)
	}

	// With Authorize, the host is the application's business.
	guarded := httptest.NewServer(dashboard.New(f.ob, dashboard.Options{Authorize: func(*http.Request) (string, error) { return "ops", nil }}))
	defer guarded.Close()
	req, err := http.NewRequest("GET", guarded.URL+"/api/stats", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "ops.example"
	resp, err := guarded.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("Host ops.example with Authorize: %d, want 200", resp.StatusCode)
	}
}

func TestAPI(t *testing.T) {
	f := newFixture(t)
	h := dashboard.New(f.ob, dashboard.Options{})
	w := serve(t, h, "GET", "/api/stats", nil, nil)
	var s struct {
		Published map[string]int64           `json:"published"`
		Received  map[string]int64           `json:"received"`
		Estimated map[string]map[string]bool `json:"estimated"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil || s.Published["Failed"] != 1 || s.Published["Succeeded"] != 1 || s.Published["Scheduled"] != 6 {
		t.Errorf("stats: %s (%v)", w.Body.String(), err)
	}
	// SQLite counts every status exactly: flags present, all false.
	if len(s.Estimated["published"]) != len(storage.Statuses) || len(s.Estimated["received"]) != len(storage.Statuses) {
		t.Errorf("stats: estimated flags %v, want every status of both tables", s.Estimated)
	}
	for kind, flags := range s.Estimated {
		for st, est := range flags {
			if est {
				t.Errorf("stats: %s %s marked estimated on a small SQLite table", kind, st)
			}
		}
	}
	w = serve(t, h, "GET", "/api/published/"+strconv.FormatInt(f.xss, 10), nil, nil)
	var m struct {
		ID, Body, Name string
	}
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil || m.Body != "<script>alert(1)</script>" || m.ID != strconv.FormatInt(f.xss, 10) {
		t.Errorf("get: %s", w.Body.String())
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("content type %q", ct)
	}
	if w := serve(t, h, "GET", "/api/histogram", nil, nil); w.Code != 200 || !strings.Contains(w.Body.String(), `"published"`) {
		t.Errorf("histogram: %d %s", w.Code, w.Body.String())
	}
	if w := serve(t, h, "GET", "/api/nothing", nil, nil); w.Code != 404 {
		t.Errorf("unknown table: %d", w.Code)
	}
	if w := serve(t, h, "GET", "/api/published?limit=0", nil, nil); w.Code != 400 {
		t.Errorf("bad limit: %d", w.Code)
	}
}
