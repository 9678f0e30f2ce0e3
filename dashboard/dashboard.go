// Package dashboard is gocap's web dashboard: an http.Handler the
// application mounts to see its messages, find out why one failed, and send
// it again — the manual compensation that follows the last automatic retry.
//
//	mux.Handle("/gocap/", dashboard.New(ob, dashboard.Options{Prefix: "/gocap", Authorize: auth}))
//
// The pages are rendered on the server (html/template, embedded assets, no
// CDN) and work with JavaScript off; a small script refreshes the overview.
//
// # Pages
//
//   - {prefix}/ — counts by status for both tables (Delayed, Scheduled,
//     Succeeded, Failed; received rows are never Delayed; a count that is
//     the database's estimate, as a large table's Succeeded rows may be
//     (see storage.BoundedCounter), is shown "≈", its title saying so),
//     sent/received/failed per
//     minute over the last hour, and the processors running against the
//     database with their last heartbeat.
//   - {prefix}/published and {prefix}/received — newest first, filtered by
//     status, name, group, id, content and version (query parameters
//     status, name, group, msgid, content, version: outbox.Options.Version),
//     paged by id (parameter before), with
//     checkboxes to requeue or delete a selection, and a button to requeue
//     every Failed message matching the filter. A Delayed published
//     message shows when it is due (UTC, and relative: "in 4m 10s"), and
//     a selection of Delayed messages can be sent now or cancelled.
//   - {prefix}/published/{id} and {prefix}/received/{id} — headers, body
//     (pretty-printed JSON, text, or hex for binary), retries, last error,
//     times, the retry policy stored with the row (when not the default),
//     the last attempts newest first (when each started, how long it took,
//     "ok" or its error), and requeue and delete buttons; for a Delayed
//     message, its due time and "Send now" and "Cancel" buttons instead.
//
// # Actions
//
// Requeue makes rows Scheduled and due now, with zero retries (a row being
// sent at that moment is left alone); a Delayed row is thus sent now.
// Delete removes rows, whatever their status.
//
// Send now and cancel are for Delayed messages only, and never touch any
// other row: send now makes a Delayed row Scheduled and due now, keeping
// its retry policy; cancel deletes a Delayed row, so it is never sent.
// Each reads every given row first and leaves alone, reporting it as
// skipped, a row that is not Delayed, is gone, or is due within the next
// 5 seconds. The margin is what keeps the change off rows a processor
// claims meanwhile (storage's Requeue and Delete take no status
// condition): a processor claims a Delayed row only once it is due, so a
// row due later than that is still Delayed a moment after it was read,
// unless the processors' clocks run more than 5 seconds ahead of this
// one. They take at most 1000 ids at a time.
//
// # JSON API
//
// The same data for scripts and alerting; ids are JSON strings (they exceed
// 2^53):
//
//	GET  {prefix}/api/stats                     {"published":{"Delayed":n,"Scheduled":n,...},"received":{...},
//	                                            "estimated":{"published":{"Delayed":false,...,"Succeeded":true},"received":{...}},
//	                                            "instances":[...]}
//	GET  {prefix}/api/keys                      blocked ordering keys: {"published":[{"ordering_key":k,"group":g,
//	                                            "head_id":id,"waiting":n,"head":{...}}],"received":[...]} (501 if the
//	                                            storage is no storage.KeyInspector)
//	GET  {prefix}/api/histogram                 {"published":[{"start":t,"status":s,"count":n}],"received":[...]}
//	GET  {prefix}/api/{kind}?status=&name=&group=&msgid=&content=&version=&before=&limit=
//	                                            {"messages":[...],"next":"id or empty"}
//	GET  {prefix}/api/{kind}/{id}               one message, 404 if none, with its
//	                                            "attempts":[{"at":t,"duration_ms":f,"error":"" if ok}], newest first
//	POST {prefix}/api/{kind}/requeue            body {"ids":["..."]} or {"all_failed":true,"filter":{...}}: {"count":n}
//	POST {prefix}/api/{kind}/delete             body {"ids":["..."]}: {"count":n}
//	POST {prefix}/api/{kind}/send-now           body {"ids":["..."]}: {"count":n,"skipped":[{"id":"...","reason":"..."}]}
//	POST {prefix}/api/{kind}/cancel             body {"ids":["..."]}: {"count":n,"skipped":[...]}
//
// {kind} is published or received. A message has "policy" when its row
// stores a retry policy, and "next_attempt_at" is a Delayed message's due
// time. Errors are {"error":"..."} with a 4xx or 5xx status.
//
// # Security
//
// Without Options.Authorize the dashboard serves only clients on a loopback
// address, and says so on every page. It also refuses, with 403, every
// request that carries a proxy header (Forwarded, X-Forwarded-For,
// X-Real-IP), even from loopback: behind a reverse proxy on the same host
// (nginx → 127.0.0.1) every request arrives from loopback, including those
// from the internet. And it refuses, with 403, every request whose Host
// is not localhost (in any case) or a loopback IP literal (127.0.0.0/8,
// ::1), with or without a port. A web page on attacker.example whose name
// is re-bound to 127.0.0.1 (DNS rebinding) is same-origin with itself, so
// the browser would let it read the dashboard and post actions from
// loopback; its requests say Host: attacker.example. Any other name that
// resolves to 127.0.0.1 is refused too, names under .localhost included:
// RFC 6761 reserves them for loopback, but not every browser and resolver
// keeps them off DNS, which a hostile network's resolver could answer.
// Set Authorize to serve the dashboard through a proxy or under another
// name. With it, every request is checked.
// Requests that change something are POSTs, refused when they come from
// another origin (net/http.CrossOriginProtection: Sec-Fetch-Site and
// Origin). Message content is escaped by html/template, and the Content
// Security Policy allows no inline script. Every action (requeue, delete, send
// now, cancel) is logged with the user Authorize returned, the ids, the
// number of rows changed and the ids left alone.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gocap/gocap/storage"
)

