-- gocap schema for MySQL 8.0+ and MariaDB 10.6+. Replace {{prefix}} with
-- your table prefix (default "gocap_") if you apply it with your own
-- migration tool; it is what mysql.Driver.Migrate runs, statement by
-- statement, and it is idempotent. Indexes are declared inside CREATE TABLE
-- because MySQL has no CREATE INDEX IF NOT EXISTS.
--
-- Each secondary index slows every publish a little, so there are exactly
-- the ones the background queries need (see QUERY_PLANS.md):
--   *_due      (status, next_attempt_at)  claims: due Scheduled rows, oldest first
--   *_expires  (expires_at)               the cleaner
--   *_status   (status, id)               dashboard pages by status, counts

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
    PRIMARY KEY (id),
    KEY {{prefix}}published_due (status, next_attempt_at),
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
    PRIMARY KEY (id),
    UNIQUE KEY {{prefix}}received_msg (msg_id, grp),
    KEY {{prefix}}received_due (status, next_attempt_at),
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
