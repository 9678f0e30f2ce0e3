package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/outboxtest"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/transport/webhook"
)

// POST /tasks stores each valid task as one message of Topic carrying its
// destination, method, expected answer, applications and delay in its
// headers, and its params as its body; an invalid one stores nothing.
func TestSubmitPublishesTask(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "cc.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := sqlite.New(db, sqlite.Options{Logger: quiet})
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.New(store, memory.New(memory.Options{}), outbox.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	a := &api{ob: ob, schedule: []time.Duration{time.Second}, logger: quiet}
	post := func(body string, want int) {
		t.Helper()
		w := httptest.NewRecorder()
		a.submit(w, httptest.NewRequest(http.MethodPost, "/tasks", strings.NewReader(body)))
		if w.Code != want {
			t.Fatalf("POST /tasks %s: %d %s, want %d", body, w.Code, w.Body, want)
		}
	}

	post(`{"url":"https://merchant.example/cb","method":"get","params":{ "order": 7, "paid": true },
		"retry_limit":3,"expected":"SUCCESS","source_app":"shop","target_app":"merchant","delay_seconds":60}`, http.StatusCreated)
	params := outboxtest.RequirePublished[[]byte](ctx, t, ob, Topic, &outboxtest.Opts{
		Headers: map[string]string{
			webhook.HeaderURL:    "https://merchant.example/cb",
			webhook.HeaderMethod: http.MethodGet,
			webhook.HeaderExpect: "SUCCESS",
			HeaderSourceApp:      "shop",
			HeaderTargetApp:      "merchant",
		},
		Delay:  time.Minute,
		Status: storage.StatusDelayed,
	})
	if string(params) != `{"order":7,"paid":true}` {
		t.Errorf("the task's body is %s, want its params compacted", params)
	}

	for _, bad := range []string{
		`{"url":"ftp://merchant.example/cb","retry_limit":1}`,
		`{"url":"https://merchant.example/cb","retry_limit":0}`,
		`{"url":"https://merchant.example/cb","retry_limit":1,"method":"PUT"}`,
		`{"url":"https://merchant.example/cb","retry_limit":1,"params":[1]}`,
		`{"url":"https://merchant.example/cb","retry_limit":1,"delay_seconds":-1}`,
	} {
		post(bad, http.StatusBadRequest)
	}
	outboxtest.RequirePublishedCount(ctx, t, ob, Topic, 1, nil)

	post(`{"url":"https://merchant.example/plain","retry_limit":1}`, http.StatusCreated)
	tasks := outboxtest.RequireManyPublished(ctx, t, ob, []outboxtest.Expected{
		{Topic: Topic, Opts: &outboxtest.Opts{Delay: time.Minute}},
		{Topic: Topic, Opts: &outboxtest.Opts{Status: storage.StatusScheduled, Headers: map[string]string{
			webhook.HeaderURL: "https://merchant.example/plain", webhook.HeaderMethod: http.MethodPost,
		}}},
	})
	if string(tasks[1].Body) != "{}" {
		t.Errorf("a task without params has body %s, want {}", tasks[1].Body)
	}
	for _, h := range []string{webhook.HeaderExpect, HeaderSourceApp, HeaderTargetApp} {
		if v, ok := tasks[1].Headers[h]; ok {
			t.Errorf("a task without %s carries it: %q", h, v)
		}
	}
}
