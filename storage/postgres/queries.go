package postgres

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gocap/gocap/internal/sqlstore"
)

// tableQueries are the statements for one message table.
type tableQueries struct {
	selectAll     string // all columns, in sqlstore.ScanMessages order; append a sqlstore.List clause
	get           string
	claim         string
	claimGroups   string
	succeed       string
	release       string
	fail          string
	failBatch     string // FailBatch: one row of arrays per failed attempt (#14)
	nextDue       string
	counts        string
	countOthers   string // counts of the rows not Succeeded, from *_status_idx
	rowEstimate   string // the table's live rows by the statistics, -1 if none
	histogram     string
	requeue       string
	delete        string
	deleteExpired string
	blockedKeys   string // ordering keys whose head row is Failed (#18)
	lockKeys      string // the locks of ordering keys, before unclaim (#18)
	unclaim       string // the claim's second check of ordering keys, under their locks (#18)
}

// queries holds every statement of the driver, built once per schema.
type queries struct {
	sqlstore.Tables[tableQueries]

	insertOne           string
	insertMany          string
	insertOneNotify     string // insertOne, and a NOTIFY sent on commit
	insertManyNotify    string // insertMany, and a NOTIFY sent on commit
	insertReceived      string
	insertReceivedBatch string
	lockKey             string // the lock of one ordering key, before a keyed insertReceived (#18)
	lockKeys            string // the locks of ordering keys, before a keyed insertReceivedBatch (#18)
	heartbeat           string
	instances           string
	removeInstance      string
	notifyChannel       string // a NOTIFY outside an insert (a requeue)
	listen              string
	migrateLock         string // serializes migrations of one schema
	migrateLockTimeout  string // bounds Migrate's waits for table locks
	schema              string // the DDL of Migrate
}

func newQueries(schema, channel string) queries {
	s := pgx.Identifier{schema}.Sanitize()
	pub := s + ".published"
	rec := s + ".received"
	q := queries{Tables: sqlstore.Tables[tableQueries]{
		Published: newTableQueries(pub, "id::text AS msg_id, '' AS grp", publishedKey),
		Received:  newTableQueries(rec, "msg_id, grp", receivedKey),
	}}
	// The ordering key ($9, #18; NULL for none) and the version ($10,
	// issue #17) are the last columns of each insert.
	insert := `INSERT INTO ` + pub + ` (id, name, headers, body, status, added, next_attempt_at, policy, ordering_key, version)`
	q.insertOne = insert + ` VALUES ($1, $2, $3::jsonb, $4, $7, $5, $6, $8, $9, $10) ON CONFLICT (id) DO NOTHING`
	q.insertMany = insert + ` SELECT id, name, headers::jsonb, body, status, added, next_attempt_at, policy, ordering_key, version
		FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[], $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[])
		AS m(id, name, headers, body, added, next_attempt_at, status, policy, ordering_key, version)`
	// One statement, one round trip: the NOTIFY is queued in the same
	// transaction and delivered only if it commits.
	lit := "'" + strings.ReplaceAll(channel, "'", "''") + "'"
	q.insertOneNotify = `WITH ins AS (` + q.insertOne + ` RETURNING 1) SELECT pg_notify(` + lit + `, '') FROM ins`
	q.insertManyNotify = `WITH ins AS (` + q.insertMany + ` RETURNING 1)
		SELECT pg_notify(` + lit + `, '') FROM (SELECT 1 FROM ins LIMIT 1) AS one`
	// A received message: inserted, or, when its (msg_id, grp) is stored
	// already, a Failed row reset and claimed; the row is returned in
	// either case, and no row for a duplicate left alone.
	// A keyed row (ordering_key set) is leased only as the head of its
	// key (headAlone), else stored for a claim (lease_until NULL), as is a
	// Failed keyed row reset (it is itself a row of its key). The insert
	// runs after lockKey (lockKeys) in one transaction: see keyLock.
	recInsert := `INSERT INTO ` + rec + ` AS r
		(id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at, lease_token, lease_until, policy, ordering_key, version)`
	recConflict := `
		ON CONFLICT (msg_id, grp) DO UPDATE
		SET status = 'Scheduled', retries = 0, last_error = '', expires_at = NULL,
		    next_attempt_at = EXCLUDED.next_attempt_at, lease_token = EXCLUDED.lease_token,
		    lease_until = EXCLUDED.lease_until
		WHERE r.status = 'Failed'`
	q.insertReceived = recInsert + `
		VALUES ($1, $2, $3, $4, $5::jsonb, $6, 'Scheduled', 0, '', $7, $7, $9,
			CASE WHEN $11::text IS NULL OR ` + headAlone(rec, "$11::text", "$3", "$12") + ` THEN $8::timestamptz END,
			$10, $11, $12)` + recConflict + `
		RETURNING r.id, r.lease_until IS NOT NULL`
	// The rows arrive de-duplicated and sorted by (msg_id, grp) (see
	// sqlstore.ReceivedBatch); a returned row is told from its message by
	// its key. lead ($13) marks the row of each key that may be its head:
	// the smallest id of the key's rows in the batch (the statement does
	// not see its own rows).
	q.insertReceivedBatch = recInsert + `
		SELECT id, msg_id, grp, name, headers::jsonb, body, 'Scheduled', 0, '', added, added, $9,
			CASE WHEN ordering_key IS NULL OR lead AND ` + headAlone(rec, "m.ordering_key", "m.grp", "m.version") + ` THEN $8::timestamptz END,
			policy, ordering_key, version
		FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::timestamptz[], $10::text[], $11::text[], $12::text[], $13::boolean[])
		AS m(id, msg_id, grp, name, headers, body, added, policy, ordering_key, version, lead)` + recConflict + `
		RETURNING r.id, r.msg_id, r.grp, r.lease_until IS NOT NULL`
	q.lockKey = `SELECT pg_advisory_xact_lock(` + keyLock(rec, "$1::text", "$2::text", "$3::text") + `)`
	q.lockKeys = `SELECT count(pg_advisory_xact_lock(k)) FROM (
			SELECT DISTINCT ` + keyLock(rec, "g", "v", "o") + ` AS k
			FROM unnest($1::text[], $2::text[], $3::text[]) AS m(g, v, o) WHERE o IS NOT NULL ORDER BY k OFFSET 0) AS s`
	inst := s + ".instances"
	q.heartbeat = `INSERT INTO ` + inst + ` (id, hostname, pid, started, last_seen) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET last_seen = EXCLUDED.last_seen`
	q.instances = `SELECT ` + sqlstore.InstanceColumns + ` FROM ` + inst + ` WHERE last_seen > $1 ORDER BY started, id`
	q.removeInstance = `DELETE FROM ` + inst + ` WHERE id = $1 OR last_seen < $2`
	q.notifyChannel = `SELECT pg_notify(` + lit + `, '')`
	q.listen = `LISTEN ` + pgx.Identifier{channel}.Sanitize()
	q.migrateLock = `SELECT pg_advisory_xact_lock(hashtext($1))`
	q.migrateLockTimeout = fmt.Sprintf(`SET LOCAL lock_timeout = %d`, migrateLockTimeout.Milliseconds())
	q.schema = SchemaSQL(schema)
	return q
}

