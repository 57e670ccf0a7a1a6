-- Client authentication per client (issue 18): each client names the methods
-- it may use at /token (empty: its kind's, the secret methods for a client
-- with a secret); a private_key_jwt client registers its public keys (a JWK
-- set, never a URL) and may have no secret; a rotated secret stays valid
-- until previous_secret_until; a client may have its own access-token
-- lifetime.
ALTER TABLE clients DROP CONSTRAINT clients_check;
ALTER TABLE clients
    ADD COLUMN auth_methods TEXT NOT NULL DEFAULT '[]',
    ADD COLUMN jwks TEXT,                          -- the client's public keys (private_key_jwt)
    ADD COLUMN previous_secret_sha256 TEXT,        -- the secret before the last rotation,
    ADD COLUMN previous_secret_until BIGINT,       -- valid until then
    ADD COLUMN token_lifetime_secs BIGINT;         -- NULL: the issuer's access-token lifetime
ALTER TABLE clients ADD CONSTRAINT clients_credentials CHECK (
    (kind = 'public' AND secret_sha256 IS NULL AND jwks IS NULL
        AND previous_secret_sha256 IS NULL)
    OR (kind = 'confidential' AND (secret_sha256 IS NOT NULL OR jwks IS NOT NULL)));

-- The jti of every private_key_jwt assertion accepted, until it expires: an
-- assertion is accepted once, by whichever instance sees it first (the
-- primary key decides).
CREATE TABLE client_assertions (
    client_id     TEXT    NOT NULL,
    jti           TEXT    NOT NULL,
    expires_at    BIGINT  NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX client_assertions_expiry ON client_assertions (expires_at);