//go:embed assets templates
var files embed.FS

// Source is what the dashboard reads and acts on. *outbox.Outbox satisfies
// it.
type Source interface {
	// Store returns the storage the processors use.
	Store() storage.Store
	// Wake tells the local processor that rows of kind became due.
	Wake(kind storage.Kind)
}

// Options configure a [Handler].
type Options struct {
	// Prefix is the path the handler is mounted at, such as "/gocap". All
	// links and assets use it.
	Prefix string
	// Authorize, if set, is called for every request: it returns the user's
	// name, or an error to refuse the request (401). Without it, only
	// loopback clients are served, and not through a proxy (requests with
	// a Forwarded, X-Forwarded-For or X-Real-IP header are refused), and
	// only under a loopback host name (localhost, or a loopback IP such as
	// 127.0.0.1 or [::1]: other Host headers are refused, against DNS
	// rebinding).
	Authorize func(r *http.Request) (user string, err error)
	// Logger receives the audit log of actions. Nil means slog.Default().
	Logger *slog.Logger
	// PageSize is the number of messages per list page. Zero means 50.
	PageSize int
}

// Handler serves the dashboard.
type Handler struct {
	src   Source
	opts  Options
	log   *slog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux
	root  http.Handler
}

// New returns the dashboard of src.
func New(src Source, opts Options) *Handler {
	opts.Prefix = "/" + strings.Trim(opts.Prefix, "/")
	if opts.Prefix == "/" {
		opts.Prefix = ""
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 50
	}
	h := &Handler{src: src, opts: opts, log: opts.Logger, pages: map[string]*template.Template{}}
	funcs := template.FuncMap{
		"prefix": func() string { return opts.Prefix },
		"time":   fmtTime,
		"ago":    ago,
		"dur":    fmtDuration,
		// statuses are those a table's rows can have: no Delayed received rows.
		"statuses": func(kind string) []storage.Status {
			if kind == "received" {
				return slices.DeleteFunc(slices.Clone(storage.Statuses), func(s storage.Status) bool { return s == storage.StatusDelayed })
			}
			return storage.Statuses
		},
		"count":         func(counts map[string]int64, s storage.Status) int64 { return counts[string(s)] },
		"estimated":     func(st stats, kind string, s storage.Status) bool { return st.estimated(kind, s) },
		"estimateTitle": func() string { return estimateTitle },
		"firstLine":     firstLine,
		"attempts":      newestFirst,
		"id":            func(id int64) string { return strconv.FormatInt(id, 10) },
		"kinds":         func() []string { return []string{"published", "received"} },
		"add":           func(a, b int) int { return a + b },
		// subtract is for pipelines: {{120 | subtract .H}} is 120 - .H.
		"subtract": func(a, b int) int { return b - a },
		"mod":      func(a, b int) int { return a % b },
	}
	for _, page := range []string{"overview", "list", "detail", "error", "keys"} {
		h.pages[page] = template.Must(template.New("layout.html").Funcs(funcs).
			ParseFS(files, "templates/layout.html", "templates/"+page+".html"))
	}
	assets, _ := fs.Sub(files, "assets")
	m := http.NewServeMux()
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(assets)))
	m.HandleFunc("GET /{$}", h.overview)
	m.HandleFunc("GET /api/stats", h.apiStats)
	m.HandleFunc("GET /api/histogram", h.apiHistogram)
	m.HandleFunc("GET /keys", h.keys)        // blocked ordering keys (#18), keys.go
	m.HandleFunc("GET /api/keys", h.apiKeys) // the same, as JSON
	for _, kind := range []string{"published", "received"} {
		// The table is a path value for the handlers, but a literal in the
		// patterns, so that they do not overlap /static/ and /api/.
		with := func(f http.HandlerFunc) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				r.SetPathValue("kind", kind)
				f(w, r)
			}
		}
		m.HandleFunc("GET /"+kind, with(h.list))
		m.HandleFunc("GET /"+kind+"/{id}", with(h.detail))
		m.HandleFunc("GET /api/"+kind, with(h.apiList))
		m.HandleFunc("GET /api/"+kind+"/{id}", with(h.apiGet))
		for _, a := range h.actions() {
			m.HandleFunc("POST /"+kind+"/"+a.name, with(h.formAction(a)))
			m.HandleFunc("POST /api/"+kind+"/"+a.name, with(h.apiAction(a)))
		}
	}
	h.mux = m
	var root http.Handler = m
	if opts.Prefix != "" {
		root = http.StripPrefix(opts.Prefix, m)
	}
	h.root = new(http.CrossOriginProtection).Handler(root)
	return h
}

