package mysql

import (
	"fmt"

	"github.com/gocap/gocap/storage"
)

// tableQueries are the statements of one message table. Those ending in
// "(" take an id list (or lease pairs) and a closing parenthesis.
type tableQueries struct {
	selectAll     string
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
}

type queries struct {
	published, received tableQueries

	insertPublished string
	insertReceived  string
	receivedToken   string
	heartbeat       string
	instances       string
	removeInstance  string
}

func (q *queries) table(kind storage.Kind) (*tableQueries, error) {
	switch kind {
	case storage.Published:
		return &q.published, nil
	case storage.Received:
		return &q.received, nil
	default:
		return nil, fmt.Errorf("mysql: unknown message kind %d", kind)
	}
}

func newQueries(prefix string) queries {
	pub := "`" + prefix + "published`"
	rec := "`" + prefix + "received`"
	inst := "`" + prefix + "instances`"
	return queries{
		published:       newTableQueries(pub, "CAST(id AS CHAR), ''"),
		received:        newTableQueries(rec, "msg_id, grp"),
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
		heartbeat: `INSERT INTO ` + inst + ` (id, hostname, pid, started, last_seen) VALUES (?, ?, ?, ?, ?)
			ON DUPLICATE KEY UPDATE last_seen = VALUES(last_seen)`,
		instances:      `SELECT id, hostname, pid, started, last_seen FROM ` + inst + ` WHERE last_seen > ? ORDER BY started, id`,
		removeInstance: `DELETE FROM ` + inst + ` WHERE id = ? OR last_seen < ?`,
	}
}

func newTableQueries(table, idCols string) tableQueries {
	cols := `id, ` + idCols + `, name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at, lease_token, lease_until`
	final := `(? OR (? > 0 AND retries + 1 >= ?))`
	return tableQueries{
		selectAll: `SELECT ` + cols + ` FROM ` + table,
		lease:     `UPDATE ` + table + ` SET lease_until = ?, lease_token = ? WHERE id IN (`,
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
		histogram: `SELECT (id >> 22) DIV ? AS bucket, status, COUNT(*) FROM ` + table + `
			WHERE id >= ? GROUP BY bucket, status ORDER BY bucket, status`,
		// A Scheduled row under a lease is in flight and is left alone.
		requeue: `UPDATE ` + table + ` SET status = 'Scheduled', retries = 0, last_error = '', expires_at = NULL,
				lease_token = NULL, lease_until = NULL, next_attempt_at = ?
			WHERE (status <> 'Scheduled' OR lease_until IS NULL OR lease_until <= ?) AND id IN (`,
		delete:        `DELETE FROM ` + table + ` WHERE id IN (`,
		deleteExpired: `DELETE FROM ` + table + ` WHERE expires_at <= ? ORDER BY expires_at LIMIT ?`,
	}
}
