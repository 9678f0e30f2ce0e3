package dashboard_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocap/gocap/dashboard"
	"github.com/gocap/gocap/internal/testlog"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
)

// storeSource is a dashboard.Source on a real SQLite store without an
// outbox: it counts the wakes the dashboard sends.
type storeSource struct {
	store storage.Store
	wakes atomic.Int64
}

func (s *storeSource) Store() storage.Store   { return s.store }
func (s *storeSource) Wake(kind storage.Kind) { s.wakes.Add(1) }

// delayedFixture holds published rows in every state, Delayed ones among
// them, and one with an attempt history, on a real SQLite database.
type delayedFixture struct {
	src       *storeSource
	store     storage.Store
	now       time.Time
	delayed   int64 // due in 4m10s, with a policy
	later     int64 // Delayed, due in an hour
	soon      int64 // Delayed, due in 2s: too close to send now or cancel
	scheduled int64
	failed    int64
	tried     int64 // failed twice (once with a multi-line error), then succeeded
}

const testPolicy = `{"max_attempts":5,"interval":"30s"}`

func newDelayedFixture(t *testing.T) *delayedFixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "delayed.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store := sqlite.New(db, sqlite.Options{})
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	f := &delayedFixture{src: &storeSource{store: store}, store: store, now: now}
	base := storage.MinIDAt(now.Add(-time.Minute))
	msg := func(n int64, name string, status storage.Status, due time.Time, policy string) *storage.Message {
		id := base + n
		return &storage.Message{
			ID: id, Kind: storage.Published, MsgID: strconv.FormatInt(id, 10), Name: name,
			Headers: map[string]string{"cap-msg-id": strconv.FormatInt(id, 10), "cap-msg-name": name},
			Body:    []byte(`{"order":` + strconv.FormatInt(n, 10) + `}`), Status: status,
			Added: now.Add(-time.Minute), NextAttemptAt: due, Policy: policy,
		}
	}
	rows := []*storage.Message{
		msg(1, "order.tried", storage.StatusScheduled, now.Add(-time.Minute), ""),
		msg(2, "order.failed", storage.StatusScheduled, now.Add(-time.Minute), ""),
		msg(3, "order.scheduled", storage.StatusScheduled, now.Add(time.Hour), ""),
		msg(4, "order.reminder", storage.StatusDelayed, now.Add(4*time.Minute+10*time.Second), testPolicy),
		msg(5, "order.later", storage.StatusDelayed, now.Add(time.Hour), ""),
		msg(6, "order.soon", storage.StatusDelayed, now.Add(2*time.Second), ""),
	}
	if err := store.InsertPublished(ctx, rows, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	f.tried, f.failed, f.scheduled, f.delayed, f.later, f.soon = rows[0].ID, rows[1].ID, rows[2].ID, rows[3].ID, rows[4].ID, rows[5].ID

	// Attempts through the storage contract: the failed row fails for
	// good; the tried row fails twice and then succeeds.
	claim := func(token int64, want int) {
		t.Helper()
		c, err := store.Claim(ctx, storage.Published, storage.ClaimRequest{Now: now, LeaseUntil: now.Add(time.Minute), Token: token, Limit: 10})
		if err != nil || len(c) != want {
			t.Fatalf("claim %d: %d rows, %v; want %d", token, len(c), err, want)
		}
	}
	fail := func(id, token int64, at time.Time, msg string, maxAttempts int) {
		t.Helper()
		if _, err := store.Fail(ctx, storage.Published, storage.Lease{ID: id, Token: token}, storage.Failure{
			Error: msg, Now: at, NextAttemptAt: now, MaxAttempts: maxAttempts, ExpiresAt: now.Add(time.Hour),
			Attempt: storage.Attempt{At: at, Duration: 3 * time.Millisecond, Error: msg}}); err != nil {
			t.Fatal(err)
		}
	}
	claim(1, 2)
	fail(f.failed, 1, now.Add(-50*time.Second), "broker said <no>", 1)
	fail(f.tried, 1, now.Add(-40*time.Second), "dial tcp 10.0.0.1:5672: connection refused", 0)
	claim(2, 1)
	fail(f.tried, 2, now.Add(-30*time.Second), "publish timed out\nwaited 5s for the broker's confirm\nchannel 3 closed", 0)
	claim(3, 1)
	done := []storage.Completed{{Lease: storage.Lease{ID: f.tried, Token: 3}, Attempt: storage.Attempt{At: now.Add(-20 * time.Second), Duration: 12 * time.Millisecond}}}
	if n, err := store.Succeed(ctx, storage.Published, done, now.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("succeed: %d %v", n, err)
	}
	return f
}

