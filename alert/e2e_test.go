package alert_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/alert"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
)

// An outbox on SQLite and the in-process broker whose handler always
// fails, with one attempt per message: 20 messages fail, and the local
// "DingTalk" robot gets one signed summary of 20 failures naming the topic
// and group.
func TestOutboxFailuresReachDingTalk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := newRobot(t, http.StatusOK, okErrcode)

	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gocap.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := sqlite.New(db, sqlite.Options{Logger: quiet})
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	const window = time.Second
	n, err := alert.New(alert.Config{
		Sink:         alert.DingTalk{URL: r.URL + "/robot/send?access_token=tok", Secret: "SECe2e"},
		Window:       window,
		DashboardURL: "http://127.0.0.1:8080/gocap",
		Source:       "e2e",
		Logger:       quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The in-process broker routes only to groups it knows: bind billing's
	// queue before anything is sent (a Consume that ends at once), so that
	// no send fails as unroutable.
	broker := memory.NewBroker(memory.Options{})
	bound, bind := context.WithCancel(ctx)
	bind()
	if err := broker.Transport().Consume(bound, "billing", []string{"order.paid"}, func(context.Context, transport.Delivery) error {
		return errors.New("not here")
	}); err != nil {
		t.Fatal(err)
	}
	ob, err := outbox.New(store, broker.Transport(), outbox.Options{
		Logger:       quiet,
		PollInterval: 50 * time.Millisecond,
		Retry:        outbox.RetryPolicy{MaxAttempts: 1},
		OnFailed:     n.OnFailed,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = outbox.Subscribe(ob, "order.paid", func(context.Context, outbox.Received[map[string]int]) error {
		return errors.New("billing is down")
	}, outbox.Group("billing"))
	if err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	obDone, nDone := make(chan error, 1), make(chan error, 1)
	go func() { obDone <- ob.Run(runCtx) }()
	go func() { nDone <- n.Run(runCtx) }()
	defer func() {
		stop()
		for _, c := range []chan error{obDone, nDone} {
			select {
			case err := <-c:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("Run did not return")
			}
		}
	}()

	for i := range 20 {
		if _, err := ob.PublishWithoutTx(ctx, "order.paid", map[string]int{"order": i}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "the summary", func() bool { return r.count() >= 1 })
	time.Sleep(2 * window) // no second post may follow
	reqs := r.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d posts, want 1", len(reqs))
	}
	if reqs[0].Query.Get("sign") == "" || reqs[0].Query.Get("access_token") != "tok" {
		t.Errorf("query %v: want the token and a signature", reqs[0].Query)
	}
	body := reqs[0].JSON(t)
	text := str(t, body, "markdown", "text")
	if title := str(t, body, "markdown", "title"); title != "gocap [e2e]: 20 messages failed" {
		t.Errorf("title %q", title)
	}
	for _, want := range []string{"**Failed:** 20", "received order.paid (group billing): 20", "billing is down"} {
		if !strings.Contains(text, want) {
			t.Errorf("the summary lacks %q:\n%s", want, text)
		}
	}
	counts, err := store.Counts(ctx, storage.Received)
	if err != nil || counts[storage.StatusFailed] != 20 {
		t.Errorf("received Failed rows %v (%v), want 20", counts, err)
	}
}
