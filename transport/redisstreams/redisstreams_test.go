package redisstreams_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/internal/testproxy"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/redisstreams"
	"github.com/gocap/gocap/transport/transporttest"
	"github.com/gocap/gocap/wire"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// direct returns a client of the test Redis, not through a proxy, closed
// when the test ends.
func direct(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { c.Close() })
	return c
}

// newTransport returns a transport whose streams have a prefix of their
// own, through a proxy that the test can cut, and deletes its streams
// when the test ends.
func newTransport(t testing.TB, cfg redisstreams.Config) (*redisstreams.Transport, *testproxy.Proxy) {
	t.Helper()
	addr := testenv.RedisAddr(t)
	proxy := testproxy.New(t, addr)
	if cfg.Client == nil {
		cfg.Options = &redis.UniversalOptions{Addrs: []string{proxy.Addr()}}
	}
	if cfg.StreamPrefix == "" {
		cfg.StreamPrefix = testenv.Name("gocap_rs") + ":"
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = 50 * time.Millisecond
	}
	tr, err := redisstreams.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := direct(t)
	t.Cleanup(func() {
		tr.Close()
		deleteStreams(c, cfg.StreamPrefix)
	})
	return tr, proxy
}

// deleteStreams deletes the keys that start with prefix.
func deleteStreams(c *redis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for i := 0; iter.Next(ctx) && i < 100_000; i++ {
		c.Del(ctx, iter.Val())
	}
}

func TestConformance(t *testing.T) {
	proxies := map[transport.Transport]*testproxy.Proxy{}
	transporttest.Run(t, transporttest.Harness{
		New: func(t *testing.T) transport.Transport {
			tr, p := newTransport(t, redisstreams.Config{})
			proxies[tr] = p
			return tr
		},
		// Redis Streams have no wildcards (see TestWildcardRefused).
		Wildcards: false,
		// Consume reads BatchSize (100) entries of a stream at a time.
		InFlight: 100,
		// A header value that is not valid UTF-8 cannot be encoded.
		Refused: func(*testing.T) (string, transport.Message) {
			return "order.refused", transport.Message{Headers: map[string]string{"x-bad": "\xff\xfe"}, Body: []byte("x")}
		},
		Disconnect: func(t *testing.T, tr transport.Transport) func() {
			p := proxies[tr]
			p.Down()
			return p.Up
		},
	})
}

// received collects the deliveries of a consumer.
type received struct {
	mu sync.Mutex
	ds []transport.Delivery
}

func (r *received) handle(_ context.Context, d transport.Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ds = append(r.ds, d)
	return nil
}

