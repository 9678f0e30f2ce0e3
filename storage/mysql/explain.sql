-- Fills scratch tables with 1,000,000 published rows, most of them
-- Delayed into the future (80% Delayed, due over the next 6 days; 10%
-- Succeeded; 5% Scheduled and due; 3% Scheduled for a later retry; 2%
-- Failed), each of version 'v1' (50%), 'v2' (40%) or of the empty
-- version (10%: rows of before versions), and as many received rows (the
-- Delayed ones Scheduled for a later retry), and prints the plans of the background queries: the
-- claim and NextDue with ANALYZE (the rows each step read, r_rows, and
-- its time, r_total_time_ms, in the FORMAT=JSON ones) and
-- the handler reads they made, the others with EXPLAIN. MariaDB (it uses
-- the Sequence engine's seq_1_to_1000000; on MySQL 8 use a recursive CTE
-- instead, and EXPLAIN ANALYZE for ANALYZE). Run from the repository root:
--   sed 's/{{prefix}}/gocap_xp13_/g' storage/mysql/schema.sql > /tmp/gocap_xp13_mysql.sql
--   mariadb -h127.0.0.1 -uroot test < /tmp/gocap_xp13_mysql.sql
--   mariadb -h127.0.0.1 -uroot -t test < storage/mysql/explain.sql
-- The claims are the driver's (FORCE INDEX, the condition of ordering
-- keys, #18, which these rows without a key pass without reading *_key).
-- It drops the tables at the end. QUERY_PLANS.md holds its output.
INSERT INTO gocap_xp13_published (id, name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at, policy, version)
SELECT seq << 22, CONCAT('order.paid.', seq % 50), '{"cap-msg-id":"1"}', CONCAT('{"id":', seq, '}'),
       CASE WHEN seq % 100 < 80 THEN 'Delayed' WHEN seq % 100 < 90 THEN 'Succeeded'
            WHEN seq % 100 < 98 THEN 'Scheduled' ELSE 'Failed' END,
       CASE WHEN seq % 100 >= 98 THEN 50 WHEN seq % 100 >= 95 THEN 2 ELSE 0 END, '',
       UTC_TIMESTAMP(6) - INTERVAL 2 DAY + INTERVAL seq * 100000 MICROSECOND,
       CASE WHEN seq % 100 < 80 THEN UTC_TIMESTAMP(6) + INTERVAL 1 HOUR + INTERVAL seq * 500000 MICROSECOND
            WHEN seq % 100 >= 95 AND seq % 100 < 98 THEN UTC_TIMESTAMP(6) + INTERVAL seq * 100000 MICROSECOND
            ELSE UTC_TIMESTAMP(6) - INTERVAL 2 DAY + INTERVAL seq * 100000 MICROSECOND END,
       IF(seq % 100 >= 80 AND seq % 100 < 90 OR seq % 100 >= 98, UTC_TIMESTAMP(6) - INTERVAL 1 DAY + INTERVAL seq * 100000 MICROSECOND, NULL),
       IF(seq % 3 = 0, 'exp:1s,5s,30s', ''),
       CASE WHEN seq % 10 = 5 THEN '' WHEN seq % 2 = 0 THEN 'v1' ELSE 'v2' END
FROM seq_1_to_1000000;
INSERT INTO gocap_xp13_received (id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at, version)
SELECT id, CAST(id AS CHAR), CONCAT('billing.', version), name, headers, body, IF(status = 'Delayed', 'Scheduled', status),
       retries, last_error, added, next_attempt_at, expires_at, version
FROM gocap_xp13_published;
ANALYZE TABLE gocap_xp13_published, gocap_xp13_received;
SELECT status, COUNT(*), MIN(next_attempt_at) > UTC_TIMESTAMP(6) AS all_future FROM gocap_xp13_published GROUP BY status;
SELECT version, COUNT(*) FROM gocap_xp13_published GROUP BY version;

