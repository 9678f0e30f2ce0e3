-- gocap schema for PostgreSQL. Replace {{schema}} with your schema name
-- (default "gocap") if you apply it with your own migration tool; it is
-- what postgres.Driver.Migrate runs, and it is idempotent.

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
    lease_until     timestamptz
) WITH (fillfactor = 80);

-- Claim: due Scheduled rows, oldest first. A claim sets only lease_token
-- and lease_until, which no index covers, so it is a HOT update (hence the
-- fillfactor): claiming writes no index entry.
CREATE INDEX IF NOT EXISTS published_due_idx ON {{schema}}.published (next_attempt_at) WHERE status = 'Scheduled';
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
    UNIQUE (msg_id, grp)
) WITH (fillfactor = 80);

CREATE INDEX IF NOT EXISTS received_due_idx ON {{schema}}.received (next_attempt_at) WHERE status = 'Scheduled';
CREATE INDEX IF NOT EXISTS received_expires_idx ON {{schema}}.received (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS received_status_idx ON {{schema}}.received (status, id) WHERE status <> 'Succeeded';

CREATE TABLE IF NOT EXISTS {{schema}}.instances (
    id        text        PRIMARY KEY,
    hostname  text        NOT NULL,
    pid       integer     NOT NULL,
    started   timestamptz NOT NULL,
    last_seen timestamptz NOT NULL
);
