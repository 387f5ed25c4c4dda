//! [`AppState`]: what the HTTP handlers and the grants share, built once by [`crate::app`].

use std::sync::Arc;

use authn::verifier::Verifier;
use axum::extract::FromRef;
use platform::client_addr::TrustedProxies;
use platform::readiness::Readiness;
use platform::shutdown::Lifecycle;
use sqlx::AnyPool;

use crate::clients::ClientRows;
use crate::keys::KeyManager;
use crate::passwords::Passwords;
use crate::sessions::SharedStore;
use crate::sessions::revocation::RevocationLog;
use crate::throttle::Throttle;
use crate::tokens::TokenIssuer;

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pool: AnyPool,
    /// The client rows the token endpoint authenticates against (reused for a few seconds).
    pub clients: ClientRows,
    pub passwords: Passwords,
    pub tokens: Arc<TokenIssuer>,
    /// The signing keys: the active one, the published set, rotation and revocation.
    pub keys: KeyManager,
    /// Lifetime of a session (and of its refresh tokens), from the login.
    pub session_ttl_secs: i64,
    /// Where session state lives (SQL, or Redis with `REDIS_URL`).
    pub sessions: SharedStore,
    /// The revocation feed.
    pub revocations: RevocationLog,
    /// Verifies the issuer's own access tokens presented to its API: its own key, and a
    /// `stateful` session check against [`AppState::sessions`].
    pub verifier: Verifier,
    /// `AUTH_MAX_SESSIONS_PER_USER`; 0 is unlimited.
    pub max_sessions_per_user: u32,
    /// The service's shutdown phase: `/readyz` answers 503 once it is not serving.
    pub lifecycle: Lifecycle,
    /// The last result of the dependency checks (database, session store) `/readyz` reports.
    pub readiness: Readiness,
    /// Failed-login delays and locks, per account and client address (in Redis with
    /// `REDIS_URL`, else this replica's).
    pub login_throttle: Arc<Throttle>,
    /// Failed-client-authentication delays and locks, per client id and client address,
    /// checked before Argon2 (in Redis with `REDIS_URL`, else this replica's).
    pub client_throttle: Arc<Throttle>,
    /// `AUTH_TRUSTED_PROXIES`: whose `X-Forwarded-For` names the client of a login.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// `AUTH_PASSWORD_GRANT`: whether the legacy `password` grant is served.
    pub password_grant: bool,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("tokens", &self.tokens)
            .field("keys", &self.keys)
            .field("session_ttl_secs", &self.session_ttl_secs)
            .field("sessions", &self.sessions.backend())
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .finish_non_exhaustive()
    }
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}
