package dashboard

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gocap/gocap/storage"
)

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
	Policy        string            `json:"policy,omitempty"`
	OrderingKey   string            `json:"ordering_key,omitempty"`
	// Version is the row's version (outbox.Options.Version), empty for
	// none.
	Version string `json:"version,omitempty"`
	// Attempts is set in the detail only (GET {prefix}/api/{kind}/{id}),
	// newest first.
	Attempts *[]attemptJSON `json:"attempts,omitempty"`
}

// attemptJSON is one attempt in the JSON API.
type attemptJSON struct {
	At         time.Time `json:"at"`
	DurationMS float64   `json:"duration_ms"`
	Error      string    `json:"error"` // empty: it succeeded
}

func toJSON(m *storage.Message) messageJSON {
	j := messageJSON{
		ID: strconv.FormatInt(m.ID, 10), MsgID: m.MsgID, Name: m.Name, Group: m.Group, Status: m.Status,
		Retries: m.Retries, LastError: m.LastError, Added: m.Added, NextAttemptAt: m.NextAttemptAt, Headers: m.Headers,
		Policy: m.Policy, OrderingKey: m.OrderingKey, Version: m.Version,
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

// newestFirst returns a row's attempts, newest first (a Store keeps them
// oldest first).
func newestFirst(as []storage.Attempt) []storage.Attempt {
	out := slices.Clone(as)
	slices.Reverse(out)
	return out
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
	j := toJSON(m)
	attempts := []attemptJSON{}
	for _, a := range newestFirst(m.Attempts) {
		attempts = append(attempts, attemptJSON{At: a.At, DurationMS: float64(a.Duration.Microseconds()) / 1000, Error: a.Error})
	}
	j.Attempts = &attempts
	writeJSON(w, http.StatusOK, j)
}

// skipJSON is a row an action left alone.
type skipJSON struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
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
				Name, Group, Content, Version string
				MsgID                         string `json:"msg_id"`
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
			msg := `give "ids"`
			if a.all {
				msg = `give "ids" or "all_failed": true`
			}
			jsonError(w, http.StatusBadRequest, msg)
			return
		}
		if err := checkIDs(a, idList, req.AllFailed); err != nil {
			jsonError(w, http.StatusBadRequest, err.Error())
			return
		}
		f := storage.Filter{Kind: kind, Name: req.Filter.Name, Group: req.Filter.Group, Content: req.Filter.Content, MsgID: req.Filter.MsgID,
			Version: req.Filter.Version}
		res, err := a.run(r.Context(), kind, idList, req.AllFailed, f)
		h.audit(r, a.name, kind, idList, req.AllFailed, res, err)
		if err != nil {
			jsonError(w, http.StatusInternalServerError, err.Error())
			return
		}
		out := struct {
			Count   int64      `json:"count"`
			Skipped []skipJSON `json:"skipped,omitzero"`
		}{Count: res.Count}
		if a.guarded {
			out.Skipped = []skipJSON{}
		}
		for _, s := range res.Skipped {
			out.Skipped = append(out.Skipped, skipJSON{strconv.FormatInt(s.ID, 10), s.Reason})
		}
		writeJSON(w, http.StatusOK, out)
	}
}
