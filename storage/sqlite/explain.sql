-- Fills scratch tables with 1,000,000 published rows, most of them
-- Delayed into the future (80% Delayed, due over the next 6 days; 10%
-- Succeeded; 5% Scheduled and due; 3% Scheduled for a later retry; 2%
-- Failed), each of version 'v1' (50%), 'v2' (40%) or of the empty
-- version (10%: rows of before versions), and as many received rows (the
-- Delayed ones Scheduled for a later retry), and prints EXPLAIN QUERY PLAN of the background queries;
-- the claims (in a transaction rolled back) and NextDue also run, with
-- the CLI's timer and statement statistics (.stats stmt: virtual machine
-- steps, full scan steps, sorts). Run from the repository root, on a scratch file:
--   sed 's/{{prefix}}/gocap_xp13_/g' storage/sqlite/schema.sql > /tmp/gocap_xp13_sqlite.sql
--   rm -f /tmp/gocap_xp13.db && sqlite3 /tmp/gocap_xp13.db < /tmp/gocap_xp13_sqlite.sql
--   sqlite3 /tmp/gocap_xp13.db < storage/sqlite/explain.sql; rm -f /tmp/gocap_xp13.db
-- QUERY_PLANS.md holds its output (the statistics lines that matter).
-- The claim and NextDue name their index (INDEXED BY), as the driver's do;
-- the claims carry the condition of ordering keys (#18), which these rows
-- without a key skip; the last sections add keyed rows and explain the
-- claim's two statements (candidates, lease). Times are Unix microseconds; "now" is
-- fixed at 1,764,000,000,000,000 (2025-11-24T16:00:00Z).
.bail on
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 1000000)
INSERT INTO gocap_xp13_published (id, name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at, policy, version)
SELECT n << 22, 'order.paid.' || (n % 50), '{"cap-msg-id":"1"}', CAST('{"id":' || n || '}' AS BLOB),
       CASE WHEN n % 100 < 80 THEN 'Delayed' WHEN n % 100 < 90 THEN 'Succeeded'
            WHEN n % 100 < 98 THEN 'Scheduled' ELSE 'Failed' END,
       CASE WHEN n % 100 >= 98 THEN 50 WHEN n % 100 >= 95 THEN 2 ELSE 0 END, '',
       1764000000000000 - 172800000000 + n * 100000,
       CASE WHEN n % 100 < 80 THEN 1764000000000000 + 3600000000 + n * 500000
            WHEN n % 100 >= 95 AND n % 100 < 98 THEN 1764000000000000 + n * 100000
            ELSE 1764000000000000 - 172800000000 + n * 100000 END,
       CASE WHEN n % 100 >= 80 AND n % 100 < 90 OR n % 100 >= 98 THEN 1764000000000000 - 86400000000 + n * 100000 END,
       CASE WHEN n % 3 = 0 THEN 'exp:1s,5s,30s' ELSE '' END,
       CASE WHEN n % 10 = 5 THEN '' WHEN n % 2 = 0 THEN 'v1' ELSE 'v2' END
FROM seq;
INSERT INTO gocap_xp13_received (id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at, version)
SELECT id, CAST(id AS TEXT), 'billing.' || version, name, headers, body, CASE WHEN status = 'Delayed' THEN 'Scheduled' ELSE status END,
       retries, last_error, added, next_attempt_at, expires_at, version
FROM gocap_xp13_published;
ANALYZE;
.headers on
.mode column
SELECT status, COUNT(*) AS rows, MIN(next_attempt_at) > 1764000000000000 AS all_future FROM gocap_xp13_published GROUP BY status;
SELECT version, COUNT(*) AS rows FROM gocap_xp13_published GROUP BY version;
.headers off
.mode list

