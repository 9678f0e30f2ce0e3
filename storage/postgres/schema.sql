-- gocap schema for PostgreSQL. Replace {{schema}} with your schema name
-- (default "gocap") if you apply it with your own migration tool; it is
-- what postgres.Driver.Migrate runs, and it is idempotent. It also upgrades
-- tables of an earlier gocap (added columns, swapped indexes); on a large
-- existing table the CREATE INDEX of that upgrade blocks writes while it
-- builds: create the *_pending_version_idx and *_key_idx indexes CONCURRENTLY
-- beforehand to avoid that.
--
-- Applied to tables that are current, it takes no lock on them, so it runs
-- beside running processes: every ALTER TABLE and CREATE INDEX is in a DO
-- block that runs it only when the catalog lacks the column or index
-- (ALTER TABLE ... ADD COLUMN IF NOT EXISTS takes the table's ACCESS
-- EXCLUSIVE lock, and CREATE INDEX IF NOT EXISTS its SHARE lock, before
-- they find the column or index there; a DROP INDEX IF EXISTS of a missing
-- index takes none). Migrate runs the file in one transaction with
-- lock_timeout = 5s, so that an upgrade waiting for a table's lock behind
-- an open transaction gives up rather than hold up every later query on
-- the table; give your own tool's transaction a lock_timeout too. The DO
-- blocks are dollar-quoted statements with semicolons inside: psql, and
-- tools that send the file in one Exec (golang-migrate), run them as they
-- are; goose needs -- +goose StatementBegin / StatementEnd around each.

CREATE SCHEMA IF NOT EXISTS {{schema}};

CREATE TABLE IF NOT EXISTS {{schema}}.published (
    id              bigint      PRIMARY KEY,
    name            text        NOT NULL,
    headers         jsonb       NOT NULL,
    body            bytea       NOT NULL,
    status          text        NOT NULL,
    retries         integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    added           timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    expires_at      timestamptz,
    lease_token     bigint,
    lease_until     timestamptz,
    policy          text        NOT NULL DEFAULT '',
    attempts        jsonb       NOT NULL DEFAULT '[]',
    version         text        NOT NULL DEFAULT ''
) WITH (fillfactor = 80);

