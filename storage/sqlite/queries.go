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
	grouped       bool   // an ordered sequence is one of a key and a group (received rows), not of a key
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
	headFree    string // the lease's re-check that a keyed row is the head of its key; {{holding}} stands for the statuses that hold a key
	blockedKeys string
	sameKey     func(p, c string) string // rows p and c are of one sequence
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
			Published: newTableQueries(pub, `CAST(id AS TEXT), ''`, false, publishedKey),
			Received:  newTableQueries(rec, `msg_id, grp`, true, receivedKey),
		},
		schema: SchemaSQL(prefix),
		insertPublished: `INSERT INTO ` + pub + ` (id, name, headers, body, status, retries, last_error, added, next_attempt_at, policy, ordering_key, version)
			VALUES (?, ?, ?, ?, ?, 0, '', ?, ?, ?, ?, ?)`,
		// A keyed row (ordering_key ?12 set) is leased only as the head of
		// its key: one that may be (?14: in a batch, the smallest id of
		// its key, see sqlstore.ReceivedBatch.Heads) when no row of its
		// key, group and version is not Succeeded (from the *_key index,
		// whose predicate it repeats; #18). Else it is stored for a
		// claim, unleased, as is a Failed keyed row reset (it is itself
		// such a row). SQLite's one writer makes the check and the insert
		// atomic; rows inserted before in the same transaction (a batch)
		// count.
		insertReceived: `INSERT INTO ` + rec + `
			(id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at, lease_token, lease_until, policy, ordering_key, version)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'Scheduled', 0, '', ?7, ?8, ?9,
				CASE WHEN ?12 IS NULL OR (?14 AND NOT EXISTS (
					SELECT 1 FROM ` + rec + ` AS p INDEXED BY ` + rec + `_key
					WHERE p.ordering_key = ?12 AND p.grp = ?3 AND p.version = ?13
					  AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded')) THEN ?10 END,
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

func newTableQueries(table, idCols string, grouped bool, sameKey func(p, c string) string) tableQueries {
	cols := `id, ` + idCols + `, ` + sqlstore.MessageColumns
	final := `(?1 OR (?2 > 0 AND retries + 1 >= ?2))`
	// The claim and NextDue name the partial *_pending_unkeyed and
	// *_pending_keyed indexes, whose leading column is the version they
	// select (issue #17): without statistics (ANALYZE, which applications
	// seldom run) the planner prefers the equality on status of *_status
	// (status, id) and sorts every pending row, future ones included. A
	// statement that could not use the index would fail to prepare rather
	// than scan. The conditions on status and key are the indexes', as
	// they are.
	pending := ` INDEXED BY ` + table + `_pending_unkeyed WHERE status IN (` + sqlstore.PendingStatuses + `) AND ordering_key IS NULL`
	pendingKeyed := ` INDEXED BY ` + table + `_pending_keyed WHERE status IN (` + sqlstore.PendingStatuses + `) AND ordering_key IS NOT NULL`
	return tableQueries{
		sameKey:   sameKey,
		name:      table,
		cols:      cols,
		grouped:   grouped,
		selectAll: `SELECT ` + cols + ` FROM ` + table,
		get:       `SELECT ` + cols + ` FROM ` + table + ` WHERE id = ?`,
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
		// The first entry after ?1 of each index: rows without and with a
		// key; the driver takes the earlier.
		nextDue: `SELECT
				(SELECT next_attempt_at FROM ` + table + pending + ` AND next_attempt_at > ?1 AND version = ?2 ORDER BY next_attempt_at LIMIT 1),
				(SELECT next_attempt_at FROM ` + table + pendingKeyed + ` AND next_attempt_at > ?1 AND version = ?2 ORDER BY next_attempt_at LIMIT 1)`,
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
		// No row of the key before the row holds it (from the *_key
		// index), and no row of the key is in flight (a lease ending
		// after now, ?3; one search of *_key_lease); both indexes'
		// predicate is repeated (#18).
		headFree: `
				AND (ordering_key IS NULL OR NOT EXISTS (
					SELECT 1 FROM ` + table + ` AS p INDEXED BY ` + table + `_key WHERE ` + sameKey("p", table) + `
					  AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded' AND p.status IN (` + holding + `) AND p.id < ` + table + `.id)
				  AND NOT EXISTS (
					SELECT 1 FROM ` + table + ` AS p INDEXED BY ` + table + `_key_lease WHERE ` + sameKey("p", table) + `
					  AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded' AND p.lease_until > ?3))`,
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

// claimLimit is the limit of the claim's statements, ?3, as an expression
// and not the bare parameter: SQLite (built with STAT4, as modernc's is)
// plans a statement for the value bound to a bare LIMIT ?, and prepares
// it again whenever that value changes, which for a claim (its limit is
// the free slots) is on most runs: five times the cost of a run of the
// candidates' statement in a measurement.
const claimLimit = `CAST(?3 AS INTEGER)`

// candidatesSQL selects the ids of up to ?3 rows to claim, due at ?1,
// of version ?2 and of the given number of consumer groups (?4...; none:
// all rows); Failed rows hold their ordering key if failedHolds. It is a
// read: the claim leases the rows with leaseSQL, which checks each again
// under SQLite's one writer, so that the writer is held only for the
// rows found, and not at all when none is.
//
// The candidates are the oldest due rows among two sets:
//
//   - rows without a key, the first ?3 due ones of *_pending_unkeyed;
//   - the head of each ordered sequence (#18): the keys (and groups) of
//     the rows not Succeeded are visited with a loose scan of *_key, one
//     search per key from the previous one (k); for each, headsSQL's
//     few searches. A key's rows behind its head are never read: the
//     query costs a few searches per key with rows not Succeeded,
//     whatever their number.
func (t *tableQueries) candidatesSQL(groups int, failedHolds bool) string {
	inGroups := ""
	if groups > 0 {
		inGroups = ` AND grp IN (` + numbered(4, groups) + `)`
	}
	keyed := ` FROM ` + t.name + ` INDEXED BY ` + t.name + `_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded'`
	// k: the keys (c1; for received rows, c1 and the group c2) of the
	// rows not Succeeded, the next one found from the previous one by
	// one search of *_key (for received rows, two: the key's next group,
	// else the next key's first).
	cols := `c1`
	first := `SELECT * FROM (SELECT ordering_key` + keyed + ` ORDER BY ordering_key LIMIT 1)`
	next := `SELECT id` + keyed + ` AND ordering_key > k.c1 ORDER BY ordering_key`
	step := `SELECT n.ordering_key FROM k CROSS JOIN ` + t.name + ` AS n NOT INDEXED WHERE n.id = (` + next + ` LIMIT 1)`
	if t.grouped {
		cols = `c1, c2`
		first = `SELECT * FROM (SELECT ordering_key, grp` + keyed + ` ORDER BY ordering_key, grp LIMIT 1)`
		step = `SELECT n.ordering_key, n.grp FROM k CROSS JOIN ` + t.name + ` AS n NOT INDEXED WHERE n.id = coalesce(
					(SELECT id` + keyed + ` AND ordering_key = k.c1 AND grp > k.c2 ORDER BY grp LIMIT 1),
					(` + next + `, grp LIMIT 1))`
	}
	return `WITH RECURSIVE k(` + cols + `) AS (
				` + first + `
				UNION ALL
				` + step + `)
			SELECT id FROM (
				SELECT * FROM (SELECT id, next_attempt_at FROM ` + t.name + ` INDEXED BY ` + t.name + `_pending_unkeyed
					WHERE status IN (` + sqlstore.PendingStatuses + `) AND ordering_key IS NULL AND next_attempt_at <= ?1
					  AND (lease_until IS NULL OR lease_until <= ?1) AND version = ?2` + inGroups + `
					ORDER BY next_attempt_at LIMIT ` + claimLimit + `)
				UNION ALL
				` + t.headsSQL(4, groups, failedHolds) + `)
			ORDER BY next_attempt_at LIMIT ` + claimLimit
}

// nextCandidatesSQL selects, as candidatesSQL does, the ids of up to ?3
// rows to claim, due at ?1, of version ?2 and of the given number of
// consumer groups (?5...; none: all rows), among the heads of the
// sequences of the rows of the ids of the JSON array ?4 only
// (SucceedClaimNext): k is their keys (and groups), read by id.
func (t *tableQueries) nextCandidatesSQL(groups int, failedHolds bool) string {
	cols, sel := `c1`, `ordering_key`
	if t.grouped {
		cols, sel = `c1, c2`, `ordering_key, grp`
	}
	return `WITH k(` + cols + `) AS (
				SELECT DISTINCT ` + sel + ` FROM ` + t.name + ` WHERE id IN (SELECT value FROM json_each(?4))
				  AND ordering_key IS NOT NULL AND version = ?2)
			SELECT id FROM (` + t.headsSQL(5, groups, failedHolds) + `)
			ORDER BY next_attempt_at LIMIT ` + claimLimit
}

// headsSQL selects the id and due time of the head of each sequence of
// k (#18), keys c1 and, for received rows, groups c2 (those of the given
// number of groups, ?first...; none: all): for each, one search of
// *_key finds the sequence's first row of version ?2 in a status that
// holds the key (Failed too if failedHolds), and that row is selected if
// it is due at ?1 and not leased and no row of its sequence is in
// flight (one search of *_key_lease).
func (t *tableQueries) headsSQL(first, groups int, failedHolds bool) string {
	statuses := sqlstore.HoldingStatuses(failedHolds)
	same, headGroups := `ordering_key = k.c1`, ""
	if t.grouped {
		same = `ordering_key = k.c1 AND grp = k.c2`
		if groups > 0 {
			headGroups = ` AND k.c2 IN (` + numbered(first, groups) + `)`
		}
	}
	return `SELECT h.id, h.next_attempt_at FROM k CROSS JOIN ` + t.name + ` AS h NOT INDEXED
				WHERE h.id = (SELECT id FROM ` + t.name + ` INDEXED BY ` + t.name + `_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded'
						AND ` + same + ` AND version = ?2 AND status IN (` + statuses + `) ORDER BY id LIMIT 1)` + headGroups + `
				  AND h.status IN (` + sqlstore.PendingStatuses + `) AND h.next_attempt_at <= ?1 AND (h.lease_until IS NULL OR h.lease_until <= ?1)
				  AND NOT EXISTS (SELECT 1 FROM ` + t.name + ` INDEXED BY ` + t.name + `_key_lease
					WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ` + same + ` AND version = ?2
					  AND lease_until > ?1)`
}

// runSQL selects, in id order, up to ?3 rows that follow the leased head
// ?1 in its sequence and hold its key (Failed ones too if failedHolds),
// with what decides whether each may join the head's run (see
// storage.ClaimRequest.Run): one search of *_key from the head's
// position, whose predicate it repeats.
func (t *tableQueries) runSQL(failedHolds bool) string {
	statuses := sqlstore.HoldingStatuses(failedHolds)
	return `SELECT r.id, r.status, r.next_attempt_at, r.lease_until
		FROM ` + t.name + ` AS h NOT INDEXED JOIN ` + t.name + ` AS r INDEXED BY ` + t.name + `_key ON ` + t.sameKey("r", "h") + `
			AND r.ordering_key IS NOT NULL AND r.status <> 'Succeeded' AND r.status IN (` + statuses + `) AND r.id > h.id
		WHERE h.id = ?1 AND h.lease_token = ?2
		ORDER BY r.id LIMIT CAST(?3 AS INTEGER)`
}

// runLeaseSQL leases the rows of a run, the ids of the JSON array ?4 that
// runSQL found, as leaseSQL does, those still pending, due at ?3 and not
// leased; the head's lease keeps every other claim away from them.
func (t *tableQueries) runLeaseSQL() string {
	return `UPDATE ` + t.name + ` NOT INDEXED SET lease_until = ?1, lease_token = ?2, status = 'Scheduled'
		WHERE id IN (SELECT value FROM json_each(?4)) AND status IN (` + sqlstore.PendingStatuses + `)
			AND next_attempt_at <= ?3 AND (lease_until IS NULL OR lease_until <= ?3)
		RETURNING ` + t.cols
}

// leaseSQL leases the rows of the ids of the JSON array ?4 found by
// candidatesSQL (one text for any number of ids: see statements), until
// ?1 with token ?2, and returns them: those still due at ?3 and not
// leased, and for rows with an ordering key, still the head of their key
// with no row of it in flight (two searches of *_key and *_key_lease,
// as headFree says; Failed rows hold their key if failedHolds). A
// single UPDATE ... RETURNING, atomic under SQLite's one writer: a row
// another claim took since the candidates were read is left out. NOT
// INDEXED: each row by its rowid (the planner would otherwise search
// *_status for each id and pending status).
func (t *tableQueries) leaseSQL(failedHolds bool) string {
	statuses := sqlstore.HoldingStatuses(failedHolds)
	return `UPDATE ` + t.name + ` NOT INDEXED SET lease_until = ?1, lease_token = ?2, status = 'Scheduled'
		WHERE id IN (SELECT value FROM json_each(?4)) AND status IN (` + sqlstore.PendingStatuses + `)
			AND next_attempt_at <= ?3 AND (lease_until IS NULL OR lease_until <= ?3)` +
		strings.Replace(t.headFree, holding, statuses, 1) + `
		RETURNING ` + t.cols
}

// numbered is n numbered placeholders from ?first.
func numbered(first, n int) string {
	ph := make([]string, n)
	for i := range ph {
		ph[i] = `?` + strconv.Itoa(first+i)
	}
	return strings.Join(ph, ", ")
}

// requeueSQL requeues n rows.
func (t *tableQueries) requeueSQL(n int) string { return t.requeue + sqlstore.Placeholders(n) + `)` }

// deleteSQL deletes n rows.
func (t *tableQueries) deleteSQL(n int) string { return t.delete + sqlstore.Placeholders(n) + `)` }
