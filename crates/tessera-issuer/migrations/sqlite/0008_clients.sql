-- The client registry (clients.rs): every OAuth client tokens may be issued
-- to, with what it may ask for. A token's `client_id`, scope and audience come
-- from here, never from the request as given. A confidential client's secret
-- is stored only as SHA-256 (secrets are at least 32 characters; generated ones
-- are 256 random bits), compared in constant time.
CREATE TABLE clients (
    client_id     TEXT    PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('public', 'confidential')),
    secret_sha256 TEXT,                         -- base64url; set exactly for confidential clients
    grant_types   TEXT    NOT NULL DEFAULT '[]',-- JSON arrays of strings, here and below
    scopes        TEXT    NOT NULL DEFAULT '[]',
    default_scope TEXT    NOT NULL DEFAULT '[]',
    audiences     TEXT    NOT NULL DEFAULT '[]',
    redirect_uris TEXT    NOT NULL DEFAULT '[]',
    introspect    INTEGER NOT NULL DEFAULT 0,   -- may call /introspect
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    CHECK ((kind = 'confidential') = (secret_sha256 IS NOT NULL))
);

-- Where each user has logged in successfully from (throttle.rs): an address
-- (IPv6: its /64) that is throttled for password spraying still lets in the
-- users it is known for, with their right password. Keys are the throttle's.
CREATE TABLE login_known (
    user_key      TEXT    NOT NULL,
    ip_key        TEXT    NOT NULL,
    last_success  INTEGER NOT NULL,
    PRIMARY KEY (user_key, ip_key)
);
CREATE INDEX login_known_last ON login_known (last_success);
