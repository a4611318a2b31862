-- Facts about this registry. `registry_id`, random and made once, names the
-- registry in the keys it shares through Redis, so that two registries on one
-- Redis never read each other's cached catalog.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The request and rating series are counted from the feedback itself (the
-- `events` table now holds registrations only).
CREATE INDEX feedback_at ON feedback (at);
