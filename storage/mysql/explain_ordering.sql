-- Ordering keys (#18), MariaDB: fills scratch tables with 1,000,000
-- published rows — 900,000 Succeeded (500,000 of them keyed), 50,000
-- unkeyed Scheduled and due, 50,000 keyed Scheduled and due over 1,000
-- keys (50 each), each row of version 'v1' or 'v2' (issue #17; runs of 7
-- ids alternate, so each key has rows of both) — and prints the plan and
-- the counters of the claim of version v1's keyed heads (unkeyed rows
-- leased; a key's sequence is that of one version; no row of the key in
-- flight, read among the rows after the head). Run from the repository root:
--   sed 's/{{prefix}}/gocap_xp18_/g' storage/mysql/schema.sql > /tmp/gocap_xp18_mysql.sql
--   mariadb -h127.0.0.1 -uroot test < /tmp/gocap_xp18_mysql.sql
--   mariadb -h127.0.0.1 -uroot -t test < storage/mysql/explain_ordering.sql
-- It drops the tables at the end. QUERY_PLANS.md holds its output.
INSERT INTO gocap_xp18_published (id, name, headers, body, status, retries, last_error, added, next_attempt_at, lease_until, lease_token, ordering_key, version)
SELECT seq << 22, 'order.updated', '{}', '', IF(seq <= 900000, 'Succeeded', 'Scheduled'), 0, '',
       UTC_TIMESTAMP(6) - INTERVAL 1 DAY, UTC_TIMESTAMP(6) - INTERVAL 1 DAY + INTERVAL seq * 10000 MICROSECOND,
       IF(seq > 900000 AND seq <= 950000, UTC_TIMESTAMP(6) + INTERVAL 1 HOUR, NULL), IF(seq > 900000 AND seq <= 950000, 1, NULL),
       IF(seq <= 500000 OR seq > 950000, CONCAT('order-', seq % 1000), NULL),
       IF((seq DIV 7) % 2 = 0, 'v1', 'v2')
FROM seq_1_to_1000000;
ANALYZE TABLE gocap_xp18_published;

SELECT '### Claim (published, version v1) of keyed heads, Failed holding keys: 100 of its 1,000 heads (25,000 keyed due rows of v1)' AS q;
BEGIN;
ANALYZE FORMAT=JSON SELECT id FROM gocap_xp18_published AS c FORCE INDEX (gocap_xp18_published_pending_version)
WHERE due_at <= UTC_TIMESTAMP(6) AND (lease_until IS NULL OR lease_until <= UTC_TIMESTAMP(6)) AND version = 'v1'
  AND (c.ordering_key IS NULL OR c.id = (
    SELECT p.id FROM gocap_xp18_published AS p FORCE INDEX (gocap_xp18_published_key) WHERE p.key_held = c.ordering_key AND p.version = c.version
      AND p.status IN ('Scheduled', 'Delayed', 'Failed') ORDER BY p.id LIMIT 1)
  AND NOT EXISTS (
    SELECT 1 FROM gocap_xp18_published AS p FORCE INDEX (gocap_xp18_published_key) WHERE p.key_held = c.ordering_key AND p.version = c.version
      AND p.id > c.id AND p.status = 'Scheduled' AND p.lease_until > UTC_TIMESTAMP(6)))
ORDER BY due_at LIMIT 100 FOR UPDATE SKIP LOCKED;
ROLLBACK;

-- A run (ClaimRequest.Run): the rows after a claimed head in its
-- sequence, up to 15, from the head's entries of *_key.
SET @head = (SELECT MIN(id) FROM gocap_xp18_published WHERE key_held = 'order-1' AND version = 'v1');
SELECT '### Claim (published, version v1): the run of one head, up to 15 rows' AS q;
ANALYZE FORMAT=JSON SELECT r.id, COALESCE(r.due_at <= UTC_TIMESTAMP(6) AND (r.lease_until IS NULL OR r.lease_until <= UTC_TIMESTAMP(6)), 0)
FROM gocap_xp18_published AS r FORCE INDEX (gocap_xp18_published_key)
WHERE r.key_held = 'order-1' AND r.version = 'v1' AND r.status IN ('Scheduled', 'Delayed', 'Failed') AND r.id > @head
ORDER BY r.id LIMIT 15;
DROP TABLE gocap_xp18_published, gocap_xp18_received, gocap_xp18_instances;
