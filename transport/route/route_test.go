package route_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
	"github.com/gocap/gocap/transport/route"
	"github.com/gocap/gocap/transport/transporttest"
	"github.com/gocap/gocap/transport/webhook"
)

// hookServer is a local endpoint: it answers 500 to bodies containing
// "fail", and records the others.
type hookServer struct {
	mu  sync.Mutex
	got []string
}

func newHook(t *testing.T) (*webhook.Transport, *hookServer) {
	t.Helper()
	hs := &hookServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), "fail") {
			http.Error(w, "refused on purpose", 500)
			return
		}
		hs.mu.Lock()
		hs.got = append(hs.got, r.Header.Get("cap-msg-name")+" "+string(b))
		hs.mu.Unlock()
		io.WriteString(w, "SUCCESS")
	}))
	t.Cleanup(srv.Close)
	wh, err := webhook.New(webhook.Config{
		AllowedNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Routes:      []webhook.Route{{Topic: "merchant.#", URL: srv.URL, Expect: "SUCCESS"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return wh, hs
}

func (hs *hookServer) received() []string {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return append([]string(nil), hs.got...)
}

// TestConformance: a router whose default is the in-process broker
// passes the transport suite — sends, batches and every receive check go
// through it.
func TestConformance(t *testing.T) {
	transporttest.Run(t, transporttest.Harness{
		New: func(t *testing.T) transport.Transport {
			wh, _ := newHook(t)
			rt, err := route.New(route.Rule{Pattern: "merchant.#", Transport: wh},
				route.Default(memory.New(memory.Options{RequeueDelay: 10 * time.Millisecond})))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rt.Close() })
			return rt
		},
		Wildcards: true,
		Settle:    20 * time.Millisecond,
		// To the default, the in-process broker, where no group is bound
		// to the topic: memory.ErrUnroutable.
		Refused: func(*testing.T) (string, transport.Message) {
			return "nobody.listens", transport.Message{Body: []byte("x")}
		},
	})
}

// TestSendBatch: a batch mixing destinations is split, and each message
// gets its own transport's result in the batch's order.
func TestSendBatch(t *testing.T) {
	wh, hs := newHook(t)
	mem := memory.New(memory.Options{})
	defer mem.Close()
	rt, err := route.New(route.Rule{Pattern: "merchant.#", Transport: wh}, route.Rule{Pattern: "order.*", Transport: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	var brokered []string
	var mu sync.Mutex
	transporttest.Consume(t, mem, "g", []string{"order.paid"}, func(_ context.Context, d transport.Delivery) error {
		mu.Lock()
		brokered = append(brokered, d.Topic+" "+string(d.Body))
		mu.Unlock()
		return nil
	})
	time.Sleep(20 * time.Millisecond)
	out := func(topic, body string) transport.Outgoing {
		return transport.Outgoing{Topic: topic, Message: transport.Message{Headers: map[string]string{"cap-msg-name": topic}, Body: []byte(body)}}
	}
	errs := rt.SendBatch(context.Background(), []transport.Outgoing{
		out("merchant.notify", `"a"`),
		out("order.paid", `"b"`),
		out("merchant.notify", `"fail"`),
		out("order.shipped", `"c"`), // no group bound: unroutable
		out("user.created", `"d"`),  // no rule, no default
		out("merchant.refund", `"e"`),
	})
	if len(errs) != 6 {
		t.Fatalf("%d results for 6 messages", len(errs))
	}
	var p interface{ Permanent() bool }
	switch {
	case errs[0] != nil, errs[1] != nil, errs[5] != nil:
		t.Errorf("successes failed: %v", errs)
	case errs[2] == nil || !strings.Contains(errs[2].Error(), "HTTP 500"):
		t.Errorf("the failing endpoint: %v", errs[2])
	case !errors.Is(errs[3], memory.ErrUnroutable):
		t.Errorf("the unroutable message: %v", errs[3])
	case !errors.As(errs[4], &p) || !p.Permanent() || !strings.Contains(errs[4].Error(), `no rule matches topic "user.created"`):
		t.Errorf("the topic nothing sends: %v", errs[4])
	}
	if got := strings.Join(hs.received(), ","); got != `merchant.notify "a",merchant.refund "e"` && got != `merchant.refund "e",merchant.notify "a"` {
		t.Errorf("the endpoint got %s", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := strings.Join(brokered, ",")
		mu.Unlock()
		if got == `order.paid "b"` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broker got %q", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Without a default, nothing receives.
	if err := rt.Consume(context.Background(), "g", []string{"x"}, nil); !errors.Is(err, route.ErrNoReceiver) {
		t.Errorf("Consume without a default: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	mem := memory.New(memory.Options{})
	defer mem.Close()
	for _, opts := range [][]route.Option{
		nil,
		{route.Rule{Pattern: "a..b", Transport: mem}},
		{route.Rule{Pattern: "a", Transport: nil}},
		{route.Default(nil)},
		{route.Default(mem), route.Default(mem)},
	} {
		if _, err := route.New(opts...); err == nil {
			t.Errorf("New(%v) accepted", opts)
		}
	}
}
