-- Users, sessions (refresh-token families) and refresh tokens: the schema the
-- SQLite migrations 0001 and 0002 build, in PostgreSQL's types.
-- Times are Unix seconds (UTC). Ids are random, base64url.

CREATE TABLE users (
    id            TEXT    PRIMARY KEY,          -- stable user id: the `sub` claim
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,             -- Argon2id, PHC string
    roles         TEXT    NOT NULL DEFAULT '[]',-- JSON array of strings
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);

CREATE TABLE sessions (
    id            TEXT    PRIMARY KEY,          -- the `sid` claim; one refresh-token family
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    BIGINT  NOT NULL,             -- start of the absolute lifetime
    last_used_at  BIGINT  NOT NULL,             -- start of the idle lifetime
    revoked_at    BIGINT,
    revoked_why   TEXT,
    client_id     TEXT    NOT NULL DEFAULT 'tessera',
    scope         TEXT    NOT NULL DEFAULT 'profile'
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    hash          BYTEA   PRIMARY KEY,          -- SHA-256 of the token; the token itself is never stored
    session_id    TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at     BIGINT  NOT NULL,
    used_at       BIGINT,                       -- set when rotated: a second use is reuse
    -- The response of the rotation, sealed (AES-256-GCM) under a key derived
    -- from the used token, for an idempotent retry: the database cannot read it.
    retry_sealed  BYTEA
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