// publishedKey and receivedKey are the condition that rows p and c of a
// table are of one ordered sequence (#18): one key and one version (issue
// #17; see "Ordering keys" in package storage), and for received rows one
// group. The columns are those of the *_key_idx index, in its order.
func publishedKey(p, c string) string {
	return p + `.ordering_key = ` + c + `.ordering_key AND ` + p + `.version = ` + c + `.version`
}
func receivedKey(p, c string) string {
	return p + `.ordering_key = ` + c + `.ordering_key AND ` + p + `.grp = ` + c + `.grp AND ` + p + `.version = ` + c + `.version`
}

// headFree is the claim's condition of ordering keys (#18, see "Ordering
// keys" in package storage) on row c: no key, or no row of its sequence
// with a smaller id that holds the key — Scheduled or Delayed, or Failed
// when the boolean parameter failedHolds is true — and none in flight
// (leased beyond now, $1): a row in flight before c would hold the key
// anyway, so only the rows after c are read for it. Both read a range of
// the *_key_idx partial index, whose predicate they imply. It is checked
// on the claim's snapshot; unclaim checks the leases again under the
// keys' locks.
func headFree(table string, sameKey func(p, c string) string, failedHolds string) string {
	return `
				  AND (c.ordering_key IS NULL OR NOT EXISTS (
					SELECT 1 FROM ` + table + ` p WHERE ` + sameKey("p", "c") + ` AND p.id < c.id
					  AND p.status <> 'Succeeded' AND (p.status <> 'Failed' OR ` + failedHolds + `::boolean))
				  AND NOT EXISTS (
					SELECT 1 FROM ` + table + ` p WHERE ` + sameKey("p", "c") + ` AND p.id > c.id
					  AND p.status <> 'Succeeded' AND p.lease_until > $1))`
}

// headAlone is the condition that a received row of key, grp and version
// is the head of its key: no row of its sequence is stored that is not
// Succeeded (one probe of received_key_idx).
func headAlone(table, key, grp, version string) string {
	return `NOT EXISTS (SELECT 1 FROM ` + table + ` p WHERE p.ordering_key = ` + key + ` AND p.grp = ` + grp + `
				AND p.version = ` + version + ` AND p.status <> 'Succeeded')`
}

