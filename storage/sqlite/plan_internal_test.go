package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The claim and NextDue read the partial *_pending_unkeyed and
// *_pending_keyed indexes, and the claim finds the heads of ordering keys
// with searches of *_key and *_key_lease (#18), with the SQLite this
// driver embeds (QUERY_PLANS.md shows the plans on a big table with the
// sqlite3 CLI): no table scan, no automatic index, no sort but that of
// the claim's candidates. Each statement is explained as the driver runs
// it, with placeholders, and with its arguments written in as literals:
// the planner's choices differ between the two (a join of the keys with
// the table once read every pending row of the status index).
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
	pub := []any{1, "v1", 500}
	rec := []any{1, "v1", 500, "a", "b"}
	lease := []any{2, 7, 1, "[10,11,12]"}
	next := []any{1, "v1", 500, "[10,11,12]"}
	for _, c := range []struct {
		name, query string
		indexes     []string
		args        []any
		sorts       int
	}{
		{"claim published", d.q.Published.candidatesSQL(0, true), []string{
			"gocap_published_pending_unkeyed (version=? AND next_attempt_at<?)",
			// the loose scan of the keys, one search from each to the next
			"gocap_published_key (ordering_key>?)",
			"SEARCH n USING INTEGER PRIMARY KEY (rowid=?)",
			// the head of each key, its version (issue #17) in the search
			"gocap_published_key (ordering_key=? AND version=?)",
			"SEARCH h USING INTEGER PRIMARY KEY (rowid=?)",
			// no row of the key in flight: one search
			"gocap_published_key_lease (ordering_key=? AND version=? AND lease_until>?)",
		}, pub, 1},
		{"claim published, skip", d.q.Published.candidatesSQL(0, false), []string{
			"gocap_published_pending_unkeyed (version=? AND next_attempt_at<?)",
			"gocap_published_key (ordering_key=? AND version=?)",
			"gocap_published_key_lease (ordering_key=? AND version=? AND lease_until>?)",
		}, pub, 1},
		{"claim received by group", d.q.Received.candidatesSQL(2, false), []string{
			"gocap_received_pending_unkeyed (version=? AND next_attempt_at<?)",
			// the next group of a key, else the next key
			"gocap_received_key (ordering_key=? AND grp>?)",
			"gocap_received_key (ordering_key>?)",
			"SEARCH n USING INTEGER PRIMARY KEY (rowid=?)",
			"gocap_received_key (ordering_key=? AND grp=? AND version=?)",
			"SEARCH h USING INTEGER PRIMARY KEY (rowid=?)",
			"gocap_received_key_lease (ordering_key=? AND grp=? AND version=? AND lease_until>?)",
		}, rec, 1},
		{"claim received by one group", d.q.Received.candidatesSQL(1, true), []string{
			"gocap_received_pending_unkeyed (version=? AND next_attempt_at<?)",
			"SEARCH n USING INTEGER PRIMARY KEY (rowid=?)",
			"gocap_received_key (ordering_key=? AND grp=? AND version=?)",
			"SEARCH h USING INTEGER PRIMARY KEY (rowid=?)",
			"gocap_received_key_lease (ordering_key=? AND grp=? AND version=? AND lease_until>?)",
		}, rec[:4], 1},
		{"claim received, all groups", d.q.Received.candidatesSQL(0, true), []string{
			"gocap_received_pending_unkeyed (version=? AND next_attempt_at<?)",
			"gocap_received_key (ordering_key=? AND grp=? AND version=?)",
		}, rec[:3], 1},
		// The lease of the candidates: by rowid, each keyed row checked
		// again with a search of *_key and one of *_key_lease.
		{"lease published", d.q.Published.leaseSQL(true), []string{
			"SEARCH gocap_published USING INTEGER PRIMARY KEY (rowid=?)",
			"gocap_published_key (ordering_key=? AND version=? AND id<?)",
			"gocap_published_key_lease (ordering_key=? AND version=? AND lease_until>?)",
		}, lease, 0},
		{"lease received", d.q.Received.leaseSQL(false), []string{
			"SEARCH gocap_received USING INTEGER PRIMARY KEY (rowid=?)",
			"gocap_received_key (ordering_key=? AND grp=? AND version=? AND id<?)",
			"gocap_received_key_lease (ordering_key=? AND grp=? AND version=? AND lease_until>?)",
		}, lease, 0},
		// The heads of the keys of the rows of a Succeed: each row by
		// rowid, its key and group made distinct (a sort of those few
		// rows), then the searches of the claim's heads.
		{"next of keys published", d.q.Published.nextCandidatesSQL(0, true), []string{
			"SEARCH gocap_published USING INTEGER PRIMARY KEY (rowid=?)",
			"gocap_published_key (ordering_key=? AND version=?)",
			"SEARCH h USING INTEGER PRIMARY KEY (rowid=?)",
			"gocap_published_key_lease (ordering_key=? AND version=? AND lease_until>?)",
		}, next, 2},
		{"next of keys received by group", d.q.Received.nextCandidatesSQL(2, false), []string{
			"SEARCH gocap_received USING INTEGER PRIMARY KEY (rowid=?)",
			"gocap_received_key (ordering_key=? AND grp=? AND version=?)",
			"SEARCH h USING INTEGER PRIMARY KEY (rowid=?)",
			"gocap_received_key_lease (ordering_key=? AND grp=? AND version=? AND lease_until>?)",
		}, append(slices.Clone(next), "a", "b"), 2},
		{"next due published", d.q.Published.nextDue, []string{
			"gocap_published_pending_unkeyed (version=? AND next_attempt_at>?)",
			"gocap_published_pending_keyed (version=? AND next_attempt_at>?)",
		}, []any{1, "v1"}, 0},
		{"next due received", d.q.Received.nextDue, []string{
			"gocap_received_pending_unkeyed (version=? AND next_attempt_at>?)",
			"gocap_received_pending_keyed (version=? AND next_attempt_at>?)",
		}, []any{1, "v1"}, 0},
	} {
		for _, form := range []string{"placeholders", "literals"} {
			query, args := c.query, c.args
			if form == "literals" {
				query, args = literal(c.query, c.args), nil
			}
			all := explain(ctx, t, db, query, args)
			for _, index := range c.indexes {
				if !strings.Contains(all, index) {
					t.Errorf("%s, %s: plan\n%s\nwant %s", c.name, form, all, index)
				}
			}
			for _, line := range strings.Split(all, "\n") {
				scan, _ := strings.CutPrefix(line, "SCAN ")
				if scan != line && scan != "k" && !strings.HasPrefix(scan, "(subquery-") && scan != "CONSTANT ROW" &&
					!strings.HasPrefix(scan, "json_each VIRTUAL TABLE") ||
					strings.Contains(line, "AUTOMATIC") || strings.Contains(line, "_status") {
					t.Errorf("%s, %s: plan\n%s\nhas %q: want searches only", c.name, form, all, line)
				}
			}
			if n := strings.Count(all, "TEMP B-TREE"); n != c.sorts || strings.Contains(all, "FOR IN-OPERATOR") {
				t.Errorf("%s, %s: plan\n%s\nhas %d sorts, want %d (the claim's candidates; the keys of a Succeed)", c.name, form, all, n, c.sorts)
			}
			if testing.Verbose() {
				t.Logf("%s, %s:\n%s", c.name, form, all)
			}
		}
	}
}

// explain returns the lines of EXPLAIN QUERY PLAN of query.
func explain(ctx context.Context, t *testing.T, db *sql.DB, query string, args []any) string {
	t.Helper()
	rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("explaining %s: %v", query, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}

// literal is query with its numbered placeholders ?1, ?2... replaced by
// args written as SQL literals (ints and strings only).
func literal(query string, args []any) string {
	for i := len(args); i >= 1; i-- {
		v := fmt.Sprint(args[i-1])
		if s, ok := args[i-1].(string); ok {
			v = "'" + strings.ReplaceAll(s, "'", "''") + "'"
		}
		query = strings.ReplaceAll(query, "?"+strconv.Itoa(i), v)
	}
	return query
}
