package mysql_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/gocap/gocap/storage"
	"github.com/gocap/gocap/storage/mysql"
)

// countsTable returns a driver with opts on tables of their own, whose
// published table holds 20,000 rows, of which 10 Failed, 5 Scheduled and 3
// Delayed, the rest Succeeded, analyzed.
func countsTable(t *testing.T, opts mysql.Options) *mysql.Driver {
	t.Helper()
	_, db, prefix := driverWithParams(t, "")
	ctx := context.Background()
	for first := 1; first <= 20000; first += 1000 {
		var q strings.Builder
		q.WriteString("INSERT INTO `" + prefix + "published` (id, name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at) VALUES ")
		var args []any
		for id := first; id < first+1000; id++ {
			status := "Succeeded"
			switch {
			case id <= 10:
				status = "Failed"
			case id <= 15:
				status = "Scheduled"
			case id <= 18:
				status = "Delayed"
			}
			if id > first {
				q.WriteString(", ")
			}
			q.WriteString("(?, 'counts', '{}', '', ?, 0, '', NOW(6), NOW(6), NOW(6) + INTERVAL 1 DAY)")
			args = append(args, id, status)
		}
		if _, err := db.ExecContext(ctx, q.String(), args...); err != nil {
			t.Fatal(err)
		}
	}
	analyze(t, db, prefix+"published")
	opts.TablePrefix = prefix
	return mysql.New(db, opts)
}

func analyze(t *testing.T, db *sql.DB, table string) {
	t.Helper()
	rows, err := db.Query("ANALYZE TABLE `" + table + "`")
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
}

var countsWant = map[storage.Status]int64{storage.StatusFailed: 10, storage.StatusScheduled: 5, storage.StatusDelayed: 3, storage.StatusSucceeded: 19982}

// Above ExactCountLimit, the Succeeded rows are InnoDB's estimate, marked,
// and close to the truth after ANALYZE TABLE; the others stay exact.
func TestBoundedCountsEstimate(t *testing.T) {
	d := countsTable(t, mysql.Options{ExactCountLimit: -1})
	got, err := d.BoundedCounts(context.Background(), storage.Published)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []storage.Status{storage.StatusFailed, storage.StatusScheduled, storage.StatusDelayed} {
		if got.ByStatus[st] != countsWant[st] || got.Estimated[st] {
			t.Errorf("%s: %d (estimated %v), want exactly %d", st, got.ByStatus[st], got.Estimated[st], countsWant[st])
		}
	}
	want := countsWant[storage.StatusSucceeded]
	if n := got.ByStatus[storage.StatusSucceeded]; !got.Estimated[storage.StatusSucceeded] || n < want*80/100 || n > want*120/100 {
		t.Errorf("Succeeded: %d (estimated %v), want an estimate within 20%% of %d", n, got.Estimated[storage.StatusSucceeded], want)
	} else {
		t.Logf("Succeeded: estimate %d for %d rows", n, want)
	}
	// The received table, empty: InnoDB never estimates a table at fewer
	// than 1 row (its optimizer would take 0 for a certainty).
	rec, err := d.BoundedCounts(context.Background(), storage.Received)
	if err != nil || rec.ByStatus[storage.StatusSucceeded] > 1 {
		t.Errorf("BoundedCounts(received) = %+v %v, want 0 or 1 Succeeded", rec, err)
	}
}

// Under ExactCountLimit, every count is exact and nothing marked.
func TestBoundedCountsExactUnderLimit(t *testing.T) {
	for _, limit := range []int64{0, 100_000} {
		d := countsTable(t, mysql.Options{ExactCountLimit: limit})
		got, err := d.BoundedCounts(context.Background(), storage.Published)
		if err != nil {
			t.Fatal(err)
		}
		for st, n := range countsWant {
			if got.ByStatus[st] != n || got.Estimated[st] {
				t.Errorf("limit %d: %s %d (estimated %v), want exactly %d", limit, st, got.ByStatus[st], got.Estimated[st], n)
			}
		}
	}
}