// keyLock is the advisory lock (a 64-bit hash) of the ordering key key
// of group grp and version version of table (#18). Whatever leases a
// keyed row decides under the lock of its key, in a statement that
// starts after the lock was taken (READ COMMITTED takes a snapshot per
// statement, so it sees every decision committed under the lock before),
// and holds the lock until that decision commits: a claim, after its
// UPDATE committed, takes the locks of the keys it leased and clears the
// leases whose key has another row in flight (lockKeys, then unclaim, in
// one implicit transaction, before Claim returns the rows); an insert of
// received rows that may store a head takes the locks of its keys before
// it (lockKey or lockKeys, then insertReceived or insertReceivedBatch,
// in one implicit transaction). So of two leases of one key, the later
// decision sees the earlier one, and at most one row of a key is handed
// to a worker. A collision of two keys' hashes only serializes them.
func keyLock(table, grp, version, key string) string {
	lit := "'" + strings.ReplaceAll(table, "'", "''") + "/'"
	return `hashtextextended(` + lit + ` || ` + grp + ` || '/' || ` + version + ` || '/' || ` + key + `, 0)`
}

// versionCond restricts a claim to one version, its argument $5 (issue
// #17): the leading column of *_pending_version_idx.
const versionCond = ` AND c.version = $5`

