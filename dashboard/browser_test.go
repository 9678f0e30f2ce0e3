package dashboard_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gocap/gocap/dashboard"
	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport/rabbitmq"
)

// browser starts headless Chromium, or skips (fails under CI=true) when
// it is not installed.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if testenv.CI() {
			t.Fatal("chromium is required under CI=true (apt-get install chromium)")
		}
		t.Skip("chromium not installed; install Debian's chromium to run the browser test")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	return ctx
}

// TestBrowserRequeueFailed is the manual-compensation story on the real
// PostgreSQL and RabbitMQ: a handler fails until its bug is fixed, the
// message ends Failed; a person opens the dashboard, filters to Failed,
// opens the message, sees its failed attempts, requeues it, and watches it
// become Succeeded. Before that, two reminders published for later wait
// Delayed: one is sent now from its page, the other cancelled from the list.
func TestBrowserRequeueFailed(t *testing.T) {
	pgURL, amqpURL := testenv.PostgresURL(t), testenv.AMQPURL(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	schema := testenv.Name("gocap_dash")
	t.Cleanup(func() { pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); pool.Close() })
	store := postgres.New(pool, postgres.Options{Schema: schema})
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	exchange := testenv.Name("gocap_dash_ex")
	tr, err := rabbitmq.New(rabbitmq.Config{URL: amqpURL, Exchange: exchange, QueuePrefix: exchange + "."})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.Close()
		if c, err := amqp.Dial(amqpURL); err == nil {
			if ch, err := c.Channel(); err == nil {
				ch.QueueDelete(exchange+".shipping", false, false, false)
				ch.QueueDelete(exchange+".reminders", false, false, false)
				ch.ExchangeDelete(exchange, false, false)
			}
			c.Close()
		}
	})
	ob, err := outbox.New(store, tr, outbox.Options{
		PollInterval: 50 * time.Millisecond,
		Retry:        outbox.RetryPolicy{ImmediateRetries: -1, Interval: 10 * time.Millisecond, MaxAttempts: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	var fixed atomic.Bool
	if err := outbox.Subscribe(ob, "order.paid", func(_ context.Context, m outbox.Received[map[string]any]) error {
		if !fixed.Load() {
			return fmt.Errorf("no shipping address for order %v", m.Value["order"])
		}
		return nil
	}, outbox.Group("shipping")); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Subscribe(ob, "order.reminder", func(context.Context, outbox.Received[[]byte]) error { return nil },
		outbox.Group("reminders")); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ob.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	time.Sleep(500 * time.Millisecond)
	for i := range 3 {
		if _, err := ob.PublishWithoutTx(ctx, "order.paid", []byte(fmt.Sprintf(`{"order":%d,"note":"<script>alert(1)</script>"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	// Two reminders the application published for later (Delayed rows),
	// with a retry schedule of their own.
	var delayed []*storage.Message
	for i, due := range []time.Duration{4*time.Minute + 10*time.Second, 26 * time.Hour} {
		id, err := ob.PublishWithoutTx(ctx, "order.reminder", []byte(fmt.Sprintf(`{"order":%d,"remind":"unpaid"}`, i+7)),
			outbox.WithDelay(due), outbox.WithRetry(outbox.RetryPolicy{MaxAttempts: 3, Schedule: []time.Duration{time.Minute}}))
		if err != nil {
			t.Fatal(err)
		}
		m, err := store.Get(ctx, storage.Published, id)
		if err != nil {
			t.Fatal(err)
		}
		delayed = append(delayed, m)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := store.Counts(ctx, storage.Received)
		if err == nil && c[storage.StatusFailed] == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("messages did not fail: %v %v", c, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	mux := http.NewServeMux()
	mux.Handle("/gocap/", dashboard.New(ob, dashboard.Options{Prefix: "/gocap"}))
	srv := httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(srv.Close)

	bctx := browser(t)
	shots := os.Getenv("GOCAP_SCREENSHOTS")
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if shots == "" {
				return nil
			}
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
		})
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}
	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	step("open the overview", chromedp.Navigate(srv.URL+"/gocap/"), chromedp.WaitVisible(chromedp.CSS(`[data-count="received.Failed"]`)), shot("overview"))
	if n := text(`[data-count="received.Failed"]`); n != "3" {
		t.Fatalf("overview shows %q received Failed, want 3", n)
	}
	if n := text(`[data-count="published.Delayed"]`); n != "2" {
		t.Fatalf("overview shows %q published Delayed, want 2", n)
	}

	// The Delayed reminders: listed with their due time; one is sent now
	// from its page, the other cancelled from the list.
	step("list Delayed", chromedp.Click(chromedp.CSS(`[data-count="published.Delayed"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.messages tbody tr.st-Delayed`)), shot("delayed-list"))
	if due := text(`table.messages tbody tr.st-Delayed:last-child td.due`); !strings.Contains(due, "in 4m ") || !strings.Contains(due, " UTC") {
		t.Errorf("due time of the first reminder: %q", due)
	}
	step("open a Delayed message", chromedp.Click(chromedp.CSS(`table.messages tbody tr.st-Delayed:last-child td.mono a`)),
		chromedp.WaitVisible(chromedp.CSS(`#due`)), shot("delayed-detail"))
	if due, policy := text(`#due`), text(`#policy`); !strings.Contains(due, "(in 4m ") || !strings.Contains(policy, `"max":3`) {
		t.Errorf("Delayed detail: due %q, policy %q", due, policy)
	}
	step("send it now", chromedp.Click(chromedp.CSS(`form.actions button[formaction$="/send-now"]`)), chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	if n := text(`.notice`); !strings.Contains(n, "send-now 1") {
		t.Errorf("notice after send now: %q", n)
	}
	for i := 0; ; i++ { // the processor sends it to RabbitMQ (bounded)
		step("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`h1 .badge`)))
		if text(`h1 .badge`) == "Succeeded" {
			break
		}
		if i == 100 {
			t.Fatalf("sent-now message still %q", text(`h1 .badge`))
		}
		time.Sleep(100 * time.Millisecond)
	}
	step("cancel the other", chromedp.Navigate(srv.URL+"/gocap/published?status=Delayed"),
		chromedp.WaitVisible(chromedp.CSS(`table.messages tbody tr.st-Delayed`)),
		chromedp.Click(chromedp.CSS(`table.messages tbody tr.st-Delayed input[name="id"]`)),
		chromedp.Click(chromedp.CSS(`button[formaction$="/cancel"]`)), chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	if n := text(`.notice`); !strings.Contains(n, "cancel 1") {
		t.Errorf("notice after cancel: %q", n)
	}
	if _, err := store.Get(ctx, storage.Published, delayed[1].ID); err == nil {
		t.Error("the cancelled reminder is still there")
	}

	step("back to the overview", chromedp.Navigate(srv.URL+"/gocap/"), chromedp.WaitVisible(chromedp.CSS(`[data-count="received.Failed"]`)))
	step("filter to Failed", chromedp.Click(chromedp.CSS(`[data-count="received.Failed"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.messages tbody tr.st-Failed`)), shot("list"))
	step("open a message", chromedp.Click(chromedp.CSS(`table.messages tbody tr.st-Failed td.mono a`)),
		chromedp.WaitVisible(chromedp.CSS(`#body`)), shot("detail"))
	if st, errText, body := text(`h1 .badge`), text(`#last-error`), text(`#body`); st != "Failed" || !strings.Contains(errText, "no shipping address") ||
		!strings.Contains(body, "<script>alert(1)</script>") {
		t.Fatalf("detail page: status %q, error %q, body %q", st, errText, body)
	}
	if a := text(`#attempts tbody`); strings.Count(a, "no shipping address") != 2 {
		t.Errorf("attempts of the Failed message: %q, want its 2 failed attempts", a)
	}

	fixed.Store(true)
	step("requeue it", chromedp.Click(chromedp.CSS(`form.actions button[formaction$="/requeue"]`)), chromedp.WaitVisible(chromedp.CSS(`.notice`)))
	if n := text(`.notice`); !strings.Contains(n, "requeue 1") {
		t.Errorf("notice %q", n)
	}
	// Watch it become Succeeded (reload the page; bounded).
	for i := 0; ; i++ {
		step("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`h1 .badge`)))
		if text(`h1 .badge`) == "Succeeded" {
			break
		}
		if i == 100 {
			t.Fatalf("status still %q after the requeue", text(`h1 .badge`))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ok := text(`#attempts tbody tr:first-child td.outcome`); ok != "ok" {
		t.Errorf("newest attempt after the requeue: %q, want ok", ok)
	}
	step("screenshot the attempts after the requeue", shot("detail-requeued"))
	// Received: the requeued order.paid and the reminder sent now
	// Succeeded; the two other order.paid messages stay Failed.
	c, _ := store.Counts(ctx, storage.Received)
	if c[storage.StatusFailed] != 2 || c[storage.StatusSucceeded] != 2 {
		t.Errorf("counts after requeueing one: %v", c)
	}
}