// wait returns the deliveries once there are n, or fails after 15s.
func (r *received) wait(t *testing.T, n int) []transport.Delivery {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r.mu.Lock()
		ds := append([]transport.Delivery(nil), r.ds...)
		r.mu.Unlock()
		if len(ds) >= n {
			return ds
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries after 15s, want %d", len(ds), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWildcardRefused(t *testing.T) {
	tr, _ := newTransport(t, redisstreams.Config{})
	for _, p := range []string{"order.*", "order.#"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // bounded if it is not refused
		err := tr.Consume(ctx, "g", []string{"order.paid", p}, func(context.Context, transport.Delivery) error { return nil })
		cancel()
		if err == nil || !strings.Contains(err.Error(), strconv.Quote(p)) || !strings.Contains(err.Error(), "wildcard") {
			t.Errorf("Consume of %q: %v, want an error naming the pattern and its wildcard", p, err)
		}
	}
}

// TestEntryLayout checks the entry Send writes, read back with plain
// go-redis: CAP's two fields, headers a JSON object, body a JSON string of
// the base64 of the body.
func TestEntryLayout(t *testing.T) {
	tr, _ := newTransport(t, redisstreams.Config{})
	c := direct(t)
	ctx := context.Background()
	headers := map[string]string{wire.MsgID: "2125444000991662080", wire.MsgName: "order.paid", "x-note": "東京 <&>"}
	body := []byte(`{"id":42}` + "\x00\xff")
	if err := tr.Send(ctx, "order.paid", transport.Message{Headers: headers, Body: body}); err != nil {
		t.Fatal(err)
	}
	es, err := c.XRange(ctx, tr.Stream("order.paid"), "-", "+").Result()
	if err != nil || len(es) != 1 {
		t.Fatalf("XRANGE: %v, %d entries", err, len(es))
	}
	if len(es[0].Values) != 2 {
		t.Errorf("entry fields %v, want headers and body", es[0].Values)
	}
	var gotHeaders map[string]string
	if err := json.Unmarshal([]byte(es[0].Values["headers"].(string)), &gotHeaders); err != nil || !maps.Equal(gotHeaders, headers) {
		t.Errorf("headers field %q (%v), want the JSON object of %v", es[0].Values["headers"], err, headers)
	}
	if want := `"` + base64.StdEncoding.EncodeToString(body) + `"`; es[0].Values["body"] != want {
		t.Errorf("body field %q, want %q (CAP: System.Text.Json's byte array, a quoted base64 string)", es[0].Values["body"], want)
	}
}

// TestForeignPublisher consumes entries written with plain go-redis: one
// as CAP writes it (System.Text.Json escapes '+' and non-ASCII, null
// header values), one with a plain JSON body and no headers, one with
// fields of its own, one with headers that are not JSON.
func TestForeignPublisher(t *testing.T) {
	tr, _ := newTransport(t, redisstreams.Config{})
	c := direct(t)
	ctx := context.Background()
	var r received
	transporttest.Consume(t, tr, "foreign", []string{"order.paid"}, r.handle)
	time.Sleep(300 * time.Millisecond)
	stream := tr.Stream("order.paid")
	body := []byte{0xfb, 0xff, '{', '}', 0xfe} // base64 "+/97fe" has a '+' and a '/'
	b64 := strings.ReplaceAll(base64.StdEncoding.EncodeToString(body), "+", `\u002B`)
	entries := [][]any{
		{"headers", `{"cap-msg-id":"7","cap-msg-name":"order.paid","x-city":"\u6771\u4EAC","cap-corr-id":null,"n":5}`, "body", `"` + b64 + `"`},
		{"body", `{"plain":true}`},
		{"data", "x", "kind", "y"},
		{"headers", "not json", "body", `""`},
	}
	for _, v := range entries {
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: v}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	ds := r.wait(t, len(entries))
	want := []transport.Delivery{
		{Topic: "order.paid", Message: transport.Message{Headers: map[string]string{
			wire.MsgID: "7", wire.MsgName: "order.paid", "x-city": "東京", wire.CorrelationID: "", "n": "5"}, Body: body}},
		{Topic: "order.paid", Message: transport.Message{Headers: map[string]string{}, Body: []byte(`{"plain":true}`)}},
		{Topic: "order.paid", Message: transport.Message{Headers: map[string]string{}, Body: []byte(`{"data":"x","kind":"y"}`)}},
		{Topic: "order.paid", Message: transport.Message{Headers: map[string]string{redisstreams.UnreadableHeadersHeader: "not json"}, Body: []byte{}}},
	}
	for i, w := range want {
		d := ds[i]
		if d.Topic != w.Topic || !maps.Equal(d.Headers, w.Headers) || !bytes.Equal(d.Body, w.Body) {
			t.Errorf("entry %d: got topic %q headers %v body %q; want %q %v %q", i, d.Topic, d.Headers, d.Body, w.Topic, w.Headers, w.Body)
		}
	}
	waitNoPending(t, c, stream, "foreign")
}

// waitNoPending fails unless group has no pending entry on stream within 5s.
func waitNoPending(t *testing.T, c *redis.Client, stream, group string) {
	t.Helper()
	var n int64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		p, err := c.XPending(context.Background(), stream, group).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n = p.Count; n == 0 {
			return
		}
	}
	t.Errorf("group %q has %d entries pending on %s, want all acknowledged", group, n, stream)
}

