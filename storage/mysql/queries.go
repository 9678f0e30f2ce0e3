package mysql

import (
	"github.com/gocap/gocap/internal/sqlstore"
)

// Statements that do not depend on the table prefix.
const (
	versionSQL     = `SELECT VERSION()`
	getLockSQL     = `SELECT GET_LOCK(?, 60)`
	releaseLockSQL = `SELECT RELEASE_LOCK(?)`
	skipLockedSQL  = ` SKIP LOCKED` // appended to a claim's FOR UPDATE where the server has it
)

// tableQueries are the statements of one message table. Those ending in
// "(" take an id list (or lease pairs) and a closing parenthesis: use the
// methods below, which complete them.
type tableQueries struct {
	selectAll     string // all columns, in sqlstore.ScanMessages order; append a sqlstore.List clause
	get           string
	claim         string // the locking read of due rows, up to the groups condition
	lease         string
	succeed       string
	release       string
	fail          string
	failResult    string
	counts        string
	histogram     string
	requeue       string
	delete        string
	deleteExpired string
	statusIndex   string // the (status, id) index, for FORCE INDEX
}

// queries holds every statement of the driver, built once per prefix.
type queries struct {
	sqlstore.Tables[tableQueries]

	insertPublished string // VALUES follow: see insertValues
	insertReceived  string
	receivedToken   string
	heartbeat       string
	instances       string
	removeInstance  string
}

// insertValues is the VALUES row of one message in insertPublished.
const insertValues = `(?, ?, ?, ?, 'Scheduled', 0, '', ?, ?)`

func newQueries(prefix string) queries {
	pub := "`" + prefix + "published`"
	rec := "`" + prefix + "received`"
	inst := "`" + prefix + "instances`"
	return queries{
		Tables: sqlstore.Tables[tableQueries]{
			Published: newTableQueries(pub, prefix+"published_status", "CAST(id AS CHAR), ''"),
			Received:  newTableQueries(rec, prefix+"received_status", "msg_id, grp"),
		},
		insertPublished: `INSERT INTO ` + pub + ` (id, name, headers, body, status, retries, last_error, added, next_attempt_at) VALUES `,
		// MySQL evaluates the assignments left to right: status last, so
		// that the others still see the old status.
		insertReceived: `INSERT INTO ` + rec + `
			(id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at, lease_token, lease_until)
			VALUES (?, ?, ?, ?, ?, ?, 'Scheduled', 0, '', ?, ?, ?, ?)
			ON DUPLICATE KEY UPDATE
				retries = IF(status = 'Failed', 0, retries),
				last_error = IF(status = 'Failed', '', last_error),
				expires_at = IF(status = 'Failed', NULL, expires_at),
				next_attempt_at = IF(status = 'Failed', VALUES(next_attempt_at), next_attempt_at),
				lease_token = IF(status = 'Failed', VALUES(lease_token), lease_token),
				lease_until = IF(status = 'Failed', VALUES(lease_until), lease_until),
				status = IF(status = 'Failed', 'Scheduled', status)`,
		receivedToken: `SELECT id, lease_token FROM ` + rec + ` WHERE msg_id = ? AND grp = ?`,
		heartbeat: `INSERT INTO ` + inst + ` (` + sqlstore.InstanceColumns + `) VALUES (?, ?, ?, ?, ?)
			ON DUPLICATE KEY UPDATE last_seen = VALUES(last_seen)`,
		instances:      `SELECT ` + sqlstore.InstanceColumns + ` FROM ` + inst + ` WHERE last_seen > ? ORDER BY started, id`,
		removeInstance: `DELETE FROM ` + inst + ` WHERE id = ? OR last_seen < ?`,
	}
}

