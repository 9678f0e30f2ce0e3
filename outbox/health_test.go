package outbox_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/internal/testproxy"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/postgres"
	"github.com/gocap/gocap/transport"
	"github.com/gocap/gocap/transport/memory"
)

// probe GETs path on srv and returns the status and the decoded report.
func probe(t *testing.T, srv *httptest.Server, path string) (int, outbox.HealthReport, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var rep outbox.HealthReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	return resp.StatusCode, rep, string(body)
}

func healthServer[TTx any](t *testing.T, ob *outbox.Outbox[TTx]) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/livez", ob.LivenessHandler())
	mux.Handle("/readyz", ob.ReadinessHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestHealthPostgresRabbitMQ: ready with everything up; not ready, saying
// which, while the database or the broker is down; live throughout.
func TestHealthPostgresRabbitMQ(t *testing.T) {
	amqpURL := testenv.AMQPURL(t)
	env := postgresBackend.open(t)
	pgProxy := testproxy.New(t, hostPort(t, env.dsn))
	u, err := url.Parse(env.dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = pgProxy.Addr()
	pool, err := pgxpool.New(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	d := postgres.New(pool, postgres.Options{Schema: env.name, Logger: quietLogger()})
	b := newBroker(t, amqpURL)
	amqpProxy := testproxy.New(t, hostPort(t, amqpURL))
	tr := b.transport(t, "amqp://guest:guest@"+amqpProxy.Addr()+"/")
	ob := newOutbox(t, d, tr, outbox.Options{HeartbeatInterval: 100 * time.Millisecond})
	srv := healthServer(t, ob)

	if code, rep, _ := probe(t, srv, "/livez"); code != http.StatusServiceUnavailable || rep.Live ||
		!slices.Contains(rep.Problems, "processor not running") {
		t.Errorf("before Run: /livez %d %+v, want 503, processor not running", code, rep)
	}
	if code, rep, _ := probe(t, srv, "/readyz"); code != http.StatusServiceUnavailable || rep.Ready {
		t.Errorf("before Run: /readyz %d %+v, want 503", code, rep)
	}
	run(t, ob)
	ready := func() bool {
		code, rep, _ := probe(t, srv, "/readyz")
		return code == http.StatusOK && rep.Ready
	}
	waitFor(t, 10*time.Second, "ready", func() bool {
		_, rep, _ := probe(t, srv, "/readyz")
		return rep.Ready && !rep.Processor.LastHeartbeat.IsZero()
	})
	_, rep, body := probe(t, srv, "/readyz")
	if !rep.Storage.OK || !rep.Transport.OK || rep.Transport.Skipped || len(rep.Problems) > 0 ||
		rep.OldestDueAge == nil || rep.Processor.HeartbeatAge > 5 {
		t.Errorf("ready report: %s", body)
	}
	t.Logf("ready: %s", body)

	pgProxy.Down()
	waitFor(t, 10*time.Second, "not ready with the database down", func() bool { return !ready() })
	code, rep, body := probe(t, srv, "/readyz")
	if code != http.StatusServiceUnavailable || rep.Storage.OK || !rep.Transport.OK ||
		!slices.Contains(rep.Problems, "storage unreachable") || rep.OldestDueAge != nil {
		t.Errorf("database down: %d %s", code, body)
	}
	for _, secret := range []string{"guest", pgProxy.Addr(), amqpProxy.Addr(), "postgres"} {
		if strings.Contains(body, secret) {
			t.Errorf("the report shows %q: %s", secret, body)
		}
	}
	t.Logf("database down: %s", body)
	if code, _, _ := probe(t, srv, "/livez"); code != http.StatusOK {
		t.Errorf("/livez %d with the database down, want 200", code)
	}
	pgProxy.Up()
	waitFor(t, 15*time.Second, "ready with the database back", ready)

	amqpProxy.Down()
	waitFor(t, 10*time.Second, "not ready with the broker down", func() bool { return !ready() })
	code, rep, body = probe(t, srv, "/readyz")
	if code != http.StatusServiceUnavailable || !rep.Storage.OK || rep.Transport.OK ||
		!slices.Contains(rep.Problems, "transport unreachable") {
		t.Errorf("broker down: %d %s", code, body)
	}
	t.Logf("broker down: %s", body)
	if code, _, _ := probe(t, srv, "/livez"); code != http.StatusOK {
		t.Errorf("/livez %d with the broker down, want 200", code)
	}
	amqpProxy.Up()
	waitFor(t, 15*time.Second, "ready with the broker back", ready)
}

// opaqueTransport hides every optional interface of its transport.
type opaqueTransport struct{ transport.Transport }

// TestHealthSQLiteMemory: a transport that cannot tell its health is
// skipped; a closed in-process broker handle is not ready.
func TestHealthSQLiteMemory(t *testing.T) {
	env := sqliteBackend.open(t)
	mem := memory.New(memory.Options{})
	ob := newOutbox(t, env.driver(t), opaqueTransport{mem}, outbox.Options{})
	run(t, ob)
	srv := healthServer(t, ob)
	waitFor(t, 10*time.Second, "ready", func() bool { code, _, _ := probe(t, srv, "/readyz"); return code == http.StatusOK })
	if _, rep, body := probe(t, srv, "/readyz"); !rep.Transport.Skipped || !rep.Transport.OK {
		t.Errorf("opaque transport: %s", body)
	}

	ob2 := newOutbox(t, env.driver(t), mem, outbox.Options{})
	run(t, ob2)
	srv2 := healthServer(t, ob2)
	waitFor(t, 10*time.Second, "ready", func() bool { code, _, _ := probe(t, srv2, "/readyz"); return code == http.StatusOK })
	mem.Close()
	if code, rep, body := probe(t, srv2, "/readyz"); code != http.StatusServiceUnavailable || rep.Transport.OK ||
		!slices.Contains(rep.Problems, "transport unreachable") {
		t.Errorf("closed broker handle: %d %s", code, body)
	}
}
