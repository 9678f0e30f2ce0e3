package outbox_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/internal/testproxy"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/redisstreams"
)

// TestRedisEndToEnd runs the streaming transports' end-to-end cases
// (streams_e2e_test.go) on the real Redis, with PostgreSQL and SQLite
// storage.
func TestRedisEndToEnd(t *testing.T) { runStreamE2E(t, redisKit) }

// redisKit puts each test's streams under a key prefix of its own; the
// keys, and with them the consumer groups, are deleted when the test
// ends.
var redisKit = streamKit{name: "redis", open: openRedis}

func openRedis(t testing.TB) *streamNamespace {
	t.Helper()
	addr := testenv.RedisAddr(t)
	prefix := testenv.Name("gocap_e2e") + ":"
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() {
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for i := 0; iter.Next(ctx) && i < 10_000; i++ {
			c.Del(ctx, iter.Val())
		}
	})
	timeout := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 10*time.Second)
	}
	// group returns XINFO GROUPS' line of group on topic's stream.
	group := func(t testing.TB, topic, name string) (redis.XInfoGroup, bool) {
		ctx, cancel := timeout()
		defer cancel()
		gs, err := c.XInfoGroups(ctx, prefix+topic).Result()
		if err != nil && strings.Contains(err.Error(), "no such key") {
			return redis.XInfoGroup{}, false
		}
		if err != nil {
			t.Fatalf("XINFO GROUPS %s: %v", prefix+topic, err)
		}
		for _, g := range gs {
			if g.Name == name {
				return g, true
			}
		}
		return redis.XInfoGroup{}, false
	}
	return &streamNamespace{
		addr: addr,
		transport: func(t testing.TB, proxy *testproxy.Proxy) transport.Transport {
			t.Helper()
			to := addr
			if proxy != nil {
				to = proxy.Addr()
			}
			tr, err := redisstreams.New(redisstreams.Config{
				Options:      &redis.UniversalOptions{Addrs: []string{to}},
				StreamPrefix: prefix,
				ClaimIdle:    streamTakeover,
				RetryDelay:   100 * time.Millisecond,
				Logger:       quietLogger(),
			})
			if err != nil {
				t.Fatalf("redisstreams.New: %v", err)
			}
			t.Cleanup(func() { tr.Close() })
			return tr
		},
		publish: func(t testing.TB, topic string, headers map[string]string, body []byte, _ bool) {
			t.Helper()
			// As DotNetCore.CAP's RedisTransport: XADD to the topic's
			// stream, "headers" a JSON object, "body" System.Text.Json's
			// byte array (a JSON string of base64). Redis has no
			// broker-side id that drops a duplicate.
			h, err := json.Marshal(headers)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := timeout()
			defer cancel()
			err = c.XAdd(ctx, &redis.XAddArgs{Stream: prefix + topic, Values: []any{
				"headers", string(h), "body", `"` + base64.StdEncoding.EncodeToString(body) + `"`,
			}}).Err()
			if err != nil {
				t.Fatalf("XADD %s: %v", prefix+topic, err)
			}
		},
		stored: func(t testing.TB, topic string) int {
			t.Helper()
			ctx, cancel := timeout()
			defer cancel()
			n, err := c.XLen(ctx, prefix+topic).Result()
			if err != nil {
				t.Fatalf("XLEN: %v", err)
			}
			return int(n)
		},
		last: func(t testing.TB, topic string) (rawMessage, bool) {
			t.Helper()
			ctx, cancel := timeout()
			defer cancel()
			es, err := c.XRevRangeN(ctx, prefix+topic, "+", "-", 1).Result()
			if err != nil {
				t.Fatalf("XREVRANGE: %v", err)
			}
			if len(es) == 0 {
				return rawMessage{}, false
			}
			var m rawMessage
			h, _ := es[0].Values["headers"].(string)
			b, _ := es[0].Values["body"].(string)
			if err := json.Unmarshal([]byte(h), &m.headers); err != nil {
				t.Fatalf("headers field %q: %v", h, err)
			}
			if err := json.Unmarshal([]byte(b), &m.body); err != nil {
				t.Fatalf("body field %q (want a JSON string of base64, as CAP writes it): %v", b, err)
			}
			return m, true
		},
		ready: func(t testing.TB, topic, name string) bool {
			_, ok := group(t, topic, name)
			return ok
		},
		// Redis counts the entries a group read (entries-read), not the
		// redeliveries of pending ones; unacked is the group's pending list.
		deliveries: func(t testing.TB, topic, name string) (int, int) {
			g, _ := group(t, topic, name)
			return int(g.EntriesRead), int(g.Pending)
		},
	}
}
