//! The token issuer.
//!
//! `auth-service` keeps users, service clients, sessions and refresh tokens in SQL, signs RS256
//! access tokens with a key it generates on first start and keeps on disk, and publishes the
//! public half as a JWKS. Every verifier in the system (gateway, orders-service) checks tokens on
//! its own with `shared`; this crate issues them, keeps the state of sessions, and tells the
//! verifiers when sessions end.
//!
//! - HTTP ([`http::router`]): `/oauth/token` (grants `password`, `refresh_token`,
//!   `client_credentials`), `/oauth/revoke` (RFC 7009), `/oauth/introspect` (RFC 7662),
//!   `/.well-known/jwks.json`, `/.well-known/openid-configuration`; the bearer's sessions
//!   (`GET /v1/sessions`, `DELETE /v1/sessions/{sid}`, `POST /v1/logout`, `POST /v1/logout-all`);
//!   administration (`POST /v1/admin/users/{id}/disable|enable`, role `admin`); `/healthz`,
//!   `/readyz`, `/metrics`.
//! - gRPC ([`grpc`]): `auth.v1.SessionService/CheckSession` for `stateful` verifiers and
//!   `WatchRevocations` for `hybrid` ones.
//! - [`App`] binds both listeners and serves them until a shutdown future resolves; the binary
//!   (`main.rs`) adds the operator commands of [`cli`] (`user add|disable|enable`, `client add`).
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
//!
//! Sessions and revocation:
//!
//! - **One authority for "is this session active": the [`sessions::SessionStore`].** The SQL
//!   store (default) keeps that state on the session's own row; the Redis store (`REDIS_URL`,
//!   several replicas) keeps it at `auth:session:{sid}`, which `stateful` verifiers read
//!   directly. `CheckSession`, the issuer's own bearer checks (its [`shared::Verifier`] is
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
//!   `occurred_at + AUTH_ACCESS_TOKEN_TTL + 60 s`; only expired events are pruned.
//! - **Live delivery.** One tailer per process reads new events from the table in order and
//!   broadcasts them; it is woken by local appends, by the Redis channel `auth:revocations`
//!   (other replicas, the CLI) and by a poll (`AUTH_REVOCATION_POLL_INTERVAL`, the safety net).
//!   A `WatchRevocations` stream subscribes first, sends the backlog from the table, a heartbeat,
//!   then live events (skipping any at or below what it sent, re-reading the table on a gap or
//!   when it lags) and a heartbeat every `AUTH_REVOCATION_HEARTBEAT`; a heartbeat's
//!   `head_sequence` is only sent once every retained event up to it has been sent. Streams end
//!   when the server shuts down, so the drain never waits for them.
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
pub mod tokens;
pub mod users;

pub use app::{App, AppState, BuildError};
pub use config::Config;
