-- An idempotent retry of a refresh returns the very same new pair. The response is
-- kept sealed (AES-256-GCM) under a key derived from the refresh token that was
-- used, which only its holder has: the database alone cannot read it.
ALTER TABLE refresh_tokens ADD COLUMN retry_sealed BLOB;

-- Refreshed access tokens keep the client and scope the session started with.
ALTER TABLE sessions ADD COLUMN client_id TEXT NOT NULL DEFAULT 'tessera';
ALTER TABLE sessions ADD COLUMN scope TEXT NOT NULL DEFAULT 'profile';
