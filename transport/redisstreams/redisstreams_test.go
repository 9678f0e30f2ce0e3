package redisstreams_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/internal/testproxy"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/redisstreams"
	"github.com/gocap/gocap/transport/transporttest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// direct returns a client of the test Redis, not through a proxy, closed
// when the test ends.
func direct(t *testing.T) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { c.Close() })
	return c
}

// newTransport returns a transport whose streams have a prefix of their
// own, through a proxy that the test can cut, and deletes its streams
// when the test ends.
func newTransport(t *testing.T, cfg redisstreams.Config) (*redisstreams.Transport, *testproxy.Proxy) {
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
		Disconnect: func(t *testing.T, tr transport.Transport) func() {
			p := proxies[tr]
			p.Down()
			return p.Up
		},
	})
}
