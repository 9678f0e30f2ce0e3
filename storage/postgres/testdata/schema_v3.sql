-- gocap schema for PostgreSQL. Replace {{schema}} with your schema name
-- (default "gocap") if you apply it with your own migration tool; it is
-- what postgres.Driver.Migrate runs, and it is idempotent. It also upgrades
-- tables of an earlier gocap (added columns, swapped indexes); on a large
-- existing table the CREATE INDEX of that upgrade blocks writes while it
-- builds: create the *_pending_version_idx and *_key_idx indexes CONCURRENTLY
-- beforehand to avoid that.

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
-- without rewriting the table.
ALTER TABLE {{schema}}.published ADD COLUMN IF NOT EXISTS policy text NOT NULL DEFAULT '';
ALTER TABLE {{schema}}.published ADD COLUMN IF NOT EXISTS attempts jsonb NOT NULL DEFAULT '[]';
-- --- version isolation (issue #17) ---
-- Tables created before versions: the rows get the empty version, that of
-- a processor without Options.Version. A constant default: no rewrite.
ALTER TABLE {{schema}}.published ADD COLUMN IF NOT EXISTS version text NOT NULL DEFAULT '';
-- --- end version isolation ---

-- Claim: due Scheduled and Delayed rows, oldest first, and NextDue: the
-- first entry after a time. A claim of a Scheduled row sets only
-- lease_token and lease_until (and status to the value it has), which no
-- index covers, so it is a HOT update (hence the fillfactor): claiming
-- writes no index entry. Claims and NextDue repeat the predicate as it is.
-- --- version isolation (issue #17) ---
-- Claims and NextDue are of one version (version = $n): the version leads
-- the index, so that each reads only its version's entries, in due order.
CREATE INDEX IF NOT EXISTS published_pending_version_idx ON {{schema}}.published (version, next_attempt_at) WHERE status IN ('Scheduled', 'Delayed');
-- Replaced by published_pending_version_idx.
DROP INDEX IF EXISTS {{schema}}.published_pending_idx;
-- --- end version isolation ---
-- Replaced by published_pending_idx (itself replaced, see above), which also holds Delayed rows.
DROP INDEX IF EXISTS {{schema}}.published_due_idx;
-- Cleaner: expired rows.
CREATE INDEX IF NOT EXISTS published_expires_idx ON {{schema}}.published (expires_at) WHERE expires_at IS NOT NULL;
-- Dashboard: Scheduled or Failed rows, newest first. Succeeded rows, the
-- bulk of the table, are listed by a backward scan of the primary key.
CREATE INDEX IF NOT EXISTS published_status_idx ON {{schema}}.published (status, id) WHERE status <> 'Succeeded';

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

ALTER TABLE {{schema}}.received ADD COLUMN IF NOT EXISTS policy text NOT NULL DEFAULT '';
ALTER TABLE {{schema}}.received ADD COLUMN IF NOT EXISTS attempts jsonb NOT NULL DEFAULT '[]';
-- --- version isolation (issue #17) ---
ALTER TABLE {{schema}}.received ADD COLUMN IF NOT EXISTS version text NOT NULL DEFAULT '';
-- --- end version isolation ---

-- --- version isolation (issue #17) ---
CREATE INDEX IF NOT EXISTS received_pending_version_idx ON {{schema}}.received (version, next_attempt_at) WHERE status IN ('Scheduled', 'Delayed');
DROP INDEX IF EXISTS {{schema}}.received_pending_idx;
-- --- end version isolation ---
DROP INDEX IF EXISTS {{schema}}.received_due_idx;
CREATE INDEX IF NOT EXISTS received_expires_idx ON {{schema}}.received (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS received_status_idx ON {{schema}}.received (status, id) WHERE status <> 'Succeeded';

-- Ordering keys (#18): the column, NULL for unordered rows, and the
-- index of the claim's check that no earlier row of a key holds it (and
-- of the dashboard's blocked keys). It holds only keyed rows that are not
-- Succeeded, so unordered rows never enter it and a claim of a keyed row
-- stays a HOT update. A key's sequence is that of one version (issue
-- #17), hence the version before the id.
ALTER TABLE {{schema}}.published ADD COLUMN IF NOT EXISTS ordering_key text;
ALTER TABLE {{schema}}.received ADD COLUMN IF NOT EXISTS ordering_key text;
CREATE INDEX IF NOT EXISTS published_key_idx ON {{schema}}.published (ordering_key, version, id)
    WHERE ordering_key IS NOT NULL AND status <> 'Succeeded';
CREATE INDEX IF NOT EXISTS received_key_idx ON {{schema}}.received (ordering_key, grp, version, id)
    WHERE ordering_key IS NOT NULL AND status <> 'Succeeded';

CREATE TABLE IF NOT EXISTS {{schema}}.instances (
    id        text        PRIMARY KEY,
    hostname  text        NOT NULL,
    pid       integer     NOT NULL,
    started   timestamptz NOT NULL,
    last_seen timestamptz NOT NULL
);
