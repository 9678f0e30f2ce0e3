package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gocap/gocap/storage"
)

// Actions change rows: requeue and delete act on any row (requeue leaves a
// row in flight alone, as Store.Requeue does); send-now and cancel act only
// on Delayed rows and leave every other one alone, reporting it as skipped.

// requeueAllBatch bounds one List/Requeue round of "requeue all Failed".
const requeueAllBatch = 500

// maxGuardedIDs bounds the ids of one send-now or cancel, which reads each
// row before it acts.
const maxGuardedIDs = 1000

// dueMargin: send-now and cancel leave alone a Delayed row due sooner than
// this. A processor claims a due Delayed row at any moment (and its clock
// may run a little ahead of ours), making it Scheduled and then Succeeded
// or Failed; Store.Requeue and Store.Delete have no status guard, so acting
// on a row that is about to be claimed could send a message twice or
// delete one being sent. A row that near its due time is being sent anyway.
const dueMargin = 5 * time.Second

// result is what an action did: how many rows it changed, and the rows a
// send-now or cancel left alone, with why.
type result struct {
	Count   int64
	Skipped []skip
}

// skip is a row an action left alone.
type skip struct {
	ID     int64
	Reason string
}

// action is a requeue, delete, send-now or cancel of ids, or (requeue only)
// of all Failed rows matching f.
type action struct {
	name string // the last path segment: requeue, delete, send-now, cancel
	// all reports whether the action takes all_failed with a filter.
	all bool
	// guarded: the action reads each row first and acts only on Delayed ones.
	guarded bool
	run     func(ctx context.Context, kind storage.Kind, ids []int64, all bool, f storage.Filter) (result, error)
}

func (h *Handler) actions() []action {
	return []action{
		{name: "requeue", all: true, run: h.requeue},
		{name: "delete", run: h.delete},
		{name: "send-now", guarded: true, run: h.sendNow},
		{name: "cancel", guarded: true, run: h.cancel},
	}
}

func (h *Handler) requeue(ctx context.Context, kind storage.Kind, idList []int64, all bool, f storage.Filter) (result, error) {
	store := h.src.Store()
	var total int64
	if all {
		f.Status, f.BeforeID, f.Limit = storage.StatusFailed, 0, requeueAllBatch
		for range 10_000 { // bounded: at most 5,000,000 rows per click
			rows, err := store.List(ctx, f)
			if err != nil {
				return result{Count: total}, err
			}
			if len(rows) == 0 {
				break
			}
			batch := make([]int64, len(rows))
			for i, m := range rows {
				batch[i] = m.ID
			}
			n, err := store.Requeue(ctx, kind, batch, time.Now().UTC())
			total += n
			if err != nil {
				return result{Count: total}, err
			}
			f.BeforeID = rows[len(rows)-1].ID
		}
	} else {
		n, err := store.Requeue(ctx, kind, idList, time.Now().UTC())
		if err != nil {
			return result{Count: n}, err
		}
		total = n
	}
	h.src.Wake(kind)
	return result{Count: total}, nil
}

func (h *Handler) delete(ctx context.Context, kind storage.Kind, idList []int64, _ bool, _ storage.Filter) (result, error) {
	n, err := h.src.Store().Delete(ctx, kind, idList)
	return result{Count: n}, err
}

// sendNow makes Delayed rows Scheduled and due now, keeping their policy.
func (h *Handler) sendNow(ctx context.Context, kind storage.Kind, idList []int64, _ bool, _ storage.Filter) (result, error) {
	ok, skipped, err := h.delayedOnly(ctx, kind, idList)
	if err != nil || len(ok) == 0 {
		return result{Skipped: skipped}, err
	}
	n, err := h.src.Store().Requeue(ctx, kind, ok, time.Now().UTC())
	if err == nil {
		h.src.Wake(kind)
	}
	return result{Count: n, Skipped: skipped}, err
}

// cancel deletes Delayed rows: the messages are never sent.
func (h *Handler) cancel(ctx context.Context, kind storage.Kind, idList []int64, _ bool, _ storage.Filter) (result, error) {
	ok, skipped, err := h.delayedOnly(ctx, kind, idList)
	if err != nil || len(ok) == 0 {
		return result{Skipped: skipped}, err
	}
	n, err := h.src.Store().Delete(ctx, kind, ok)
	return result{Count: n, Skipped: skipped}, err
}

