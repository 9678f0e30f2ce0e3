package mysql

import (
	"strconv"
	"strings"

	"github.com/gocap/gocap/internal/sqlstore"
	"github.com/gocap/gocap/storage"
)

// Statements that do not depend on the table prefix.
const (
	// versionSQL reads the server version and the session's character
	// sets (see checkCharset).
	versionSQL     = `SELECT VERSION(), @@character_set_client, @@character_set_connection, @@character_set_results`
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
	failLock      string // FailBatch: the rows' locking read (#14)
	failBatch     string // FailBatch: the update joined with the rows' failures (#14)
	nextDue       string
	counts        string
	countOthers   string // counts of the rows not Succeeded, from the status index
	rowEstimate   string // an EXPLAIN whose rows column is InnoDB's estimate of the table's rows
	histogram     string
	requeue       string
	delete        string
	deleteExpired string
	statusIndex   string // the (status, id) index, for FORCE INDEX
	table         string // the table's name, unquoted, for Migrate's upgrade
	// ordering keys (#18)
	headFree    string // the claim's condition of ordering keys; {{holding}} stands for the statuses that hold a key
	unclaimable string // claimed keyed rows whose key has another row in flight; ids appended (#18)
	unclaim     string // clears the lease of claimed rows; token, then ids appended (#18)
	blockedKeys string
	runRows     string // the rows after a head in its sequence, with whether each may join its run; {{holding}} (#18)
	runLock     string // the locking read of a run's rows; ids appended, see runLockSQL (#18)
}

// queries holds every statement of the driver, built once per prefix.
type queries struct {
	sqlstore.Tables[tableQueries]

	insertPublished string // VALUES follow: see insertValues
	insertReceived  string // of one message; see insertReceivedSQL
	receivedToken   string
	receivedTokens  string // ends in "(": see receivedTokensSQL
	busyKeys        string // ends in "(": (key, grp, version) triples follow (#18)
	received        string // the received table, quoted
	heartbeat       string
	instances       string
	removeInstance  string
}

// insertValues is the VALUES row of one message in insertPublished; its
// last columns are the ordering key (#18) and the version (issue #17).
const insertValues = `(?, ?, ?, ?, ?, 0, '', ?, ?, ?, ?, ?)`

func newQueries(prefix string) queries {
	pub := "`" + prefix + "published`"
	rec := "`" + prefix + "received`"
	inst := "`" + prefix + "instances`"
	return queries{
		Tables: sqlstore.Tables[tableQueries]{
			Published: newTableQueries(prefix+"published", "CAST(id AS CHAR), ''", "ordering_key, version", publishedKey),
			Received:  newTableQueries(prefix+"received", "msg_id, grp", "ordering_key, grp, version", receivedKey),
		},
		insertPublished: `INSERT INTO ` + pub + ` (id, name, headers, body, status, retries, last_error, added, next_attempt_at, policy, ordering_key, version) VALUES `,
		insertReceived:  insertReceivedSQL(rec, 1),
		receivedToken:   `SELECT id, lease_token FROM ` + rec + ` WHERE msg_id = ? AND grp = ?`,
		receivedTokens:  `SELECT id, msg_id, grp, lease_token, lease_until IS NOT NULL FROM ` + rec + ` WHERE (msg_id, grp) IN (`,
		// The keys (#18), of the (key, grp, version) triples appended, that
		// have a row not Succeeded: one range of the *_key index each.
		busyKeys: `SELECT DISTINCT key_held, grp, version FROM ` + rec + " FORCE INDEX (`" + prefix + "received_key`)" + `
			WHERE (key_held, grp, version) IN (`,
		received: rec,
		heartbeat: `INSERT INTO ` + inst + ` (` + sqlstore.InstanceColumns + `) VALUES (?, ?, ?, ?, ?)
			ON DUPLICATE KEY UPDATE last_seen = VALUES(last_seen)`,
		instances:      `SELECT ` + sqlstore.InstanceColumns + ` FROM ` + inst + ` WHERE last_seen > ? ORDER BY started, id`,
		removeInstance: `DELETE FROM ` + inst + ` WHERE id = ? OR last_seen < ?`,
	}
}