type userKey struct{}

// ServeHTTP checks who is asking, sets the security headers and serves.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	user := "loopback"
	if h.opts.Authorize != nil {
		u, err := h.opts.Authorize(r)
		if err != nil {
			http.Error(w, "unauthorized: "+err.Error(), http.StatusUnauthorized)
			return
		}
		user = u
	} else if !isLoopback(r.RemoteAddr) {
		http.Error(w, "forbidden: the gocap dashboard has no Authorize function and serves only loopback clients", http.StatusForbidden)
		return
	} else if p := proxyHeader(r); p != "" {
		http.Error(w, "forbidden: the gocap dashboard has no Authorize function, and this request came through a proxy ("+p+
			" header): behind a proxy every client looks like loopback, so set dashboard.Options.Authorize to serve it there",
			http.StatusForbidden)
		return
	} else if !isLocalHost(r.Host) {
		http.Error(w, fmt.Sprintf("forbidden: the gocap dashboard has no Authorize function and serves only requests for a loopback "+
			"host name (localhost, or a loopback IP such as 127.0.0.1 or [::1]), not %q: a web page whose name was re-bound to 127.0.0.1 "+
			"(DNS rebinding) would send such requests; set dashboard.Options.Authorize to serve it under another name", r.Host),
			http.StatusForbidden)
		return
	}
	h.root.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
}

// proxyHeader returns the name of a header a reverse proxy adds, if r has one.
func proxyHeader(r *http.Request) string {
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Real-Ip"} {
		if _, ok := r.Header[h]; ok {
			return h
		}
	}
	return ""
}

// isLocalHost reports whether host, a request's Host (with or without a
// port), names this machine in a way no DNS server can change: localhost,
// in any case (browsers and the hosts file answer it), or a loopback IP
// literal (127.0.0.0/8, ::1). Any other name is refused, even one that
// resolves to 127.0.0.1: that is how DNS rebinding reaches loopback.
// Names under .localhost are refused too, as not every resolver keeps
// them off DNS.
func isLocalHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1] // "[::1]" without a port
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().IsLoopback()
	}
	return strings.EqualFold(host, "localhost")
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func userOf(r *http.Request) string {
	u, _ := r.Context().Value(userKey{}).(string)
	return u
}

func kindOf(r *http.Request) (storage.Kind, bool) {
	switch r.PathValue("kind") {
	case "published":
		return storage.Published, true
	case "received":
		return storage.Received, true
	}
	return 0, false
}

// filterOf reads the list filter from the query string.
func (h *Handler) filterOf(r *http.Request, kind storage.Kind) (storage.Filter, error) {
	q := r.URL.Query()
	f := storage.Filter{
		Kind: kind, Status: storage.Status(q.Get("status")), Name: q.Get("name"), Group: q.Get("group"),
		MsgID: q.Get("msgid"), Content: q.Get("content"), Version: q.Get("version"), Limit: h.opts.PageSize,
	}
	if f.Status != "" && !f.Status.Valid() {
		return f, fmt.Errorf("unknown status %q (want one of %v)", f.Status, storage.Statuses)
	}
	if b := q.Get("before"); b != "" {
		id, err := strconv.ParseInt(b, 10, 64)
		if err != nil || id <= 0 {
			return f, fmt.Errorf("parameter before=%q is not a message id", b)
		}
		f.BeforeID = id
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 || n > 1000 {
			return f, fmt.Errorf("parameter limit=%q must be 1..1000", l)
		}
		f.Limit = n
	}
	return f, nil
}

