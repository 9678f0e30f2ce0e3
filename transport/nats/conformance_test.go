package nats_test

import (
	"sync"
	"testing"

	"github.com/gocap/gocap/internal/testproxy"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/nats"
	"github.com/gocap/gocap/transport/transporttest"
)

func TestConformance(t *testing.T) {
	var (
		mu      sync.Mutex
		proxies = map[transport.Transport]*testproxy.Proxy{}
	)
	transporttest.Run(t, transporttest.Harness{
		New: func(t *testing.T) transport.Transport {
			tr, p, _ := newTransport(t, nats.Config{})
			mu.Lock()
			defer mu.Unlock()
			proxies[tr] = p
			return tr
		},
		Wildcards: true,
		// A body larger than the server's max_payload (1 MiB by default).
		Refused: func(*testing.T) (string, transport.Message) {
			return "order.refused", transport.Message{Body: make([]byte, 8<<20)}
		},
		// The pull consumer's buffer (FetchBatch, 128), a delivery in
		// each of the 4 workers (Concurrency) and one on its way to them.
		InFlight: 128 + 4 + 1,
		Disconnect: func(t *testing.T, tr transport.Transport) func() {
			mu.Lock()
			p := proxies[tr]
			mu.Unlock()
			p.Down()
			return p.Up
		},
	})
}
