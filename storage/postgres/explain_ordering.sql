-- Ordering keys (#18): fills a scratch schema with 1,000,000 published
-- rows — 900,000 Succeeded (500,000 of them keyed), 50,000 unkeyed
-- Scheduled and due, and 50,000 keyed Scheduled and due over 1,000 keys
-- (50 each) — every row of version 'v1' or 'v2' (issue #17; runs of 7 ids
-- alternate, so each key has rows of both), and prints the plans of the
-- claim of version v1 (unkeyed rows first, then keyed heads: a key's
-- sequence is that of one version; no row of the key in flight, read
-- among the rows after the head) and of the dashboard's blocked keys. Run from the
-- repository root:
--   sed 's/{{schema}}/gocap_xp18/g' storage/postgres/schema.sql > /tmp/gocap_xp18_schema.sql
--   psql -h 127.0.0.1 -U postgres test -f storage/postgres/explain_ordering.sql
-- It drops the schema at the end. QUERY_PLANS.md holds its output.
\set ON_ERROR_STOP on
DROP SCHEMA IF EXISTS gocap_xp18 CASCADE;
\o /dev/null
\i /tmp/gocap_xp18_schema.sql
\o
INSERT INTO gocap_xp18.published (id, name, headers, body, status, added, next_attempt_at, ordering_key, version)
SELECT (g::bigint << 22), 'order.updated', '{}'::jsonb, '\x00'::bytea,
       CASE WHEN g <= 900000 THEN 'Succeeded' ELSE 'Scheduled' END,
       now() - interval '1 day', now() - interval '1 day' + g * interval '10 ms',
       CASE WHEN g <= 500000 OR g > 950000 THEN 'order-' || (g % 1000) END,
       CASE WHEN (g / 7) % 2 = 0 THEN 'v1' ELSE 'v2' END
FROM generate_series(1, 1000000) AS g;
-- One key blocked by a Failed head.
UPDATE gocap_xp18.published SET status = 'Failed' WHERE id = (950001::bigint << 22);
VACUUM ANALYZE gocap_xp18.published;

\echo '### Claim (published, version v1), FailedHoldsKey: 100 rows — the oldest due are the 25,000 unkeyed ones of v1'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
UPDATE gocap_xp18.published SET lease_until = now() + interval '1 minute', lease_token = 7, status = 'Scheduled'
WHERE id IN (SELECT id FROM gocap_xp18.published c
             WHERE status IN ('Scheduled', 'Delayed') AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until <= now())
               AND c.version = 'v1'
               AND (c.ordering_key IS NULL OR NOT EXISTS (
                 SELECT 1 FROM gocap_xp18.published p WHERE p.ordering_key = c.ordering_key AND p.version = c.version AND p.id < c.id
                   AND p.status <> 'Succeeded' AND (p.status <> 'Failed' OR true))
               AND NOT EXISTS (
                 SELECT 1 FROM gocap_xp18.published p WHERE p.ordering_key = c.ordering_key AND p.version = c.version AND p.id > c.id
                   AND p.status <> 'Succeeded' AND p.lease_until > now()))
             ORDER BY next_attempt_at LIMIT 100 FOR UPDATE SKIP LOCKED)
RETURNING id;
ROLLBACK;
\echo '### Claim (published, version v1) of keyed rows only: the unkeyed ones leased, 1,000 keys of 25 due rows of v1 each'
UPDATE gocap_xp18.published SET lease_until = now() + interval '1 hour', lease_token = 1 WHERE status = 'Scheduled' AND ordering_key IS NULL;
VACUUM ANALYZE gocap_xp18.published;
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
UPDATE gocap_xp18.published SET lease_until = now() + interval '1 minute', lease_token = 7, status = 'Scheduled'
WHERE id IN (SELECT id FROM gocap_xp18.published c
             WHERE status IN ('Scheduled', 'Delayed') AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until <= now())
               AND c.version = 'v1'
               AND (c.ordering_key IS NULL OR NOT EXISTS (
                 SELECT 1 FROM gocap_xp18.published p WHERE p.ordering_key = c.ordering_key AND p.version = c.version AND p.id < c.id
                   AND p.status <> 'Succeeded' AND (p.status <> 'Failed' OR true))
               AND NOT EXISTS (
                 SELECT 1 FROM gocap_xp18.published p WHERE p.ordering_key = c.ordering_key AND p.version = c.version AND p.id > c.id
                   AND p.status <> 'Succeeded' AND p.lease_until > now()))
             ORDER BY next_attempt_at LIMIT 100 FOR UPDATE SKIP LOCKED)
RETURNING id;
ROLLBACK;
\echo '### Blocked keys (dashboard)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT c.id, c.ordering_key, c.version,
       (SELECT count(*) FROM gocap_xp18.published w WHERE w.ordering_key = c.ordering_key AND w.version = c.version AND w.id > c.id
          AND w.status <> 'Succeeded' AND w.status IN ('Scheduled', 'Delayed'))
FROM gocap_xp18.published c
WHERE c.status = 'Failed' AND c.ordering_key IS NOT NULL AND NOT EXISTS (
  SELECT 1 FROM gocap_xp18.published p WHERE p.ordering_key = c.ordering_key AND p.version = c.version AND p.id < c.id AND p.status <> 'Succeeded')
ORDER BY c.id LIMIT 100;
DROP SCHEMA gocap_xp18 CASCADE;
