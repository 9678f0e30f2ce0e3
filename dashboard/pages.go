package dashboard

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gocap/gocap/storage"
)

// page is what every template gets.
type page struct {
	Title    string
	Section  string
	Loopback bool // no Authorize: loopback clients only
	User     string
	Done     string
	Data     any
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name, title, section string, data any) {
	var buf bytes.Buffer
	p := page{Title: title, Section: section, Loopback: h.opts.Authorize == nil, User: userOf(r), Done: r.URL.Query().Get("done"), Data: data}
	if err := h.pages[name].Execute(&buf, p); err != nil {
		h.log.Error("gocap dashboard: rendering a page failed", "page", name, "err", err)
		http.Error(w, "rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.render(w, r, status, "error", http.StatusText(status), "", msg)
}

type overviewData struct {
	Stats stats
	Bars  []chartBar
	Now   time.Time
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	s, err := h.stats(r.Context())
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	pub, rec, err := h.histograms(r.Context())
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	now := time.Now().UTC()
	h.render(w, r, http.StatusOK, "overview", "Overview", "overview", overviewData{Stats: s, Bars: chart(pub, rec, now), Now: now})
}

type listData struct {
	Kind     string
	Filter   storage.Filter
	Query    template.URL // the filter as a query string, without paging
	Messages []*storage.Message
	Next     template.URL // query string of the next page, or ""
	Statuses []storage.Status
}

func filterQuery(f storage.Filter) url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"status": string(f.Status), "name": f.Name, "group": f.Group, "msgid": f.MsgID, "content": f.Content} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	kind, ok := kindOf(r)
	if !ok {
		h.fail(w, r, http.StatusNotFound, "no such page")
		return
	}
	f, err := h.filterOf(r, kind)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	msgs, err := h.src.Store().List(r.Context(), f)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	d := listData{Kind: kind.String(), Filter: f, Query: template.URL(filterQuery(f).Encode()), Messages: msgs, Statuses: storage.Statuses}
	if len(msgs) == f.Limit {
		q := filterQuery(f)
		q.Set("before", strconv.FormatInt(msgs[len(msgs)-1].ID, 10))
		d.Next = template.URL(q.Encode())
	}
	title := "Published messages"
	if kind == storage.Received {
		title = "Received messages"
	}
	h.render(w, r, http.StatusOK, "list", title, kind.String(), d)
}

type detailData struct {
	Kind    string
	M       *storage.Message
	Headers [][2]string
	Body    string
	BodyFmt string // "json", "text" or "hex"
}

// showBody formats a body for people: indented JSON, text, or hex.
func showBody(b []byte) (string, string) {
	var out bytes.Buffer
	if json.Valid(b) && json.Indent(&out, b, "", "  ") == nil {
		return out.String(), "json"
	}
	if utf8.Valid(b) {
		return string(b), "text"
	}
	if len(b) > 4096 {
		return hex.Dump(b[:4096]) + "…", "hex (first 4096 bytes)"
	}
	return hex.Dump(b), "hex"
}

func (h *Handler) message(w http.ResponseWriter, r *http.Request) (storage.Kind, *storage.Message, int, error) {
	kind, ok := kindOf(r)
	if !ok {
		return 0, nil, http.StatusNotFound, errors.New("no such table")
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, nil, http.StatusBadRequest, errors.New("not a message id: " + r.PathValue("id"))
	}
	m, err := h.src.Store().Get(r.Context(), kind, id)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil, http.StatusNotFound, err
	}
	if err != nil {
		return 0, nil, http.StatusInternalServerError, err
	}
	return kind, m, 0, nil
}

func (h *Handler) detail(w http.ResponseWriter, r *http.Request) {
	kind, m, status, err := h.message(w, r)
	if err != nil {
		h.fail(w, r, status, err.Error())
		return
	}
	d := detailData{Kind: kind.String(), M: m}
	for k, v := range m.Headers {
		d.Headers = append(d.Headers, [2]string{k, v})
	}
	slices.SortFunc(d.Headers, func(a, b [2]string) int {
		if a[0] < b[0] {
			return -1
		}
		if a[0] > b[0] {
			return 1
		}
		return 0
	})
	d.Body, d.BodyFmt = showBody(m.Body)
	h.render(w, r, http.StatusOK, "detail", "Message "+strconv.FormatInt(m.ID, 10), kind.String(), d)
}

