-- Facts every process agrees on (issue 15, items 6 and 8): the longest
-- lifetimes any instance has issued with. A revocation entry outlives every
-- access token it covers whoever adds it (a CLI run with other settings,
-- too), and housekeeping deletes a session only once no instance would still
-- refresh it.
CREATE TABLE token_lifetimes (
    id                       INTEGER PRIMARY KEY CHECK (id = 1),
    max_access_secs          BIGINT NOT NULL,
    max_refresh_idle_secs    BIGINT NOT NULL,
    max_refresh_absolute_secs BIGINT NOT NULL
);
INSERT INTO token_lifetimes
    (id, max_access_secs, max_refresh_idle_secs, max_refresh_absolute_secs)
    VALUES (1, 0, 0, 0);

-- Housekeeping clears replay copies once the retry window is over.
CREATE INDEX refresh_tokens_sealed ON refresh_tokens (used_at) WHERE retry_sealed IS NOT NULL;
