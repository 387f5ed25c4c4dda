//! The token issuer.
//!
//! `auth-service` keeps users, service clients, sessions and refresh tokens in SQL, signs RS256
//! access tokens with the active key of a rotating key set ([`keys`]), and publishes the public
//! halves as a JWKS. Every verifier in the system (gateway, orders-service) checks tokens on
//! its own with `authn`; this crate issues them, keeps the state of sessions, and tells the
//! verifiers when sessions end.
//!
//! - HTTP ([`http::router`]): `/oauth/token` (grants `password`, `refresh_token`,
//!   `client_credentials`), `/oauth/revoke` (RFC 7009), `/oauth/introspect` (RFC 7662),
//!   `/.well-known/jwks.json`, `/.well-known/openid-configuration`; the bearer's sessions
//!   (`GET /v1/sessions`, `DELETE /v1/sessions/{sid}`, `POST /v1/logout`, `POST /v1/logout-all`);
//!   administration (role `admin`: `POST /v1/admin/users/{id}/disable|enable`,
//!   `GET /v1/admin/keys`, `POST /v1/admin/keys/rotate[?immediate=true]`,
//!   `POST /v1/admin/keys/{kid}/revoke`); `/healthz`, `/readyz`, `/metrics`.
//! - gRPC ([`grpc`]): `auth.v1.SessionService/CheckSession` for `stateful` verifiers and
//!   `WatchRevocations` for `hybrid` ones.
//! - [`App`] binds both listeners and serves them until a shutdown future resolves; the binary
//!   (`main.rs`) adds the operator commands of [`cli`] (`migrate`, `user add|disable|enable`,
//!   `client add`, `keys list|rotate|revoke`).
//!
//! Operations, as in the other services (the building blocks are in `platform`):
//!
//! - **Readiness-first shutdown** ([`platform::shutdown::serve`]): on SIGTERM `/readyz` answers 503
//!   at once while both listeners and the open `WatchRevocations` streams keep serving for
//!   `AUTH_SHUTDOWN_DELAY` (Kubernetes withdraws the endpoint meanwhile); then the listeners
//!   close, the streams end by themselves, and in-flight requests have `AUTH_SHUTDOWN_GRACE`.
//!   `/readyz` also fails while the database or the session store does not answer, and recovers
//!   by itself when they are back.
//! - **Trace context**: every HTTP request and gRPC call runs in a span carrying its
//!   `x-request-id` and W3C `traceparent` ([`platform::trace::TraceContextLayer`]); the answer
//!   carries the request id.
//! - **Metrics**: `auth_http_requests_total{method, route, status}` and
//!   `auth_grpc_requests_total{rpc, code}` with their latency histograms
//!   (`auth_http_request_duration_seconds`, `auth_grpc_request_duration_seconds`), and the
//!   database pool's usage (`db_pool_connections`, `db_pool_max`).
//!
//! Decisions worth knowing:
//!
//! - A session lives `AUTH_REFRESH_TOKEN_TTL` from the login (absolute, not sliding); every
//!   refresh token of its family expires with it.
//! - A login without `scope` grants all of the user's scopes and stores no scope on the session,
//!   so each refresh re-reads the user's current scopes (and roles). A login with `scope` stores
//!   it; refreshes never widen it and drop whatever the user has lost since.
//! - A refresh token issued to an authenticated client is refreshed only by that client.
//! - Every registered client is confidential: a `client_id` without a secret is refused with
//!   `invalid_client`. A first-party login sends no client credentials at all.
//! - Refresh-token rotation claims the presented token with a conditional `UPDATE` as the first
//!   statement of its transaction, so two concurrent uses cannot both win, on SQLite and
//!   PostgreSQL alike ([`refresh_tokens::begin_rotation`]).
//! - `auth-service client add` prints only the secret on stdout (scriptable); the explanation
//!   goes to stderr.
//! - **Login throttling** ([`throttle`]): failed password logins are counted per account (the
//!   normalised username, existing or not) and per client address (the TCP peer, or the last
//!   `X-Forwarded-For` entry of a peer in `AUTH_TRUSTED_PROXIES`). Past a threshold each attempt
//!   waits a doubling delay, past another the key is locked; refused attempts check no password
//!   and get 429 with `Retry-After` (code `invalid_grant`), the same for every username. A
//!   success clears the account's count. In memory, bounded, per replica.
//!
//! Sessions and revocation:
//!
//! - **One authority for "is this session active": the [`sessions::SessionStore`].** The SQL
//!   store (default) keeps that state on the session's own row; the Redis store (`REDIS_URL`,
//!   several replicas) keeps it at `auth:session:{sid}`, which `stateful` verifiers read
//!   directly. `CheckSession`, the issuer's own bearer checks (its [`authn::Verifier`] is
//!   `stateful` against the store, with no cache), introspection and the refresh grant all ask
//!   the store. The *family* row (client, granted scope, end) and the refresh tokens always stay
//!   in SQL, so rotation stays transactional whatever the store.
//! - **Disabling a user ends its sessions** (and appends `UserDisabled` then `SessionsEnded`):
//!   a session's activity does not depend on its user's row. The flag is committed before the
//!   sessions end, and a login re-reads the flag after recording its session, so a login racing a
//!   disable cannot leave a live session behind. `users.disabled_at` still refuses logins and
//!   refreshes. Enabling does not revive old sessions.
//! - **Refresh-token reuse, no grace window.** Presenting a token that was already rotated (and
//!   has not expired) answers `invalid_grant` and ends the session with reason `refresh_reuse`,
//!   however soon after the rotation, including for the loser of two concurrent refreshes with
//!   one token: exactly one wins, then the loser's reuse ends the family, the winner's new tokens
//!   included. A grace window would let a thief who refreshes first keep the session whenever
//!   the victim's refresh falls within it; clients must not refresh one session concurrently
//!   (serialize refreshes, e.g. across browser tabs). Counted in `auth_refresh_reuse_total`.
//! - **Revocation events.** Every session end appends a `SessionsEnded` event (logout-all: one
//!   event listing every session), in the same transaction as the SQL session change, or right
//!   after the Redis change. Sequence numbers come from a one-row counter incremented in that
//!   transaction instead of `AUTOINCREMENT`/`BIGSERIAL`: the same DDL on both databases, the
//!   counter's row lock serializes writers until commit on PostgreSQL (sequence order = commit
//!   order, the job `pg_advisory_xact_lock` would do), rolled-back numbers are given back (no
//!   gaps), and numbers survive restarts and pruning ([`revocation`]). Events expire at
//!   `occurred_at + AUTH_ACCESS_TOKEN_TTL + 60 s` (`KeyRevoked`: 25 h); only expired events are
//!   pruned.
//! - **Live delivery.** One tailer per process reads new events from the table in order and
//!   broadcasts them; it is woken by local appends, by the Redis channel `auth:revocations`
//!   (other replicas, the CLI) and by a poll (`AUTH_REVOCATION_POLL_INTERVAL`, the safety net).
//!   A `WatchRevocations` stream subscribes first, sends the backlog from the table, a heartbeat,
//!   then live events (skipping any at or below what it sent, re-reading the table on a gap or
//!   when it lags) and a heartbeat every `AUTH_REVOCATION_HEARTBEAT`; a heartbeat's
//!   `head_sequence` is only sent once every retained event up to it has been sent. Streams end
//!   when the server closes its listeners (after `AUTH_SHUTDOWN_DELAY`), so the drain never
//!   waits for them.
//! - **The session API is for users**: a token without `sid` (a service token) gets 403 there.
//!   `DELETE /v1/sessions/{sid}` answers 404 for another user's session, as for an unknown one.
//!   Admin routes take any token with role `admin` (a user's or an admin client's).
//! - **Revocation** (`/oauth/revoke`) ends the session behind a refresh token or a user access
//!   token, only when asked by the client it was issued to (no credentials for first-party
//!   tokens); anything else answers 200 and changes nothing. A service token (no session) is
//!   `unsupported_token_type`. **Introspection** requires client authentication; any
//!   authenticated client may introspect any token; a rotated refresh token is inactive (and
//!   introspecting it is not a reuse).
//! - **Session cap** (`AUTH_MAX_SESSIONS_PER_USER`, 0 = unlimited): after a login, the user's
//!   oldest sessions beyond the cap end with reason `session_cap`. Best effort under concurrent
//!   logins of one user (see [`sessions::enforce_cap`]).
//! - **Redis** must answer at start-up (the service refuses to start otherwise) and every store
//!   operation has a 2 s deadline; a store that cannot answer fails requests closed (`/readyz`
//!   reports it). The store's scripts expect a single Redis (with replicas/Sentinel), not a
//!   Redis Cluster.
//!
//! Signing keys (`docs/KEYS.md` has the timing rules and the runbook):
//!
//! - **States** `next` (published, not signing), `active` (signing, exactly one), `retired`
//!   (published until every token it signed has expired: retirement + access-token TTL + the
//!   reload interval + 60 s), `revoked` (withdrawn at once, with a `KeyRevoked` event, kept 25 h
//!   so `hybrid` verifiers refuse the key for as long as any verifier may serve a stale JWKS).
//!   The transitions are pure functions of the key list and the time ([`keys::schedule`]);
//!   [`keys::KeyManager::tick`] takes the time as a parameter, so tests drive the clock.
//! - **Stores** (`AUTH_KEY_STORE`): `database` (private keys AES-256-GCM-encrypted under
//!   `AUTH_KEY_ENCRYPTION_KEY(_FILE)`, the `kid` as associated data; refused without an
//!   encryption key: keys are never stored in the clear in SQL), `files` (PEM files and
//!   `keys.json` in `AUTH_KEYS_DIR`, the default without an encryption key; the first key keeps
//!   the name `signing-key.pem`, and a directory holding only that file is adopted as one active
//!   key), `mounted` (an operator's read-only directory: `signing-key.pem` signs, `next*.pem`
//!   are published ahead, other `*.pem` for verification; never rotated by the service). `auto`
//!   picks `database` with an encryption key, `mounted` for an existing directory it cannot
//!   write (a Secret volume), else `files`. A `files`/`mounted` start refuses a database that
//!   holds keys (replicas would sign with different sets); a first `database` start imports the
//!   keys of `AUTH_KEYS_DIR`, so moving to the database keeps the `kid`.
//! - **One replica changes the set at a time** through a transaction-level lock, not a leased
//!   leader: every change runs in a transaction whose first statement updates the one row of
//!   `signing_key_lock`, then re-reads the set and re-plans. Concurrent rotations serialize and
//!   the later one finds nothing to do; there is no lease to expire under a paused replica.
//!   The row's `version` tells the other replicas to reload (checked every
//!   `AUTH_KEY_RELOAD_INTERVAL`, and at once on a `KeyRevoked` event of the feed). The lock row
//!   lives in the database for the `files` store too.
//! - **JWKS**: `Cache-Control: public, max-age=N` with N = min(`AUTH_JWKS_MAX_AGE`,
//!   (pre-publication − reload interval) / 2), an `ETag` (SHA-256 of the document) and 304 for
//!   a matching `If-None-Match`. The issuer's own verifier uses the same published set
//!   ([`authn::verifier::LocalKeys`], replaced on every change).
//! - **Manual rotation** of a pending key brings its activation forward to the end of its
//!   window; `immediate` promotes the pending key if there is one (verifiers may know it
//!   already) or creates one. Revoking the active key runs an immediate rotation first.

pub mod accounts;
pub mod app;
pub mod cli;
pub mod clients;
pub mod config;
pub mod crypto;
pub mod db;
pub mod grpc;
pub mod http;
pub mod keys;
pub mod passwords;
pub mod refresh_tokens;
pub mod revocation;
pub mod scope;
pub mod sessions;
pub mod throttle;
pub mod tokens;
pub mod users;

pub use app::{App, AppState, BuildError};
pub use config::Config;
