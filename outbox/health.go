package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/gocap/gocap/internal/telemetry"
	"github.com/gocap/gocap/transport"
)

// HealthTimeout bounds the storage and transport checks of one
// [Outbox.Health] call.
const HealthTimeout = 3 * time.Second

// HealthReport is the state of an outbox, as [Outbox.Health] finds it and
// its health handlers serve it as JSON. It holds no secret: the errors of
// the storage and the transport, whose texts may name hosts, users or
// URLs, go to Options.Logger; the report only says which part failed.
type HealthReport struct {
	// Live is true while Run runs.
	Live bool `json:"live"`
	// Ready is true when Live, the storage answers, and the transport
	// reaches its broker (or cannot tell: see transport.HealthChecker).
	Ready bool `json:"ready"`
	// Problems names what keeps the outbox from being ready, or live;
	// empty when it is.
	Problems []string `json:"problems,omitempty"`
	// Processor is the state of Run.
	Processor ProcessorHealth `json:"processor"`
	// Storage and Transport are the checks of a readiness report; nil in
	// a liveness report, which checks neither.
	Storage   *ComponentHealth `json:"storage,omitempty"`
	Transport *ComponentHealth `json:"transport,omitempty"`
	// Consumers lists, in a readiness report, the consumer groups whose
	// transport consumer fails (it failed and has not run for a few
	// seconds since); an outbox with one is not ready.
	Consumers []ConsumerHealth `json:"consumers,omitempty"`
	// OldestDueAge is, per table ("published", "received"), how long in
	// seconds the oldest due row has waited to be sent or handled (0 when
	// none is due): the backlog. Absent when the storage did not answer.
	OldestDueAge map[string]float64 `json:"oldest_due_age_seconds,omitempty"`
}

// ProcessorHealth is the state of an outbox's Run.
type ProcessorHealth struct {
	// Running is true while Run runs.
	Running bool `json:"running"`
	// LastHeartbeat is when the storage last recorded this process's
	// heartbeat (every Options.HeartbeatInterval); zero before the first.
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"`
	// HeartbeatAge is the time since LastHeartbeat, in seconds.
	HeartbeatAge float64 `json:"heartbeat_age_seconds,omitempty"`
}

// ConsumerHealth is a consumer group whose messages are not received.
type ConsumerHealth struct {
	// Group is the consumer group, as stored (with GroupPrefix and Version).
	Group string `json:"group"`
	// Problem is "misconfigured" when the broker refuses the consumer's
	// configuration (transport.ErrMisconfigured: a queue declared with
	// other arguments, refused credentials), which no retry fixes, and
	// "failing" otherwise (the log has the error).
	Problem string `json:"problem"`
	// Since is when the consumer started failing.
	Since time.Time `json:"since"`
}

// ComponentHealth is the outcome of one check.
type ComponentHealth struct {
	// OK is true when the check passed, or was skipped.
	OK bool `json:"ok"`
	// Skipped is true when the component cannot be checked (a transport
	// that does not implement transport.HealthChecker).
	Skipped bool `json:"skipped,omitempty"`
	// Problem says what failed, without the error's text: "unreachable"
	// or "timeout".
	Problem string `json:"problem,omitempty"`
}

// Health checks the outbox: whether Run runs, whether every consumer group
// of its subscriptions is consumed, whether the storage answers
// (the query that reads the age of the oldest due row of each table, one
// index entry each), and whether the transport reaches its broker, if it
// implements transport.HealthChecker. The checks take at most
// HealthTimeout.
func (o *Outbox[TTx]) Health(ctx context.Context) HealthReport {
	ctx, cancel := context.WithTimeout(ctx, HealthTimeout)
	defer cancel()
	r := o.liveness()
	now := time.Now().UTC()

	store := &ComponentHealth{OK: true}
	ages := map[string]float64{}
	for _, kind := range telemetry.Tables() {
		oldest, due, err := telemetry.OldestDue(ctx, o.driver, kind, o.opts.Version, now)
		if err != nil {
			store = &ComponentHealth{Problem: problemOf(ctx, err)}
			ages = nil
			o.opts.Logger.Warn("gocap: health: the storage did not answer", "err", err)
			break
		}
		ages[kind.String()] = 0
		if due {
			ages[kind.String()] = now.Sub(oldest).Seconds()
		}
	}
	r.Storage, r.OldestDueAge = store, ages
	if !store.OK {
		r.Problems = append(r.Problems, "storage "+store.Problem)
	}

	tr := &ComponentHealth{OK: true, Skipped: true}
	if hc, ok := o.tr.(transport.HealthChecker); ok {
		tr.Skipped = false
		if err := hc.Healthy(ctx); err != nil {
			tr = &ComponentHealth{Problem: problemOf(ctx, err)}
			o.opts.Logger.Warn("gocap: health: the transport does not reach its broker", "err", err)
			r.Problems = append(r.Problems, "transport "+tr.Problem)
		}
	}
	r.Transport = tr
	for _, p := range o.e.ConsumerProblems() {
		c := ConsumerHealth{Group: p.Group, Problem: "failing", Since: p.Since}
		if p.Misconfigured {
			c.Problem = "misconfigured"
		}
		r.Consumers = append(r.Consumers, c)
		r.Problems = append(r.Problems, "consumer of group "+c.Group+" "+c.Problem)
	}
	r.Ready = r.Live && store.OK && tr.OK && len(r.Consumers) == 0
	return r
}

// liveness is the report of the processor alone.
func (o *Outbox[TTx]) liveness() HealthReport {
	r := HealthReport{Processor: ProcessorHealth{Running: o.e.Running(), LastHeartbeat: o.e.LastHeartbeat()}}
	if !r.Processor.LastHeartbeat.IsZero() {
		r.Processor.HeartbeatAge = time.Since(r.Processor.LastHeartbeat).Seconds()
	}
	r.Live = r.Processor.Running
	if !r.Live {
		r.Problems = append(r.Problems, "processor not running")
	}
	return r
}

func problemOf(ctx context.Context, err error) string {
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return "timeout"
	}
	return "unreachable"
}

// LivenessHandler serves a liveness probe: 200 while Run runs, 503
// otherwise, with the processor's part of the [HealthReport] as JSON. It
// reads neither the storage nor the broker: their outage is no reason to
// restart the process. Mount it where the probe expects it
// (mux.Handle("/livez", ob.LivenessHandler())); it does not go through
// the dashboard's authorization, and tells nothing secret.
func (o *Outbox[TTx]) LivenessHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := o.liveness()
		serveHealth(w, r, rep, rep.Live)
	})
}

// ReadinessHandler serves a readiness probe: [Outbox.Health]'s report as
// JSON, with 200 when it is Ready and 503 otherwise; the report's
// Problems say which part failed. Mount it where the probe expects it
// (mux.Handle("/readyz", ob.ReadinessHandler())).
func (o *Outbox[TTx]) ReadinessHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := o.Health(r.Context())
		serveHealth(w, r, rep, rep.Ready)
	})
}

func serveHealth(w http.ResponseWriter, r *http.Request, rep HealthReport, ok bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(rep) // the client went away: nothing to do
}
