-- Portable between SQLite and PostgreSQL: TEXT and BIGINT only, times in Unix seconds,
-- flags as nullable timestamps (disabled_at, revoked_at, used_at).

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    disabled_at   BIGINT,
    created_at    BIGINT NOT NULL
);

CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    roles       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- One row per login. `scope` is the scope granted at login (NULL: all of the user's scopes,
-- re-read at every refresh); refresh tokens never widen it.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    client_id    TEXT,
    scope        TEXT,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    user_agent   TEXT,
    ip           TEXT
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Refresh tokens are stored as SHA-256(token), base64url; session_id is the rotation family.
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    replaced_by TEXT
);

CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);
