-- Authorization codes of the code flow (src/oidc/codes.rs): stored as SHA-256(code), base64url,
-- like refresh tokens; single use (used_at), short-lived (expires_at, at most 60 s after
-- issue), bound to the client, the exact redirect URI, the PKCE challenge, the nonce and the
-- browser session that approved them. token_session_id is the session the first redemption
-- started: a second redemption ends it.
CREATE TABLE authorization_codes (
    code_hash        TEXT PRIMARY KEY,
    client_id        TEXT NOT NULL,
    redirect_uri     TEXT NOT NULL,
    code_challenge   TEXT NOT NULL,
    nonce            TEXT,
    user_id          TEXT NOT NULL,
    scope            TEXT NOT NULL,
    auth_time        BIGINT NOT NULL,
    browser_session  TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    used_at          BIGINT,
    token_session_id TEXT
);

CREATE INDEX authorization_codes_expires_at_idx ON authorization_codes (expires_at);

-- The issuer's own browser sessions (src/oidc/browser.rs): the __Host- cookie carries a random
-- token, stored here as SHA-256(token), base64url. A second authorization in the same browser
-- skips the sign-in form while the row lives and is not ended.
CREATE TABLE browser_sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    auth_time   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    ended_at    BIGINT
);

CREATE INDEX browser_sessions_expires_at_idx ON browser_sessions (expires_at);
