-- Failed-login counts every instance shares (see throttle.rs), keyed
-- 'user:<name>' or 'ip:<address>'. Rows quiet for an hour are dropped.
CREATE TABLE login_failures (
    key           TEXT    PRIMARY KEY,
    failures      BIGINT  NOT NULL,
    last_failure  BIGINT  NOT NULL,
    blocked_until BIGINT  NOT NULL
);
CREATE INDEX login_failures_last ON login_failures (last_failure);
