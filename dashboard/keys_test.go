package dashboard_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gocap/gocap/dashboard"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
)

// keysFixture is an outbox on SQLite (not running) whose ordering key
// "order-42" is blocked: its first message Failed, three waiting behind
// it; key "order-7" is not. newKeysFixture makes one without a version;
// newVersionedKeysFixture one of outbox.Options.Version.
type keysFixture struct {
	ob    *outbox.Outbox[*sql.Tx]
	store storage.Store
	head  int64
}

func newKeysFixture(t *testing.T) *keysFixture {
	t.Helper()
	return newVersionedKeysFixture(t, "")
}

func newVersionedKeysFixture(t *testing.T, version string) *keysFixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store := sqlite.New(db, sqlite.Options{})
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.New(store, memory.New(memory.Options{}), outbox.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Version: version})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		for _, key := range []string{"order-42", "order-7"} {
			if _, err := ob.PublishWithoutTx(ctx, "order.updated", map[string]any{"order": key, "step": i}, outbox.WithOrderingKey(key)); err != nil {
				t.Fatal(err)
			}
		}
	}
	now := time.Now().UTC()
	heads, err := store.Claim(ctx, storage.Published, storage.ClaimRequest{Now: now.Add(time.Second), LeaseUntil: now.Add(time.Minute),
		Token: 9, Limit: 10, FailedHoldsKey: true, Version: version})
	if err != nil || len(heads) != 2 {
		t.Fatalf("claim: %d %v", len(heads), err)
	}
	f := &keysFixture{ob: ob, store: store}
	for _, m := range heads {
		if m.OrderingKey == "order-42" {
			f.head = m.ID
			if _, err := store.Fail(ctx, storage.Published, storage.Lease{ID: m.ID, Token: 9}, storage.Failure{
				Error: "broker refused <the message>", Now: now, Permanent: true, ExpiresAt: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

func TestBlockedKeysPageAndAPI(t *testing.T) {
	f := newKeysFixture(t)
	h := dashboard.New(f.ob, dashboard.Options{Prefix: "/gocap"})
	w := serve(t, h, http.MethodGet, "/gocap/keys", nil, nil)
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, "order-42") || strings.Contains(body, "order-7") ||
		!strings.Contains(body, `<td class="waiting">3</td>`) || !strings.Contains(body, "broker refused &lt;the message&gt;") {
		t.Fatalf("GET /keys: %d\n%s", w.Code, body)
	}
	w = serve(t, h, http.MethodGet, "/gocap/api/keys", nil, nil)
	var got map[string][]struct {
		Key     string `json:"ordering_key"`
		HeadID  string `json:"head_id"`
		Waiting int64  `json:"waiting"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || len(got["published"]) != 1 || len(got["received"]) != 0 {
		t.Fatalf("GET /api/keys: %d %s %v", w.Code, w.Body, err)
	}
	if k := got["published"][0]; k.Key != "order-42" || k.HeadID != fmt.Sprint(f.head) || k.Waiting != 3 {
		t.Errorf("blocked key %+v, want order-42 with head %d and 3 waiting", k, f.head)
	}
	w = serve(t, h, http.MethodGet, fmt.Sprintf("/gocap/published/%d", f.head), nil, nil)
	if !strings.Contains(w.Body.String(), `id="ordering-key"`) || !strings.Contains(w.Body.String(), "order-42") {
		t.Errorf("detail page lacks the ordering key")
	}
	w = serve(t, h, http.MethodGet, "/gocap/published", nil, nil)
	if !strings.Contains(w.Body.String(), "key order-7") {
		t.Errorf("list page lacks the ordering keys")
	}
}

// The blocked keys of an outbox with a version name it, on the page and
// in the JSON API (a key's sequence is that of one version).
func TestBlockedKeysShowVersion(t *testing.T) {
	f := newVersionedKeysFixture(t, "v2")
	h := dashboard.New(f.ob, dashboard.Options{Prefix: "/gocap"})
	w := serve(t, h, http.MethodGet, "/gocap/keys", nil, nil)
	if body := w.Body.String(); w.Code != http.StatusOK || !strings.Contains(body, "order-42") ||
		!strings.Contains(body, `<td class="version">v2</td>`) {
		t.Fatalf("GET /keys: %d, want key order-42 of version v2\n%s", w.Code, body)
	}
	w = serve(t, h, http.MethodGet, "/gocap/api/keys", nil, nil)
	var got map[string][]struct {
		Key     string `json:"ordering_key"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || len(got["published"]) != 1 ||
		got["published"][0].Key != "order-42" || got["published"][0].Version != "v2" {
		t.Fatalf("GET /api/keys: %d %s %v, want order-42 of version v2", w.Code, w.Body, err)
	}
}

// TestBrowserBlockedKey: a person opens the blocked keys, sees the key
// with its Failed message and the messages waiting, and requeues it.
func TestBrowserBlockedKey(t *testing.T) {
	f := newKeysFixture(t)
	mux := http.NewServeMux()
	mux.Handle("/gocap/", dashboard.New(f.ob, dashboard.Options{Prefix: "/gocap"}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	bctx := browser(t)
	shots := os.Getenv("GOCAP_SCREENSHOTS")
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}
	do("open the blocked keys", chromedp.Navigate(srv.URL+"/gocap/"), chromedp.Click(chromedp.CSS(`nav a[href$="/keys"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#keys-published tbody td.waiting`)))
	if shots != "" {
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, "blocked-keys.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if row := text(`#keys-published tbody tr`); !strings.Contains(row, "order-42") || !strings.Contains(row, "Failed") || !strings.Contains(row, "broker refused") {
		t.Fatalf("blocked key row: %q", row)
	}
	if n := text(`#keys-published tbody td.waiting`); n != "3" {
		t.Errorf("waiting behind the Failed message: %q, want 3", n)
	}
	do("requeue it", chromedp.Click(chromedp.CSS(`#keys-published button[formaction$="/requeue"]`)), chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	if row := text(`#keys-published tbody tr`); !strings.Contains(row, "No blocked key") {
		t.Errorf("after the requeue: %q, want no blocked key", row)
	}
	if m, err := f.store.Get(context.Background(), storage.Published, f.head); err != nil || m.Status != storage.StatusScheduled {
		t.Errorf("requeued head: %+v %v", m, err)
	}
}
