package alert_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/alert"
	"github.com/gocap/gocap/outbox"
)

// A burst of 100 failures from several goroutines makes one post, which
// counts 100.
func TestBurstMakesOnePost(t *testing.T) {
	r := newRobot(t, http.StatusOK, okErrcode)
	const window = 300 * time.Millisecond
	n := start(t, alert.Config{Sink: alert.DingTalk{URL: r.URL}, Window: window})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				topic := "order.paid"
				if i%5 == 0 {
					topic = "order.shipped"
				}
				n.OnFailed(context.Background(), failed(int64(g*100+i), topic, "billing", "boom"))
			}
		})
	}
	wg.Wait()
	waitFor(t, 5*time.Second, "the post", func() bool { return r.count() >= 1 })
	time.Sleep(3 * window) // a second post would have come by now
	reqs := r.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d posts for one burst, want 1", len(reqs))
	}
	body := reqs[0].JSON(t)
	text := str(t, body, "markdown", "text")
	if !strings.Contains(str(t, body, "markdown", "title"), "100 messages failed") || !strings.Contains(text, "**Failed:** 100") {
		t.Errorf("the post does not count 100:\n%s", text)
	}
	for _, want := range []string{"order.paid (group billing): 80", "order.shipped (group billing): 20"} {
		if !strings.Contains(text, want) {
			t.Errorf("the post lacks %q:\n%s", want, text)
		}
	}
	_, examples, _ := strings.Cut(text, "**Examples:**")
	if c := strings.Count(examples, "\n- received "); c != alert.DefaultMaxExamples {
		t.Errorf("%d examples, want %d:\n%s", c, alert.DefaultMaxExamples, text)
	}
}

// Failures that keep coming make one post per window, not more.
func TestOnePostPerWindow(t *testing.T) {
	r := newRobot(t, http.StatusOK, okErrcode)
	const window = 200 * time.Millisecond
	n := start(t, alert.Config{Sink: alert.WeCom{URL: r.URL}, Window: window})
	began := time.Now()
	for i := 0; time.Since(began) < 5*window; i++ {
		n.OnFailed(context.Background(), failed(int64(i), "t", "g", "boom"))
		time.Sleep(time.Millisecond)
	}
	time.Sleep(3 * window)
	if c := r.count(); c < 2 || c > 6 {
		t.Errorf("%d posts over 5 windows of steady failures, want one a window (2..6)", c)
	}
	if s := n.Stats(); s.Posts != int64(r.count()) {
		t.Errorf("stats %+v, %d posts received", s, r.count())
	}
}

// An endpoint answering 500 gets Attempts requests, then the notifier
// logs an error and stops; the failures go into the next summary, which
// only a new failure starts.
func TestFailingEndpointIsRetriedThenLogged(t *testing.T) {
	r := newRobot(t, http.StatusInternalServerError, "oops")
	log, logs := newLogger()
	const window = 100 * time.Millisecond
	n := start(t, alert.Config{Sink: alert.DingTalk{URL: r.URL}, Window: window, Attempts: 3,
		RetryWait: 10 * time.Millisecond, Logger: log})
	for i := range 5 {
		n.OnFailed(context.Background(), failed(int64(i), "order.paid", "billing", "boom"))
	}
	waitFor(t, 5*time.Second, "the log line", func() bool { return strings.Contains(logs.String(), "could not deliver") })
	time.Sleep(5 * window) // nothing more may come
	if c := r.count(); c != 3 {
		t.Fatalf("%d requests, want 3 (Attempts)", c)
	}
	if s := n.Stats(); s.Undelivered != 1 || s.Posts != 0 {
		t.Errorf("stats %+v", s)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "failures=5") {
		t.Errorf("log:\n%s", logs)
	}

	// The endpoint recovers; the next failure makes a post that carries the 5.
	r.mu.Lock()
	r.status, r.answer = http.StatusOK, okErrcode
	r.mu.Unlock()
	n.OnFailed(context.Background(), failed(99, "order.paid", "billing", "boom"))
	waitFor(t, 5*time.Second, "the post after recovery", func() bool { return r.count() == 4 })
	if text := str(t, r.requests()[3].JSON(t), "markdown", "text"); !strings.Contains(text, "**Failed:** 6") {
		t.Errorf("the post after recovery does not carry the undelivered failures:\n%s", text)
	}
}

