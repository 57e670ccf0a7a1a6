-- Facts every process agrees on (issue 15, item 8): the longest access-token
-- lifetime any instance has issued with, so that a revocation entry outlives
-- every token it covers whoever adds it (a CLI run with other settings, too).
CREATE TABLE token_lifetimes (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    max_access_secs INTEGER NOT NULL
);
INSERT INTO token_lifetimes (id, max_access_secs) VALUES (1, 0);

-- Housekeeping clears replay copies once the retry window is over.
CREATE INDEX refresh_tokens_sealed ON refresh_tokens (used_at) WHERE retry_sealed IS NOT NULL;