-- Tables created before delayed messages and attempt histories (#13):
-- the columns are added with constant defaults, which PostgreSQL 11+ does
-- without rewriting the table. Each only when missing (see the header).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{{schema}}.published'::regclass AND attname = 'policy' AND NOT attisdropped) THEN
        ALTER TABLE {{schema}}.published ADD COLUMN IF NOT EXISTS policy text NOT NULL DEFAULT '';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{{schema}}.published'::regclass AND attname = 'attempts' AND NOT attisdropped) THEN
        ALTER TABLE {{schema}}.published ADD COLUMN IF NOT EXISTS attempts jsonb NOT NULL DEFAULT '[]';
    END IF;
    -- --- version isolation (issue #17) ---
    -- Tables created before versions: the rows get the empty version, that of
    -- a processor without Options.Version. A constant default: no rewrite.
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{{schema}}.published'::regclass AND attname = 'version' AND NOT attisdropped) THEN
        ALTER TABLE {{schema}}.published ADD COLUMN IF NOT EXISTS version text NOT NULL DEFAULT '';
    END IF;
    -- --- end version isolation ---
END $$;

-- Claim: due Scheduled and Delayed rows, oldest first, and NextDue: the
-- first entry after a time. A claim of a Scheduled row sets only
-- lease_token and lease_until (and status to the value it has), which no
-- index covers, so it is a HOT update (hence the fillfactor): claiming
-- writes no index entry. Claims and NextDue repeat the predicate as it is.
-- --- version isolation (issue #17) ---
-- Claims and NextDue are of one version (version = $n): the version leads
-- the index, so that each reads only its version's entries, in due order.
-- Each index is created only when missing (see the header).
DO $$
BEGIN
    IF to_regclass('{{schema}}.published_pending_version_idx') IS NULL THEN
        CREATE INDEX IF NOT EXISTS published_pending_version_idx ON {{schema}}.published (version, next_attempt_at) WHERE status IN ('Scheduled', 'Delayed');
    END IF;
END $$;
-- Replaced by published_pending_version_idx.
DROP INDEX IF EXISTS {{schema}}.published_pending_idx;
-- --- end version isolation ---
-- Replaced by published_pending_idx (itself replaced, see above), which also holds Delayed rows.
DROP INDEX IF EXISTS {{schema}}.published_due_idx;
DO $$
BEGIN
    -- Cleaner: expired rows.
    IF to_regclass('{{schema}}.published_expires_idx') IS NULL THEN
        CREATE INDEX IF NOT EXISTS published_expires_idx ON {{schema}}.published (expires_at) WHERE expires_at IS NOT NULL;
    END IF;
    -- Dashboard: Scheduled or Failed rows, newest first. Succeeded rows, the
    -- bulk of the table, are listed by a backward scan of the primary key.
    IF to_regclass('{{schema}}.published_status_idx') IS NULL THEN
        CREATE INDEX IF NOT EXISTS published_status_idx ON {{schema}}.published (status, id) WHERE status <> 'Succeeded';
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS {{schema}}.received (
    id              bigint      PRIMARY KEY,
    msg_id          text        NOT NULL,
    grp             text        NOT NULL,
    name            text        NOT NULL,
    headers         jsonb       NOT NULL,
    body            bytea       NOT NULL,
    status          text        NOT NULL,
    retries         integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    added           timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    expires_at      timestamptz,
    lease_token     bigint,
    lease_until     timestamptz,
    policy          text        NOT NULL DEFAULT '',
    attempts        jsonb       NOT NULL DEFAULT '[]',
    version         text        NOT NULL DEFAULT '',
    UNIQUE (msg_id, grp)
) WITH (fillfactor = 80);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{{schema}}.received'::regclass AND attname = 'policy' AND NOT attisdropped) THEN
        ALTER TABLE {{schema}}.received ADD COLUMN IF NOT EXISTS policy text NOT NULL DEFAULT '';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{{schema}}.received'::regclass AND attname = 'attempts' AND NOT attisdropped) THEN
        ALTER TABLE {{schema}}.received ADD COLUMN IF NOT EXISTS attempts jsonb NOT NULL DEFAULT '[]';
    END IF;
    -- --- version isolation (issue #17) ---
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{{schema}}.received'::regclass AND attname = 'version' AND NOT attisdropped) THEN
        ALTER TABLE {{schema}}.received ADD COLUMN IF NOT EXISTS version text NOT NULL DEFAULT '';
    END IF;
    -- --- end version isolation ---
END $$;

-- --- version isolation (issue #17) ---
DO $$
BEGIN
    IF to_regclass('{{schema}}.received_pending_version_idx') IS NULL THEN
        CREATE INDEX IF NOT EXISTS received_pending_version_idx ON {{schema}}.received (version, next_attempt_at) WHERE status IN ('Scheduled', 'Delayed');
    END IF;
END $$;
DROP INDEX IF EXISTS {{schema}}.received_pending_idx;
-- --- end version isolation ---
DROP INDEX IF EXISTS {{schema}}.received_due_idx;
DO $$
BEGIN
    IF to_regclass('{{schema}}.received_expires_idx') IS NULL THEN
        CREATE INDEX IF NOT EXISTS received_expires_idx ON {{schema}}.received (expires_at) WHERE expires_at IS NOT NULL;
    END IF;
    IF to_regclass('{{schema}}.received_status_idx') IS NULL THEN
        CREATE INDEX IF NOT EXISTS received_status_idx ON {{schema}}.received (status, id) WHERE status <> 'Succeeded';
    END IF;
END $$;

-- Ordering keys (#18): the column, NULL for unordered rows, and the
-- index of the claim's check that no earlier row of a key holds it (and
-- of the dashboard's blocked keys). It holds only keyed rows that are not
-- Succeeded, so unordered rows never enter it and a claim of a keyed row
-- stays a HOT update. A key's sequence is that of one version (issue
-- #17), hence the version before the id.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{{schema}}.published'::regclass AND attname = 'ordering_key' AND NOT attisdropped) THEN
        ALTER TABLE {{schema}}.published ADD COLUMN IF NOT EXISTS ordering_key text;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{{schema}}.received'::regclass AND attname = 'ordering_key' AND NOT attisdropped) THEN
        ALTER TABLE {{schema}}.received ADD COLUMN IF NOT EXISTS ordering_key text;
    END IF;
    IF to_regclass('{{schema}}.published_key_idx') IS NULL THEN
        CREATE INDEX IF NOT EXISTS published_key_idx ON {{schema}}.published (ordering_key, version, id)
            WHERE ordering_key IS NOT NULL AND status <> 'Succeeded';
    END IF;
    IF to_regclass('{{schema}}.received_key_idx') IS NULL THEN
        CREATE INDEX IF NOT EXISTS received_key_idx ON {{schema}}.received (ordering_key, grp, version, id)
            WHERE ordering_key IS NOT NULL AND status <> 'Succeeded';
    END IF;
END $$;

-- Autovacuum of the queue tables (#14, scale). A message's Succeed (or
-- Failed) changes its status, so its row is not a HOT update: the row's
-- entry in *_pending_version_idx stays, dead, until VACUUM removes it,
-- and every claim, an idle poll too, reads the dead entries of all the
-- rows completed since the last VACUUM before the first due one (see
-- QUERY_PLANS.md, "Dead index entries and autovacuum"). With the
-- server's defaults autovacuum waits for 20% of the table's rows to be
-- dead, two million on a 10,000,000-row table. These tables churn like
-- queues: each is vacuumed after a fixed 10,000 dead rows, or 10,000
-- inserted ones, whatever its size (scale factors 0; the insert ones are
-- PostgreSQL 13+), and each VACUUM removes the dead index entries
-- however few they are (vacuum_index_cleanup on, PostgreSQL 14+: its
-- default, auto, skips the indexes while under 2% of the table's pages
-- hold dead rows, which on a big table is again hundreds of thousands of
-- rows). VACUUM skips the pages the visibility map marks all-visible, so
-- on a large, mostly Succeeded table it reads the changed pages, and
-- every index once. Each parameter is set only when the table has no
-- value for it, so an operator's own ALTER TABLE ... SET (...) is kept by
-- every later Migrate; an ALTER TABLE ... RESET (...) is not (the next
-- Migrate sets gocap's value again): to keep the server's defaults, SET
-- them explicitly. It takes the table's SHARE UPDATE EXCLUSIVE lock only
-- when it sets something (reads and writes go on).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT t.tbl, o.opt
        FROM unnest(ARRAY['{{schema}}.published', '{{schema}}.received']::regclass[]) AS t(tbl),
             (VALUES ('autovacuum_vacuum_scale_factor=0', 0), ('autovacuum_vacuum_threshold=10000', 0),
                     ('autovacuum_vacuum_insert_scale_factor=0', 130000), ('autovacuum_vacuum_insert_threshold=10000', 130000),
                     ('vacuum_index_cleanup=on', 140000)) AS o(opt, since)
        WHERE current_setting('server_version_num')::integer >= o.since
          AND NOT EXISTS (SELECT 1 FROM pg_class c, unnest(c.reloptions) AS s(setting)
                          WHERE c.oid = t.tbl AND split_part(s.setting, '=', 1) = split_part(o.opt, '=', 1))
    LOOP
        EXECUTE format('ALTER TABLE %s SET (%s)', r.tbl, r.opt);
    END LOOP;
END $$;

CREATE TABLE IF NOT EXISTS {{schema}}.instances (
    id        text        PRIMARY KEY,
    hostname  text        NOT NULL,
    pid       integer     NOT NULL,
    started   timestamptz NOT NULL,
    last_seen timestamptz NOT NULL
);