SELECT '### Claim (published, version v1): 500 of its 30,000 due rows, none of the Delayed ones or of other versions read' AS q;
BEGIN;
ANALYZE FORMAT=JSON SELECT id FROM gocap_xp13_published AS c FORCE INDEX (gocap_xp13_published_pending_version)
WHERE due_at <= UTC_TIMESTAMP(6) AND (lease_until IS NULL OR lease_until <= UTC_TIMESTAMP(6)) AND version = 'v1'
  AND (c.ordering_key IS NULL OR c.id = (
    SELECT p.id FROM gocap_xp13_published AS p FORCE INDEX (gocap_xp13_published_key) WHERE p.key_held = c.ordering_key AND p.version = c.version
      AND p.status IN ('Scheduled', 'Delayed', 'Failed') ORDER BY p.id LIMIT 1))
ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED;
ROLLBACK;
FLUSH STATUS;
BEGIN;
SELECT COUNT(*) AS claimed FROM (SELECT id FROM gocap_xp13_published AS c FORCE INDEX (gocap_xp13_published_pending_version)
WHERE due_at <= UTC_TIMESTAMP(6) AND (lease_until IS NULL OR lease_until <= UTC_TIMESTAMP(6)) AND version = 'v1'
  AND (c.ordering_key IS NULL OR c.id = (
    SELECT p.id FROM gocap_xp13_published AS p FORCE INDEX (gocap_xp13_published_key) WHERE p.key_held = c.ordering_key AND p.version = c.version
      AND p.status IN ('Scheduled', 'Delayed', 'Failed') ORDER BY p.id LIMIT 1))
ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED) AS claimed;
SHOW SESSION STATUS WHERE Variable_name IN ('Handler_read_key', 'Handler_read_next', 'Handler_read_rnd_next');
ROLLBACK;
SELECT '### Claim (published, version v1) when nothing is due: 880,000 pending rows, none due yet' AS q;
FLUSH STATUS;
ANALYZE FORMAT=JSON SELECT id FROM gocap_xp13_published AS c FORCE INDEX (gocap_xp13_published_pending_version)
WHERE due_at <= UTC_TIMESTAMP(6) - INTERVAL 3 DAY AND (lease_until IS NULL OR lease_until <= UTC_TIMESTAMP(6) - INTERVAL 3 DAY) AND version = 'v1'
  AND (c.ordering_key IS NULL OR c.id = (
    SELECT p.id FROM gocap_xp13_published AS p FORCE INDEX (gocap_xp13_published_key) WHERE p.key_held = c.ordering_key AND p.version = c.version
      AND p.status IN ('Scheduled', 'Delayed', 'Failed') ORDER BY p.id LIMIT 1))
ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED;
SHOW SESSION STATUS WHERE Variable_name IN ('Handler_read_key', 'Handler_read_next', 'Handler_read_rnd_next');
SELECT '### Lease the claimed rows (and make a Delayed one Scheduled)' AS q;
EXPLAIN UPDATE gocap_xp13_published SET lease_until = UTC_TIMESTAMP(6), lease_token = 7, status = 'Scheduled' WHERE id IN (4194304, 8388608);
SELECT '### Claim (received, version v1, by group)' AS q;
BEGIN;
ANALYZE SELECT id FROM gocap_xp13_received AS c FORCE INDEX (gocap_xp13_received_pending_version)
WHERE due_at <= UTC_TIMESTAMP(6) AND (lease_until IS NULL OR lease_until <= UTC_TIMESTAMP(6))
  AND version = 'v1' AND grp IN ('billing.v1')
  AND (c.ordering_key IS NULL OR c.id = (
    SELECT p.id FROM gocap_xp13_received AS p FORCE INDEX (gocap_xp13_received_key) WHERE p.key_held = c.ordering_key AND p.grp = c.grp AND p.version = c.version
      AND p.status IN ('Scheduled', 'Delayed', 'Failed') ORDER BY p.id LIMIT 1))
ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED;
ROLLBACK;
SELECT '### NextDue (published, version v1): one index entry' AS q;
ANALYZE FORMAT=JSON SELECT due_at FROM gocap_xp13_published WHERE due_at > UTC_TIMESTAMP(6) AND version = 'v1' ORDER BY due_at LIMIT 1;
FLUSH STATUS;
SELECT due_at > UTC_TIMESTAMP(6) AS future FROM gocap_xp13_published WHERE due_at > UTC_TIMESTAMP(6) AND version = 'v1' ORDER BY due_at LIMIT 1;
SHOW SESSION STATUS WHERE Variable_name IN ('Handler_read_key', 'Handler_read_next', 'Handler_read_rnd_next');
SELECT '### NextDue (received, version v1)' AS q;
ANALYZE SELECT due_at FROM gocap_xp13_received WHERE due_at > UTC_TIMESTAMP(6) AND version = 'v1' ORDER BY due_at LIMIT 1;
SELECT '### Succeed (the rows of one lease token and one attempt: one batch send)' AS q;
EXPLAIN UPDATE gocap_xp13_published SET status = 'Succeeded', expires_at = UTC_TIMESTAMP(6), lease_token = NULL, lease_until = NULL,
  attempts = JSON_REMOVE(JSON_ARRAY_APPEND(attempts, '$', JSON_EXTRACT('{"ms":1}', '$')), IF(JSON_LENGTH(attempts) >= 20, '$[0]', '$[20]'))
