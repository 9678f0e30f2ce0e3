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
	Skipped  string // rows the last action left alone, and why
	Data     any
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name, title, section string, data any) {
	var buf bytes.Buffer
	p := page{Title: title, Section: section, Loopback: h.opts.Authorize == nil, User: userOf(r), Done: r.URL.Query().Get("done"),
		Skipped: r.URL.Query().Get("skipped"), Data: data}
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
}

func filterQuery(f storage.Filter) url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"status": string(f.Status), "name": f.Name, "group": f.Group, "msgid": f.MsgID, "content": f.Content, "version": f.Version} {
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
	d := listData{Kind: kind.String(), Filter: f, Query: template.URL(filterQuery(f).Encode()), Messages: msgs}
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
