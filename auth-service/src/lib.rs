//! The token issuer: users, service clients, sessions and refresh tokens in SQL; RS256 access
//! tokens signed with the active key of a rotating key set; the public keys as a JWKS; and the
//! revocation feed that tells every verifier when sessions end.
//!
//! The design (what it serves, how it operates, the decisions behind sessions, revocation and
//! signing keys) is in `docs/ISSUER.md`; the signing-key runbook in `docs/KEYS.md`.
//!
//! - [`app`]: start-up and serving ([`App`]); [`state`]: the [`AppState`] the handlers share;
//!   [`config`]: the settings ([`Config`]); [`cli`]: the command line.
//! - [`http`]: the HTTP interface ([`http::router`]); [`grpc`]: `auth.v1.SessionService`.
//! - [`grants`]: the token endpoint's grants (`authorization_code`, `password`,
//!   `refresh_token`, `client_credentials`), apart from HTTP; [`oidc`]: the OpenID Provider's
//!   codes, PKCE, browser sessions and ID tokens.
//! - [`sessions`]: sessions, their refresh-token families and the revocation feed of their
//!   ends.
//! - [`keys`]: the signing keys: settings, schedule, storage, publication, background task.
//! - [`users`], [`clients`], [`redirect_uris`], [`passwords`], [`scope`], [`accounts`], [`throttle`], [`tokens`],
//!   [`db`], [`crypto`]: one concern each.

pub mod accounts;
pub mod app;
pub mod cli;
pub mod clients;
pub mod config;
pub mod crypto;
pub mod db;
pub mod grants;
pub mod grpc;
pub mod http;
pub mod keys;
pub mod oidc;
pub mod passwords;
pub mod redirect_uris;
pub mod scope;
pub mod sessions;
pub mod state;
pub mod throttle;
pub mod tokens;
pub mod users;

pub use app::{App, BuildError};
pub use config::Config;
pub use state::AppState;
