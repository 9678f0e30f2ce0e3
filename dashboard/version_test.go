package dashboard_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gocap/gocap/dashboard"
	"github.com/gocap/gocap/outbox"
	"github.com/gocap/gocap/storage/sqlite"
	"github.com/gocap/gocap/transport/memory"
)

// The dashboard shows a row's version (outbox.Options.Version) on its
// page and in the JSON API, and lists the rows of one version.
func TestVersionShownAndFiltered(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "dash.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store := sqlite.New(db, sqlite.Options{})
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ids := map[string]int64{}
	var v1 *outbox.Outbox[*sql.Tx]
	for _, v := range []string{"v1", "v2"} {
		ob, err := outbox.New(store, memory.New(memory.Options{}), outbox.Options{Logger: quiet, Version: v})
		if err != nil {
			t.Fatal(err)
		}
		if v == "v1" {
			v1 = ob
		}
		if ids[v], err = ob.PublishWithoutTx(ctx, "order.paid", map[string]string{"from": v}); err != nil {
			t.Fatal(err)
		}
	}
	h := dashboard.New(v1, dashboard.Options{})
	one, two := strconv.FormatInt(ids["v1"], 10), strconv.FormatInt(ids["v2"], 10)

	w := serve(t, h, http.MethodGet, "/published/"+two, nil, nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "<dt>Version</dt><dd>v2</dd>") {
		t.Errorf("detail page of a v2 row: %d, without its version:\n%s", w.Code, w.Body.String())
	}
	w = serve(t, h, http.MethodGet, "/published?version=v1", nil, nil)
	if body := w.Body.String(); w.Code != 200 || !strings.Contains(body, "/published/"+one) || strings.Contains(body, "/published/"+two) ||
		!strings.Contains(body, `name="version" value="v1"`) {
		t.Errorf("list of version v1: %d, want row %s only and the filter kept:\n%s", w.Code, one, body)
	}
	w = serve(t, h, http.MethodGet, "/api/published?version=v2", nil, nil)
	var page struct {
		Messages []struct{ ID, Version string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || len(page.Messages) != 1 || page.Messages[0].ID != two || page.Messages[0].Version != "v2" {
		t.Errorf("API list of version v2: %s (%v), want row %s with its version", w.Body.String(), err, two)
	}
}