SELECT '### Claim (published, version v1): 500 of its 30,000 due rows, none of the Delayed ones or of other versions read';
EXPLAIN QUERY PLAN
UPDATE gocap_xp13_published SET lease_until = 1764000060000000, lease_token = 7, status = 'Scheduled'
WHERE id IN (SELECT id FROM gocap_xp13_published AS c INDEXED BY gocap_xp13_published_pending_unkeyed
             WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at <= 1764000000000000
               AND (lease_until IS NULL OR lease_until <= 1764000000000000) AND version = 'v1'
               AND (c.ordering_key IS NULL OR NOT EXISTS (
                 SELECT 1 FROM gocap_xp13_published AS p INDEXED BY gocap_xp13_published_key WHERE p.ordering_key = c.ordering_key AND p.version = c.version
                   AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded' AND p.status IN ('Scheduled', 'Delayed', 'Failed') AND p.id < c.id))
             ORDER BY next_attempt_at LIMIT 500) RETURNING id;
BEGIN;
.timer on
.stats stmt
SELECT COUNT(*) AS claimed FROM (SELECT id FROM gocap_xp13_published INDEXED BY gocap_xp13_published_pending_unkeyed
             WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at <= 1764000000000000
               AND (lease_until IS NULL OR lease_until <= 1764000000000000) AND version = 'v1'
             ORDER BY next_attempt_at LIMIT 500);
UPDATE gocap_xp13_published SET lease_until = 1764000060000000, lease_token = 7, status = 'Scheduled'
WHERE id IN (SELECT id FROM gocap_xp13_published AS c INDEXED BY gocap_xp13_published_pending_unkeyed
             WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at <= 1764000000000000
               AND (lease_until IS NULL OR lease_until <= 1764000000000000) AND version = 'v1'
               AND (c.ordering_key IS NULL OR NOT EXISTS (
                 SELECT 1 FROM gocap_xp13_published AS p INDEXED BY gocap_xp13_published_key WHERE p.ordering_key = c.ordering_key AND p.version = c.version
                   AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded' AND p.status IN ('Scheduled', 'Delayed', 'Failed') AND p.id < c.id))
             ORDER BY next_attempt_at LIMIT 500);
SELECT changes() AS claimed;
.stats off
.timer off
ROLLBACK;
SELECT '### Claim (published, version v1) when nothing is due: 880,000 pending rows, none due yet';
.timer on
.stats stmt
SELECT COUNT(*) AS claimed FROM (SELECT id FROM gocap_xp13_published INDEXED BY gocap_xp13_published_pending_unkeyed
             WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at <= 1763700000000000
               AND (lease_until IS NULL OR lease_until <= 1763700000000000) AND version = 'v1'
             ORDER BY next_attempt_at LIMIT 500);
.stats off
.timer off
SELECT '### For comparison: the claim of 500 rows read through the table (NOT INDEXED)';
.timer on
.stats stmt
SELECT COUNT(*) AS claimed FROM (SELECT id FROM gocap_xp13_published NOT INDEXED
             WHERE status IN ('Scheduled', 'Delayed') AND next_attempt_at <= 1764000000000000
               AND (lease_until IS NULL OR lease_until <= 1764000000000000) AND version = 'v1'
             ORDER BY next_attempt_at LIMIT 500);
.stats off
.timer off
SELECT '### Claim (received, version v1, by group)';
EXPLAIN QUERY PLAN
UPDATE gocap_xp13_received SET lease_until = 1764000060000000, lease_token = 7, status = 'Scheduled'
WHERE id IN (SELECT id FROM gocap_xp13_received AS c INDEXED BY gocap_xp13_received_pending_unkeyed
             WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at <= 1764000000000000
               AND (lease_until IS NULL OR lease_until <= 1764000000000000) AND version = 'v1' AND grp IN ('billing.v1')
               AND (c.ordering_key IS NULL OR NOT EXISTS (
                 SELECT 1 FROM gocap_xp13_received AS p INDEXED BY gocap_xp13_received_key WHERE p.ordering_key = c.ordering_key AND p.grp = c.grp AND p.version = c.version
                   AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded' AND p.status IN ('Scheduled', 'Delayed', 'Failed') AND p.id < c.id))
             ORDER BY next_attempt_at LIMIT 500) RETURNING id;
SELECT '### NextDue (published, version v1): one index entry';
EXPLAIN QUERY PLAN
SELECT next_attempt_at FROM gocap_xp13_published INDEXED BY gocap_xp13_published_pending_unkeyed
WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at > 1764000000000000 AND version = 'v1' ORDER BY next_attempt_at LIMIT 1;
.timer on
.stats stmt
SELECT next_attempt_at FROM gocap_xp13_published INDEXED BY gocap_xp13_published_pending_unkeyed
WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at > 1764000000000000 AND version = 'v1' ORDER BY next_attempt_at LIMIT 1;
.stats off
.timer off
SELECT '### NextDue (received, version v1)';
EXPLAIN QUERY PLAN
SELECT next_attempt_at FROM gocap_xp13_received INDEXED BY gocap_xp13_received_pending_unkeyed
WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at > 1764000000000000 AND version = 'v1' ORDER BY next_attempt_at LIMIT 1;
SELECT '### Succeed (one row of a batch, appending its attempt)';
EXPLAIN QUERY PLAN
UPDATE gocap_xp13_published SET status = 'Succeeded', expires_at = 1, lease_token = NULL, lease_until = NULL,
  attempts = json_remove(json_insert(attempts, '$[#]', json('{"ms":1}')), CASE WHEN json_array_length(attempts) >= 20 THEN '$[0]' ELSE '$[20]' END)
WHERE id = 4194304 AND lease_token = 7 AND status = 'Scheduled';
SELECT '### Fail';
EXPLAIN QUERY PLAN
UPDATE gocap_xp13_published SET retries = retries + 1, last_error = 'x', lease_token = NULL,
  attempts = json_remove(json_insert(attempts, '$[#]', json('{"ms":1,"err":"x"}')), CASE WHEN json_array_length(attempts) >= 20 THEN '$[0]' ELSE '$[20]' END)
WHERE id = 4194304 AND lease_token = 7 AND status = 'Scheduled' RETURNING retries, status;
SELECT '### Received insert (de-duplication)';
EXPLAIN QUERY PLAN
INSERT INTO gocap_xp13_received (id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at)
VALUES (1, '42', 'billing', 'n', '{}', x'', 'Scheduled', 0, '', 1, 1)
ON CONFLICT (msg_id, grp) DO UPDATE SET status = 'Scheduled' WHERE status = 'Failed' RETURNING id;
SELECT '### Cleaner';
EXPLAIN QUERY PLAN
DELETE FROM gocap_xp13_published WHERE id IN (
  SELECT id FROM gocap_xp13_published WHERE expires_at IS NOT NULL AND expires_at <= 1764000000000000 ORDER BY expires_at LIMIT 1000);
SELECT '### Dashboard: Failed, newest first';
EXPLAIN QUERY PLAN
SELECT id FROM gocap_xp13_published WHERE status = 'Failed' AND id < 4000000000000 ORDER BY id DESC LIMIT 50;
SELECT '### Dashboard: histogram of the last hour';
EXPLAIN QUERY PLAN
SELECT ((id >> 22) + 1288834974657) / 60000 AS bucket, status, COUNT(*) FROM gocap_xp13_published
WHERE id >= 4000000000000 GROUP BY bucket, status ORDER BY bucket, status;
SELECT '### Dashboard: counts by status';
EXPLAIN QUERY PLAN
SELECT status, COUNT(*) FROM gocap_xp13_published GROUP BY status;

-- Ordering keys (#18): 1,000,000 more published rows and as many
-- received ones (group billing.v1), all of version v1, due and keyed,
-- 100 to a key over 10,000 keys; the head of each key is in flight (a
-- lease until after now) but for 100 keys whose heads are free. The
-- claim's candidates are read with a loose scan of *_key, a few searches
-- per key, and never the rows behind a head.
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 1000000)
INSERT INTO gocap_xp13_published (id, name, headers, body, status, retries, last_error, added, next_attempt_at, lease_token, lease_until, ordering_key, version)
SELECT 4503599627370496 + n, 'order.paid', '{"cap-msg-id":"1"}', CAST('{"id":' || n || '}' AS BLOB), 'Scheduled', 0, '',
       1764000000000000 - 172800000000 + n * 100, 1764000000000000 - 172800000000 + n * 100,
       CASE WHEN n <= 10000 AND n % 100 <> 0 THEN 7 END, CASE WHEN n <= 10000 AND n % 100 <> 0 THEN 1764000060000000 END,
       'order-' || (n % 10000), 'v1'
FROM seq;
INSERT INTO gocap_xp13_received (id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at, lease_token, lease_until, ordering_key, version)
SELECT id, CAST(id AS TEXT), 'billing.v1', name, headers, body, status, retries, last_error, added, next_attempt_at, lease_token, lease_until, ordering_key, version
FROM gocap_xp13_published WHERE ordering_key IS NOT NULL;
ANALYZE;
SELECT '### Ordering keys: the candidates of the claim (published, version v1): 10,000 keys, 1,000,000 keyed rows, 100 free heads, and the 30,000 due rows without a key';
EXPLAIN QUERY PLAN
WITH RECURSIVE k(c1) AS (
        SELECT * FROM (SELECT ordering_key FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' ORDER BY ordering_key LIMIT 1)
        UNION ALL
        SELECT n.ordering_key FROM k CROSS JOIN gocap_xp13_published AS n NOT INDEXED WHERE n.id = (SELECT id FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key > k.c1 ORDER BY ordering_key LIMIT 1))
      SELECT id FROM (
        SELECT * FROM (SELECT id, next_attempt_at FROM gocap_xp13_published INDEXED BY gocap_xp13_published_pending_unkeyed
          WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at <= 1764000000000000
            AND (lease_until IS NULL OR lease_until <= 1764000000000000) AND version = 'v1'
          ORDER BY next_attempt_at LIMIT 500)
        UNION ALL
        SELECT h.id, h.next_attempt_at FROM k CROSS JOIN gocap_xp13_published AS h NOT INDEXED
        WHERE h.id = (SELECT id FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND version = 'v1'
            AND status IN ('Scheduled', 'Delayed', 'Failed') ORDER BY id LIMIT 1)
          AND h.status IN ('Scheduled', 'Delayed') AND h.next_attempt_at <= 1764000000000000 AND (h.lease_until IS NULL OR h.lease_until <= 1764000000000000)
          AND NOT EXISTS (SELECT 1 FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key_lease
          WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND version = 'v1'
            AND lease_until > 1764000000000000))
      ORDER BY next_attempt_at LIMIT 500;
.timer on
.stats stmt
SELECT COUNT(*) AS candidates, SUM(id > 4503599627370496) AS heads FROM (
WITH RECURSIVE k(c1) AS (
        SELECT * FROM (SELECT ordering_key FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' ORDER BY ordering_key LIMIT 1)
        UNION ALL
        SELECT n.ordering_key FROM k CROSS JOIN gocap_xp13_published AS n NOT INDEXED WHERE n.id = (SELECT id FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key > k.c1 ORDER BY ordering_key LIMIT 1))
      SELECT id FROM (
        SELECT * FROM (SELECT id, next_attempt_at FROM gocap_xp13_published INDEXED BY gocap_xp13_published_pending_unkeyed
          WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at <= 1764000000000000
            AND (lease_until IS NULL OR lease_until <= 1764000000000000) AND version = 'v1'
          ORDER BY next_attempt_at LIMIT 500)
        UNION ALL
        SELECT h.id, h.next_attempt_at FROM k CROSS JOIN gocap_xp13_published AS h NOT INDEXED
        WHERE h.id = (SELECT id FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND version = 'v1'
            AND status IN ('Scheduled', 'Delayed', 'Failed') ORDER BY id LIMIT 1)
          AND h.status IN ('Scheduled', 'Delayed') AND h.next_attempt_at <= 1764000000000000 AND (h.lease_until IS NULL OR h.lease_until <= 1764000000000000)
          AND NOT EXISTS (SELECT 1 FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key_lease
          WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND version = 'v1'
            AND lease_until > 1764000000000000))
      ORDER BY next_attempt_at LIMIT 500);
.stats off
.timer off
SELECT '### Ordering keys: the lease of the candidates (published; here of three ids, a JSON array as the driver passes them)';
EXPLAIN QUERY PLAN
UPDATE gocap_xp13_published NOT INDEXED SET lease_until = 1764000060000000, lease_token = 7, status = 'Scheduled'
    WHERE id IN (SELECT value FROM json_each('[1,2,3]')) AND status IN ('Scheduled', 'Delayed')
      AND next_attempt_at <= 1764000000000000 AND (lease_until IS NULL OR lease_until <= 1764000000000000)
        AND (ordering_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM gocap_xp13_published AS p INDEXED BY gocap_xp13_published_key WHERE p.ordering_key = gocap_xp13_published.ordering_key AND p.version = gocap_xp13_published.version
            AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded' AND p.status IN ('Scheduled', 'Delayed', 'Failed') AND p.id < gocap_xp13_published.id)
          AND NOT EXISTS (
          SELECT 1 FROM gocap_xp13_published AS p INDEXED BY gocap_xp13_published_key_lease WHERE p.ordering_key = gocap_xp13_published.ordering_key AND p.version = gocap_xp13_published.version
            AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded' AND p.lease_until > 1764000000000000))
    RETURNING id, CAST(id AS TEXT), '', name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at, lease_token, lease_until, policy, attempts, ordering_key, version;
BEGIN;
.timer on
.stats stmt
UPDATE gocap_xp13_published SET lease_until = 1764000060000000, lease_token = 7, status = 'Scheduled'
    WHERE id IN (SELECT id FROM (
WITH RECURSIVE k(c1) AS (
        SELECT * FROM (SELECT ordering_key FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' ORDER BY ordering_key LIMIT 1)
        UNION ALL
        SELECT n.ordering_key FROM k CROSS JOIN gocap_xp13_published AS n NOT INDEXED WHERE n.id = (SELECT id FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key > k.c1 ORDER BY ordering_key LIMIT 1))
      SELECT id FROM (
        SELECT * FROM (SELECT id, next_attempt_at FROM gocap_xp13_published INDEXED BY gocap_xp13_published_pending_unkeyed
          WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at <= 1764000000000000
            AND (lease_until IS NULL OR lease_until <= 1764000000000000) AND version = 'v1'
          ORDER BY next_attempt_at LIMIT 500)
        UNION ALL
        SELECT h.id, h.next_attempt_at FROM k CROSS JOIN gocap_xp13_published AS h NOT INDEXED
        WHERE h.id = (SELECT id FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND version = 'v1'
            AND status IN ('Scheduled', 'Delayed', 'Failed') ORDER BY id LIMIT 1)
          AND h.status IN ('Scheduled', 'Delayed') AND h.next_attempt_at <= 1764000000000000 AND (h.lease_until IS NULL OR h.lease_until <= 1764000000000000)
          AND NOT EXISTS (SELECT 1 FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key_lease
          WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND version = 'v1'
            AND lease_until > 1764000000000000))
      ORDER BY next_attempt_at LIMIT 500)) AND status IN ('Scheduled', 'Delayed')
      AND next_attempt_at <= 1764000000000000 AND (lease_until IS NULL OR lease_until <= 1764000000000000)
        AND (ordering_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM gocap_xp13_published AS p INDEXED BY gocap_xp13_published_key WHERE p.ordering_key = gocap_xp13_published.ordering_key AND p.version = gocap_xp13_published.version
            AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded' AND p.status IN ('Scheduled', 'Delayed', 'Failed') AND p.id < gocap_xp13_published.id)
          AND NOT EXISTS (
          SELECT 1 FROM gocap_xp13_published AS p INDEXED BY gocap_xp13_published_key_lease WHERE p.ordering_key = gocap_xp13_published.ordering_key AND p.version = gocap_xp13_published.version
            AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded' AND p.lease_until > 1764000000000000))
    ;
SELECT changes() AS leased;
.stats off
.timer off
ROLLBACK;
SELECT '### Ordering keys: the next rows of the keys of a Succeed (SucceedClaimNext, published, version v1): 100 heads in flight marked Succeeded, then the heads of their keys';
-- The ids of the Succeed are a JSON array (one statement text whatever
-- their number, prepared once by the driver): here 100 heads in flight.
.parameter set @done "(SELECT json_group_array(id) FROM gocap_xp13_published WHERE id > 4503599627370496 AND id <= 4503599627370496 + 101 AND id <> 4503599627370496 + 100)"
EXPLAIN QUERY PLAN
WITH k(c1) AS (
        SELECT DISTINCT ordering_key FROM gocap_xp13_published WHERE id IN (SELECT value FROM json_each(@done))
          AND ordering_key IS NOT NULL AND version = 'v1')
      SELECT id FROM (SELECT h.id, h.next_attempt_at FROM k CROSS JOIN gocap_xp13_published AS h NOT INDEXED
        WHERE h.id = (SELECT id FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND version = 'v1'
            AND status IN ('Scheduled', 'Delayed', 'Failed') ORDER BY id LIMIT 1)
          AND h.status IN ('Scheduled', 'Delayed') AND h.next_attempt_at <= 1764000000000000 AND (h.lease_until IS NULL OR h.lease_until <= 1764000000000000)
          AND NOT EXISTS (SELECT 1 FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key_lease
          WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND version = 'v1'
            AND lease_until > 1764000000000000))
      ORDER BY next_attempt_at LIMIT 100;
BEGIN;
UPDATE gocap_xp13_published SET status = 'Succeeded', lease_token = NULL, lease_until = NULL WHERE id IN (SELECT value FROM json_each(@done));
.timer on
.stats stmt
SELECT COUNT(*) AS candidates FROM (WITH k(c1) AS (
        SELECT DISTINCT ordering_key FROM gocap_xp13_published WHERE id IN (SELECT value FROM json_each(@done))
          AND ordering_key IS NOT NULL AND version = 'v1')
      SELECT id FROM (SELECT h.id, h.next_attempt_at FROM k CROSS JOIN gocap_xp13_published AS h NOT INDEXED
        WHERE h.id = (SELECT id FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND version = 'v1'
            AND status IN ('Scheduled', 'Delayed', 'Failed') ORDER BY id LIMIT 1)
          AND h.status IN ('Scheduled', 'Delayed') AND h.next_attempt_at <= 1764000000000000 AND (h.lease_until IS NULL OR h.lease_until <= 1764000000000000)
          AND NOT EXISTS (SELECT 1 FROM gocap_xp13_published INDEXED BY gocap_xp13_published_key_lease
          WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND version = 'v1'
            AND lease_until > 1764000000000000))
      ORDER BY next_attempt_at LIMIT 100);
.stats off
.timer off
ROLLBACK;
.parameter clear
SELECT '### Ordering keys: for comparison, the claim before the loose scan: every due keyed row of the version, and a search of *_key for each';
.timer on
.stats stmt
SELECT COUNT(*) AS claimed FROM (SELECT id FROM gocap_xp13_published AS c INDEXED BY gocap_xp13_published_pending_keyed
  WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NOT NULL AND next_attempt_at <= 1764000000000000
    AND (lease_until IS NULL OR lease_until <= 1764000000000000) AND version = 'v1'
    AND NOT EXISTS (
      SELECT 1 FROM gocap_xp13_published AS p INDEXED BY gocap_xp13_published_key WHERE p.ordering_key = c.ordering_key AND p.version = c.version
        AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded' AND p.status IN ('Scheduled', 'Delayed', 'Failed') AND p.id < c.id)
    AND NOT EXISTS (
      SELECT 1 FROM gocap_xp13_published AS p INDEXED BY gocap_xp13_published_key_lease WHERE p.ordering_key = c.ordering_key AND p.version = c.version
        AND p.ordering_key IS NOT NULL AND p.status <> 'Succeeded' AND p.lease_until > 1764000000000000)
  ORDER BY next_attempt_at LIMIT 500);
.stats off
.timer off
SELECT '### Ordering keys: the candidates of the claim (received, version v1, by group)';
EXPLAIN QUERY PLAN
WITH RECURSIVE k(c1, c2) AS (
        SELECT * FROM (SELECT ordering_key, grp FROM gocap_xp13_received INDEXED BY gocap_xp13_received_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' ORDER BY ordering_key, grp LIMIT 1)
        UNION ALL
        SELECT n.ordering_key, n.grp FROM k CROSS JOIN gocap_xp13_received AS n NOT INDEXED WHERE n.id = coalesce(
          (SELECT id FROM gocap_xp13_received INDEXED BY gocap_xp13_received_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND grp > k.c2 ORDER BY grp LIMIT 1),
          (SELECT id FROM gocap_xp13_received INDEXED BY gocap_xp13_received_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key > k.c1 ORDER BY ordering_key, grp LIMIT 1)))
      SELECT id FROM (
        SELECT * FROM (SELECT id, next_attempt_at FROM gocap_xp13_received INDEXED BY gocap_xp13_received_pending_unkeyed
          WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at <= 1764000000000000
            AND (lease_until IS NULL OR lease_until <= 1764000000000000) AND version = 'v1' AND grp IN ('billing.v1')
          ORDER BY next_attempt_at LIMIT 500)
        UNION ALL
        SELECT h.id, h.next_attempt_at FROM k CROSS JOIN gocap_xp13_received AS h NOT INDEXED
        WHERE h.id = (SELECT id FROM gocap_xp13_received INDEXED BY gocap_xp13_received_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND grp = k.c2 AND version = 'v1'
            AND status IN ('Scheduled', 'Delayed', 'Failed') ORDER BY id LIMIT 1) AND k.c2 IN ('billing.v1')
          AND h.status IN ('Scheduled', 'Delayed') AND h.next_attempt_at <= 1764000000000000 AND (h.lease_until IS NULL OR h.lease_until <= 1764000000000000)
          AND NOT EXISTS (SELECT 1 FROM gocap_xp13_received INDEXED BY gocap_xp13_received_key_lease
          WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND grp = k.c2 AND version = 'v1'
            AND lease_until > 1764000000000000))
      ORDER BY next_attempt_at LIMIT 500;
.timer on
.stats stmt
SELECT COUNT(*) AS candidates, SUM(id > 4503599627370496) AS heads FROM (
WITH RECURSIVE k(c1, c2) AS (
        SELECT * FROM (SELECT ordering_key, grp FROM gocap_xp13_received INDEXED BY gocap_xp13_received_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' ORDER BY ordering_key, grp LIMIT 1)
        UNION ALL
        SELECT n.ordering_key, n.grp FROM k CROSS JOIN gocap_xp13_received AS n NOT INDEXED WHERE n.id = coalesce(
          (SELECT id FROM gocap_xp13_received INDEXED BY gocap_xp13_received_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND grp > k.c2 ORDER BY grp LIMIT 1),
          (SELECT id FROM gocap_xp13_received INDEXED BY gocap_xp13_received_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key > k.c1 ORDER BY ordering_key, grp LIMIT 1)))
      SELECT id FROM (
        SELECT * FROM (SELECT id, next_attempt_at FROM gocap_xp13_received INDEXED BY gocap_xp13_received_pending_unkeyed
          WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at <= 1764000000000000
            AND (lease_until IS NULL OR lease_until <= 1764000000000000) AND version = 'v1' AND grp IN ('billing.v1')
          ORDER BY next_attempt_at LIMIT 500)
        UNION ALL
        SELECT h.id, h.next_attempt_at FROM k CROSS JOIN gocap_xp13_received AS h NOT INDEXED
        WHERE h.id = (SELECT id FROM gocap_xp13_received INDEXED BY gocap_xp13_received_key WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND grp = k.c2 AND version = 'v1'
            AND status IN ('Scheduled', 'Delayed', 'Failed') ORDER BY id LIMIT 1) AND k.c2 IN ('billing.v1')
          AND h.status IN ('Scheduled', 'Delayed') AND h.next_attempt_at <= 1764000000000000 AND (h.lease_until IS NULL OR h.lease_until <= 1764000000000000)
          AND NOT EXISTS (SELECT 1 FROM gocap_xp13_received INDEXED BY gocap_xp13_received_key_lease
          WHERE ordering_key IS NOT NULL AND status <> 'Succeeded' AND ordering_key = k.c1 AND grp = k.c2 AND version = 'v1'
            AND lease_until > 1764000000000000))
      ORDER BY next_attempt_at LIMIT 500);
.stats off
.timer off
SELECT '### NextDue (published, version v1): the first entry after now of each of the two indexes';
EXPLAIN QUERY PLAN
SELECT
        (SELECT next_attempt_at FROM gocap_xp13_published INDEXED BY gocap_xp13_published_pending_unkeyed WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at > 1764000000000000 AND version = 'v1' ORDER BY next_attempt_at LIMIT 1),
        (SELECT next_attempt_at FROM gocap_xp13_published INDEXED BY gocap_xp13_published_pending_keyed WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NOT NULL AND next_attempt_at > 1764000000000000 AND version = 'v1' ORDER BY next_attempt_at LIMIT 1);
.timer on
.stats stmt
SELECT
        (SELECT next_attempt_at FROM gocap_xp13_published INDEXED BY gocap_xp13_published_pending_unkeyed WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL AND next_attempt_at > 1764000000000000 AND version = 'v1' ORDER BY next_attempt_at LIMIT 1),
        (SELECT next_attempt_at FROM gocap_xp13_published INDEXED BY gocap_xp13_published_pending_keyed WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NOT NULL AND next_attempt_at > 1764000000000000 AND version = 'v1' ORDER BY next_attempt_at LIMIT 1);
.stats off
.timer off
