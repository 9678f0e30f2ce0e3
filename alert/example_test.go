package alert_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/gocap/gocap/alert"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
)

// Plug a Notifier into an outbox: every message that becomes Failed is
// gathered, and one summary per window goes to the DingTalk robot (here
// a local server that prints what it gets).
func Example() {
	posted := make(chan string, 10)
	robot := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct{ Markdown struct{ Title string } }
		json.NewDecoder(r.Body).Decode(&m)
		posted <- m.Markdown.Title
		io.WriteString(w, `{"errcode":0,"errmsg":"ok"}`)
	}))
	defer robot.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "alert-example-")
	defer os.RemoveAll(dir)
	db, err := sqlite.Open(ctx, filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := sqlite.New(db, sqlite.Options{Logger: quiet})
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	n, err := alert.New(alert.Config{
		Sink:         alert.DingTalk{URL: robot.URL + "/robot/send?access_token=TOKEN", Secret: "SEC…"},
		Window:       time.Second,
		Source:       "orders-api",
		DashboardURL: "https://ops.example.com/gocap",
		Logger:       quiet,
	})
	if err != nil {
		log.Fatal(err)
	}
	broker := memory.NewBroker(memory.Options{})
	bindQueue(ctx, broker, "billing", "order.paid")
	ob, err := outbox.New(store, broker.Transport(), outbox.Options{
		Logger:   quiet,
		Retry:    outbox.RetryPolicy{MaxAttempts: 1},
		OnFailed: n.OnFailed, // never waits for the robot
	})
	if err != nil {
		log.Fatal(err)
	}
	outbox.Subscribe(ob, "order.paid", func(context.Context, outbox.Received[int]) error {
		return errors.New("billing is down")
	}, outbox.Group("billing"))

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { ob.Run(runCtx); done <- struct{}{} }()
	go func() { n.Run(runCtx); done <- struct{}{} }()
	for i := range 3 {
		ob.PublishWithoutTx(ctx, "order.paid", i)
	}
	select {
	case title := <-posted:
		fmt.Println(title)
	case <-ctx.Done():
		fmt.Println("no post")
	}
	stop()
	<-done
	<-done
	// Output: gocap [orders-api]: 3 messages failed
}

// bindQueue makes the in-process broker keep group's messages of topic
// until the outbox's consumer comes (it routes only to known groups).
func bindQueue(ctx context.Context, b *memory.Broker, group, topic string) {
	ended, end := context.WithCancel(ctx)
	end()
	b.Transport().Consume(ended, group, []string{topic}, func(context.Context, transport.Delivery) error { return nil })
}

// A summary renders as Markdown (DingTalk, WeCom), plain text, or, in a
// custom Sink, however you like; Locale "zh" gives Chinese labels.
func ExampleSummary_Markdown() {
	at := time.Date(2026, 3, 1, 10, 0, 1, 0, time.UTC)
	s := alert.Summary{
		Source: "orders-api", Count: 42, First: at, Last: at.Add(25 * time.Second),
		Topics: []alert.TopicCount{
			{Kind: "received", Topic: "order.paid", Group: "billing", Count: 40},
			{Kind: "published", Topic: "invoice.created", Count: 2},
		},
		Examples: []alert.Example{{Kind: "received", ID: 7, MsgID: "7", Topic: "order.paid", Group: "billing",
			Attempts: 50, Error: "billing: connection refused", At: at}},
		DashboardURL: "https://ops.example.com/gocap",
		Locale:       alert.LocaleChinese,
	}
	fmt.Println(s.Markdown())
	// Output:
	// ### gocap [orders-api]:42 条消息失败
	//
	// **失败条数:** 42
	//
	// **时间:** 2026-03-01 10:00:01 UTC – 2026-03-01 10:00:26 UTC
	//
	// **主题:**
	// - [接收 order.paid (分组 billing): 40](https://ops.example.com/gocap/received?group=billing&name=order.paid&status=Failed)
	// - [发布 invoice.created: 2](https://ops.example.com/gocap/published?name=invoice.created&status=Failed)
	//
	// **示例:**
	// - 接收 order.paid (分组 billing) [#7](https://ops.example.com/gocap/received/7), 尝试 50 次: billing: connection refused
	//
	// [打开控制台](https://ops.example.com/gocap)
}

// A SinkFunc is a Sink of your own: here it prints the summary. Publishing
// the summary through an outbox on a reserved topic (and setting
// Config.ReservedTopic to it) gives it the outbox's retries and history.
func ExampleSinkFunc() {
	posted := make(chan struct{})
	n, _ := alert.New(alert.Config{
		Sink: alert.SinkFunc(func(_ context.Context, s alert.Summary) error {
			fmt.Println(s.Title())
			for _, t := range s.Topics {
				fmt.Printf("%s %s/%s: %d\n", t.Kind, t.Topic, t.Group, t.Count)
			}
			close(posted)
			return nil
		}),
		Window:        100 * time.Millisecond,
		ReservedTopic: "ops.alert",
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- n.Run(ctx) }()

	for i := range 5 {
		n.OnFailed(ctx, outbox.FailedMessage{
			Message: &storage.Message{ID: int64(i), Kind: storage.Received, Name: "order.paid", Group: "billing"},
			Err:     errors.New("boom"), Retries: 50,
		})
	}
	// A failure of the reserved topic is never notified.
	n.OnFailed(ctx, outbox.FailedMessage{Message: &storage.Message{Kind: storage.Published, Name: "ops.alert"}})
	select {
	case <-posted:
	case <-time.After(10 * time.Second):
	}
	cancel()
	<-done
	fmt.Printf("%+v\n", n.Stats())
	// Output:
	// gocap: 5 messages failed
	// received order.paid/billing: 5
	// {Failures:5 Ignored:1 BelowThreshold:0 Posts:1 Undelivered:0}
}

// DingTalkSign and FeishuSign are the signatures the robots check (the
// values here agree with Python's hmac module); DingTalk.Post adds its
// sign and timestamp to the URL, Feishu.Post to the body.
func ExampleDingTalkSign() {
	fmt.Println(alert.DingTalkSign("SECexample", 1700000000000))
	fmt.Println(alert.FeishuSign("example", 1700000000))
	// Output:
	// uroalHrWHORz59talE1o26b8HuX2kOp8WlAN91F9Pj0=
	// IDYtqgwsyU5irwQ/8nvd4ncBjc/KPCpVGkxbLfWDsyg=
}