// receivedValues is the VALUES row of one message in an insert of
// received messages: id, msg_id, grp, name, headers, body, added,
// next_attempt_at, lease_token, lease_until, policy, ordering_key (a keyed
// row has a NULL lease_until: it is stored for a claim, #18), version.
const receivedValues = `(?, ?, ?, ?, ?, ?, 'Scheduled', 0, '', ?, ?, ?, ?, ?, ?, ?)`

// insertReceivedSQL inserts n received messages into table: each is
// inserted, or, when its (msg_id, grp) is stored already, a Failed row is
// reset and claimed and any other row left alone. ON DUPLICATE KEY
// UPDATE also meets a row whose id (the primary key) is the message's
// but whose (msg_id, grp) is another's: that row is left alone too, and
// the caller sees the id taken (errIDOfAnother). MySQL evaluates the
// assignments left to right: status last, so that the others still see
// the old status.
func insertReceivedSQL(table string, n int) string {
	const reset = `status = 'Failed' AND msg_id = VALUES(msg_id) AND grp = VALUES(grp)`
	return `INSERT INTO ` + table + `
			(id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at, lease_token, lease_until, policy, ordering_key, version)
			VALUES ` + strings.TrimSuffix(strings.Repeat(receivedValues+", ", n), ", ") + `
			ON DUPLICATE KEY UPDATE
				retries = IF(` + reset + `, 0, retries),
				last_error = IF(` + reset + `, '', last_error),
				expires_at = IF(` + reset + `, NULL, expires_at),
				next_attempt_at = IF(` + reset + `, VALUES(next_attempt_at), next_attempt_at),
				lease_token = IF(` + reset + `, VALUES(lease_token), lease_token),
				lease_until = IF(` + reset + `, VALUES(lease_until), lease_until),
				status = IF(` + reset + `, 'Scheduled', status)`
}

// receivedReturning ends an insert of received messages on MariaDB: it
// returns what receivedTokens reads.
const receivedReturning = `
			RETURNING id, msg_id, grp, lease_token, lease_until IS NOT NULL`

// receivedTokensSQL reads the id, key and lease token of the received
// rows of n (msg_id, grp) pairs.
func (q *queries) receivedTokensSQL(n int) string {
	return q.receivedTokens + sqlstore.PairPlaceholders(n) + `)`
}

// succeedRows stands for the derived table of a Succeed: one row of (id,
// lease token, attempt JSON) per completed lease; succeedSQL writes it out.
const succeedRows = `{{rows}}`

