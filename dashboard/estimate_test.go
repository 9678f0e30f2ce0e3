package dashboard_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gocap/gocap/dashboard"
	idgen "github.com/gocap/gocap/internal/ids"
	"github.com/gocap/gocap/internal/testenv"
	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/postgres"
)

// A count the store estimates (here PostgreSQL's, told to estimate
// Succeeded rows whatever the size of the table) is flagged in the JSON
// API and shown "≈" with a title on the overview; exact ones are plain.
func TestEstimatedCounts(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	schema := testenv.Name("gocap_dash_est")
	t.Cleanup(func() { pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); pool.Close() })
	store := postgres.New(pool, postgres.Options{Schema: schema, ExactCountLimit: -1})
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	gen, _ := idgen.NewGenerator(-1)
	now := time.Now().UTC()
	var msgs []*storage.Message
	for range 5 {
		msgs = append(msgs, &storage.Message{ID: gen.Next(), Kind: storage.Published, Name: "est", Headers: map[string]string{},
			Body: []byte("{}"), Status: storage.StatusScheduled, Added: now, NextAttemptAt: now})
	}
	if err := store.InsertPublished(ctx, msgs, storage.InsertOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := store.Claim(ctx, storage.Published, storage.ClaimRequest{Now: now, LeaseUntil: now.Add(time.Minute), Token: 7, Limit: 3})
	if err != nil || len(c) != 3 {
		t.Fatalf("Claim: %d %v", len(c), err)
	}
	var done []storage.Completed
	for _, m := range c {
		done = append(done, storage.Completed{Lease: storage.Lease{ID: m.ID, Token: 7}, Attempt: storage.Attempt{At: now}})
	}
	if _, err := store.Succeed(ctx, storage.Published, done, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, tb := range []string{"published", "received"} {
		if _, err := pool.Exec(ctx, "ANALYZE "+schema+"."+tb); err != nil {
			t.Fatal(err)
		}
	}
	h := dashboard.New(&storeSource{store: store}, dashboard.Options{})

	w := serve(t, h, "GET", "/api/stats", nil, nil)
	var s struct {
		Published map[string]int64           `json:"published"`
		Estimated map[string]map[string]bool `json:"estimated"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
		t.Fatalf("stats: %s (%v)", w.Body.String(), err)
	}
	if s.Published["Scheduled"] != 2 || s.Published["Succeeded"] != 3 {
		t.Errorf("published counts %v, want 2 Scheduled and (an estimate of) 3 Succeeded", s.Published)
	}
	for _, kind := range []string{"published", "received"} {
		for _, st := range storage.Statuses {
			want := st == storage.StatusSucceeded
			if got, ok := s.Estimated[kind][string(st)]; !ok || got != want {
				t.Errorf("estimated[%s][%s] = %v (present %v), want %v", kind, st, got, ok, want)
			}
		}
	}

	body := serve(t, h, "GET", "/", nil, nil).Body.String()
	for _, want := range []string{
		`data-count="published.Succeeded" href="/published?status=Succeeded" class="estimate" title="The database&#39;s estimate`,
		`>≈3</a>`,
		`data-count="published.Scheduled" href="/published?status=Scheduled">2</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if n := strings.Count(body, "≈"); n != 2 {
		t.Errorf("overview shows %d estimates, want 2 (Succeeded of both tables)", n)
	}
}
