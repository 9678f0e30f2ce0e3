-- gocap schema for MySQL 8.0.13+ and MariaDB 10.6+. Replace {{prefix}} with
-- your table prefix (default "gocap_") if you apply it with your own
-- migration tool; it is what mysql.Driver.Migrate runs, statement by
-- statement, and it is idempotent. Indexes are declared inside CREATE TABLE
-- because MySQL has no CREATE INDEX IF NOT EXISTS.
--
-- Each secondary index slows every publish a little, so there are exactly
-- the ones the background queries need (see QUERY_PLANS.md):
--   *_pending_version (version, due_at)   claims: due Scheduled and Delayed rows
--                                          of one version, oldest first; NextDue:
--                                          one entry
--   *_expires  (expires_at)               the cleaner
--   *_status   (status, id)               dashboard pages by status, counts
--   *_key      (key_held[, grp], version, id)  claims of keyed rows: the first row
--                                          of the key that holds it (#18); blocked keys
--
-- key_held is, like due_at, a virtual column: the ordering key of a row that
-- may hold its key (Scheduled, Delayed or Failed), NULL for the others, so
-- that *_key holds no Succeeded row and no unkeyed one (NULL entries only).
--
-- MySQL has no partial index: due_at is a virtual column, for Scheduled
-- and Delayed rows the time they may be claimed — next_attempt_at, or the
-- end of the lease of a row in flight — and NULL for the others, so that
-- its index holds the pending rows in due order and a range "due_at <=
-- now" reads only claimable ones: not the rows in flight, which a claim
-- would otherwise read again and again during a backlog. (An index on (status, next_attempt_at) would
-- serve "status IN ('Scheduled', 'Delayed')" as two ranges whose rows it
-- must sort: a claim would read every due row of a backlog.)
--
-- Tables of an earlier gocap are upgraded by Migrate, not by this file:
-- it adds the columns policy, attempts, due_at, version, ordering_key and
-- key_held and the *_pending_version and *_key indexes, and drops the *_due
-- and *_pending indexes (see upgradeTable in upgrade.go).
--
-- version (issue #17) is the Options.Version of the processor that
-- published or received the row ('' without one); claims and NextDue read
-- the rows of one version only, hence its place first in *_pending_version.
-- A key's sequence is also that of one version (see "Ordering keys" in
-- package storage), hence the version before the id in *_key.

CREATE TABLE IF NOT EXISTS {{prefix}}published (
    id              BIGINT       NOT NULL,
    name            VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    headers         LONGTEXT     CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    body            LONGBLOB     NOT NULL,
    status          VARCHAR(16)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    retries         INT          NOT NULL DEFAULT 0,
    last_error      TEXT         CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    added           DATETIME(6)  NOT NULL,
    next_attempt_at DATETIME(6)  NOT NULL,
    expires_at      DATETIME(6)  NULL,
    lease_token     BIGINT       NULL,
    lease_until     DATETIME(6)  NULL,
    policy          TEXT         CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT (''),
    attempts        MEDIUMTEXT   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT ('[]'),
    due_at          DATETIME(6)  AS (IF(status IN ('Scheduled', 'Delayed'), GREATEST(next_attempt_at, COALESCE(lease_until, next_attempt_at)), NULL)) VIRTUAL,
    version         VARCHAR(20)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '',
    -- ordering keys (#18)
    ordering_key    VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    key_held        VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin AS (IF(status IN ('Scheduled', 'Delayed', 'Failed'), ordering_key, NULL)) VIRTUAL,
    KEY {{prefix}}published_key (key_held, version, id),
    PRIMARY KEY (id),
    KEY {{prefix}}published_pending_version (version, due_at),
    KEY {{prefix}}published_expires (expires_at),
    KEY {{prefix}}published_status (status, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS {{prefix}}received (
    id              BIGINT       NOT NULL,
    msg_id          VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    grp             VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    name            VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    headers         LONGTEXT     CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    body            LONGBLOB     NOT NULL,
    status          VARCHAR(16)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    retries         INT          NOT NULL DEFAULT 0,
    last_error      TEXT         CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    added           DATETIME(6)  NOT NULL,
    next_attempt_at DATETIME(6)  NOT NULL,
    expires_at      DATETIME(6)  NULL,
    lease_token     BIGINT       NULL,
    lease_until     DATETIME(6)  NULL,
    policy          TEXT         CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT (''),
    attempts        MEDIUMTEXT   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT ('[]'),
    due_at          DATETIME(6)  AS (IF(status IN ('Scheduled', 'Delayed'), GREATEST(next_attempt_at, COALESCE(lease_until, next_attempt_at)), NULL)) VIRTUAL,
    version         VARCHAR(20)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '',
    -- ordering keys (#18)
    ordering_key    VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    key_held        VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin AS (IF(status IN ('Scheduled', 'Delayed', 'Failed'), ordering_key, NULL)) VIRTUAL,
    KEY {{prefix}}received_key (key_held, grp, version, id),
    PRIMARY KEY (id),
    UNIQUE KEY {{prefix}}received_msg (msg_id, grp),
    KEY {{prefix}}received_pending_version (version, due_at),
    KEY {{prefix}}received_expires (expires_at),
    KEY {{prefix}}received_status (status, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS {{prefix}}instances (
    id        VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    hostname  VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    pid       INT          NOT NULL,
    started   DATETIME(6)  NOT NULL,
    last_seen DATETIME(6)  NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
