package mysql

import (
	"strings"
	"testing"
	"time"

	"github.com/gocap/gocap/storage"
)

// TestSucceedStatementForm checks the form of the Succeed statement,
// whatever the (token, attempt) groups of its batch: a single-table
// update read by primary key, each row's attempt picked by its id; and
// that every placeholder has its argument.
func TestSucceedStatementForm(t *testing.T) {
	q := newTableQueries("p_published", "CAST(id AS CHAR), ''", publishedKey)
	at := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	batch := func(rows, groups int) []storage.Completed {
		var out []storage.Completed
		for i := range rows {
			g := i % groups
			out = append(out, storage.Completed{Lease: storage.Lease{ID: int64(i + 1), Token: int64(g % 2)},
				Attempt: storage.Attempt{At: at, Duration: time.Duration(g) * time.Millisecond}})
		}
		return out
	}
	for _, c := range []struct{ rows, groups int }{{1, 1}, {6, 3}, {succeedBatch, succeedBatch}} {
		query, args := q.succeedStatement(batch(c.rows, c.groups), "2026-12-07 03:00:00.000000")
		if strings.Contains(query, " JOIN ") || !strings.Contains(query, "FORCE INDEX (PRIMARY)") {
			t.Errorf("%d rows: not a single-table update by primary key: %s", c.rows, query)
		}
		if got := strings.Count(query, " WHEN ? THEN ?"); got != c.rows {
			t.Errorf("%d rows: %d WHENs: %s", c.rows, got, query)
		}
		if n := strings.Count(query, "?"); n != len(args) {
			t.Errorf("%d rows: %d placeholders, %d arguments: %s", c.rows, n, len(args), query)
		}
	}
}
