package storage

import "context"

// Counts is the number of rows of one table in each status, as
// [BoundedCounter.BoundedCounts] returns them: exact, except for the
// statuses marked Estimated.
type Counts struct {
	// ByStatus has an entry for every status of Statuses.
	ByStatus map[Status]int64
	// Estimated marks the statuses whose figure in ByStatus is the
	// database's estimate rather than a count. A status that is absent, or
	// false, is counted exactly.
	Estimated map[Status]bool
}

// ExactCounts returns counts, as [Store.Counts] returns them, as Counts
// with no estimate.
func ExactCounts(counts map[Status]int64) Counts {
	return Counts{ByStatus: counts, Estimated: map[Status]bool{}}
}

// BoundedCounter is implemented by a Store that can count its rows by
// status in a time that does not grow with the number of Succeeded rows,
// the bulk of a table: the dashboard uses it instead of [Store.Counts],
// whose GROUP BY reads the whole table (a second and more on 10,000,000
// rows). The conformance suite checks it when a Store has it.
type BoundedCounter interface {
	// BoundedCounts returns the number of rows of kind in each status. It
	// is exact for every status the backend counts through an index of
	// the rows that are not Succeeded (Delayed, Scheduled and Failed: the
	// rows that matter operationally, few unless something is wrong), so
	// its time grows with those rows only. The Succeeded figure is exact
	// on a small table, and on a large one may be the database's estimate
	// (its own row count statistic minus the exact other counts), marked
	// in Counts.Estimated; each backend documents where it draws the line.
	BoundedCounts(ctx context.Context, kind Kind) (Counts, error)
}

// CountsOf returns s's BoundedCounts if s is a [BoundedCounter], and
// otherwise its Counts, all exact.
func CountsOf(ctx context.Context, s Store, kind Kind) (Counts, error) {
	if bc, ok := s.(BoundedCounter); ok {
		return bc.BoundedCounts(ctx, kind)
	}
	counts, err := s.Counts(ctx, kind)
	if err != nil {
		return Counts{}, err
	}
	return ExactCounts(counts), nil
}
