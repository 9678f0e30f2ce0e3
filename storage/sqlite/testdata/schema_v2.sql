-- gocap schema for SQLite. Replace {{prefix}} with your table prefix
-- (default "gocap_") if you apply it yourself; it is what sqlite.Driver.Migrate
-- runs, in one transaction, and it is idempotent. Times are INTEGER Unix
-- microseconds, UTC. Migrate also upgrades tables of an earlier gocap: it
-- adds the columns policy and attempts where they are missing (SQLite has
-- no ADD COLUMN IF NOT EXISTS), and the statements below swap the indexes.
--
-- *_pending serves claims (due Scheduled and Delayed rows, oldest first)
-- and NextDue (the first entry after a time); its predicate is repeated
-- as it is in those queries, so that the planner uses it and reads only
-- due rows. It replaces *_due on (status, next_attempt_at).

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
    attempts        TEXT    NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS {{prefix}}published_pending ON {{prefix}}published (next_attempt_at) WHERE status IN ('Scheduled', 'Delayed');
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
    UNIQUE (msg_id, grp)
);
CREATE INDEX IF NOT EXISTS {{prefix}}received_pending ON {{prefix}}received (next_attempt_at) WHERE status IN ('Scheduled', 'Delayed');
DROP INDEX IF EXISTS {{prefix}}received_due;
CREATE INDEX IF NOT EXISTS {{prefix}}received_expires ON {{prefix}}received (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS {{prefix}}received_status ON {{prefix}}received (status, id);

CREATE TABLE IF NOT EXISTS {{prefix}}instances (
    id        TEXT    PRIMARY KEY,
    hostname  TEXT    NOT NULL,
    pid       INTEGER NOT NULL,
    started   INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
