package nats_test

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/internal/testproxy"
	"github.com/gocap/gocap/transport/nats"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// isolated is what one test's transport names: its subject prefix and
// the prefix of its streams' names.
type isolated struct {
	prefix string // subjects start with prefix + "."; streams with prefix + "_"
}

// stream returns the name of the stream of topic.
func (i isolated) stream(topic string) string {
	first, _, _ := strings.Cut(topic, ".")
	return i.prefix + "_" + first
}

// subject returns the subject of topic.
func (i isolated) subject(topic string) string { return i.prefix + "." + topic }

// newTransport returns a transport with subjects and streams of its own,
// connected through a proxy that the test can cut, and deletes its
// streams (and so their consumers) when the test ends.
func newTransport(t testing.TB, cfg nats.Config) (*nats.Transport, *testproxy.Proxy, isolated) {
	t.Helper()
	raw := testenv.NATSURL(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testproxy.New(t, u.Host)
	u.Host = proxy.Addr()
	cfg.URL = u.String()
	iso := isolated{prefix: testenv.Name("gocap")}
	cfg.SubjectPrefix = iso.prefix + "."
	cfg.StreamName = iso.stream
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.RequeueDelay == 0 {
		cfg.RequeueDelay = 10 * time.Millisecond
	}
	tr, err := nats.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.Close()
		deleteStreams(t, iso.prefix+"_")
	})
	return tr, proxy, iso
}

// jetStream returns a JetStream context on a connection of its own,
// straight to the server, closed when the test ends.
func jetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := natsgo.Connect(testenv.NATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// deleteStreams deletes the streams whose name starts with prefix.
func deleteStreams(t testing.TB, prefix string) {
	t.Helper()
	js := jetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	var doomed []string
	for n := range names.Name() {
		if strings.HasPrefix(n, prefix) {
			doomed = append(doomed, n)
		}
	}
	if err := names.Err(); err != nil {
		t.Errorf("listing streams to delete: %v", err)
	}
	for _, n := range doomed {
		if err := js.DeleteStream(ctx, n); err != nil {
			t.Errorf("deleting stream %s: %v", n, err)
		}
	}
}
