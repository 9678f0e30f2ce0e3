-- gocap schema for SQLite. Replace {{prefix}} with your table prefix
-- (default "gocap_") if you apply it yourself; it is what sqlite.Driver.Migrate
-- runs, in one transaction, and it is idempotent. Times are INTEGER Unix
-- microseconds, UTC. Migrate also upgrades tables of an earlier gocap: it
-- adds the columns policy, attempts, ordering_key and version where they are missing
-- (SQLite has no ADD COLUMN IF NOT EXISTS), and the statements below swap
-- the indexes.
--
-- *_pending_unkeyed serves the claim of rows without an ordering key (due
-- Scheduled and Delayed rows of one version, oldest first), and with
-- *_pending_keyed, the same for rows with a key, NextDue (the first entry
-- of a version after a time); their predicates are repeated as they are in
-- those queries, so that the planner uses them and reads only due rows.
-- Rows with a key are claimed from *_key instead, one head per key (#18).
-- The two replace *_pending_version on (version, next_attempt_at) for
-- all pending rows, which replaced *_pending on (next_attempt_at), which
-- replaced *_due on (status, next_attempt_at).

CREATE TABLE IF NOT EXISTS {{prefix}}published (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL,
    headers         TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    status          TEXT    NOT NULL,
    retries         INTEGER NOT NULL,
    last_error      TEXT    NOT NULL,
    added           INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    expires_at      INTEGER,
    lease_token     INTEGER,
    lease_until     INTEGER,
    policy          TEXT    NOT NULL DEFAULT '',
    attempts        TEXT    NOT NULL DEFAULT '[]',
    ordering_key    TEXT,
    version         TEXT    NOT NULL DEFAULT ''
);
-- --- version isolation (issue #17) ---
CREATE INDEX IF NOT EXISTS {{prefix}}published_pending_unkeyed ON {{prefix}}published (version, next_attempt_at) WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL;
CREATE INDEX IF NOT EXISTS {{prefix}}published_pending_keyed ON {{prefix}}published (version, next_attempt_at) WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NOT NULL;
DROP INDEX IF EXISTS {{prefix}}published_pending_version;
DROP INDEX IF EXISTS {{prefix}}published_pending;
-- --- end version isolation ---
DROP INDEX IF EXISTS {{prefix}}published_due;
CREATE INDEX IF NOT EXISTS {{prefix}}published_expires ON {{prefix}}published (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS {{prefix}}published_status ON {{prefix}}published (status, id);

CREATE TABLE IF NOT EXISTS {{prefix}}received (
    id              INTEGER PRIMARY KEY,
    msg_id          TEXT    NOT NULL,
    grp             TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    headers         TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    status          TEXT    NOT NULL,
    retries         INTEGER NOT NULL,
    last_error      TEXT    NOT NULL,
    added           INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    expires_at      INTEGER,
    lease_token     INTEGER,
    lease_until     INTEGER,
    policy          TEXT    NOT NULL DEFAULT '',
    attempts        TEXT    NOT NULL DEFAULT '[]',
    ordering_key    TEXT,
    version         TEXT    NOT NULL DEFAULT '',
    UNIQUE (msg_id, grp)
);
-- --- version isolation (issue #17) ---
CREATE INDEX IF NOT EXISTS {{prefix}}received_pending_unkeyed ON {{prefix}}received (version, next_attempt_at) WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NULL;
CREATE INDEX IF NOT EXISTS {{prefix}}received_pending_keyed ON {{prefix}}received (version, next_attempt_at) WHERE status IN ('Scheduled', 'Delayed') AND ordering_key IS NOT NULL;
DROP INDEX IF EXISTS {{prefix}}received_pending_version;
DROP INDEX IF EXISTS {{prefix}}received_pending;
-- --- end version isolation ---
DROP INDEX IF EXISTS {{prefix}}received_due;
CREATE INDEX IF NOT EXISTS {{prefix}}received_expires ON {{prefix}}received (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS {{prefix}}received_status ON {{prefix}}received (status, id);

-- Ordering keys (#18): ordering_key (added by Migrate to older tables)
-- and *_key, the index of the claim's check that no earlier row of a key
-- holds it, and of the dashboard's blocked keys: keyed rows not Succeeded
-- only, so unordered rows never enter it. The claim repeats its predicate.
-- A key's sequence is that of one version (issue #17), hence the version
-- before the id.
CREATE INDEX IF NOT EXISTS {{prefix}}published_key ON {{prefix}}published (ordering_key, version, id) WHERE ordering_key IS NOT NULL AND status <> 'Succeeded';
CREATE INDEX IF NOT EXISTS {{prefix}}received_key ON {{prefix}}received (ordering_key, grp, version, id) WHERE ordering_key IS NOT NULL AND status <> 'Succeeded';
-- *_key_lease: the claim's check that no row of a key is in flight (a
-- lease ending after now, #18), one search of it; the same rows.
CREATE INDEX IF NOT EXISTS {{prefix}}published_key_lease ON {{prefix}}published (ordering_key, version, lease_until) WHERE ordering_key IS NOT NULL AND status <> 'Succeeded';
CREATE INDEX IF NOT EXISTS {{prefix}}received_key_lease ON {{prefix}}received (ordering_key, grp, version, lease_until) WHERE ordering_key IS NOT NULL AND status <> 'Succeeded';

CREATE TABLE IF NOT EXISTS {{prefix}}instances (
    id        TEXT    PRIMARY KEY,
    hostname  TEXT    NOT NULL,
    pid       INTEGER NOT NULL,
    started   INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
