-- Browser sign-in (issue 19): the authorization-code flow with PKCE, an SSO
-- session at the issuer, remembered consent, and RP-initiated logout.

-- A sign-in at the issuer's login page. The browser holds a random cookie;
-- only its SHA-256 is stored. Every session (refresh family) a code starts
-- records the SSO session it came from, so logging out of it ends them all.
CREATE TABLE sso_sessions (
    id            TEXT    PRIMARY KEY,          -- random; never the cookie
    token_hash    BLOB    NOT NULL UNIQUE,      -- SHA-256 of the cookie's value
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time     INTEGER NOT NULL,             -- when the password was checked
    expires_at    INTEGER NOT NULL,
    ended_at      INTEGER
);
CREATE INDEX sso_sessions_user ON sso_sessions (user_id);
CREATE INDEX sso_sessions_expiry ON sso_sessions (expires_at);
CREATE INDEX sso_sessions_ended ON sso_sessions (ended_at);

ALTER TABLE sessions ADD COLUMN sso_id TEXT;    -- the browser sign-in it came from
ALTER TABLE sessions ADD COLUMN auth_time INTEGER;
CREATE INDEX sessions_sso ON sessions (sso_id);

-- Authorization codes: stored hashed, one use, short-lived, bound to what the
-- authorization request said. `session_id` is chosen when the code is issued,
-- so a second use can revoke what the first one issued even while that first
-- use is still being answered (`replayed_at` tells it).
CREATE TABLE authorization_codes (
    hash           BLOB    PRIMARY KEY,         -- SHA-256 of the code
    client_id      TEXT    NOT NULL,
    redirect_uri   TEXT    NOT NULL,
    code_challenge TEXT    NOT NULL,            -- S256
    scope          TEXT    NOT NULL,
    nonce          TEXT,
    user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sso_id         TEXT    NOT NULL,
    auth_time      INTEGER NOT NULL,
    session_id     TEXT    NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    replayed_at    INTEGER
);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);
CREATE INDEX authorization_codes_sso ON authorization_codes (sso_id);

-- What a user allowed a third-party client, scope by scope.
CREATE TABLE consents (
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id     TEXT    NOT NULL,
    scopes        TEXT    NOT NULL DEFAULT '[]',-- JSON array
    granted_at    INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

ALTER TABLE clients ADD COLUMN third_party INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]';
