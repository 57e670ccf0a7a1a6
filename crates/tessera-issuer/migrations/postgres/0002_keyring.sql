-- The keyring in the database (`keyring = "database"`), for several instances.
-- One row holds the manifest (key states and times, no key material) and a
-- version every change increments; each private key is sealed (AES-256-GCM)
-- under a key derived from the key-encryption key, which is never stored here.
CREATE TABLE keyring (
    id            BIGINT  PRIMARY KEY CHECK (id = 1),
    manifest      TEXT    NOT NULL,
    version       BIGINT  NOT NULL
);

CREATE TABLE keyring_keys (
    kid           TEXT    PRIMARY KEY,
    sealed        BYTEA   NOT NULL,
    created_at    BIGINT  NOT NULL
);
