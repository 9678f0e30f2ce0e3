package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// The claim and NextDue read the partial *_pending_version index, with the
// SQLite this driver embeds (QUERY_PLANS.md shows the plans on 1,000,000
// rows with the sqlite3 CLI): no table scan, no sort.
func TestClaimAndNextDueUsePendingIndex(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "plan.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	d := New(db, Options{})
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, query, index string
		args               []any
	}{
		{"claim published", d.q.Published.claimSQL(0, true), "gocap_published_pending_version", []any{2, 7, 1, 1, "v1", 1, 500}},
		{"claim received by group", d.q.Received.claimSQL(2, false), "gocap_received_pending_version", []any{2, 7, 1, 1, "v1", "a", "b", 1, 500}},
		// The check of ordering keys (#18) reads the *_key index, the
		// key's version (issue #17) included in the search.
		{"claim published: keys", d.q.Published.claimSQL(0, false), "gocap_published_key (ordering_key=? AND version=? AND id<?)", []any{2, 7, 1, 1, "v1", 1, 500}},
		{"claim received: keys", d.q.Received.claimSQL(2, true), "gocap_received_key (ordering_key=? AND grp=? AND version=? AND id<?)", []any{2, 7, 1, 1, "v1", "a", "b", 1, 500}},
		// The check that no row of the key is in flight: one search.
		{"claim published: leases", d.q.Published.claimSQL(0, false), "gocap_published_key_lease (ordering_key=? AND version=? AND lease_until>?)", []any{2, 7, 1, 1, "v1", 1, 500}},
		{"claim received: leases", d.q.Received.claimSQL(2, true), "gocap_received_key_lease (ordering_key=? AND grp=? AND version=? AND lease_until>?)", []any{2, 7, 1, 1, "v1", "a", "b", 1, 500}},
		{"next due published", d.q.Published.nextDue, "gocap_published_pending_version", []any{1, "v1"}},
		{"next due received", d.q.Received.nextDue, "gocap_received_pending_version", []any{1, "v1"}},
	} {
		rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+c.query, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		all := strings.Join(plan, "\n")
		if !strings.Contains(all, "USING INDEX "+c.index) || strings.Contains(all, "SCAN ") || strings.Contains(all, "TEMP B-TREE") {
			t.Errorf("%s: plan\n%s\nwant a search of %s, no scan or sort", c.name, all, c.index)
		}
		if testing.Verbose() {
			t.Logf("%s:\n%s", c.name, all)
		}
	}
}
