-- Fills a scratch schema with 1,000,000 published rows, most of them
-- Delayed into the future (80% Delayed, due over the next 6 days; 10%
-- Succeeded; 5% Scheduled and due; 3% Scheduled for a later retry; 2%
-- Failed), and as many received rows (the Delayed ones Scheduled for a
-- later retry), each row of version 'v1' (50%), 'v2' (40%) or of the
-- empty version (10%: rows of before versions), and prints the plans of the background queries: the
-- claim and NextDue with EXPLAIN ANALYZE (in a transaction rolled back),
-- the others with EXPLAIN. The rows have no ordering key (#18): the
-- claims' key condition short-circuits. Run from the repository root:
--   sed 's/{{schema}}/gocap_xp13/g' storage/postgres/schema.sql > /tmp/gocap_xp13_schema.sql
--   psql -h 127.0.0.1 -U postgres test -f storage/postgres/explain.sql
-- It drops the schema at the end. QUERY_PLANS.md holds its output.
\set ON_ERROR_STOP on
DROP SCHEMA IF EXISTS gocap_xp13 CASCADE;
\o /dev/null
\i /tmp/gocap_xp13_schema.sql
\o
INSERT INTO gocap_xp13.published (id, name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at, policy, attempts, version)
SELECT (g::bigint << 22),
       'order.paid.' || (g % 50),
       '{"cap-msg-id":"1","cap-msg-name":"order.paid"}'::jsonb,
       convert_to('{"id":' || g || '}', 'UTF8'),
       CASE WHEN g % 100 < 80 THEN 'Delayed' WHEN g % 100 < 90 THEN 'Succeeded'
            WHEN g % 100 < 98 THEN 'Scheduled' ELSE 'Failed' END,
       CASE WHEN g % 100 >= 98 THEN 50 WHEN g % 100 >= 95 THEN 2 ELSE 0 END, '',
       now() - interval '2 days' + g * interval '100 ms',
       CASE WHEN g % 100 < 80 THEN now() + interval '1 hour' + g * interval '500 ms'
            WHEN g % 100 >= 95 AND g % 100 < 98 THEN now() + g * interval '100 ms'
            ELSE now() - interval '2 days' + g * interval '100 ms' END,
       CASE WHEN g % 100 >= 80 AND g % 100 < 90 OR g % 100 >= 98 THEN now() - interval '1 day' + g * interval '100 ms' END,
       CASE WHEN g % 3 = 0 THEN 'exp:1s,5s,30s' ELSE '' END,
       CASE WHEN g % 100 >= 80 AND g % 100 < 90 THEN '[{"at":"2026-11-25T10:00:00Z","ms":3.2}]'::jsonb ELSE '[]'::jsonb END,
       CASE WHEN g % 10 = 5 THEN '' WHEN g % 2 = 0 THEN 'v1' ELSE 'v2' END
FROM generate_series(1, 1000000) AS g;
INSERT INTO gocap_xp13.received (id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at, version)
SELECT id, id::text, 'billing.' || version, name, headers, body, CASE WHEN status = 'Delayed' THEN 'Scheduled' ELSE status END,
       retries, last_error, added, next_attempt_at, expires_at, version
FROM gocap_xp13.published;
VACUUM ANALYZE gocap_xp13.published;
VACUUM ANALYZE gocap_xp13.received;
SELECT status, count(*), min(next_attempt_at) > now() AS all_future FROM gocap_xp13.published GROUP BY status ORDER BY status;
SELECT version, count(*) FROM gocap_xp13.published GROUP BY version ORDER BY version;

\echo '### Claim (published, version v1): 500 of its 30,000 due rows, none of the Delayed ones or of other versions read'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
UPDATE gocap_xp13.published SET lease_until = now() + interval '1 minute', lease_token = 7, status = 'Scheduled'
WHERE id IN (SELECT id FROM gocap_xp13.published c
             WHERE status IN ('Scheduled', 'Delayed') AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until <= now())
               AND version = 'v1'
               AND (c.ordering_key IS NULL OR NOT EXISTS (
                 SELECT 1 FROM gocap_xp13.published p WHERE p.ordering_key = c.ordering_key AND p.version = c.version AND p.id < c.id
                   AND p.status <> 'Succeeded' AND (p.status <> 'Failed' OR true)))
             ORDER BY next_attempt_at LIMIT 500 FOR UPDATE SKIP LOCKED)
RETURNING id;
ROLLBACK;
\echo '### Claim (published, version v1) when nothing is due: 880,000 pending rows, none due yet'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
UPDATE gocap_xp13.published SET lease_until = now() + interval '1 minute', lease_token = 7, status = 'Scheduled'
WHERE id IN (SELECT id FROM gocap_xp13.published c
             WHERE status IN ('Scheduled', 'Delayed') AND next_attempt_at <= now() - interval '3 days'
               AND (lease_until IS NULL OR lease_until <= now() - interval '3 days')
               AND version = 'v1'
               AND (c.ordering_key IS NULL OR NOT EXISTS (
                 SELECT 1 FROM gocap_xp13.published p WHERE p.ordering_key = c.ordering_key AND p.version = c.version AND p.id < c.id
                   AND p.status <> 'Succeeded' AND (p.status <> 'Failed' OR true)))
             ORDER BY next_attempt_at LIMIT 500 FOR UPDATE SKIP LOCKED)
