-- Client authentication per client (issue 18): each client names the methods
-- it may use at /token (empty: its kind's, the secret methods for a client
-- with a secret); a private_key_jwt client registers its public keys (a JWK
-- set, never a URL) and may have no secret; a rotated secret stays valid
-- until previous_secret_until; a client may have its own access-token
-- lifetime. SQLite cannot change a CHECK, so the table is rebuilt.
CREATE TABLE clients_new (
    client_id     TEXT    PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('public', 'confidential')),
    secret_sha256 TEXT,                         -- base64url
    grant_types   TEXT    NOT NULL DEFAULT '[]',-- JSON arrays of strings, here and below
    scopes        TEXT    NOT NULL DEFAULT '[]',
    default_scope TEXT    NOT NULL DEFAULT '[]',
    audiences     TEXT    NOT NULL DEFAULT '[]',
    redirect_uris TEXT    NOT NULL DEFAULT '[]',
    introspect    INTEGER NOT NULL DEFAULT 0,   -- may call /introspect
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    auth_methods  TEXT    NOT NULL DEFAULT '[]',
    jwks          TEXT,                         -- the client's public keys (private_key_jwt)
    previous_secret_sha256 TEXT,                -- the secret before the last rotation,
    previous_secret_until  INTEGER,             -- valid until then
    token_lifetime_secs    INTEGER,             -- NULL: the issuer's access-token lifetime
    CHECK ((kind = 'public' AND secret_sha256 IS NULL AND jwks IS NULL
            AND previous_secret_sha256 IS NULL)
        OR (kind = 'confidential' AND (secret_sha256 IS NOT NULL OR jwks IS NOT NULL)))
);
INSERT INTO clients_new (client_id, kind, secret_sha256, grant_types, scopes, default_scope,
                         audiences, redirect_uris, introspect, disabled, created_at, updated_at)
    SELECT client_id, kind, secret_sha256, grant_types, scopes, default_scope,
           audiences, redirect_uris, introspect, disabled, created_at, updated_at
    FROM clients;
DROP TABLE clients;
ALTER TABLE clients_new RENAME TO clients;

-- The jti of every private_key_jwt assertion accepted, until it expires: an
-- assertion is accepted once, by whichever instance sees it first (the
-- primary key decides).
CREATE TABLE client_assertions (
    client_id     TEXT    NOT NULL,
    jti           TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX client_assertions_expiry ON client_assertions (expires_at);
