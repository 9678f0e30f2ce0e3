-- Fills a scratch schema with 1,000,000 published rows (90% Succeeded,
-- 8% Scheduled, 2% Failed) and prints the plans of the background
-- queries. Run from the repository root:
--   sed 's/{{schema}}/gocap_explain/g' storage/postgres/schema.sql > /tmp/gocap_schema_explain.sql
--   psql -h 127.0.0.1 -U postgres test -f storage/postgres/explain.sql
-- It drops the schema at the end. QUERY_PLANS.md holds its output.
\set ON_ERROR_STOP on
DROP SCHEMA IF EXISTS gocap_explain CASCADE;
\o /dev/null
\i /tmp/gocap_schema_explain.sql
\o
INSERT INTO gocap_explain.published (id, name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at)
SELECT (g::bigint << 22),
       'order.paid.' || (g % 50),
       '{"cap-msg-id":"1","cap-msg-name":"order.paid"}'::jsonb,
       convert_to('{"id":' || g || '}', 'UTF8'),
       CASE WHEN g % 50 = 0 THEN 'Failed' WHEN g % 50 < 5 THEN 'Scheduled' ELSE 'Succeeded' END,
       CASE WHEN g % 50 = 0 THEN 50 ELSE 0 END, '',
       now() - interval '2 days' + g * interval '100 ms',
       now() - interval '2 days' + g * interval '100 ms',
       CASE WHEN g % 50 >= 5 OR g % 50 = 0 THEN now() - interval '1 day' + g * interval '100 ms' END
FROM generate_series(1, 1000000) AS g;
INSERT INTO gocap_explain.received (id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at)
SELECT id, id::text, 'billing', name, headers, body, status, retries, last_error, added, next_attempt_at, expires_at
FROM gocap_explain.published;
VACUUM ANALYZE gocap_explain.published;
VACUUM ANALYZE gocap_explain.received;

\echo '### Claim (published)'
EXPLAIN UPDATE gocap_explain.published SET lease_until = now() + interval '1 minute', lease_token = 7
WHERE id IN (SELECT id FROM gocap_explain.published
             WHERE status = 'Scheduled' AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until <= now())
             ORDER BY next_attempt_at LIMIT 500 FOR UPDATE SKIP LOCKED)
RETURNING id;
\echo '### Claim (received, by group)'
EXPLAIN UPDATE gocap_explain.received SET lease_until = now() + interval '1 minute', lease_token = 7
WHERE id IN (SELECT id FROM gocap_explain.received
             WHERE status = 'Scheduled' AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until <= now())
               AND grp = ANY('{billing}'::text[])
             ORDER BY next_attempt_at LIMIT 500 FOR UPDATE SKIP LOCKED)
RETURNING id;
\echo '### Succeed (batch)'
EXPLAIN UPDATE gocap_explain.published AS t SET status = 'Succeeded', expires_at = now(), lease_token = NULL, lease_until = NULL
FROM unnest('{4194304,8388608}'::bigint[], '{7,7}'::bigint[]) AS l(id, token)
WHERE t.id = l.id AND t.lease_token = l.token AND t.status = 'Scheduled';
\echo '### Fail'
EXPLAIN UPDATE gocap_explain.published SET retries = retries + 1, last_error = 'x', lease_token = NULL
WHERE id = 4194304 AND lease_token = 7 AND status = 'Scheduled';
\echo '### Received insert (de-duplication)'
EXPLAIN INSERT INTO gocap_explain.received AS r (id, msg_id, grp, name, headers, body, status, retries, last_error, added, next_attempt_at)
VALUES (1, '42', 'billing', 'n', '{}', '', 'Scheduled', 0, '', now(), now())
ON CONFLICT (msg_id, grp) DO UPDATE SET status = 'Scheduled' WHERE r.status = 'Failed' RETURNING r.id;
\echo '### Cleaner'
EXPLAIN DELETE FROM gocap_explain.published WHERE id IN (
  SELECT id FROM gocap_explain.published WHERE expires_at <= now() ORDER BY expires_at LIMIT 1000);
\echo '### Dashboard: Failed, newest first'
EXPLAIN SELECT id FROM gocap_explain.published WHERE status = 'Failed' AND id < 4000000000000 ORDER BY id DESC LIMIT 50;
\echo '### Dashboard: Succeeded, newest first'
EXPLAIN SELECT id FROM gocap_explain.published WHERE status = 'Succeeded' ORDER BY id DESC LIMIT 50;
\echo '### Dashboard: histogram of the last hour'
EXPLAIN SELECT ((id >> 22) + 1288834974657) / 60000 AS bucket, status, count(*) FROM gocap_explain.published
WHERE id >= ((extract(epoch from now() - interval '1 hour')::bigint * 1000 - 1288834974657) << 22) GROUP BY bucket, status;
\echo '### Dashboard: counts by status'
EXPLAIN SELECT status, count(*) FROM gocap_explain.published GROUP BY status;
DROP SCHEMA gocap_explain CASCADE;
