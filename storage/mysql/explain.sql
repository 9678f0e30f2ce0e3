-- Fills scratch tables with 1,000,000 rows (90% Succeeded, 8% Scheduled,
-- 2% Failed) and prints the plans of the background queries. MariaDB (it
-- uses the Sequence engine's seq_1_to_1000000; on MySQL 8 use a recursive
-- CTE instead). Run from the repository root:
--   sed 's/{{prefix}}/gocap_explain_/g' storage/mysql/schema.sql > /tmp/gocap_mysql_explain.sql
--   mariadb -h127.0.0.1 -uroot test < /tmp/gocap_mysql_explain.sql
--   mariadb -h127.0.0.1 -uroot -t test < storage/mysql/explain.sql
-- It drops the tables at the end. QUERY_PLANS.md holds its output.
INSERT INTO gocap_explain_published (id, name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at)
SELECT seq << 22, CONCAT('order.paid.', seq % 50), '{"cap-msg-id":"1"}', CONCAT('{"id":', seq, '}'),
       CASE WHEN seq % 50 = 0 THEN 'Failed' WHEN seq % 50 < 5 THEN 'Scheduled' ELSE 'Succeeded' END,
       IF(seq % 50 = 0, 50, 0), '',
       UTC_TIMESTAMP(6) - INTERVAL 2 DAY + INTERVAL seq * 100000 MICROSECOND,
       UTC_TIMESTAMP(6) - INTERVAL 2 DAY + INTERVAL seq * 100000 MICROSECOND,
       IF(seq % 50 >= 5 OR seq % 50 = 0, UTC_TIMESTAMP(6) - INTERVAL 1 DAY + INTERVAL seq * 100000 MICROSECOND, NULL)
FROM seq_1_to_1000000;
INSERT INTO gocap_explain_received (id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at)
SELECT id, CAST(id AS CHAR), 'billing', name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at
FROM gocap_explain_published;
ANALYZE TABLE gocap_explain_published, gocap_explain_received;

SELECT '### Claim (published)' AS q;
EXPLAIN SELECT id FROM gocap_explain_published
WHERE status = 'Scheduled' AND next_attempt_at <= UTC_TIMESTAMP(6) AND (lease_until IS NULL OR lease_until <= UTC_TIMESTAMP(6))
ORDER BY next_attempt_at LIMIT 500 FOR UPDATE SKIP LOCKED;
SELECT '### Lease the claimed rows' AS q;
EXPLAIN UPDATE gocap_explain_published SET lease_until = UTC_TIMESTAMP(6), lease_token = 7 WHERE id IN (4194304, 8388608);
SELECT '### Claim (received, by group)' AS q;
EXPLAIN SELECT id FROM gocap_explain_received
WHERE status = 'Scheduled' AND next_attempt_at <= UTC_TIMESTAMP(6) AND (lease_until IS NULL OR lease_until <= UTC_TIMESTAMP(6))
  AND grp IN ('billing') ORDER BY next_attempt_at LIMIT 500 FOR UPDATE SKIP LOCKED;
SELECT '### Succeed (batch)' AS q;
EXPLAIN UPDATE gocap_explain_published SET status = 'Succeeded', expires_at = UTC_TIMESTAMP(6), lease_token = NULL
WHERE status = 'Scheduled' AND (id, lease_token) IN ((4194304, 7), (8388608, 7));
SELECT '### Fail' AS q;
EXPLAIN UPDATE gocap_explain_published SET retries = retries + 1, last_error = 'x', lease_token = NULL
WHERE id = 4194304 AND lease_token = 7 AND status = 'Scheduled';
SELECT '### Received de-duplication read-back' AS q;
EXPLAIN SELECT id, lease_token FROM gocap_explain_received WHERE msg_id = '42' AND grp = 'billing';
SELECT '### Cleaner' AS q;
EXPLAIN DELETE FROM gocap_explain_published WHERE expires_at <= UTC_TIMESTAMP(6) ORDER BY expires_at LIMIT 1000;
SELECT '### Dashboard: Failed, newest first' AS q;
EXPLAIN SELECT id FROM gocap_explain_published WHERE status = 'Failed' AND id < 4000000000000 ORDER BY id DESC LIMIT 50;
SELECT '### Dashboard: histogram of the last hour' AS q;
EXPLAIN SELECT ((id >> 22) + 1288834974657) DIV 60000 AS bucket, status, COUNT(*) FROM gocap_explain_published
WHERE id >= 4000000000000 GROUP BY bucket, status;
SELECT '### Dashboard: counts by status' AS q;
EXPLAIN SELECT status, COUNT(*) FROM gocap_explain_published GROUP BY status;
DROP TABLE gocap_explain_published, gocap_explain_received, gocap_explain_instances;
