package outbox_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/internal/testproxy"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/nats"
	"github.com/gocap/gocap/wire"
)

// TestNATSEndToEnd runs the streaming transports' end-to-end cases
// (streams_e2e_test.go) on the real NATS JetStream, with PostgreSQL and
// SQLite storage.
func TestNATSEndToEnd(t *testing.T) { runStreamE2E(t, natsKit) }

// natsKit puts each test's subjects under a prefix of its own and names
// its streams after it (prefix + "_" + the topic's first word); the
// streams, and with them the groups' consumers, are deleted when the test
// ends.
var natsKit = streamKit{name: "nats", open: openNATS}

func openNATS(t testing.TB) *streamNamespace {
	t.Helper()
	raw := testenv.NATSURL(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	prefix := testenv.Name("gocap_e2e")
	streamOf := func(topic string) string {
		first, _, _ := strings.Cut(topic, ".")
		return prefix + "_" + first
	}
	subjectOf := func(topic string) string { return prefix + "." + topic }
	nc, err := natsgo.Connect(raw)
	if err != nil {
		t.Fatalf("connecting to NATS: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		names := js.StreamNames(ctx)
		var doomed []string
		for n := range names.Name() {
			if strings.HasPrefix(n, prefix+"_") {
				doomed = append(doomed, n)
			}
		}
		for _, n := range doomed {
			if err := js.DeleteStream(ctx, n); err != nil {
				t.Errorf("deleting stream %s: %v", n, err)
			}
		}
	})
	timeout := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 10*time.Second)
	}
	// consumers returns the infos of group's consumers of topic's subject.
	consumers := func(t testing.TB, topic, group string) []*jetstream.ConsumerInfo {
		ctx, cancel := timeout()
		defer cancel()
		s, err := js.Stream(ctx, streamOf(topic))
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			t.Fatalf("stream of %s: %v", topic, err)
		}
		var mine []*jetstream.ConsumerInfo
		list := s.ListConsumers(ctx)
		for ci := range list.Info() {
			if strings.HasPrefix(ci.Name, "gocap-"+group+"-") && ci.Config.FilterSubject == subjectOf(topic) {
				mine = append(mine, ci)
			}
		}
		if err := list.Err(); err != nil {
			t.Fatalf("listing the consumers of %s: %v", topic, err)
		}
		return mine
	}
	return &streamNamespace{
		addr: u.Host,
		transport: func(t testing.TB, proxy *testproxy.Proxy) transport.Transport {
			t.Helper()
			cfg := nats.Config{
				URL:           raw,
				SubjectPrefix: prefix + ".",
				StreamName:    streamOf,
				AckWait:       streamTakeover,
				RequeueDelay:  100 * time.Millisecond,
				Logger:        quietLogger(),
			}
			if proxy != nil {
				pu := *u
				pu.Host = proxy.Addr()
				cfg.URL = pu.String()
			}
			tr, err := nats.New(cfg)
			if err != nil {
				t.Fatalf("nats.New: %v", err)
			}
			t.Cleanup(func() { tr.Close() })
			return tr
		},
		publish: func(t testing.TB, topic string, headers map[string]string, body []byte, withBrokerID bool) {
			t.Helper()
			// As DotNetCore.CAP's NATSTransport.SendAsync: the topic's
			// subject, every header a NATS header, Nats-Msg-Id = cap-msg-id.
			m := natsgo.NewMsg(subjectOf(topic))
			for k, v := range headers {
				m.Header.Set(k, v)
			}
			m.Data = body
			var opts []jetstream.PublishOpt
			if withBrokerID {
				opts = append(opts, jetstream.WithMsgID(headers[wire.MsgID]))
			}
			ctx, cancel := timeout()
			defer cancel()
			if _, err := js.PublishMsg(ctx, m, opts...); err != nil {
				t.Fatalf("publishing to %s: %v", m.Subject, err)
			}
		},
		stored: func(t testing.TB, topic string) int {
			t.Helper()
			ctx, cancel := timeout()
			defer cancel()
			s, err := js.Stream(ctx, streamOf(topic))
			if err != nil {
				t.Fatalf("stream of %s: %v", topic, err)
			}
			info, err := s.Info(ctx, jetstream.WithSubjectFilter(subjectOf(topic)))
			if err != nil {
				t.Fatalf("stream info: %v", err)
			}
			return int(info.State.Subjects[subjectOf(topic)])
		},
		last: func(t testing.TB, topic string) (rawMessage, bool) {
			t.Helper()
			ctx, cancel := timeout()
			defer cancel()
			s, err := js.Stream(ctx, streamOf(topic))
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return rawMessage{}, false
			}
			if err != nil {
				t.Fatalf("stream of %s: %v", topic, err)
			}
			m, err := s.GetLastMsgForSubject(ctx, subjectOf(topic))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return rawMessage{}, false
			}
			if err != nil {
				t.Fatalf("last message of %s: %v", topic, err)
			}
			headers := map[string]string{}
			for k, vs := range m.Header {
				headers[k] = strings.Join(vs, ", ")
			}
			return rawMessage{headers: headers, body: m.Data}, true
		},
		ready: func(t testing.TB, topic, group string) bool {
			return len(consumers(t, topic, group)) > 0
		},
		deliveries: func(t testing.TB, topic, group string) (int, int) {
			delivered, unacked := 0, 0
			for _, ci := range consumers(t, topic, group) {
				delivered += int(ci.Delivered.Consumer)
				unacked += ci.NumAckPending
			}
			return delivered, unacked
		},
	}
}
