-- Users, sessions (refresh-token families) and refresh tokens.
-- Times are Unix seconds (UTC). Ids are random, base64url.

CREATE TABLE users (
    id            TEXT    PRIMARY KEY,          -- stable user id: the `sub` claim
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,             -- Argon2id, PHC string
    roles         TEXT    NOT NULL DEFAULT '[]',-- JSON array of strings
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    id            TEXT    PRIMARY KEY,          -- the `sid` claim; one refresh-token family
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,             -- start of the absolute lifetime
    last_used_at  INTEGER NOT NULL,             -- start of the idle lifetime
    revoked_at    INTEGER,
    revoked_why   TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    hash          BLOB    PRIMARY KEY,          -- SHA-256 of the token; the token itself is never stored
    session_id    TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at     INTEGER NOT NULL,
    used_at       INTEGER                       -- set when rotated: a second use is reuse
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