// messageJSON is a message in the JSON API.
type messageJSON struct {
	ID            string            `json:"id"`
	MsgID         string            `json:"msg_id"`
	Name          string            `json:"name"`
	Group         string            `json:"group,omitempty"`
	Status        storage.Status    `json:"status"`
	Retries       int               `json:"retries"`
	LastError     string            `json:"last_error,omitempty"`
	Added         time.Time         `json:"added"`
	NextAttemptAt time.Time         `json:"next_attempt_at"`
	ExpiresAt     *time.Time        `json:"expires_at,omitempty"`
	Headers       map[string]string `json:"headers"`
	Body          string            `json:"body"`
	BodyEncoding  string            `json:"body_encoding"` // "utf-8" or "hex"
}

func toJSON(m *storage.Message) messageJSON {
	j := messageJSON{
		ID: strconv.FormatInt(m.ID, 10), MsgID: m.MsgID, Name: m.Name, Group: m.Group, Status: m.Status,
		Retries: m.Retries, LastError: m.LastError, Added: m.Added, NextAttemptAt: m.NextAttemptAt, Headers: m.Headers,
	}
	if !m.ExpiresAt.IsZero() {
		t := m.ExpiresAt
		j.ExpiresAt = &t
	}
	if utf8.Valid(m.Body) {
		j.Body, j.BodyEncoding = string(m.Body), "utf-8"
	} else {
		j.Body, j.BodyEncoding = hex.EncodeToString(m.Body), "hex"
	}
	return j
}

func (h *Handler) apiStats(w http.ResponseWriter, r *http.Request) {
	s, err := h.stats(r.Context())
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (h *Handler) apiHistogram(w http.ResponseWriter, r *http.Request) {
	pub, rec, err := h.histograms(r.Context())
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err.Error())
		return
	}
	type bucket struct {
		Start  time.Time      `json:"start"`
		Status storage.Status `json:"status"`
		Count  int64          `json:"count"`
	}
	conv := func(bs []storage.HistogramBucket) []bucket {
		out := []bucket{}
		for _, b := range bs {
			out = append(out, bucket(b))
		}
		return out
	}
	writeJSON(w, http.StatusOK, map[string]any{"published": conv(pub), "received": conv(rec)})
}

func (h *Handler) apiList(w http.ResponseWriter, r *http.Request) {
	kind, ok := kindOf(r)
	if !ok {
		jsonError(w, http.StatusNotFound, "no such table: "+r.PathValue("kind"))
		return
	}
	f, err := h.filterOf(r, kind)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	msgs, err := h.src.Store().List(r.Context(), f)
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := struct {
		Messages []messageJSON `json:"messages"`
		Next     string        `json:"next"`
	}{Messages: []messageJSON{}}
	for _, m := range msgs {
		out.Messages = append(out.Messages, toJSON(m))
	}
	if len(msgs) == f.Limit {
		out.Next = strconv.FormatInt(msgs[len(msgs)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) apiGet(w http.ResponseWriter, r *http.Request) {
	_, m, status, err := h.message(w, r)
	if err != nil {
		jsonError(w, status, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, toJSON(m))
}

// apiAction runs an action posted as JSON.
func (h *Handler) apiAction(a action) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		kind, ok := kindOf(r)
		if !ok {
			jsonError(w, http.StatusNotFound, "no such table: "+r.PathValue("kind"))
			return
		}
		var req struct {
			IDs       []string `json:"ids"`
			AllFailed bool     `json:"all_failed"`
			Filter    struct {
				Name, Group, Content string
				MsgID                string `json:"msg_id"`
			} `json:"filter"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
			jsonError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
			return
		}
		idList, err := parseIDs(req.IDs)
		if err != nil {
			jsonError(w, http.StatusBadRequest, err.Error())
			return
		}
		if !req.AllFailed && len(idList) == 0 {
			jsonError(w, http.StatusBadRequest, `give "ids" or "all_failed": true`)
			return
		}
		f := storage.Filter{Kind: kind, Name: req.Filter.Name, Group: req.Filter.Group, Content: req.Filter.Content, MsgID: req.Filter.MsgID}
		n, err := a(r.Context(), kind, idList, req.AllFailed, f)
		h.audit(r, kind, idList, req.AllFailed, n, err)
		if err != nil {
			jsonError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]int64{"count": n})
	}
}