// A refused connection is retried a bounded number of times, then logged.
func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var mu sync.Mutex
	calls := 0
	sink := alert.SinkFunc(func(ctx context.Context, s alert.Summary) error {
		mu.Lock()
		calls++
		mu.Unlock()
		return alert.Slack{URL: "http://" + addr + "/services/x"}.Post(ctx, s)
	})
	log, logs := newLogger()
	n := start(t, alert.Config{Sink: sink, Window: 50 * time.Millisecond, Attempts: 2, RetryWait: 10 * time.Millisecond, Logger: log})
	n.OnFailed(context.Background(), failed(1, "t", "", "boom"))
	waitFor(t, 5*time.Second, "the log line", func() bool { return n.Stats().Undelivered == 1 })
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Errorf("%d posts, want 2", calls)
	}
	if !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("log:\n%s", logs)
	}
}

// A 4xx answer is not retried.
func TestPermanentErrorIsNotRetried(t *testing.T) {
	r := newRobot(t, http.StatusForbidden, "invalid_token")
	n := start(t, alert.Config{Sink: alert.Slack{URL: r.URL}, Window: 50 * time.Millisecond, RetryWait: 10 * time.Millisecond})
	n.OnFailed(context.Background(), failed(1, "t", "", "boom"))
	waitFor(t, 5*time.Second, "the give-up", func() bool { return n.Stats().Undelivered == 1 })
	if c := r.count(); c != 1 {
		t.Errorf("%d requests, want 1", c)
	}
}

// Failures of the reserved topic (the notifier's own, when its summaries
// go through an outbox) never make a notification.
func TestReservedTopicMakesNothing(t *testing.T) {
	r := newRobot(t, http.StatusOK, okErrcode)
	const window = 50 * time.Millisecond
	n := start(t, alert.Config{Sink: alert.DingTalk{URL: r.URL}, Window: window, ReservedTopic: "gocap.alert"})
	for i := range 10 {
		n.OnFailed(context.Background(), outbox.FailedMessage{Message: failed(int64(i), "gocap.alert", "", "").Message,
			Err: errors.New("webhook: HTTP 500"), Retries: 5})
	}
	time.Sleep(5 * window)
	if c := r.count(); c != 0 {
		t.Errorf("%d posts for failures of the reserved topic, want 0", c)
	}
	if s := n.Stats(); s.Ignored != 10 || s.Failures != 0 {
		t.Errorf("stats %+v", s)
	}
}

// OnFailed returns at once, whatever the endpoint does: here every post
// hangs until its deadline while 100,000 failures come in, and they are
// counted in a moment, in bounded memory, and all delivered once the
// endpoint answers again.
func TestOnFailedNeverBlocks(t *testing.T) {
	r := newRobot(t, http.StatusOK, okErrcode)
	release := make(chan struct{})
	r.block = release
	var mu sync.Mutex
	delivered := 0
	dingTalk := alert.DingTalk{URL: r.URL}
	sink := alert.SinkFunc(func(ctx context.Context, s alert.Summary) error {
		err := dingTalk.Post(ctx, s)
		if err == nil {
			mu.Lock()
			delivered += s.Count
			mu.Unlock()
		}
		return err
	})
	n := start(t, alert.Config{Sink: sink, Window: 20 * time.Millisecond,
		PostTimeout: 300 * time.Millisecond, Attempts: 1, FlushTimeout: -1})
	n.OnFailed(context.Background(), failed(0, "t", "g", "boom"))
	waitFor(t, 5*time.Second, "the hanging post", func() bool { return r.count() == 1 })

	const total = 100_000
	began := time.Now()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range total / 4 {
				n.OnFailed(context.Background(), failed(int64(g*total+i), "t", "g", "boom"))
			}
		})
	}
	wg.Wait()
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("100,000 OnFailed calls took %v while the endpoint hung", d)
	}
	if s := n.Stats(); s.Failures != total+1 {
		t.Errorf("stats %+v, want %d failures", s, total+1)
	}
	r.mu.Lock()
	r.block = nil
	r.mu.Unlock()
	close(release)
	// Undelivered failures ride with the next summary, which a new failure starts.
	n.OnFailed(context.Background(), failed(-1, "t", "g", "boom"))
	waitFor(t, 10*time.Second, "the delivery of every failure", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return delivered == total+2
	})
}