func newTableQueries(table, idCols string, sameKey func(p, c string) string) tableQueries {
	cols := `id, ` + idCols + `, ` + sqlstore.MessageColumns
	// The claim's range of the pending index is [from, $1]: from is
	// ClaimRequest.DueFrom (the zero time when unset), which skips the
	// dead entries of rows completed since the last VACUUM (QUERY_PLANS.md,
	// "Claims from a floor").
	claim := func(extra, failedHolds, from string) string {
		return `UPDATE ` + table + ` SET lease_until = $3, lease_token = $4, status = 'Scheduled'
			WHERE id IN (
				SELECT id FROM ` + table + ` c
				WHERE status IN (` + sqlstore.PendingStatuses + `) AND next_attempt_at <= $1 AND next_attempt_at >= ` + from + `
				  AND (lease_until IS NULL OR lease_until <= $1)` + versionCond + extra + headFree(table, sameKey, failedHolds) + `
				ORDER BY next_attempt_at
				LIMIT $2
				FOR UPDATE SKIP LOCKED)
			RETURNING ` + cols
	}
	final := `$5::boolean OR ($4::integer > 0 AND retries + 1 >= $4::integer)`
	finalOf := `l.perm OR (l.max > 0 AND t.retries + 1 >= l.max)` // final, per row of failBatch
	// appended is the history with one more attempt, the JSON object
	// attempt, keeping the last storage.MaxAttemptHistory.
	appended := func(attempts, attempt string) string {
		return `jsonb_path_query_array(` + attempts + ` || ` + attempt + `::jsonb, '$[` + sqlstore.LastAttemptsFrom + ` to last]')`
	}
	return tableQueries{
		selectAll:   `SELECT ` + cols + ` FROM ` + table,
		get:         `SELECT ` + cols + ` FROM ` + table + ` WHERE id = $1`,
		claim:       claim("", "$6", "$7"),
		claimGroups: claim(` AND grp = ANY($6::text[])`, "$7", "$8"),
		// The locks of the keys of claimed rows (groups, versions, keys),
		// in the order of their hashes, so that two holders never wait for
		// each other: see keyLock.
		lockKeys: `SELECT count(pg_advisory_xact_lock(k)) FROM (
				SELECT DISTINCT ` + keyLock(table, "g", "v", "o") + ` AS k
				FROM unnest($1::text[], $2::text[], $3::text[]) AS m(g, v, o) ORDER BY k OFFSET 0) AS s`,
		// The claimed keyed rows ($1, under the lease token $2) of a key
		// with another row in flight (leased beyond $3) lose their lease
		// again: run after lockKeys, in its transaction, it sees the leases
		// that a claim or insert committed before (see keyLock).
		unclaim: `UPDATE ` + table + ` c SET lease_token = NULL, lease_until = NULL
			WHERE c.id = ANY($1::bigint[]) AND c.lease_token = $2 AND EXISTS (
				SELECT 1 FROM ` + table + ` p WHERE ` + sameKey("p", "c") + ` AND p.status <> 'Succeeded'
				  AND p.id <> c.id AND p.lease_until > $3)
			RETURNING c.id`,
		succeed: `UPDATE ` + table + ` AS t SET status = 'Succeeded', expires_at = $3, lease_token = NULL, lease_until = NULL,
				attempts = ` + appended("t.attempts", "l.attempt") + `
			FROM unnest($1::bigint[], $2::bigint[], $4::text[]) AS l(id, token, attempt)
			WHERE t.id = l.id AND t.lease_token = l.token AND t.status = 'Scheduled'`,
		release: `UPDATE ` + table + ` AS t SET next_attempt_at = $3, last_error = $4, lease_token = NULL, lease_until = NULL
			FROM unnest($1::bigint[], $2::bigint[]) AS l(id, token)
			WHERE t.id = l.id AND t.lease_token = l.token AND t.status = 'Scheduled'`,
		fail: `UPDATE ` + table + ` SET
				retries = retries + 1,
				last_error = $3,
				status = CASE WHEN ` + final + ` THEN 'Failed' ELSE 'Scheduled' END,
				expires_at = CASE WHEN ` + final + ` THEN $6::timestamptz END,
				next_attempt_at = CASE WHEN ` + final + ` THEN next_attempt_at ELSE $7::timestamptz END,
				lease_token = NULL, lease_until = NULL,
				attempts = ` + appended("attempts", "$8") + `
			WHERE id = $1 AND lease_token = $2 AND status = 'Scheduled'
			RETURNING retries, status`,
		// The rows' leases and failures come as arrays, one element per
		// row, joined by primary key; every SET reads the old row, as in
		// fail. The rows returned are those recorded: a row missing from
		// them lost its lease.
		failBatch: `UPDATE ` + table + ` AS t SET
				retries = t.retries + 1,
				last_error = l.err,
				status = CASE WHEN ` + finalOf + ` THEN 'Failed' ELSE 'Scheduled' END,
				expires_at = CASE WHEN ` + finalOf + ` THEN l.exp END,
				next_attempt_at = CASE WHEN ` + finalOf + ` THEN t.next_attempt_at ELSE l.next END,
				lease_token = NULL, lease_until = NULL,
				attempts = ` + appended("t.attempts", "l.attempt") + `
			FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::integer[], $5::boolean[],
					$6::timestamptz[], $7::timestamptz[], $8::text[]) AS l(id, token, err, max, perm, exp, next, attempt)
			WHERE t.id = l.id AND t.lease_token = l.token AND t.status = 'Scheduled'
			RETURNING t.id, t.retries, t.status`,
		// One entry of the pending index: its predicate, then a bound.
		nextDue: `SELECT next_attempt_at FROM ` + table + `
			WHERE status IN (` + sqlstore.PendingStatuses + `) AND next_attempt_at > $1` + ` AND version = $2` + `
			ORDER BY next_attempt_at LIMIT 1`,
		counts: `SELECT status, count(*) FROM ` + table + ` GROUP BY status`,
		// An index-only scan of *_status_idx, whose predicate it repeats.
		countOthers: `SELECT status, count(*) FROM ` + table + ` WHERE status <> 'Succeeded' GROUP BY status`,
		// n_live_tup, the live rows the statistics system counts as rows
		// are inserted and deleted (reset by VACUUM and ANALYZE to their
		// measure), or, when it is zero (statistics reset, or a table no
		// statistic was kept for), reltuples, the count of the last VACUUM
		// or ANALYZE (-1 if there was none).
		rowEstimate: `SELECT COALESCE(NULLIF(pg_stat_get_live_tuples(c.oid), 0), c.reltuples::bigint)
			FROM pg_class c WHERE c.oid = '` + table + `'::regclass`,
		histogram: `SELECT ` + sqlstore.HistogramBucketSQL("$1::bigint", "/") + ` AS bucket, status, count(*) FROM ` + table + `
			WHERE id >= $2 GROUP BY bucket, status ORDER BY bucket, status`,
		// A Scheduled row under a lease is in flight: requeueing it would
		// let a second processor take it, so it is left alone.
		requeue: `UPDATE ` + table + ` SET status = 'Scheduled', retries = 0, last_error = '', expires_at = NULL,
				lease_token = NULL, lease_until = NULL, next_attempt_at = $2
			WHERE id = ANY($1::bigint[]) AND (status <> 'Scheduled' OR lease_until IS NULL OR lease_until <= $2)`,
		delete: `DELETE FROM ` + table + ` WHERE id = ANY($1::bigint[])`,
		deleteExpired: `DELETE FROM ` + table + ` WHERE id IN (
				SELECT id FROM ` + table + ` WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)`,
		// Failed keyed rows (from *_status_idx) with no row of their key
		// before them that is not Succeeded, and the count of those after.
		blockedKeys: `SELECT ` + cols + `,
				(SELECT count(*) FROM ` + table + ` w WHERE ` + sameKey("w", "c") + ` AND w.id > c.id
				   AND w.status <> 'Succeeded' AND w.status IN (` + sqlstore.PendingStatuses + `))
			FROM ` + table + ` c
			WHERE c.status = 'Failed' AND c.ordering_key IS NOT NULL AND NOT EXISTS (
				SELECT 1 FROM ` + table + ` p WHERE ` + sameKey("p", "c") + ` AND p.id < c.id AND p.status <> 'Succeeded')
			ORDER BY c.id LIMIT $1`,
	}
}
