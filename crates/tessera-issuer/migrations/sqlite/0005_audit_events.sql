-- Security events (see audit.rs): logins, refresh-token reuse, revocations,
-- logouts, operators' changes to users. Never a secret. Kept for the
-- configured retention (default 90 days).
CREATE TABLE audit_events (
    id            INTEGER PRIMARY KEY,          -- increasing
    at            INTEGER NOT NULL,             -- Unix seconds
    event         TEXT    NOT NULL,
    user_id       TEXT,
    session_id    TEXT,
    client_ip     TEXT,
    detail        TEXT    NOT NULL DEFAULT '{}' -- JSON object
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_user ON audit_events (user_id, id);