RETURNING id;
ROLLBACK;
\echo '### Claim (received, version v1, by group)'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
UPDATE gocap_xp13.received SET lease_until = now() + interval '1 minute', lease_token = 7, status = 'Scheduled'
WHERE id IN (SELECT id FROM gocap_xp13.received c
             WHERE status IN ('Scheduled', 'Delayed') AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until <= now())
               AND version = 'v1' AND grp = ANY('{billing.v1}'::text[])
               AND (c.ordering_key IS NULL OR NOT EXISTS (
                 SELECT 1 FROM gocap_xp13.received p WHERE p.ordering_key = c.ordering_key AND p.grp = c.grp AND p.version = c.version AND p.id < c.id
                   AND p.status <> 'Succeeded' AND (p.status <> 'Failed' OR true)))
             ORDER BY next_attempt_at LIMIT 500 FOR UPDATE SKIP LOCKED)
RETURNING id;
ROLLBACK;
\echo '### NextDue (published, version v1): one index entry'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT next_attempt_at FROM gocap_xp13.published
WHERE status IN ('Scheduled', 'Delayed') AND next_attempt_at > now() AND version = 'v1' ORDER BY next_attempt_at LIMIT 1;
\echo '### NextDue (received, version v1)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT next_attempt_at FROM gocap_xp13.received
WHERE status IN ('Scheduled', 'Delayed') AND next_attempt_at > now() AND version = 'v1' ORDER BY next_attempt_at LIMIT 1;
\echo '### Succeed (batch, appending each row''s attempt)'
EXPLAIN UPDATE gocap_xp13.published AS t SET status = 'Succeeded', expires_at = now(), lease_token = NULL, lease_until = NULL,
  attempts = jsonb_path_query_array(t.attempts || l.attempt::jsonb, '$[last-19 to last]')
FROM unnest('{4194304,8388608}'::bigint[], '{7,7}'::bigint[], '{"{\"at\":\"2026-11-25T10:00:00Z\",\"ms\":1.5}","{\"at\":\"2026-11-25T10:00:00Z\",\"ms\":2}"}'::text[]) AS l(id, token, attempt)
WHERE t.id = l.id AND t.lease_token = l.token AND t.status = 'Scheduled';
\echo '### Fail'
EXPLAIN UPDATE gocap_xp13.published SET retries = retries + 1, last_error = 'x', lease_token = NULL,
  attempts = jsonb_path_query_array(attempts || '{"at":"2026-11-25T10:00:00Z","ms":1.5,"err":"x"}'::jsonb, '$[last-19 to last]')
WHERE id = 4194304 AND lease_token = 7 AND status = 'Scheduled';
\echo '### FailBatch (batch, one row of arrays per failed attempt, #14)'
EXPLAIN UPDATE gocap_xp13.published AS t SET retries = t.retries + 1, last_error = l.err,
  status = CASE WHEN l.perm OR (l.max > 0 AND t.retries + 1 >= l.max) THEN 'Failed' ELSE 'Scheduled' END,
  expires_at = CASE WHEN l.perm OR (l.max > 0 AND t.retries + 1 >= l.max) THEN l.exp END,
  next_attempt_at = CASE WHEN l.perm OR (l.max > 0 AND t.retries + 1 >= l.max) THEN t.next_attempt_at ELSE l.next END,
  lease_token = NULL, lease_until = NULL,
  attempts = jsonb_path_query_array(t.attempts || l.attempt::jsonb, '$[last-19 to last]')
FROM unnest('{4194304,8388608}'::bigint[], '{7,7}'::bigint[], '{x,y}'::text[], '{3,3}'::integer[], '{f,t}'::boolean[],
  ARRAY[now(), now()]::timestamptz[], ARRAY[now(), now()]::timestamptz[],
  '{"{\"at\":\"2026-11-25T10:00:00Z\",\"ms\":1.5,\"err\":\"x\"}","{\"at\":\"2026-11-25T10:00:00Z\",\"ms\":2,\"err\":\"y\"}"}'::text[])
  AS l(id, token, err, max, perm, exp, next, attempt)
WHERE t.id = l.id AND t.lease_token = l.token AND t.status = 'Scheduled'
RETURNING t.id, t.retries, t.status;
\echo '### Received insert (de-duplication)'
EXPLAIN INSERT INTO gocap_xp13.received AS r (id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at)
VALUES (1, '42', 'billing', 'n', '{}', '', 'Scheduled', 0, '', now(), now())
ON CONFLICT (msg_id, grp) DO UPDATE SET status = 'Scheduled' WHERE r.status = 'Failed' RETURNING r.id;
\echo '### Cleaner'
EXPLAIN DELETE FROM gocap_xp13.published WHERE id IN (
  SELECT id FROM gocap_xp13.published WHERE expires_at <= now() ORDER BY expires_at LIMIT 1000);
\echo '### Dashboard: Failed, newest first'
EXPLAIN SELECT id FROM gocap_xp13.published WHERE status = 'Failed' AND id < 4000000000000 ORDER BY id DESC LIMIT 50;
\echo '### Dashboard: Succeeded, newest first'
EXPLAIN SELECT id FROM gocap_xp13.published WHERE status = 'Succeeded' ORDER BY id DESC LIMIT 50;
\echo '### Dashboard: histogram of the last hour'
EXPLAIN SELECT ((id >> 22) + 1288834974657) / 60000 AS bucket, status, count(*) FROM gocap_xp13.published
WHERE id >= ((extract(epoch from now() - interval '1 hour')::bigint * 1000 - 1288834974657) << 22) GROUP BY bucket, status;
\echo '### Dashboard: counts by status'
EXPLAIN SELECT status, count(*) FROM gocap_xp13.published GROUP BY status;
DROP SCHEMA gocap_xp13 CASCADE;
