package mysql

import (
	"strings"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

// The Succeed statement. The rows of a batch share few attempts — the
// rows of one batch send have one (the time it began and how long it
// took) — and few lease tokens (one per claim). Rows grouped by (token,
// attempt) are marked by a single-table UPDATE of the listed ids: the
// server updates each row as it reads it by primary key. The general form,
// a join with a derived table of (id, token, attempt) rows, reads the
// derived table first, so that MariaDB cannot update the joined table as
// it reads it: it copies the changes to a temporary table and applies
// them in a second pass ("Updating reference tables"), at about twice the
// cost a row. It remains for batches of many different attempts (the
// received rows' handler calls, each timed on its own), where a CASE per
// group would cost O(groups) a row.

// maxSucceedGroups is the most (token, attempt) groups a Succeed statement
// picks each row's attempt among with a CASE; beyond, it joins. A claim of
// ClaimBatch rows (500 by default) is sent in batches of 100, each with
// its attempt, and the completer's batch may hold the rows of a few
// claims. Each WHEN is a lookup in a sorted list of constants.
const maxSucceedGroups = 32

// succeedGroup is the ids of the rows of a batch that share a lease token
// and an attempt.
type succeedGroup struct {
	token   int64
	attempt string
	ids     []int64
}

// groupCompleted groups batch by lease token and attempt (atts, the JSON
// of each row's), in the order of their first rows; nil if there are more
// than maxSucceedGroups groups.
func groupCompleted(batch []storage.Completed, atts []string) []*succeedGroup {
	var groups []*succeedGroup
	type key struct {
		token   int64
		attempt string
	}
	index := map[key]*succeedGroup{}
	for i, c := range batch {
		k := key{c.Token, atts[i]}
		g := index[k]
		if g == nil {
			if len(groups) == maxSucceedGroups {
				return nil
			}
			g = &succeedGroup{token: c.Token, attempt: atts[i]}
			index[k] = g
			groups = append(groups, g)
		}
		g.ids = append(g.ids, c.ID)
	}
	return groups
}

// succeedStatement returns the statement that marks batch Succeeded, with
// its arguments: each row only under its lease token and while
// Scheduled, with its attempt appended to its history.
func (t *tableQueries) succeedStatement(batch []storage.Completed, expires string) (string, []any) {
	atts := sqlstore.AttemptJSONs(batch)
	groups := groupCompleted(batch, atts)
	if groups == nil {
		args := make([]any, 0, 1+3*len(batch))
		for i, a := range atts {
			args = append(args, batch[i].ID, batch[i].Token, a)
		}
		return t.succeedSQL(len(batch)), append(args, expires)
	}
	set := "UPDATE `" + t.table + "` SET status = 'Succeeded', expires_at = ?, lease_token = NULL, lease_until = NULL, attempts = "
	args := []any{expires}
	if len(groups) == 1 {
		g := groups[0]
		args = append(args, g.attempt, g.token)
		return set + appendAttempt("attempts", "?") + `
			WHERE status = 'Scheduled' AND lease_token = ? AND id IN (` + sqlstore.Placeholders(len(g.ids)) + `)`, sqlstore.IDArgs(g.ids, args...)
	}
	// The attempt of each row by its group's ids; the rows by their
	// (id, lease_token) pairs.
	var pick strings.Builder
	pick.WriteString(`CASE`)
	for _, g := range groups {
		pick.WriteString(` WHEN id IN (` + sqlstore.Placeholders(len(g.ids)) + `) THEN ?`)
		args = append(sqlstore.IDArgs(g.ids, args...), g.attempt)
	}
	pick.WriteString(` END`)
	for _, c := range batch {
		args = append(args, c.ID, c.Token)
	}
	return set + appendAttempt("attempts", pick.String()) + `
		WHERE status = 'Scheduled' AND (id, lease_token) IN (` + sqlstore.PairPlaceholders(len(batch)) + `)`, args
}
