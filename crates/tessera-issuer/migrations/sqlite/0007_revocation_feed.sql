-- The revocation feed (feed.rs). Its cursor is the entry id, so ids must never
-- be reused: without AUTOINCREMENT SQLite hands out max(id) + 1, which goes
-- back after the newest entries expire and are purged. The table is rebuilt
-- with AUTOINCREMENT (the only way to add it), keeping every entry and id.
CREATE TABLE revocations_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT    NOT NULL CHECK (kind IN ('jti', 'sid', 'sub')),
    value         TEXT    NOT NULL,
    issued_before INTEGER,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    why           TEXT    NOT NULL
);
INSERT INTO revocations_new (id, kind, value, issued_before, created_at, expires_at, why)
    SELECT id, kind, value, issued_before, created_at, expires_at, why FROM revocations;
DROP TABLE revocations;
ALTER TABLE revocations_new RENAME TO revocations;
CREATE INDEX revocations_expires ON revocations (expires_at);

-- A random name for this list: a cursor from another database (a new one, or
-- a different deployment) is recognised as foreign and answered with a full
-- snapshot instead of being trusted.
CREATE TABLE revocation_epoch (epoch TEXT NOT NULL);
INSERT INTO revocation_epoch (epoch) VALUES (lower(hex(randomblob(8))));

-- Introspection looks entries up by value.
CREATE INDEX revocations_value ON revocations (value);
