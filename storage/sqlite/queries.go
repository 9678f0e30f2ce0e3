package sqlite

import (
	"strconv"
	"strings"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

// tableQueries are the statements of one message table.
type tableQueries struct {
	cols          string // all columns, in sqlstore.ScanMessages order
	selectAll     string // all columns, in sqlstore.ScanMessages order; append a sqlstore.List clause
	get           string
	claim         string // up to the groups condition: see claimSQL
	succeed       string // one lease; run once per lease in a transaction
	release       string // one lease; run once per lease in a transaction
	fail          string
	nextDue       string
	name          string // the table's name, for Migrate's upgrade
	counts        string
	countBounded  string // the rows not Succeeded by status, and all rows as 'Succeeded'
	histogram     string
	requeue       string // ends in "(": see requeueSQL
	delete        string // ends in "(": see deleteSQL
	deleteExpired string
	// ordering keys (#18)
	headFree    string // the claim's condition of ordering keys; {{holding}} stands for the statuses that hold a key
	blockedKeys string
}

// queries holds every statement of the driver, built once per prefix.
type queries struct {
	sqlstore.Tables[tableQueries]

	schema          string // the DDL of Migrate
	insertPublished string
	insertReceived  string
	heartbeat       string
	instances       string
	removeInstance  string
}

func newQueries(prefix string) queries {
	pub := prefix + "published"
	rec := prefix + "received"
	inst := prefix + "instances"
	return queries{
		Tables: sqlstore.Tables[tableQueries]{
			Published: newTableQueries(pub, `CAST(id AS TEXT), ''`, publishedKey),
			Received:  newTableQueries(rec, `msg_id, grp`, receivedKey),
		},
		schema: SchemaSQL(prefix),
		insertPublished: `INSERT INTO ` + pub + ` (id, name, headers, body, status, retries, last_error, added, next_attempt_at, policy, ordering_key, version)
			VALUES (?, ?, ?, ?, ?, 0, '', ?, ?, ?, ?, ?)`,
		// A keyed row (ordering_key ?12 set) is leased only as the head of
		// its key: no row of its key, group and version that is not
		// Succeeded (from the *_key index, whose predicate it repeats;
		// #18). Else it is stored for a claim, unleased, as is a Failed
		// keyed row reset (it is itself such a row). SQLite's one writer
		// makes the check and the insert atomic; rows inserted before in
		// the same transaction (a batch) count.
		insertReceived: `INSERT INTO ` + rec + `
			(id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at, lease_token, lease_until, policy, ordering_key, version)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'Scheduled', 0, '', ?7, ?8, ?9,
				CASE WHEN ?12 IS NULL OR NOT EXISTS (
					SELECT 1 FROM ` + rec + ` AS p INDEXED BY ` + rec + `_key
					WHERE p.ordering_key = ?12 AND p.grp = ?3 AND p.version = ?13
					  AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded') THEN ?10 END,
				?11, ?12, ?13)
			ON CONFLICT (msg_id, grp) DO UPDATE SET status = 'Scheduled', retries = 0, last_error = '', expires_at = NULL,
				next_attempt_at = excluded.next_attempt_at, lease_token = excluded.lease_token, lease_until = excluded.lease_until
			WHERE status = 'Failed'
			RETURNING id, lease_until IS NOT NULL`,
		heartbeat: `INSERT INTO ` + inst + ` (` + sqlstore.InstanceColumns + `) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen`,
		instances:      `SELECT ` + sqlstore.InstanceColumns + ` FROM ` + inst + ` WHERE last_seen > ? ORDER BY started, id`,
		removeInstance: `DELETE FROM ` + inst + ` WHERE id = ? OR last_seen < ?`,
	}
}

// appendAttempt is the history with one more attempt, the JSON object
// attempt (SQL text), keeping the last storage.MaxAttemptHistory: the
// removal of a path that does not exist ($[max]) leaves the array alone.
func appendAttempt(attempt string) string {
	max := strconv.Itoa(storage.MaxAttemptHistory)
	return `json_remove(json_insert(attempts, '$[#]', json(` + attempt + `)),
		CASE WHEN json_array_length(attempts) >= ` + max + ` THEN '$[0]' ELSE '$[` + max + `]' END)`
}

// publishedKey and receivedKey are the condition that rows p and c of a
// table are of one ordered sequence (#18): one key and one version (issue
// #17; see "Ordering keys" in package storage), and for received rows one
// group. The columns are those of the *_key index, in its order.
func publishedKey(p, c string) string {
	return p + `.ordering_key = ` + c + `.ordering_key AND ` + p + `.version = ` + c + `.version`
}
func receivedKey(p, c string) string {
	return p + `.ordering_key = ` + c + `.ordering_key AND ` + p + `.grp = ` + c + `.grp AND ` + p + `.version = ` + c + `.version`
}

// holding stands for the SQL list of the statuses that hold an ordering
// key in headFree.
const holding = `{{holding}}`

func newTableQueries(table, idCols string, sameKey func(p, c string) string) tableQueries {
	cols := `id, ` + idCols + `, ` + sqlstore.MessageColumns
	final := `(?1 OR (?2 > 0 AND retries + 1 >= ?2))`
	// The claim and NextDue name the partial *_pending_version index, whose
	// leading column is the version they select (issue #17): without
	// statistics (ANALYZE, which applications seldom run) the planner
	// prefers the equality on status of *_status (status, id) and sorts
	// every pending row, future ones included. A statement that could not
	// use the index would fail to prepare rather than scan.
	pending := ` INDEXED BY ` + table + `_pending_version`
	return tableQueries{
		name:      table,
		cols:      cols,
		selectAll: `SELECT ` + cols + ` FROM ` + table,
		get:       `SELECT ` + cols + ` FROM ` + table + ` WHERE id = ?`,
		// A single UPDATE ... RETURNING, atomic under SQLite's one writer.
		// The condition on status is the *_pending_version index's, as it is.
		claim: `UPDATE ` + table + ` SET lease_until = ?, lease_token = ?, status = 'Scheduled'
			WHERE id IN (SELECT id FROM ` + table + ` AS c` + pending + `
				WHERE status IN (` + sqlstore.PendingStatuses + `) AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)` +
			` AND version = ?`,
		succeed: `UPDATE ` + table + ` SET status = 'Succeeded', expires_at = ?1, lease_token = NULL, lease_until = NULL,
				attempts = ` + appendAttempt("?2") + `
			WHERE id = ?3 AND lease_token = ?4 AND status = 'Scheduled'`,
		release: `UPDATE ` + table + ` SET next_attempt_at = ?, last_error = ?, lease_token = NULL, lease_until = NULL
			WHERE id = ? AND lease_token = ? AND status = 'Scheduled'`,
		fail: `UPDATE ` + table + ` SET
				retries = retries + 1,
				last_error = ?3,
				status = CASE WHEN ` + final + ` THEN 'Failed' ELSE 'Scheduled' END,
				expires_at = CASE WHEN ` + final + ` THEN ?4 END,
				next_attempt_at = CASE WHEN ` + final + ` THEN next_attempt_at ELSE ?5 END,
				lease_token = NULL, lease_until = NULL,
				attempts = ` + appendAttempt("?8") + `
			WHERE id = ?6 AND lease_token = ?7 AND status = 'Scheduled'
			RETURNING retries, status`,
		nextDue: `SELECT next_attempt_at FROM ` + table + pending + `
			WHERE status IN (` + sqlstore.PendingStatuses + `) AND next_attempt_at > ?` + ` AND version = ?` + ` ORDER BY next_attempt_at LIMIT 1`,
		counts: `SELECT status, COUNT(*) FROM ` + table + ` GROUP BY status`,
		// One statement, so one snapshot: three ranges of the status
		// index, and a COUNT(*) alone in its SELECT, which SQLite answers
		// by counting the entries of the smallest index page by page,
		// without reading them (a GROUP BY reads every entry).
		countBounded: `SELECT status, COUNT(*) FROM ` + table + `
			WHERE status IN ('Delayed', 'Scheduled', 'Failed') GROUP BY status
			UNION ALL SELECT 'Succeeded', (SELECT COUNT(*) FROM ` + table + `)`,
		histogram: `SELECT ` + sqlstore.HistogramBucketSQL("?", "/") + ` AS bucket, status, COUNT(*) FROM ` + table + `
			WHERE id >= ? GROUP BY bucket, status ORDER BY bucket, status`,
		// A Scheduled row under a lease is in flight and is left alone.
		requeue: `UPDATE ` + table + ` SET status = 'Scheduled', retries = 0, last_error = '',
				expires_at = NULL, lease_token = NULL, lease_until = NULL, next_attempt_at = ?
			WHERE (status <> 'Scheduled' OR lease_until IS NULL OR lease_until <= ?) AND id IN (`,
		delete: `DELETE FROM ` + table + ` WHERE id IN (`,
		// No row of the key before c holds it (from the *_key index), and
		// no row of the key is in flight (a lease ending after now, its
		// argument; one search of *_key_lease); both indexes' predicate
		// is repeated (#18).
		headFree: `
				AND (c.ordering_key IS NULL OR NOT EXISTS (
					SELECT 1 FROM ` + table + ` AS p INDEXED BY ` + table + `_key WHERE ` + sameKey("p", "c") + `
					  AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded' AND p.status IN (` + holding + `) AND p.id < c.id)
				  AND NOT EXISTS (
					SELECT 1 FROM ` + table + ` AS p INDEXED BY ` + table + `_key_lease WHERE ` + sameKey("p", "c") + `
					  AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded' AND p.lease_until > ?))`,
		blockedKeys: `SELECT ` + cols + `,
				(SELECT COUNT(*) FROM ` + table + ` AS w INDEXED BY ` + table + `_key WHERE ` + sameKey("w", "c") + `
				   AND w.ordering_key IS NOT NULL AND w.status <> 'Succeeded' AND w.status IN (` + sqlstore.PendingStatuses + `) AND w.id > c.id)
			FROM ` + table + ` AS c
			WHERE c.status = 'Failed' AND c.ordering_key IS NOT NULL AND NOT EXISTS (
				SELECT 1 FROM ` + table + ` AS p INDEXED BY ` + table + `_key WHERE ` + sameKey("p", "c") + `
				  AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded' AND p.id < c.id)
			ORDER BY c.id LIMIT ?`,
		deleteExpired: `DELETE FROM ` + table + ` WHERE id IN (
				SELECT id FROM ` + table + ` WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?)`,
	}
}

// claimSQL is a claim of due rows of the given number of consumer groups
// (none: all rows), returning them; Failed rows hold their ordering key
// if failedHolds.
func (t *tableQueries) claimSQL(groups int, failedHolds bool) string {
	q := t.claim
	if groups > 0 {
		q += ` AND grp IN (` + sqlstore.Placeholders(groups) + `)`
	}
	statuses := sqlstore.PendingStatuses
	if failedHolds {
		statuses += `, 'Failed'`
	}
	q += strings.Replace(t.headFree, holding, statuses, 1)
	return q + ` ORDER BY next_attempt_at LIMIT ?) RETURNING ` + t.cols
}

// requeueSQL requeues n rows.
func (t *tableQueries) requeueSQL(n int) string { return t.requeue + sqlstore.Placeholders(n) + `)` }

// deleteSQL deletes n rows.
func (t *tableQueries) deleteSQL(n int) string { return t.delete + sqlstore.Placeholders(n) + `)` }
