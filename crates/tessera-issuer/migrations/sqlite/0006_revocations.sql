-- The revocation list (revocation.rs): a token (jti), a session (sid) or a
-- user (sub: tokens issued before issued_before), each kept until no token it
-- covers can still be valid. The id is the feed's cursor.
CREATE TABLE revocations (
    id            INTEGER PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('jti', 'sid', 'sub')),
    value         TEXT    NOT NULL,
    issued_before INTEGER,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    why           TEXT    NOT NULL
);
CREATE INDEX revocations_expires ON revocations (expires_at);