// chartBar is one minute of the overview chart.
type chartBar struct {
	Label                     string
	X                         int
	Sent, Received, Failed    int64
	SentH, ReceivedH, FailedH int
}

const chartHeight = 120

// chart builds the last hour's per-minute bars from the two histograms.
func chart(pub, rec []storage.HistogramBucket, now time.Time) []chartBar {
	start := now.Truncate(time.Minute).Add(-59 * time.Minute)
	bars := make([]chartBar, 60)
	for i := range bars {
		bars[i].X = i * 12
		bars[i].Label = start.Add(time.Duration(i) * time.Minute).Format("15:04")
	}
	idx := func(t time.Time) int { return int(t.Sub(start) / time.Minute) }
	for _, b := range pub {
		if i := idx(b.Start); i >= 0 && i < 60 {
			switch b.Status {
			case storage.StatusSucceeded:
				bars[i].Sent += b.Count
			case storage.StatusFailed:
				bars[i].Failed += b.Count
			}
		}
	}
	for _, b := range rec {
		if i := idx(b.Start); i >= 0 && i < 60 {
			switch b.Status {
			case storage.StatusSucceeded:
				bars[i].Received += b.Count
			case storage.StatusFailed:
				bars[i].Failed += b.Count
			}
		}
	}
	var peak int64 = 1
	for _, b := range bars {
		peak = max(peak, b.Sent+b.Received+b.Failed)
	}
	for i := range bars {
		b := &bars[i]
		b.SentH = int(b.Sent * chartHeight / peak)
		b.ReceivedH = int(b.Received * chartHeight / peak)
		b.FailedH = int(b.Failed * chartHeight / peak)
	}
	return bars
}

// estimateTitle explains a count shown with "≈".
const estimateTitle = "The database's estimate, from its own statistics: counting these rows exactly would read most of the table. The other counts are exact."

type stats struct {
	Published map[string]int64 `json:"published"`
	Received  map[string]int64 `json:"received"`
	// Estimated has, for each table, every status, true for those whose
	// count is the database's estimate (storage.Counts.Estimated).
	Estimated map[string]map[string]bool `json:"estimated"`
	Instances []instanceJSON             `json:"instances"`
}

// estimated reports whether the count of status in kind's table is an
// estimate.
func (s stats) estimated(kind string, status storage.Status) bool {
	return s.Estimated[kind][string(status)]
}

type instanceJSON struct {
	ID       string    `json:"id"`
	Hostname string    `json:"hostname"`
	PID      int       `json:"pid"`
	Started  time.Time `json:"started"`
	LastSeen time.Time `json:"last_seen"`
}

// instanceWindow is how recent a heartbeat must be to count as running.
const instanceWindow = time.Minute

func (h *Handler) stats(ctx context.Context) (stats, error) {
	store := h.src.Store()
	s := stats{Estimated: map[string]map[string]bool{}}
	for _, t := range []struct {
		kind storage.Kind
		dst  *map[string]int64
	}{{storage.Published, &s.Published}, {storage.Received, &s.Received}} {
		counts, err := storage.CountsOf(ctx, store, t.kind)
		if err != nil {
			return s, err
		}
		*t.dst = map[string]int64{}
		est := map[string]bool{}
		for status, n := range counts.ByStatus {
			(*t.dst)[string(status)] = n
			est[string(status)] = counts.Estimated[status]
		}
		s.Estimated[t.kind.String()] = est
	}
	insts, err := store.Instances(ctx, time.Now().UTC().Add(-instanceWindow))
	if err != nil {
		return s, err
	}
	s.Instances = []instanceJSON{}
	for _, in := range insts {
		s.Instances = append(s.Instances, instanceJSON(in))
	}
	return s, nil
}

func (h *Handler) histograms(ctx context.Context) (pub, rec []storage.HistogramBucket, err error) {
	since := time.Now().UTC().Truncate(time.Minute).Add(-59 * time.Minute)
	store := h.src.Store()
	if pub, err = store.Histogram(ctx, storage.Published, since, time.Minute); err != nil {
		return nil, nil, err
	}
	rec, err = store.Histogram(ctx, storage.Received, since, time.Minute)
	return pub, rec, err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
