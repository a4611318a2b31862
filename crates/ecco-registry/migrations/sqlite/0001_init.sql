-- Agents, one row per peer id; a deregistered agent keeps its row (its
-- feedback and history stay meaningful) with deregistered_at set.
CREATE TABLE agents (
    peer_id         TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    document        TEXT NOT NULL,
    addresses       TEXT NOT NULL,
    registered_at   BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL,
    heartbeats      BIGINT NOT NULL DEFAULT 0,
    deregistered_at BIGINT
);

CREATE TABLE feedback (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    rater       TEXT NOT NULL,
    agent       TEXT NOT NULL,
    interaction TEXT NOT NULL,
    capability  TEXT NOT NULL,
    success     BIGINT NOT NULL,
    latency_ms  BIGINT NOT NULL,
    rating      BIGINT,
    at          BIGINT NOT NULL,
    UNIQUE (rater, interaction)
);
CREATE INDEX feedback_agent ON feedback (agent, at);

-- Countable happenings for the analytics time series.
CREATE TABLE events (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    kind  TEXT NOT NULL,
    agent TEXT NOT NULL,
    at    BIGINT NOT NULL
);
CREATE INDEX events_kind_at ON events (kind, at);

-- One row per agent and minute in which it was heard from.
CREATE TABLE activity (
    agent  TEXT NOT NULL,
    minute BIGINT NOT NULL,
    PRIMARY KEY (agent, minute)
);
CREATE INDEX activity_minute ON activity (minute);
