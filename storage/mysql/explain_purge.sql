-- The claim's cost after many rows were marked Succeeded (#14, scale):
-- does InnoDB's purge remove the delete-marked entries the way VACUUM
-- has to on PostgreSQL? 200,000 rows Scheduled, then Succeeded in one
-- UPDATE, in a table of the schema before 2026-12-07 (due_at VIRTUAL,
-- gocap_xpp_, from testdata/schema_v3.sql) and in the driver's table
-- (due_at STORED since then, gocap_xps_); after 30 s and 180 s, the
-- index pages in the buffer pool, then ANALYZE of an idle claim (nothing
-- due: it reads only what the Succeeded rows left in the index) on both;
-- then a second batch of 200,000 the same way, and the idle claims again.
-- MariaDB 10.11 (seq_1_to_200000). Run from the repository root:
--   sed 's/{{prefix}}/gocap_xpp_/g' storage/mysql/testdata/schema_v3.sql | mariadb -h127.0.0.1 -uroot test
--   sed 's/{{prefix}}/gocap_xps_/g' storage/mysql/schema.sql | mariadb -h127.0.0.1 -uroot test
--   mariadb -h127.0.0.1 -uroot -t test < storage/mysql/explain_purge.sql
-- It drops the tables at the end. BENCHMARKS.md ("(e)") holds its output.
INSERT INTO gocap_xpp_published (id, name, headers, body, status, last_error, added, next_attempt_at, version)
SELECT seq << 22, 'order.paid', '{"cap-msg-id":"1"}', '{}', 'Scheduled', '',
       UTC_TIMESTAMP(6) - INTERVAL 1 HOUR, UTC_TIMESTAMP(6) - INTERVAL 1 HOUR + INTERVAL seq * 1000 MICROSECOND, ''
FROM seq_1_to_200000;
INSERT INTO gocap_xps_published (id, name, headers, body, status, last_error, added, next_attempt_at, version)
SELECT seq << 22, 'order.paid', '{"cap-msg-id":"1"}', '{}', 'Scheduled', '',
       UTC_TIMESTAMP(6) - INTERVAL 1 HOUR, UTC_TIMESTAMP(6) - INTERVAL 1 HOUR + INTERVAL seq * 1000 MICROSECOND, ''
FROM seq_1_to_200000;
UPDATE gocap_xpp_published SET status = 'Succeeded', expires_at = UTC_TIMESTAMP(6) + INTERVAL 1 DAY, lease_token = NULL, lease_until = NULL;
UPDATE gocap_xps_published SET status = 'Succeeded', expires_at = UTC_TIMESTAMP(6) + INTERVAL 1 DAY, lease_token = NULL, lease_until = NULL;
SELECT SLEEP(30) AS t30;
SELECT table_name, COUNT(*) AS pages, SUM(number_records) AS records
FROM information_schema.innodb_buffer_page WHERE index_name LIKE '%pending_version' AND table_name LIKE '%gocap_xp%' GROUP BY table_name;
SELECT SLEEP(150) AS t180;
SHOW GLOBAL STATUS LIKE 'Innodb_history_list_length';
SELECT table_name, COUNT(*) AS pages, SUM(number_records) AS records
FROM information_schema.innodb_buffer_page WHERE index_name LIKE '%pending_version' AND table_name LIKE '%gocap_xp%' GROUP BY table_name;
FLUSH STATUS;
ANALYZE FORMAT=JSON SELECT id FROM gocap_xpp_published AS c FORCE INDEX (gocap_xpp_published_pending_version)
WHERE due_at <= UTC_TIMESTAMP(6) AND (lease_until IS NULL OR lease_until <= UTC_TIMESTAMP(6)) AND version = ''
ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED;
ANALYZE FORMAT=JSON SELECT id FROM gocap_xps_published AS c FORCE INDEX (gocap_xps_published_pending_version)
WHERE due_at <= UTC_TIMESTAMP(6) AND (lease_until IS NULL OR lease_until <= UTC_TIMESTAMP(6)) AND version = ''
ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED;
SELECT '### a second batch of 200,000 rows, Scheduled then Succeeded; idle claims 60 s later' AS q;
INSERT INTO gocap_xpp_published (id, name, headers, body, status, last_error, added, next_attempt_at, version)
SELECT (seq + 200000) << 22, 'order.paid', '{"cap-msg-id":"1"}', '{}', 'Scheduled', '',
       UTC_TIMESTAMP(6) - INTERVAL 50 MINUTE, UTC_TIMESTAMP(6) - INTERVAL 50 MINUTE + INTERVAL seq * 1000 MICROSECOND, ''
FROM seq_1_to_200000;
INSERT INTO gocap_xps_published (id, name, headers, body, status, last_error, added, next_attempt_at, version)
SELECT (seq + 200000) << 22, 'order.paid', '{"cap-msg-id":"1"}', '{}', 'Scheduled', '',
       UTC_TIMESTAMP(6) - INTERVAL 50 MINUTE, UTC_TIMESTAMP(6) - INTERVAL 50 MINUTE + INTERVAL seq * 1000 MICROSECOND, ''
FROM seq_1_to_200000;
UPDATE gocap_xpp_published SET status = 'Succeeded', expires_at = UTC_TIMESTAMP(6) + INTERVAL 1 DAY WHERE status = 'Scheduled';
UPDATE gocap_xps_published SET status = 'Succeeded', expires_at = UTC_TIMESTAMP(6) + INTERVAL 1 DAY WHERE status = 'Scheduled';
SELECT SLEEP(60) AS t60;
SHOW GLOBAL STATUS LIKE 'Innodb_history_list_length';
FLUSH STATUS;
ANALYZE FORMAT=JSON SELECT id FROM gocap_xpp_published AS c FORCE INDEX (gocap_xpp_published_pending_version)
WHERE due_at <= UTC_TIMESTAMP(6) AND (lease_until IS NULL OR lease_until <= UTC_TIMESTAMP(6)) AND version = ''
ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED;
ANALYZE FORMAT=JSON SELECT id FROM gocap_xps_published AS c FORCE INDEX (gocap_xps_published_pending_version)
WHERE due_at <= UTC_TIMESTAMP(6) AND (lease_until IS NULL OR lease_until <= UTC_TIMESTAMP(6)) AND version = ''
ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED;
DROP TABLE gocap_xpp_published, gocap_xpp_received, gocap_xpp_instances, gocap_xps_published, gocap_xps_received, gocap_xps_instances;
