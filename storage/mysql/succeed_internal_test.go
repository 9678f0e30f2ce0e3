package mysql

import (
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
)

// TestSucceedStatementForm checks which form of the Succeed statement a
// batch gets: a single-table update for up to maxSucceedGroups (token,
// attempt) groups — a plain one for one group, a CASE among them for
// more — and the join with a derived table beyond; and that every
// placeholder has its argument.
func TestSucceedStatementForm(t *testing.T) {
	q := newTableQueries("p_published", "CAST(id AS CHAR), ''", "ordering_key, version", publishedKey)
	at := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	batch := func(groups int) []storage.Completed {
		var out []storage.Completed
		for i := range 2 * groups {
			g := i % groups
			out = append(out, storage.Completed{Lease: storage.Lease{ID: int64(i + 1), Token: int64(g % 2)},
				Attempt: storage.Attempt{At: at, Duration: time.Duration(g) * time.Millisecond}})
		}
		return out
	}
	for _, c := range []struct {
		groups          int
		join, pickCases bool
	}{{1, false, false}, {3, false, true}, {maxSucceedGroups, false, true}, {maxSucceedGroups + 1, true, false}} {
		query, args := q.succeedStatement(batch(c.groups), "2026-12-07 03:00:00.000000")
		if got := strings.Contains(query, " JOIN ("); got != c.join {
			t.Errorf("%d groups: join %v, want %v: %s", c.groups, got, c.join, query)
		}
		if got := strings.Contains(query, "CASE WHEN id IN"); got != c.pickCases {
			t.Errorf("%d groups: CASE %v, want %v: %s", c.groups, got, c.pickCases, query)
		}
		if n := strings.Count(query, "?"); n != len(args) {
			t.Errorf("%d groups: %d placeholders, %d arguments: %s", c.groups, n, len(args), query)
		}
	}
}
