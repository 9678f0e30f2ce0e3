package mysql

import (
	"strings"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

// The Succeed statement: a single-table UPDATE of the rows by their
// (id, lease token) pairs, read by primary key (FORCE INDEX), with each
// row's attempt picked by its id in a simple CASE. The server updates
// each row as it reads it. Two other forms were slower on MariaDB 10.11
// (500 and 1,000 rows, each with its own attempt as the received rows'
// handler calls have, or in groups of 50 as batch sends have; fastest of
// 12 runs): the same update read through the (status, id) index, which
// the optimizer chose without the hint, buffers the rows it changes
// (the index holds a column it assigns: "Using buffer") and took about
// 1.3 times as long; a join with a derived table of (id, token, attempt)
// rows reads the derived table first, so MariaDB cannot update the
// joined table as it reads it and applies the changes in a second pass,
// about 1.3–1.5 times as long. A CASE of n constants costs O(n) a row,
// O(n²) a statement, but at the 1,000 rows of a statement at most
// (succeedBatch) the comparisons are a small part of the update's cost.

// succeedStatement returns the statement that marks batch Succeeded, with
// its arguments: each row only under its lease token and while
// Scheduled, with its attempt appended to its history.
func (t *tableQueries) succeedStatement(batch []storage.Completed, expires string) (string, []any) {
	atts := sqlstore.AttemptJSONs(batch)
	args := make([]any, 0, 1+4*len(batch))
	args = append(args, expires)
	var pick strings.Builder
	pick.WriteString(`CASE id`)
	for i, c := range batch {
		pick.WriteString(` WHEN ? THEN ?`)
		args = append(args, c.ID, atts[i])
	}
	pick.WriteString(` END`)
	for _, c := range batch {
		args = append(args, c.ID, c.Token)
	}
	return t.succeed + appendAttempt("attempts", pick.String()) + `
		WHERE status = 'Scheduled' AND (id, lease_token) IN (` + sqlstore.PairPlaceholders(len(batch)) + `)`, args
}