// appendAttempt is the history column with one more attempt, the JSON
// object attempt (SQL text), keeping the last storage.MaxAttemptHistory:
// the removal of a path that does not exist ($[max]) leaves the array
// alone.
func appendAttempt(column, attempt string) string {
	max := strconv.Itoa(storage.MaxAttemptHistory)
	return `JSON_REMOVE(JSON_ARRAY_APPEND(` + column + `, '$', JSON_EXTRACT(` + attempt + `, '$')),
		IF(JSON_LENGTH(` + column + `) >= ` + max + `, '$[0]', '$[` + max + `]'))`
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

// heldKeyIs is the condition that row r holds the key of the sequence
// given as arguments, one per column of keyCols ("ordering_key,
// version" or "ordering_key, grp, version"), in that order: the
// ordering key compared with key_held, the column of the *_key index.
func heldKeyIs(r, keyCols string) string {
	var conds []string
	for _, col := range strings.Split(keyCols, ", ") {
		if col == "ordering_key" {
			col = "key_held"
		}
		conds = append(conds, r+"."+col+" = ?")
	}
	return strings.Join(conds, " AND ")
}

// holding stands for the SQL list of the statuses that hold an ordering
// key in headFree.
const holding = `{{holding}}`

// newTableQueries builds the statements of table name: idCols are the
// columns that give a row's msg_id and group, keyCols the columns of an
// ordered sequence in the order of the *_key index, and sameKey the
// condition that two rows are of one sequence.
func newTableQueries(name, idCols, keyCols string, sameKey func(p, c string) string) tableQueries {
	table := "`" + name + "`"
	// sameHeld: row p holds the key of row c (see schema.sql's key_held).
	sameHeld := func(p, c string) string {
		return strings.Replace(sameKey(p, c), p+`.ordering_key =`, p+`.key_held =`, 1)
	}
	cols := `id, ` + idCols + `, ` + sqlstore.MessageColumns
	final := `(? OR (? > 0 AND retries + 1 >= ?))`
	return tableQueries{
		table:     name,
		selectAll: `SELECT ` + cols + ` FROM ` + table,
		get:       `SELECT ` + cols + ` FROM ` + table + ` WHERE id = ?`,
		// due_at is next_attempt_at of Scheduled and Delayed rows only
		// (see schema.sql); the rows are those of one version (issue #17),
		// the leading column of the index.
		claim: `SELECT ` + cols + ` FROM ` + table + " AS c FORCE INDEX (`" + name + "_pending_version`)" + `
			WHERE due_at <= ? AND (lease_until IS NULL OR lease_until <= ?) AND version = ?`,
		// c is the first row of its key that holds it: one entry of the
		// *_key index (key_held, the key of rows Scheduled, Delayed or
		// Failed), read in id order past the holding statuses' others (a
		// dependent subquery cannot range on p.id < c.id, but it can stop
		// at its first row). It has no locking clause, so it is a
		// consistent read that neither locks nor skips the rows other
		// claims hold (#18).
		// No row of the key is in flight either (leased beyond now, its
		// argument; #18): read among the rows after c (one before it would
		// hold the key), on the claim's snapshot; unclaimable checks it
		// again under the keys' locks (see keyLockName).
		headFree: `
			AND (c.ordering_key IS NULL OR c.id = (
				SELECT p.id FROM ` + table + " AS p FORCE INDEX (`" + name + "_key`)" + ` WHERE ` + sameHeld("p", "c") + `
				  AND p.status IN (` + holding + `) ORDER BY p.id LIMIT 1)
			  AND NOT EXISTS (
				SELECT 1 FROM ` + table + " AS p FORCE INDEX (`" + name + "_key`)" + ` WHERE ` + sameHeld("p", "c") + `
				  AND p.id > c.id AND p.status = 'Scheduled' AND p.lease_until > ?))`,
		// The claimed keyed rows (ids appended) of a key with a row in
		// flight under another lease than the claim's (first argument:
		// its token; a run's rows share it) beyond the second: read under
		// the keys' locks, after the claim's lease update (#18).
		unclaimable: `SELECT c.id FROM ` + table + ` AS c WHERE EXISTS (
				SELECT 1 FROM ` + table + " AS p FORCE INDEX (`" + name + "_key`)" + ` WHERE ` + sameHeld("p", "c") + `
				  AND p.lease_token <> ? AND p.status = 'Scheduled' AND p.lease_until > ?)
			AND c.id IN (`,
		unclaim: `UPDATE ` + table + ` SET lease_until = NULL, lease_token = NULL WHERE lease_token = ? AND id IN (`,
		// Failed keyed rows (from the status index) with no row of their
		// key before them that is not Succeeded, and the count of those
		// after.
		blockedKeys: `SELECT ` + cols + `,
				(SELECT COUNT(*) FROM ` + table + " AS w FORCE INDEX (`" + name + "_key`)" + ` WHERE ` + sameHeld("w", "c") + `
				   AND w.status IN (` + sqlstore.PendingStatuses + `) AND w.id > c.id)
			FROM ` + table + " AS c FORCE INDEX (`" + name + "_status`)" + `
			WHERE c.status = 'Failed' AND c.ordering_key IS NOT NULL AND c.id = (
				SELECT p.id FROM ` + table + " AS p FORCE INDEX (`" + name + "_key`)" + ` WHERE ` + sameHeld("p", "c") + `
				ORDER BY p.id LIMIT 1)
			ORDER BY c.id LIMIT ?`,
		// Runs (storage.ClaimRequest.Run): the rows that follow a head in
		// its sequence (its key, group and version, then its id, are the
		// arguments after now twice), in id order, from the *_key entries
		// of its key that hold it, each with whether it may join the head's
		// run (due and not leased, as a claim's rows): a consistent read,
		// of rows that the head's lease keeps every other claim away from.
		// The range is read in the index's order and stops at the limit.
		runRows: `SELECT r.id, COALESCE(r.due_at <= ? AND (r.lease_until IS NULL OR r.lease_until <= ?), 0)
			FROM ` + table + " AS r FORCE INDEX (`" + name + "_key`)" + `
			WHERE ` + heldKeyIs("r", keyCols) + `
				AND r.status IN (` + holding + `) AND r.id > ? ORDER BY r.id LIMIT ?`,
		runLock: `SELECT ` + cols + ` FROM ` + table + ` WHERE due_at <= ? AND (lease_until IS NULL OR lease_until <= ?) AND id IN (`,
		lease:   `UPDATE ` + table + ` SET lease_until = ?, lease_token = ?, status = 'Scheduled' WHERE id IN (`,
		// The rows, their tokens and attempts come as a derived table the
		// update joins by primary key (see succeedSQL).
		succeed: `UPDATE ` + table + ` AS t JOIN (` + succeedRows + `) AS v ON t.id = v.id AND t.lease_token = v.tok
			SET t.status = 'Succeeded', t.expires_at = ?, t.lease_token = NULL, t.lease_until = NULL,
				t.attempts = ` + appendAttempt("t.attempts", "v.att") + `
			WHERE t.status = 'Scheduled'`,
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
				attempts = ` + appendAttempt("attempts", "?") + `,
				lease_token = NULL,
				lease_until = NULL,
				retries = retries + 1
			WHERE id = ? AND lease_token = ? AND status = 'Scheduled'`,
		failResult: `SELECT retries, status FROM ` + table + ` WHERE id = ?`,
		// FailBatch, in one transaction: the rows, locked in primary key
		// order, with their retry counts; then the update of those still
		// under their lease, with their failures as a derived table joined
		// by primary key (failBatchSQL). Whether a row becomes Failed (fin)
		// is decided from the locked retry count: the order of the
		// assignments of a multiple-table UPDATE is not defined, so none
		// of them reads a column another assigns.
		failLock: `SELECT id, lease_token, status, retries FROM ` + table + ` WHERE id IN (`,
		failBatch: `UPDATE ` + table + ` AS t JOIN (` + succeedRows + `) AS v ON t.id = v.id AND t.lease_token = v.tok
			SET t.last_error = v.err,
				t.expires_at = IF(v.fin, v.exp, NULL),
				t.next_attempt_at = IF(v.fin, t.next_attempt_at, v.nxt),
				t.status = IF(v.fin, 'Failed', 'Scheduled'),
				t.attempts = ` + appendAttempt("t.attempts", "v.att") + `,
				t.lease_token = NULL,
				t.lease_until = NULL,
				t.retries = t.retries + 1
			WHERE t.status = 'Scheduled'`,
		nextDue: `SELECT due_at FROM ` + table + ` WHERE due_at > ?` + ` AND version = ?` + ` ORDER BY due_at LIMIT 1`,
		counts:  `SELECT status, COUNT(*) FROM ` + table + ` GROUP BY status`,
		// Three ranges of the (status, id) index, read from the index alone.
		countOthers: `SELECT status, COUNT(*) FROM ` + table + " FORCE INDEX (`" + name + "_status`)" + `
			WHERE status IN ('Delayed', 'Scheduled', 'Failed') GROUP BY status`,
		// The rows of a full scan are InnoDB's row count of the table
		// (stat_n_rows): sampled by its statistics, then kept up to date
		// in memory by every insert and delete.
		rowEstimate: `EXPLAIN SELECT id FROM ` + table,
		histogram: `SELECT ` + sqlstore.HistogramBucketSQL("?", "DIV") + ` AS bucket, status, COUNT(*) FROM ` + table + `
			WHERE id >= ? GROUP BY bucket, status ORDER BY bucket, status`,
		// A Scheduled row under a lease is in flight and is left alone.
		requeue: `UPDATE ` + table + ` SET status = 'Scheduled', retries = 0, last_error = '', expires_at = NULL,
				lease_token = NULL, lease_until = NULL, next_attempt_at = ?
			WHERE (status <> 'Scheduled' OR lease_until IS NULL OR lease_until <= ?) AND id IN (`,
		delete:        `DELETE FROM ` + table + ` WHERE id IN (`,
		deleteExpired: `DELETE FROM ` + table + ` WHERE expires_at <= ? ORDER BY expires_at LIMIT ?`,
		statusIndex:   " FORCE INDEX (`" + name + "_status`)",
	}
}

// claimSQL is the locking read of a claim: of the given number of
// consumer groups (none: all rows), with lock the server's lock clause
// (skipLockedSQL or nothing), and Failed rows holding their ordering key
// if failedHolds.
func (t *tableQueries) claimSQL(groups int, lock string, failedHolds bool) string {
	q := t.claim
	if groups > 0 {
		q += ` AND grp IN (` + sqlstore.Placeholders(groups) + `)`
	}
	q += strings.Replace(t.headFree, holding, sqlstore.HoldingStatuses(failedHolds), 1)
	// Ordered by due_at, the pending index's own order: ordered by
	// next_attempt_at the server sorted every due row of a backlog for
	// each claim (and on small tables chose a full scan).
	return q + ` ORDER BY due_at LIMIT ? FOR UPDATE` + lock
}

// leaseSQL sets the lease of n claimed rows.
func (t *tableQueries) leaseSQL(n int) string { return t.lease + sqlstore.Placeholders(n) + `)` }

// succeedSQL marks n leased rows Succeeded; its arguments are the id,
// token and attempt of each row, then the expiry. A join by primary key
// with a derived table costs O(n), where a CASE picking each row's attempt
// cost O(n²).
func (t *tableQueries) succeedSQL(n int) string {
	rows := `SELECT ? AS id, ? AS tok, ? AS att` + strings.Repeat(` UNION ALL SELECT ?, ?, ?`, n-1)
	return strings.Replace(t.succeed, succeedRows, rows, 1)
}

// failBatchSQL records n failures; its arguments are the id, token,
// error, whether it becomes Failed, expiry, next attempt time and attempt
// of each row.
func (t *tableQueries) failBatchSQL(n int) string {
	rows := `SELECT ? AS id, ? AS tok, ? AS err, ? AS fin, ? AS exp, ? AS nxt, ? AS att` +
		strings.Repeat(` UNION ALL SELECT ?, ?, ?, ?, ?, ?, ?`, n-1)
	return strings.Replace(t.failBatch, succeedRows, rows, 1)
}

// failLockSQL locks n rows.
func (t *tableQueries) failLockSQL(n int) string {
	return t.failLock + sqlstore.Placeholders(n) + `) ORDER BY id FOR UPDATE`
}

// releaseSQL releases n leases.
func (t *tableQueries) releaseSQL(n int) string {
	return t.release + sqlstore.PairPlaceholders(n) + `)`
}

// requeueSQL requeues n rows.
func (t *tableQueries) requeueSQL(n int) string { return t.requeue + sqlstore.Placeholders(n) + `)` }

// deleteSQL deletes n rows.
func (t *tableQueries) deleteSQL(n int) string { return t.delete + sqlstore.Placeholders(n) + `)` }

// runLockSQL is the locking read of the n rows of runs, in id order; its
// arguments are now twice, then the ids.
func (t *tableQueries) runLockSQL(n int, lock string) string {
	return t.runLock + sqlstore.Placeholders(n) + `) ORDER BY id FOR UPDATE` + lock
}