func (f *delayedFixture) get(t *testing.T, id int64) *storage.Message {
	t.Helper()
	m, err := f.store.Get(context.Background(), storage.Published, id)
	if err != nil {
		t.Fatalf("get %d: %v", id, err)
	}
	return m
}

func ids(ids ...int64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = strconv.FormatInt(id, 10)
	}
	return out
}

func mustContain(t *testing.T, what, body string, want ...string) {
	t.Helper()
	for _, s := range want {
		if !strings.Contains(body, s) {
			t.Errorf("%s lacks %q", what, s)
		}
	}
}

func TestDelayedPages(t *testing.T) {
	f := newDelayedFixture(t)
	h := dashboard.New(f.src, dashboard.Options{Prefix: "/gocap"})
	due := f.now.Add(4*time.Minute + 10*time.Second).Format("2006-01-02 15:04:05.000 UTC")
	id := strconv.FormatInt(f.delayed, 10)

	// Overview: the published card counts Delayed, first; the received one has no Delayed.
	w := serve(t, h, "GET", "/gocap/", nil, nil)
	body := w.Body.String()
	mustContain(t, "overview", body, `data-count="published.Delayed" href="/gocap/published?status=Delayed">3<`)
	if strings.Contains(body, `data-count="received.Delayed"`) {
		t.Error("overview shows Delayed for the received table")
	}
	if i, j := strings.Index(body, `published.Delayed`), strings.Index(body, `published.Scheduled`); i < 0 || j < i {
		t.Error("overview: Delayed does not come before Scheduled")
	}

	// The list: the Delayed row shows its due time, relative and in UTC.
	w = serve(t, h, "GET", "/gocap/published", nil, nil)
	body = w.Body.String()
	mustContain(t, "list", body, `<span class="badge Delayed">Delayed</span>`, due, "in 4m ", "Send selected Delayed now", "Cancel selected Delayed",
		`formaction="/gocap/published/send-now"`, `formaction="/gocap/published/cancel"`, ">Delayed</option>")

	// Filtered to Delayed: the three Delayed rows, nothing else.
	w = serve(t, h, "GET", "/gocap/published?status=Delayed", nil, nil)
	body = w.Body.String()
	mustContain(t, "Delayed list", body, ids(f.delayed, f.later, f.soon)...)
	for _, other := range ids(f.scheduled, f.failed, f.tried) {
		if strings.Contains(body, other) {
			t.Errorf("Delayed list shows row %s", other)
		}
	}
	if w := serve(t, h, "GET", "/gocap/received", nil, nil); strings.Contains(w.Body.String(), "Delayed") {
		t.Error("the received list offers Delayed")
	}

	// The detail of a Delayed row: due time, policy, send now and cancel; no requeue.
	w = serve(t, h, "GET", "/gocap/published/"+id, nil, nil)
	body = w.Body.String()
	mustContain(t, "Delayed detail", body, "<dt>Due</dt>", due, "(in 4m ", "Retry policy", "{&#34;max_attempts&#34;:5,&#34;interval&#34;:&#34;30s&#34;}",
		`formaction="/gocap/published/send-now"`, `formaction="/gocap/published/cancel"`, ">Send now</button>", ">Cancel</button>", "none yet")
	if strings.Contains(body, "/requeue") || strings.Contains(body, "/delete") {
		t.Error("the detail of a Delayed row offers requeue or delete")
	}

	// The detail of a tried row: its attempts, newest first; no policy.
	w = serve(t, h, "GET", "/gocap/published/"+strconv.FormatInt(f.tried, 10), nil, nil)
	body = w.Body.String()
	mustContain(t, "tried detail", body, "3 recorded, newest first", `id="attempts"`, "12ms", "3ms",
		"<summary class=\"err\">publish timed out …</summary>", "channel 3 closed", `<span class="err">dial tcp 10.0.0.1:5672: connection refused</span>`,
		`formaction="/gocap/published/requeue"`)
	if strings.Contains(body, "Retry policy") || strings.Contains(body, "send-now") {
		t.Error("the detail of a row without a policy shows one, or offers send now")
	}
	body = body[strings.Index(body, `id="attempts"`):] // the last error comes before
	ok := strings.Index(body, ">ok</span>")
	timedOut := strings.Index(body, "publish timed out")
	refused := strings.Index(body, "connection refused")
	if ok < 0 || !(ok < timedOut && timedOut < refused) {
		t.Errorf("attempts not newest first: ok at %d, timed out at %d, refused at %d", ok, timedOut, refused)
	}
	for _, at := range []time.Duration{20 * time.Second, 30 * time.Second, 40 * time.Second} {
		mustContain(t, "tried detail", body, f.now.Add(-at).Format("2006-01-02 15:04:05.000 UTC"))
	}
}

