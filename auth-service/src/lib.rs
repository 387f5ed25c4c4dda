//! The token issuer.
//!
//! `auth-service` keeps users, service clients, sessions and refresh tokens in SQL, signs RS256
//! access tokens with a key it generates on first start and keeps on disk, and publishes the
//! public half as a JWKS. Every verifier in the system (gateway, orders-service) checks tokens on
//! its own with `shared`; this crate only issues them.
//!
//! - HTTP ([`http::router`]): `/oauth/token` (grants `password`, `refresh_token`,
//!   `client_credentials`), `/.well-known/jwks.json`, `/.well-known/openid-configuration`,
//!   `/healthz`, `/readyz`, `/metrics`.
//! - gRPC ([`grpc`]): `auth.v1.SessionService/CheckSession` for `stateful` verifiers.
//! - [`App`] binds both listeners and serves them until a shutdown future resolves; the binary
//!   (`main.rs`) adds the operator commands of [`cli`].
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
pub mod scope;
pub mod sessions;
pub mod tokens;
pub mod users;

pub use app::{App, AppState, BuildError};
pub use config::Config;