// TestDeadConsumer checks that entries read by a consumer that never
// acknowledges them (it died) are taken over by a live one after
// ClaimIdle, and not before.
func TestDeadConsumer(t *testing.T) {
	const idle = 700 * time.Millisecond
	tr, _ := newTransport(t, redisstreams.Config{ClaimIdle: idle})
	c := direct(t)
	ctx := context.Background()
	stream := tr.Stream("job.run")
	if err := c.XGroupCreateMkStream(ctx, stream, "workers", "$").Err(); err != nil {
		t.Fatal(err)
	}
	const n = 5
	for i := range n {
		if err := tr.Send(ctx, "job.run", transport.Message{Headers: map[string]string{wire.MsgID: fmt.Sprint(i)}, Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "workers", Consumer: "dead", Streams: []string{stream, ">"}, Count: 100, Block: -1}).Result()
	if err != nil || len(res) != 1 || len(res[0].Messages) != n {
		t.Fatalf("consumer dead read %v, %v; want %d entries", res, err, n)
	}
	read := time.Now()
	var r received
	transporttest.Consume(t, tr, "workers", []string{"job.run"}, r.handle)
	ds := r.wait(t, n)
	if d := time.Since(read); d < idle {
		t.Errorf("the dead consumer's entries were taken over %v after it read them, before ClaimIdle (%v)", d, idle)
	}
	ids := map[string]bool{}
	for _, d := range ds {
		ids[d.Headers[wire.MsgID]] = true
	}
	if len(ids) != n {
		t.Errorf("%d distinct messages taken over, want %d", len(ids), n)
	}
	waitNoPending(t, c, stream, "workers")
}

// TestMaxLen checks that MaxLen trims a stream at XADD, and that without
// it nothing is trimmed.
func TestMaxLen(t *testing.T) {
	const n, maxLen = 1000, 10
	ctx := context.Background()
	c := direct(t)
	for _, limit := range []int64{0, maxLen} {
		tr, _ := newTransport(t, redisstreams.Config{MaxLen: limit})
		msgs := make([]transport.Outgoing, n)
		for i := range msgs {
			msgs[i] = transport.Outgoing{Topic: "log", Message: transport.Message{Body: []byte("x")}}
		}
		for i, err := range tr.SendBatch(ctx, msgs) {
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		l, err := c.XLen(ctx, tr.Stream("log")).Result()
		if err != nil {
			t.Fatal(err)
		}
		// MAXLEN ~ trims whole nodes (stream-node-max-entries, 100 by default).
		if limit == 0 && l != n || limit > 0 && (l < maxLen || l > maxLen+200) {
			t.Errorf("MaxLen %d: %d entries after %d sends", limit, l, n)
		}
		t.Logf("MaxLen %d: %d entries after %d sends", limit, l, n)
	}
}

// TestSendRefused checks that a command Redis refuses for good, and a
// message that cannot be encoded, are permanent errors naming the stream,
// not transport.ErrUnavailable.
func TestSendRefused(t *testing.T) {
	tr, _ := newTransport(t, redisstreams.Config{})
	c := direct(t)
	ctx := context.Background()
	if err := c.Set(ctx, tr.Stream("not.a.stream"), "a string", 0).Err(); err != nil {
		t.Fatal(err)
	}
	errs := tr.SendBatch(ctx, []transport.Outgoing{
		{Topic: "order.paid", Message: transport.Message{Body: []byte("a")}},
		{Topic: "not.a.stream", Message: transport.Message{Body: []byte("b")}},
		{Topic: "order.paid", Message: transport.Message{Headers: map[string]string{"bin": "\xff"}, Body: []byte("c")}},
		{Topic: "", Message: transport.Message{Body: []byte("d")}},
	})
	if errs[0] != nil {
		t.Errorf("message to a stream: %v", errs[0])
	}
	var re *redisstreams.RefusedError
	if err := errs[3]; !errors.As(err, &re) || !permanent(err) || !strings.Contains(err.Error(), "topic is empty") {
		t.Errorf("message with an empty topic: %v, want a permanent *redisstreams.RefusedError", err)
	}
	for i, want := range []string{"WRONGTYPE", "not valid UTF-8"} {
		err := errs[i+1]
		if !errors.As(err, &re) || !permanent(err) || errors.Is(err, transport.ErrUnavailable) || !strings.Contains(err.Error(), want) ||
			!strings.Contains(err.Error(), strconv.Quote(tr.Stream(map[int]string{0: "not.a.stream", 1: "order.paid"}[i]))) {
			t.Errorf("message %d: %v, want a permanent error naming the stream and %s", i+1, err, want)
		}
	}
}

// permanent reports whether err says retrying cannot help, as the outbox
// asks it.
func permanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

func TestHealthy(t *testing.T) {
	tr, proxy := newTransport(t, redisstreams.Config{})
	ctx := context.Background()
	if err := tr.Healthy(ctx); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	proxy.Down()
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := tr.Healthy(hctx)
	cancel()
	if !errors.Is(err, transport.ErrUnavailable) {
		t.Errorf("Healthy with Redis unreachable: %v, want an error wrapping transport.ErrUnavailable", err)
	}
	proxy.Up()
	if err := tr.Healthy(ctx); err != nil {
		t.Errorf("Healthy after Redis came back: %v", err)
	}
}

// TestConnectionLossLosesNothing sends and consumes through a proxy that
// cuts every connection three times meanwhile, and counts every message:
// each is received, none is lost; duplicates (a send retried after the
// connection broke before its reply, an ack lost) are counted and logged.
func TestConnectionLossLosesNothing(t *testing.T) {
	tr, proxy := newTransport(t, redisstreams.Config{})
	c := direct(t)
	const n, batch = 3000, 25
	var (
		mu  sync.Mutex
		got = map[string]int{}
	)
	transporttest.ConsumeBatch(t, tr, "counting", []string{"order.paid"}, 50, 2*time.Millisecond, func(_ context.Context, ds []transport.Delivery) []error {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range ds {
			got[d.Headers[wire.MsgID]]++
		}
		return make([]error, len(ds))
	})
	time.Sleep(300 * time.Millisecond)

	sent := make(chan struct{})
	var unavailable atomic.Int64
	go func() {
		defer close(sent)
		deadline := time.Now().Add(60 * time.Second)
		for start := 0; start < n; start += batch {
			time.Sleep(20 * time.Millisecond) // sending spans the cuts
			var msgs []transport.Outgoing
			for i := start; i < min(start+batch, n); i++ {
				msgs = append(msgs, transport.Outgoing{Topic: "order.paid", Message: transport.Message{Headers: map[string]string{wire.MsgID: fmt.Sprint(i)}, Body: []byte("x")}})
			}
			for len(msgs) > 0 {
				if time.Now().After(deadline) {
					t.Errorf("sends still failing after 60s")
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				errs := tr.SendBatch(ctx, msgs)
				cancel()
				var again []transport.Outgoing
				for i, err := range errs {
					if err == nil {
						continue
					}
					if !errors.Is(err, transport.ErrUnavailable) {
						t.Errorf("send of message %s: %v, want nil or transport.ErrUnavailable", msgs[i].Headers[wire.MsgID], err)
						return
					}
					unavailable.Add(1)
					again = append(again, msgs[i])
				}
				if msgs = again; len(msgs) > 0 {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}
	}()
	for range 3 {
		time.Sleep(150 * time.Millisecond)
		proxy.Down()
		time.Sleep(time.Second) // longer than go-redis's own retries of a command
		proxy.Up()
	}
	<-sent
	if unavailable.Load() == 0 {
		t.Error("no send failed while the connection was cut: the test did not cut it while sending")
	}
	var distinct, dups int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		distinct, dups = len(got), 0
		for _, k := range got {
			dups += k - 1
		}
		mu.Unlock()
		if distinct == n || time.Now().After(deadline) {
			break
		}
	}
	if distinct != n {
		t.Fatalf("%d of %d messages received after the connection was cut 3 times", distinct, n)
	}
	t.Logf("%d messages received, %d duplicates, %d sends failed with ErrUnavailable and were retried", distinct, dups, unavailable.Load())
	waitNoPending(t, c, tr.Stream("order.paid"), "counting")
}

// TestStoppedConsumerLeaves checks that a Consume that ends removes its
// consumer from the group when it holds no pending entry, and keeps it
// (with its entries) when it does.
func TestStoppedConsumerLeaves(t *testing.T) {
	tr, _ := newTransport(t, redisstreams.Config{RetryDelay: time.Hour})
	c := direct(t)
	ctx := context.Background()
	for _, fail := range []bool{false, true} {
		group := fmt.Sprint("leaving-", fail)
		cctx, cancel := context.WithCancel(ctx)
		handled := make(chan struct{}, 1)
		done := make(chan error, 1)
		go func() {
			done <- tr.Consume(cctx, group, []string{"order.paid"}, func(context.Context, transport.Delivery) error {
				handled <- struct{}{}
				if fail {
					return errors.New("failing on purpose")
				}
				return nil
			})
		}()
		time.Sleep(300 * time.Millisecond)
		if err := tr.Send(ctx, "order.paid", transport.Message{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-handled:
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery within 10s")
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Consume: %v", err)
		}
		cs, err := c.XInfoConsumers(ctx, tr.Stream("order.paid"), group).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{false: 0, true: 1}[fail]; len(cs) != want || fail && (cs[0].Name != tr.Consumer() || cs[0].Pending != 1) {
			t.Errorf("handler failing %v: consumers after Consume ended %+v, want %d (this one, holding its pending entry, stays)", fail, cs, want)
		}
	}
}