func TestDelayedAPI(t *testing.T) {
	f := newDelayedFixture(t)
	h := dashboard.New(f.src, dashboard.Options{})

	w := serve(t, h, "GET", "/api/stats", nil, nil)
	var s struct {
		Published map[string]int64 `json:"published"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil || s.Published["Delayed"] != 3 || s.Published["Scheduled"] != 1 {
		t.Errorf("stats: %s (%v)", w.Body.String(), err)
	}

	type attempt struct {
		At         time.Time `json:"at"`
		DurationMS float64   `json:"duration_ms"`
		Error      *string   `json:"error"`
	}
	type message struct {
		ID            string     `json:"id"`
		Status        string     `json:"status"`
		Policy        string     `json:"policy"`
		NextAttemptAt time.Time  `json:"next_attempt_at"`
		Attempts      *[]attempt `json:"attempts"`
	}
	w = serve(t, h, "GET", "/api/published/"+strconv.FormatInt(f.tried, 10), nil, nil)
	var m message
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil || m.Attempts == nil || len(*m.Attempts) != 3 {
		t.Fatalf("detail with attempts: %s (%v)", w.Body.String(), err)
	}
	a := *m.Attempts
	if !a[0].At.Equal(f.now.Add(-20*time.Second)) || a[0].DurationMS != 12 || a[0].Error == nil || *a[0].Error != "" {
		t.Errorf("newest attempt: %+v", a[0])
	}
	if !a[1].At.Equal(f.now.Add(-30*time.Second)) || a[1].DurationMS != 3 || !strings.HasPrefix(*a[1].Error, "publish timed out\nwaited") {
		t.Errorf("second attempt: %+v", a[1])
	}
	if !a[2].At.Equal(f.now.Add(-40*time.Second)) || !strings.Contains(*a[2].Error, "connection refused") {
		t.Errorf("oldest attempt: %+v", a[2])
	}

	w = serve(t, h, "GET", "/api/published/"+strconv.FormatInt(f.delayed, 10), nil, nil)
	m = message{}
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil || m.Status != "Delayed" || m.Policy != testPolicy ||
		!m.NextAttemptAt.Equal(f.now.Add(4*time.Minute+10*time.Second)) || m.Attempts == nil || len(*m.Attempts) != 0 {
		t.Errorf("Delayed detail: %s (%v)", w.Body.String(), err)
	}
	if !strings.Contains(w.Body.String(), `"attempts":[]`) {
		t.Errorf("Delayed detail without attempts: %s", w.Body.String())
	}

	w = serve(t, h, "GET", "/api/published?status=Delayed", nil, nil)
	var page struct{ Messages []message }
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || len(page.Messages) != 3 {
		t.Fatalf("Delayed list: %s (%v)", w.Body.String(), err)
	}
	for _, m := range page.Messages {
		if m.Status != "Delayed" || m.Attempts != nil {
			t.Errorf("Delayed list: %+v (a list carries no attempts)", m)
		}
	}
}

// unchanged reports how a row differs from what it was.
func unchanged(t *testing.T, what string, before, after *storage.Message) {
	t.Helper()
	if after.Status != before.Status || !after.NextAttemptAt.Equal(before.NextAttemptAt) || after.Retries != before.Retries ||
		after.LastError != before.LastError || !after.ExpiresAt.Equal(before.ExpiresAt) || len(after.Attempts) != len(before.Attempts) {
		t.Errorf("%s changed the row %d: %s due %v retries %d → %s due %v retries %d", what, before.ID,
			before.Status, before.NextAttemptAt, before.Retries, after.Status, after.NextAttemptAt, after.Retries)
	}
}

func TestSendNowAndCancel(t *testing.T) {
	f := newDelayedFixture(t)
	var log testlog.Buffer
	h := dashboard.New(f.src, dashboard.Options{Prefix: "/gocap", Logger: log.Logger(slog.LevelInfo),
		Authorize: func(*http.Request) (string, error) { return "ops-anna", nil }})
	ctx := context.Background()
	others := []int64{f.scheduled, f.failed, f.tried, f.soon}
	before := map[int64]*storage.Message{}
	for _, id := range others {
		before[id] = f.get(t, id)
	}
	checkOthers := func(what string) {
		t.Helper()
		for _, id := range others {
			unchanged(t, what, before[id], f.get(t, id))
		}
	}
	post := func(target string, form url.Values, hdr map[string]string) (int, string) {
		t.Helper()
		w := serve(t, h, "POST", target, strings.NewReader(form.Encode()), hdr)
		return w.Code, w.Header().Get("Location")
	}

	// Send now, from the detail page: the Delayed row is Scheduled and due now, with its policy.
	id := strconv.FormatInt(f.delayed, 10)
	wakes := f.src.wakes.Load()
	start := time.Now().UTC()
	code, loc := post("/gocap/published/send-now", url.Values{"id": {id}, "back": {"/gocap/published/" + id}}, map[string]string{"Sec-Fetch-Site": "same-origin"})
	if code != http.StatusSeeOther || loc != "/gocap/published/"+id+"?done=send-now+1" {
		t.Fatalf("send now: %d %q", code, loc)
	}
	m := f.get(t, f.delayed)
	if m.Status != storage.StatusScheduled || m.NextAttemptAt.Before(start.Add(-time.Second)) || m.NextAttemptAt.After(time.Now().UTC()) || m.Policy != testPolicy {
		t.Errorf("sent-now row: %s due %v policy %q; want Scheduled due now with its policy", m.Status, m.NextAttemptAt, m.Policy)
	}
	if f.src.wakes.Load() == wakes {
		t.Error("send now did not wake the processor")
	}
	if w := serve(t, h, "GET", loc, nil, nil); !strings.Contains(w.Body.String(), "Done: send-now 1 message(s).") {
		t.Errorf("page after send now: no notice")
	}

	// Send now and cancel refuse every row that is not Delayed (the row
	// just sent is Scheduled now), and a Delayed row about to be claimed.
	sel := url.Values{"id": ids(append(others, f.delayed)...), "back": {"/gocap/published?status=Delayed"}}
	for _, action := range []string{"send-now", "cancel"} {
		code, loc := post("/gocap/published/"+action, sel, nil)
		if code != http.StatusSeeOther || !strings.Contains(loc, "done="+action+"+0") || !strings.Contains(loc, "skipped=5+message") {
			t.Errorf("%s of rows not Delayed: %d %q", action, code, loc)
		}
		checkOthers(action)
		if m := f.get(t, f.delayed); m.Status != storage.StatusScheduled {
			t.Errorf("%s touched the sent-now row: %s", action, m.Status)
		}
		w := serve(t, h, "GET", loc, nil, nil)
		mustContain(t, "page after "+action, w.Body.String(), "5 message(s) left alone: ", "Scheduled, not Delayed", "and 2 more")
	}

	// Cancel from the detail page: the row is gone, back to the list.
	later := strconv.FormatInt(f.later, 10)
	code, loc = post("/gocap/published/cancel", url.Values{"id": {later}, "back": {"/gocap/published/" + later}}, nil)
	if code != http.StatusSeeOther || loc != "/gocap/published?done=cancel+1" {
		t.Errorf("cancel: %d %q", code, loc)
	}
	if _, err := f.store.Get(ctx, storage.Published, f.later); err == nil {
		t.Error("cancelled row still there")
	}

	// The JSON API: the same guard, and what was left alone.
	f2 := newDelayedFixture(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h2 := dashboard.New(f2.src, dashboard.Options{Logger: quiet})
	type reply struct {
		Count   int64
		Skipped []struct{ ID, Reason string }
		Error   string
	}
	call := func(action string, body string) (int, reply) {
		t.Helper()
		w := serve(t, h2, "POST", "/api/published/"+action, strings.NewReader(body), map[string]string{"Content-Type": "application/json"})
		var r reply
		if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
			t.Fatalf("%s: %s", action, w.Body.String())
		}
		return w.Code, r
	}
	js := func(l ...int64) string {
		b, _ := json.Marshal(map[string]any{"ids": ids(l...)})
		return string(b)
	}
	code, r := call("send-now", js(f2.delayed, f2.scheduled, f2.soon, 12345))
	if code != 200 || r.Count != 1 || len(r.Skipped) != 3 || r.Skipped[0].ID != strconv.FormatInt(f2.scheduled, 10) ||
		r.Skipped[0].Reason != "Scheduled, not Delayed" || r.Skipped[1].Reason != "due now: it is being sent" || r.Skipped[2].Reason != "not found" {
		t.Errorf("API send-now: %d %+v", code, r)
	}
	if m := f2.get(t, f2.delayed); m.Status != storage.StatusScheduled {
		t.Errorf("API send-now: row %s", m.Status)
	}
	if m := f2.get(t, f2.soon); m.Status != storage.StatusDelayed {
		t.Errorf("API send-now of a row about to be due: %s", m.Status)
	}
	code, r = call("cancel", js(f2.later, f2.delayed, f2.failed))
	if code != 200 || r.Count != 1 || len(r.Skipped) != 2 || r.Skipped[1].Reason != "Failed, not Delayed" {
		t.Errorf("API cancel: %d %+v", code, r)
	}
	if _, err := f2.store.Get(ctx, storage.Published, f2.later); err == nil {
		t.Error("API cancel: row still there")
	}
	for _, id := range []int64{f2.delayed, f2.failed} {
		if _, err := f2.store.Get(ctx, storage.Published, id); err != nil {
			t.Errorf("API cancel deleted row %d, not Delayed", id)
		}
	}
	if _, r := call("cancel", js(f2.soon)); r.Count != 0 || len(r.Skipped) != 1 {
		t.Errorf("API cancel of a row about to be due: %+v", r)
	}
	if w := serve(t, h2, "POST", "/api/published/send-now", strings.NewReader(js(f2.soon)), map[string]string{"Content-Type": "application/json"}); !strings.Contains(w.Body.String(), `"count":0,"skipped":[{`) {
		t.Errorf("API send-now reply: %s", w.Body.String())
	}
	for _, body := range []string{`{"all_failed":true}`, `{}`, `{"ids":["x"]}`} {
		for _, action := range []string{"send-now", "cancel"} {
			if code, r := call(action, body); code != http.StatusBadRequest || r.Error == "" {
				t.Errorf("API %s %s: %d %+v, want 400", action, body, code, r)
			}
		}
	}

	// Cross-origin: refused, nothing changes.
	f3 := newDelayedFixture(t)
	h3 := dashboard.New(f3.src, dashboard.Options{Logger: quiet})
	for _, action := range []string{"send-now", "cancel"} {
		for _, hdr := range []map[string]string{{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}} {
			w := serve(t, h3, "POST", "/published/"+action, strings.NewReader("id="+strconv.FormatInt(f3.delayed, 10)), hdr)
			w2 := serve(t, h3, "POST", "/api/published/"+action, strings.NewReader(js(f3.delayed)), map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": hdr["Sec-Fetch-Site"], "Origin": hdr["Origin"]})
			if w.Code != http.StatusForbidden || w2.Code != http.StatusForbidden {
				t.Errorf("%s with %v: %d and %d, want 403", action, hdr, w.Code, w2.Code)
			}
		}
	}
	if m := f3.get(t, f3.delayed); m.Status != storage.StatusDelayed {
		t.Errorf("a cross-origin action changed the row: %s", m.Status)
	}

	// The audit log names the user, the action, the rows changed and those left alone.
	logged := log.String()
	mustContain(t, "audit log", logged, "user=ops-anna action=send-now table=published ids=["+id+"]", "rows=1",
		"action=cancel", `skipped="[`+strconv.FormatInt(f.scheduled, 10))
}