// A window with fewer failures than the threshold posts nothing.
func TestThreshold(t *testing.T) {
	r := newRobot(t, http.StatusOK, okErrcode)
	const window = 100 * time.Millisecond
	n := start(t, alert.Config{Sink: alert.DingTalk{URL: r.URL}, Window: window, Threshold: 5})
	for i := range 3 {
		n.OnFailed(context.Background(), failed(int64(i), "t", "g", "boom"))
	}
	waitFor(t, 5*time.Second, "the window to pass", func() bool { return n.Stats().BelowThreshold == 3 })
	if c := r.count(); c != 0 {
		t.Fatalf("%d posts below the threshold", c)
	}
	for i := range 6 {
		n.OnFailed(context.Background(), failed(int64(10+i), "t", "g", "boom"))
	}
	waitFor(t, 5*time.Second, "the post", func() bool { return r.count() == 1 })
	if text := str(t, r.requests()[0].JSON(t), "markdown", "text"); !strings.Contains(text, "**Failed:** 6") {
		t.Errorf("text:\n%s", text)
	}
}

// MaxPerHour caps the posts; the failures past it wait, counted.
func TestMaxPerHour(t *testing.T) {
	r := newRobot(t, http.StatusOK, okErrcode)
	const window = 30 * time.Millisecond
	n := start(t, alert.Config{Sink: alert.DingTalk{URL: r.URL}, Window: window, MaxPerHour: 2, FlushTimeout: -1})
	for burst := range 4 {
		n.OnFailed(context.Background(), failed(int64(burst), "t", "g", "boom"))
		time.Sleep(4 * window)
	}
	if c := r.count(); c != 2 {
		t.Errorf("%d posts, want 2 (MaxPerHour)", c)
	}
	if s := n.Stats(); s.Failures != 4 || s.Posts != 2 {
		t.Errorf("stats %+v", s)
	}
}

// Failures not yet posted when Run's context ends are posted once.
func TestFlushAtShutdown(t *testing.T) {
	r := newRobot(t, http.StatusOK, okErrcode)
	n, err := alert.New(alert.Config{Sink: alert.DingTalk{URL: r.URL}, Window: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	n.OnFailed(context.Background(), failed(1, "t", "g", "boom"))
	n.OnFailed(context.Background(), failed(2, "t", "g", "boom"))
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if c := r.count(); c != 1 || !strings.Contains(string(r.requests()[0].Body), "2 messages failed") {
		t.Errorf("%d posts at shutdown, want 1 with the 2 failures", c)
	}
}

func TestConfig(t *testing.T) {
	if _, err := alert.New(alert.Config{}); err == nil {
		t.Error("no Sink: want an error")
	}
	sink := alert.SinkFunc(func(context.Context, alert.Summary) error { return nil })
	if _, err := alert.New(alert.Config{Sink: sink, Locale: "fr"}); err == nil {
		t.Error(`Locale "fr": want an error`)
	}
	if _, err := alert.New(alert.Config{Sink: sink, Window: -time.Second}); err == nil {
		t.Error("a negative Window: want an error")
	}
	n, err := alert.New(alert.Config{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	time.Sleep(10 * time.Millisecond)
	if err := n.Run(ctx); err == nil {
		t.Error("a second Run: want an error")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}
