-- Sessions end with a reason (logout, logout_all, deleted, revoked, refresh_reuse, session_cap,
-- user_disabled), recorded next to revoked_at.
ALTER TABLE sessions ADD COLUMN ended_reason TEXT;
-- Orders a user's sessions (the session cap ends the oldest) when several begin in one second.
ALTER TABLE sessions ADD COLUMN created_at_ms BIGINT;

CREATE INDEX sessions_user_active_idx ON sessions (user_id, revoked_at);

-- The revocation feed of `hybrid` verifiers. `sequence` comes from the one-row counter below,
-- incremented in the transaction that inserts the event: the row lock it takes on PostgreSQL
-- (SQLite serializes every writer anyway) makes sequence order equal commit order, and a rolled
-- back transaction gives its number back, so committed sequences have no gaps and are never
-- reused, even after every event has been pruned. `payload` is the JSON of the event's target.
CREATE TABLE revocation_events (
    sequence    BIGINT PRIMARY KEY,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE INDEX revocation_events_expires_at_idx ON revocation_events (expires_at);

CREATE TABLE revocation_sequence (
    id            BIGINT PRIMARY KEY,
    last_sequence BIGINT NOT NULL
);

INSERT INTO revocation_sequence (id, last_sequence) VALUES (1, 0);
