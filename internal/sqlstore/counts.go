package sqlstore

import (
	"context"

	"github.com/gocap/gocap/storage"
)

// DefaultExactCountLimit is the row estimate of a table up to which
// BoundedCounts counts its Succeeded rows exactly, the default of the
// drivers' ExactCountLimit option.
const DefaultExactCountLimit = 1_000_000

// ExactCountLimit returns a driver's ExactCountLimit option as
// BoundedCounts takes it: zero means DefaultExactCountLimit.
func ExactCountLimit(opt int64) int64 {
	if opt == 0 {
		return DefaultExactCountLimit
	}
	return opt
}

// CountQueries are what Base.BoundedCounts runs on one table.
type CountQueries struct {
	// All returns (status, count) rows of the whole table, exactly.
	All string
	// Others returns (status, count) rows of the rows that are not
	// Succeeded, read through an index that holds those rows.
	Others string
	// Rows returns the database's own estimate of the number of rows of
	// the table, from statistics it keeps (no scan); negative when it has
	// none.
	Rows func(ctx context.Context) (int64, error)
	// ExactUpTo is the estimate up to which All is run: above it, the
	// Succeeded rows are estimated. Negative: always estimate when the
	// database has an estimate.
	ExactUpTo int64
}

// BoundedCounts runs storage.BoundedCounter.BoundedCounts: all the counts
// exactly (q.All) while the database estimates the table at q.ExactUpTo
// rows or fewer, or has no estimate; above that, the other statuses
// exactly through their index (q.Others) and Succeeded as the estimate of
// the table's rows minus them, marked estimated.
func (b *Base) BoundedCounts(ctx context.Context, kind storage.Kind, q CountQueries) (storage.Counts, error) {
	n, err := q.Rows(ctx)
	if err != nil {
		return storage.Counts{}, b.Err(err, "estimating the rows of the %s table", kind)
	}
	if n < 0 || n <= q.ExactUpTo {
		counts, err := b.Counts(ctx, kind, q.All)
		if err != nil {
			return storage.Counts{}, err
		}
		return storage.ExactCounts(counts), nil
	}
	counts, err := b.Counts(ctx, kind, q.Others)
	if err != nil {
		return storage.Counts{}, err
	}
	counts[storage.StatusSucceeded] = SucceededRest(n, counts)
	return storage.Counts{ByStatus: counts, Estimated: map[storage.Status]bool{storage.StatusSucceeded: true}}, nil
}

// SucceededRest returns total minus the counts of the statuses other than
// Succeeded, and zero if that is negative (a total estimated before rows
// were added).
func SucceededRest(total int64, counts map[storage.Status]int64) int64 {
	for s, n := range counts {
		if s != storage.StatusSucceeded {
			total -= n
		}
	}
	return max(total, 0)
}
