-- The claim's cost against the rows Succeeded since the table's last
-- VACUUM (#14, scale). A claim of a Scheduled row is a HOT update, but
-- its Succeed changes status, which the indexes cover: the row's entry in
-- published_pending_version_idx (partial: Scheduled or Delayed) stays,
-- dead, until VACUUM removes it, and the claim reads every such entry
-- before the first due one (their next_attempt_at is in the past).
-- 10,000,000 Succeeded rows, vacuumed; then batches of rows published
-- (Scheduled, due), claimed and Succeeded the way the driver does it,
-- with no VACUUM in between; then EXPLAIN (ANALYZE, BUFFERS) of the claim
-- of 500 due rows after 20,000 and after 200,000 such rows (there also
-- from a floor, ClaimRequest.DueFrom), and after a VACUUM. Autovacuum must not run during it (it is off on the machine
-- these figures come from; else run it on a table with
-- autovacuum_enabled = off). Run from the repository root:
--   sed 's/{{schema}}/gocap_xpvac/g' storage/postgres/schema.sql > /tmp/gocap_xpvac_schema.sql
--   psql -h 127.0.0.1 -U postgres test -f storage/postgres/explain_vacuum.sql
-- It drops the schema at the end. QUERY_PLANS.md holds its output.
\set ON_ERROR_STOP on
DROP SCHEMA IF EXISTS gocap_xpvac CASCADE;
\o /dev/null
\i /tmp/gocap_xpvac_schema.sql
\o
-- So that the figures are those of the server's defaults whatever
-- Migrate sets, and no autovacuum runs in between.
ALTER TABLE gocap_xpvac.published RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
    autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_insert_threshold, vacuum_index_cleanup);
ALTER TABLE gocap_xpvac.published SET (autovacuum_enabled = off);
INSERT INTO gocap_xpvac.published (id, name, headers, body, status, added, next_attempt_at, expires_at, attempts)
SELECT (g::bigint << 22), 'order.paid', '{"cap-msg-id":"1","cap-msg-name":"order.paid"}'::jsonb,
       convert_to('{"id":' || g || '}', 'UTF8'), 'Succeeded',
       now() - interval '3 days' + g * interval '10 ms', now() - interval '3 days' + g * interval '10 ms',
       now() + interval '1 day', '[{"at":"2026-12-07T10:00:00Z","ms":3.2}]'::jsonb
FROM generate_series(1, 10000000) AS g;
VACUUM ANALYZE gocap_xpvac.published;

-- :n rows published, due, then claimed (HOT) and Succeeded (not HOT), in
-- batches of 1,000 as a processor does, each its own transaction.
CREATE PROCEDURE gocap_xpvac.churn(n int) LANGUAGE plpgsql AS $$
DECLARE
    base bigint := (SELECT max(id) FROM gocap_xpvac.published);
    b int;
BEGIN
    FOR b IN 0 .. n / 1000 - 1 LOOP
        INSERT INTO gocap_xpvac.published (id, name, headers, body, status, added, next_attempt_at)
        SELECT base + ((b * 1000 + g)::bigint << 22), 'order.paid', '{"cap-msg-id":"1"}'::jsonb, '\x7b7d', 'Scheduled',
               now() - interval '1 hour', now() - interval '1 hour' + (b * 1000 + g) * interval '1 ms'
        FROM generate_series(1, 1000) AS g;
        COMMIT;
        UPDATE gocap_xpvac.published SET lease_until = now() + interval '1 minute', lease_token = 7, status = 'Scheduled'
        WHERE id IN (SELECT id FROM gocap_xpvac.published WHERE status IN ('Scheduled', 'Delayed')
                     AND next_attempt_at <= now() AND version = '' ORDER BY next_attempt_at LIMIT 1000 FOR UPDATE SKIP LOCKED);
        COMMIT;
        UPDATE gocap_xpvac.published SET status = 'Succeeded', expires_at = now() + interval '1 day', lease_token = NULL, lease_until = NULL,
            attempts = jsonb_path_query_array(attempts || '{"at":"2026-12-07T10:00:00Z","ms":1.5}'::jsonb, '$[last-19 to last]')
        WHERE lease_token = 7 AND status = 'Scheduled' AND id > base;
        COMMIT;
    END LOOP;
    -- 500 due rows for the claim to find, after the Succeeded ones.
    INSERT INTO gocap_xpvac.published (id, name, headers, body, status, added, next_attempt_at)
    SELECT base + ((n + g)::bigint << 22), 'order.paid', '{"cap-msg-id":"1"}'::jsonb, '\x7b7d', 'Scheduled', now(), now() - interval '1 minute' + g * interval '1 ms'
    FROM generate_series(1, 500) AS g;
END $$;

\set from '''-infinity'''
\echo '### Claim of 500 due rows, 0 rows Succeeded since the last VACUUM (then VACUUM)'
CALL gocap_xpvac.churn(0);
VACUUM gocap_xpvac.published;
\set bound now()
\ir explain_vacuum_claim.sql
\ir explain_vacuum_claim.sql
\set bound '(now() - interval ''30 minutes'')'
\echo '(idle poll, nothing due)'
\ir explain_vacuum_claim.sql
DELETE FROM gocap_xpvac.published WHERE status = 'Scheduled';
VACUUM gocap_xpvac.published;

\echo '### Claim of 500 due rows, 20,000 rows Succeeded since the last VACUUM'
CALL gocap_xpvac.churn(20000);
\set bound now()
\ir explain_vacuum_claim.sql
\ir explain_vacuum_claim.sql
\set bound '(now() - interval ''30 minutes'')'
\echo '(idle poll, nothing due)'
\ir explain_vacuum_claim.sql
DELETE FROM gocap_xpvac.published WHERE status = 'Scheduled';

\echo '### Claim of 500 due rows, 200,000 rows Succeeded since the last VACUUM (20,000 of them above)'
CALL gocap_xpvac.churn(180000);
\set bound now()
\ir explain_vacuum_claim.sql
\ir explain_vacuum_claim.sql
\set bound '(now() - interval ''30 minutes'')'
\echo '(idle poll, nothing due)'
\ir explain_vacuum_claim.sql
\echo '(the same two from a floor two minutes ago: after the Succeeded rows, an hour old, before the due ones)'
\set from '(now() - interval ''2 minutes'')'
\set bound now()
\ir explain_vacuum_claim.sql
\set bound '(now() - interval ''90 seconds'')'
\ir explain_vacuum_claim.sql
\set from '''-infinity'''
SELECT n_dead_tup, n_tup_upd, n_tup_hot_upd, last_vacuum, last_autovacuum FROM pg_stat_user_tables WHERE relid = 'gocap_xpvac.published'::regclass;

\echo '### The same after VACUUM (VERBOSE: whether it vacuumed the indexes)'
VACUUM (VERBOSE) gocap_xpvac.published;
\set bound now()
\ir explain_vacuum_claim.sql
\ir explain_vacuum_claim.sql
\set bound '(now() - interval ''30 minutes'')'
\echo '(idle poll, nothing due)'
\ir explain_vacuum_claim.sql
SELECT pg_size_pretty(pg_relation_size('gocap_xpvac.published')) AS heap, pg_relation_size('gocap_xpvac.published') / 8192 AS heap_pages,
       pg_size_pretty(pg_relation_size('gocap_xpvac.published_pending_version_idx')) AS pending_idx;
DROP SCHEMA gocap_xpvac CASCADE;
