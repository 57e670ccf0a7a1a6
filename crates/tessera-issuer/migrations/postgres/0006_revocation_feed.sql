-- The revocation feed (feed.rs): a random name for this list, so that a
-- cursor from another database (a new one, or a different deployment) is
-- recognised as foreign and answered with a full snapshot. (Identity ids are
-- never reused, so the cursor itself needs nothing more here.)
CREATE TABLE revocation_epoch (epoch TEXT NOT NULL);
INSERT INTO revocation_epoch (epoch)
    VALUES (substr(md5(random()::text || clock_timestamp()::text), 1, 16));

-- Introspection looks entries up by value.
CREATE INDEX revocations_value ON revocations (value);
