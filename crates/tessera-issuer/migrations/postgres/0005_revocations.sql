-- The revocation list (revocation.rs): a token (jti), a session (sid) or a
-- user (sub: tokens issued before issued_before), each kept until no token it
-- covers can still be valid. The id is the feed's cursor; inserts hold an
-- advisory lock so ids commit in order.
CREATE TABLE revocations (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('jti', 'sid', 'sub')),
    value         TEXT    NOT NULL,
    issued_before BIGINT,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    why           TEXT    NOT NULL
);
CREATE INDEX revocations_expires ON revocations (expires_at);