// delayedOnly splits ids into the rows that are Delayed and due later than
// dueMargin from now, and the others.
func (h *Handler) delayedOnly(ctx context.Context, kind storage.Kind, idList []int64) ([]int64, []skip, error) {
	store := h.src.Store()
	limit := time.Now().UTC().Add(dueMargin)
	var ok []int64
	var skipped []skip
	seen := map[int64]bool{}
	for _, id := range idList {
		if seen[id] {
			continue
		}
		seen[id] = true
		m, err := store.Get(ctx, kind, id)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			skipped = append(skipped, skip{id, "not found"})
		case err != nil:
			return nil, nil, err
		case m.Status != storage.StatusDelayed:
			skipped = append(skipped, skip{id, string(m.Status) + ", not Delayed"})
		case m.NextAttemptAt.Before(limit):
			skipped = append(skipped, skip{id, "due now: it is being sent"})
		default:
			ok = append(ok, id)
		}
	}
	return ok, skipped, nil
}

func parseIDs(ss []string) ([]int64, error) {
	out := make([]int64, 0, len(ss))
	for _, s := range ss {
		id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a message id", s)
		}
		out = append(out, id)
	}
	return out, nil
}

// checkIDs refuses a request the action does not take.
func checkIDs(a action, idList []int64, all bool) error {
	switch {
	case all && !a.all:
		return fmt.Errorf("%s takes ids, not all_failed", a.name)
	case !all && len(idList) == 0:
		return errors.New("select at least one message")
	case a.guarded && len(idList) > maxGuardedIDs:
		return fmt.Errorf("%s takes at most %d ids at a time", a.name, maxGuardedIDs)
	}
	return nil
}

// formAction runs an action posted by a page form and redirects back.
func (h *Handler) formAction(a action) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		kind, ok := kindOf(r)
		if !ok {
			h.fail(w, r, http.StatusNotFound, "no such table")
			return
		}
		if err := r.ParseForm(); err != nil {
			h.fail(w, r, http.StatusBadRequest, err.Error())
			return
		}
		idList, err := parseIDs(r.PostForm["id"])
		if err != nil {
			h.fail(w, r, http.StatusBadRequest, err.Error())
			return
		}
		all := r.PostForm.Get("all_failed") == "1"
		if err := checkIDs(a, idList, all); err != nil {
			h.fail(w, r, http.StatusBadRequest, err.Error())
			return
		}
		fr := r.Clone(r.Context())
		fr.URL.RawQuery = r.PostForm.Get("filter")
		f, err := h.filterOf(fr, kind)
		if err != nil {
			h.fail(w, r, http.StatusBadRequest, err.Error())
			return
		}
		res, err := a.run(r.Context(), kind, idList, all, f)
		h.audit(r, a.name, kind, idList, all, res, err)
		if err != nil {
			h.fail(w, r, http.StatusInternalServerError, err.Error())
			return
		}
		back := r.PostForm.Get("back")
		if !strings.HasPrefix(back, h.opts.Prefix+"/") || strings.HasPrefix(back, "//") {
			back = h.opts.Prefix + "/" + kind.String()
		}
		gone := a.name == "delete" || (a.name == "cancel" && res.Count > 0)
		if gone && strings.Contains(back, "/"+kind.String()+"/") {
			back = h.opts.Prefix + "/" + kind.String()
		}
		q := url.Values{"done": {a.name + " " + strconv.FormatInt(res.Count, 10)}}
		if len(res.Skipped) > 0 {
			q.Set("skipped", skipText(res.Skipped))
		}
		sep := "?"
		if strings.Contains(back, "?") {
			sep = "&"
		}
		http.Redirect(w, r, back+sep+q.Encode(), http.StatusSeeOther)
	}
}

// skipText tells people which rows an action left alone, and why.
func skipText(skipped []skip) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d message(s) left alone", len(skipped))
	for i, s := range skipped {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(skipped)-i)
			break
		}
		sep := ": "
		if i > 0 {
			sep = "; "
		}
		fmt.Fprintf(&b, "%s%d (%s)", sep, s.ID, s.Reason)
	}
	return b.String()
}

func (h *Handler) audit(r *http.Request, name string, kind storage.Kind, idList []int64, all bool, res result, err error) {
	attrs := []any{"user", userOf(r), "action", name, "table", kind.String(), "ids", idList,
		"all_failed", all, "rows", res.Count, "remote", r.RemoteAddr}
	if len(res.Skipped) > 0 {
		ids := make([]int64, len(res.Skipped))
		for i, s := range res.Skipped {
			ids[i] = s.ID
		}
		attrs = append(attrs, "skipped", ids)
	}
	if err != nil {
		h.log.Error("gocap dashboard: action failed", append(attrs, "err", err)...)
		return
	}
	h.log.Info("gocap dashboard: action", attrs...)
}