WHERE status = 'Scheduled' AND lease_token = 7 AND id IN (4194304, 8388608);
SELECT '### Succeed (up to 32 groups of lease token and attempt, each row''s attempt by a CASE of its group)' AS q;
EXPLAIN UPDATE gocap_xp13_published SET status = 'Succeeded', expires_at = UTC_TIMESTAMP(6), lease_token = NULL, lease_until = NULL,
  attempts = JSON_REMOVE(JSON_ARRAY_APPEND(attempts, '$', JSON_EXTRACT(CASE WHEN id IN (4194304) THEN '{"ms":1}' WHEN id IN (8388608) THEN '{"ms":2}' END, '$')),
    IF(JSON_LENGTH(attempts) >= 20, '$[0]', '$[20]'))
WHERE status = 'Scheduled' AND (id, lease_token) IN ((4194304, 7), (8388608, 8));
SELECT '### Fail' AS q;
EXPLAIN UPDATE gocap_xp13_published SET last_error = 'x', lease_token = NULL,
  attempts = JSON_REMOVE(JSON_ARRAY_APPEND(attempts, '$', JSON_EXTRACT('{"ms":1,"err":"x"}', '$')), IF(JSON_LENGTH(attempts) >= 20, '$[0]', '$[20]')),
  retries = retries + 1
WHERE id = 4194304 AND lease_token = 7 AND status = 'Scheduled';
SELECT '### Received de-duplication read-back' AS q;
EXPLAIN SELECT id, lease_token FROM gocap_xp13_received WHERE msg_id = '42' AND grp = 'billing';
SELECT '### Cleaner' AS q;
EXPLAIN DELETE FROM gocap_xp13_published WHERE expires_at <= UTC_TIMESTAMP(6) ORDER BY expires_at LIMIT 1000;
SELECT '### FailBatch: the locking read of the rows (#14)' AS q;
EXPLAIN SELECT id, lease_token, status, retries FROM gocap_xp13_published WHERE id IN (4194304, 8388608) ORDER BY id FOR UPDATE;
SELECT '### FailBatch: the update joined with the failures (#14)' AS q;
EXPLAIN UPDATE gocap_xp13_published AS t JOIN (SELECT 4194304 AS id, 7 AS tok, 'x' AS err, 0 AS fin, UTC_TIMESTAMP(6) AS exp, UTC_TIMESTAMP(6) AS nxt, '{"at":"2026-11-25T10:00:00Z","ms":1.5,"err":"x"}' AS att
    UNION ALL SELECT 8388608, 7, 'y', 1, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), '{"at":"2026-11-25T10:00:00Z","ms":2,"err":"y"}') AS v ON t.id = v.id AND t.lease_token = v.tok
  SET t.last_error = v.err, t.expires_at = IF(v.fin, v.exp, NULL), t.next_attempt_at = IF(v.fin, t.next_attempt_at, v.nxt),
    t.status = IF(v.fin, 'Failed', 'Scheduled'),
    t.attempts = JSON_REMOVE(JSON_ARRAY_APPEND(t.attempts, '$', JSON_EXTRACT(v.att, '$')), IF(JSON_LENGTH(t.attempts) >= 20, '$[0]', '$[20]')),
    t.lease_token = NULL, t.lease_until = NULL, t.retries = t.retries + 1
  WHERE t.status = 'Scheduled';
SELECT '### Dashboard: Failed, newest first' AS q;
EXPLAIN SELECT id FROM gocap_xp13_published FORCE INDEX (gocap_xp13_published_status) WHERE status = 'Failed' AND id < 4000000000000 ORDER BY id DESC LIMIT 50;
SELECT '### Dashboard: histogram of the last hour' AS q;
EXPLAIN SELECT ((id >> 22) + 1288834974657) DIV 60000 AS bucket, status, COUNT(*) FROM gocap_xp13_published
WHERE id >= 4000000000000 GROUP BY bucket, status;
SELECT '### Dashboard: counts by status' AS q;
EXPLAIN SELECT status, COUNT(*) FROM gocap_xp13_published GROUP BY status;
DROP TABLE gocap_xp13_published, gocap_xp13_received, gocap_xp13_instances;