func newTableQueries(table, statusIndex, idCols string) tableQueries {
	cols := `id, ` + idCols + `, ` + sqlstore.MessageColumns
	final := `(? OR (? > 0 AND retries + 1 >= ?))`
	return tableQueries{
		selectAll: `SELECT ` + cols + ` FROM ` + table,
		get:       `SELECT ` + cols + ` FROM ` + table + ` WHERE id = ?`,
		claim: `SELECT ` + cols + ` FROM ` + table + `
			WHERE status = 'Scheduled' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)`,
		lease: `UPDATE ` + table + ` SET lease_until = ?, lease_token = ? WHERE id IN (`,
		succeed: `UPDATE ` + table + ` SET status = 'Succeeded', expires_at = ?, lease_token = NULL, lease_until = NULL
			WHERE status = 'Scheduled' AND (id, lease_token) IN (`,
		release: `UPDATE ` + table + ` SET next_attempt_at = ?, last_error = ?, lease_token = NULL, lease_until = NULL
			WHERE status = 'Scheduled' AND (id, lease_token) IN (`,
		// No assignment reads a column assigned before it (retries is
		// incremented last), so the result is the same whether the server
		// evaluates them left to right (the default) or all against the
		// old row (MariaDB's SIMULTANEOUS_ASSIGNMENT sql_mode). The final
		// condition is repeated, with its arguments, in each CASE.
		fail: `UPDATE ` + table + ` SET
				last_error = ?,
				expires_at = IF(` + final + `, ?, NULL),
				next_attempt_at = IF(` + final + `, next_attempt_at, ?),
				status = IF(` + final + `, 'Failed', 'Scheduled'),
				lease_token = NULL,
				lease_until = NULL,
				retries = retries + 1
			WHERE id = ? AND lease_token = ? AND status = 'Scheduled'`,
		failResult: `SELECT retries, status FROM ` + table + ` WHERE id = ?`,
		counts:     `SELECT status, COUNT(*) FROM ` + table + ` GROUP BY status`,
		histogram: `SELECT ` + sqlstore.HistogramBucketSQL("?", "DIV") + ` AS bucket, status, COUNT(*) FROM ` + table + `
			WHERE id >= ? GROUP BY bucket, status ORDER BY bucket, status`,
		// A Scheduled row under a lease is in flight and is left alone.
		requeue: `UPDATE ` + table + ` SET status = 'Scheduled', retries = 0, last_error = '', expires_at = NULL,
				lease_token = NULL, lease_until = NULL, next_attempt_at = ?
			WHERE (status <> 'Scheduled' OR lease_until IS NULL OR lease_until <= ?) AND id IN (`,
		delete:        `DELETE FROM ` + table + ` WHERE id IN (`,
		deleteExpired: `DELETE FROM ` + table + ` WHERE expires_at <= ? ORDER BY expires_at LIMIT ?`,
		statusIndex:   " FORCE INDEX (`" + statusIndex + "`)",
	}
}

// claimSQL is the locking read of a claim: of the given number of
// consumer groups (none: all rows), with lock the server's lock clause
// (skipLockedSQL or nothing).
func (t *tableQueries) claimSQL(groups int, lock string) string {
	q := t.claim
	if groups > 0 {
		q += ` AND grp IN (` + sqlstore.Placeholders(groups) + `)`
	}
	return q + ` ORDER BY next_attempt_at LIMIT ? FOR UPDATE` + lock
}

// leaseSQL sets the lease of n claimed rows.
func (t *tableQueries) leaseSQL(n int) string { return t.lease + sqlstore.Placeholders(n) + `)` }

// succeedSQL marks n leased rows Succeeded.
func (t *tableQueries) succeedSQL(n int) string {
	return t.succeed + sqlstore.PairPlaceholders(n) + `)`
}

// releaseSQL releases n leases.
func (t *tableQueries) releaseSQL(n int) string {
	return t.release + sqlstore.PairPlaceholders(n) + `)`
}

// requeueSQL requeues n rows.
func (t *tableQueries) requeueSQL(n int) string { return t.requeue + sqlstore.Placeholders(n) + `)` }

// deleteSQL deletes n rows.
func (t *tableQueries) deleteSQL(n int) string { return t.delete + sqlstore.Placeholders(n) + `)` }
