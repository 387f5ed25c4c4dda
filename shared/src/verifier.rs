//! Access-token verification: one pinned algorithm, one issuer, one audience, checked times.

use std::sync::Arc;
use std::time::Duration;

use crate::authz::Principal;
use crate::claims::AccessClaims;
use crate::error::{AuthError, RejectReason};
use crate::jwk::{KeySet, VerifyingKey};
use crate::jwks::JwksClient;
use crate::jws::{ACCESS_TOKEN_TYPE, ALGORITHM, Header, MAX_KID_LEN, UnverifiedJws};
use crate::session::SessionCheck;

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Compared for exact string equality with `iss` (no normalisation: a trailing slash is
    /// another issuer).
    pub issuer: String,
    /// Must be one of the `aud` values.
    pub audience: String,
    /// Tolerated clock skew for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Longest accepted `exp - iat`: a token minted for longer than policy allows is refused
    /// even if its signature is good.
    pub max_lifetime: Duration,
}

impl Policy {
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(3600);

    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Self::DEFAULT_LEEWAY,
            max_lifetime: Self::DEFAULT_MAX_LIFETIME,
        }
    }

    /// Checks the JOSE header: pinned `alg`, `typ` of an access token, no `crit`, a `kid`.
    /// Runs before any key lookup, so a token refused here never causes a JWKS fetch.
    pub fn check_header<'h>(&self, header: &'h Header) -> Result<&'h str, RejectReason> {
        if header.alg != ALGORITHM {
            return Err(RejectReason::AlgorithmNotAllowed);
        }
        // RFC 9068 §4: "at+jwt"; RFC 7515 §4.1.9 allows the "application/" prefix, and media
        // types compare case-insensitively.
        let typ = header.typ.as_deref().unwrap_or_default();
        let typ = typ.strip_prefix("application/").unwrap_or(typ);
        if !typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE) {
            return Err(RejectReason::WrongType);
        }
        if header.crit {
            return Err(RejectReason::CriticalHeader);
        }
        match header.kid.as_deref() {
            Some(kid) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => Ok(kid),
            _ => Err(RejectReason::MissingKid),
        }
    }

    /// Checks the claims of a token whose signature is good, at `now` (Unix seconds).
    pub fn check_claims(&self, claims: &AccessClaims, now: i64) -> Result<(), RejectReason> {
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        let max_lifetime = i64::try_from(self.max_lifetime.as_secs()).unwrap_or(i64::MAX);
        if claims.iss != self.issuer {
            return Err(RejectReason::WrongIssuer);
        }
        if !claims.aud.contains(&self.audience) {
            return Err(RejectReason::WrongAudience);
        }
        if now >= claims.exp.saturating_add(leeway) {
            return Err(RejectReason::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(RejectReason::NotYetValid);
        }
        if claims.iat > now.saturating_add(leeway) {
            return Err(RejectReason::IssuedInFuture);
        }
        if claims.exp.saturating_sub(claims.iat) > max_lifetime {
            return Err(RejectReason::LifetimeTooLong);
        }
        if claims.sub.is_empty() || claims.jti.is_empty() || claims.exp <= claims.iat {
            return Err(RejectReason::InvalidClaims);
        }
        Ok(())
    }
}

/// An in-process key set that its owner replaces as keys rotate: the issuer verifying its own
/// tokens. Cheap to clone; every clone sees replacements.
#[derive(Debug, Clone, Default)]
pub struct LocalKeys {
    current: Arc<std::sync::RwLock<Arc<KeySet>>>,
}

impl LocalKeys {
    pub fn new(keys: KeySet) -> Self {
        Self {
            current: Arc::new(std::sync::RwLock::new(Arc::new(keys))),
        }
    }

    /// Replaces the whole set at once.
    pub fn replace(&self, keys: KeySet) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
    }

    pub fn get(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Where a verifier gets its keys.
#[derive(Debug, Clone)]
pub enum Keys {
    /// A fixed key set: tests, benchmarks.
    Fixed(Arc<KeySet>),
    /// An in-process set replaced on rotation: the issuer verifying its own tokens.
    Local(LocalKeys),
    /// The issuer's JWKS, fetched and cached.
    Remote(JwksClient),
}

impl Keys {
    pub fn fixed(keys: KeySet) -> Self {
        Keys::Fixed(Arc::new(keys))
    }

    pub fn local(keys: LocalKeys) -> Self {
        Keys::Local(keys)
    }

    pub fn remote(client: JwksClient) -> Self {
        Keys::Remote(client)
    }

    async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, AuthError> {
        let unknown = AuthError::Unauthenticated(RejectReason::UnknownKey);
        match self {
            Keys::Fixed(keys) => keys.get(kid).cloned().ok_or(unknown),
            Keys::Local(keys) => keys.get().get(kid).cloned().ok_or(unknown),
            Keys::Remote(client) => client.key(kid).await,
        }
    }

    fn is_ready(&self) -> bool {
        match self {
            Keys::Fixed(keys) => !keys.is_empty(),
            Keys::Local(keys) => !keys.get().is_empty(),
            Keys::Remote(client) => client.is_ready(),
        }
    }
}

/// Verifies access tokens. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    keys: Keys,
    policy: Policy,
    sessions: SessionCheck,
}

impl Verifier {
    /// A `stateless` verifier: signature and claims only.
    pub fn new(keys: Keys, policy: Policy) -> Self {
        Self {
            inner: Arc::new(Inner {
                keys,
                policy,
                sessions: SessionCheck::Stateless,
            }),
        }
    }

    /// The same verifier with `check` applied to every token that passed signature and claims.
    pub fn with_session_check(self, check: SessionCheck) -> Self {
        metrics::gauge!("auth_verifier_mode", "mode" => check.mode()).set(1.0);
        Self {
            inner: Arc::new(Inner {
                keys: self.inner.keys.clone(),
                policy: self.inner.policy.clone(),
                sessions: check,
            }),
        }
    }

    /// The session check of this verifier (its mode).
    pub fn session_check(&self) -> &SessionCheck {
        &self.inner.sessions
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Whether a usable key set is loaded: a verifier that cannot verify is not ready.
    pub fn is_ready(&self) -> bool {
        self.inner.keys.is_ready() && self.inner.sessions.is_ready()
    }

    /// Verifies `token` now.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_at(token, crate::unix_now()).await
    }

    /// Verifies `token` as of `now` (Unix seconds), recording the outcome as a metric.
    pub async fn verify_at(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        let result = self.check(token, now).await;
        match &result {
            Ok(_) => metrics::counter!("auth_verify_total", "outcome" => "ok").increment(1),
            Err(AuthError::Unauthenticated(reason)) => record_rejection(*reason),
            Err(error) => {
                metrics::counter!("auth_verify_total", "outcome" => "unavailable").increment(1);
                tracing::warn!(%error, "access token could not be verified");
            }
        }
        result
    }

    async fn check(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        let policy = &self.inner.policy;
        let jws = UnverifiedJws::parse(token)?;
        let kid = policy.check_header(&jws.header)?;
        let key = self.inner.keys.key(kid).await?;
        if !key.verify(jws.signing_input.as_bytes(), &jws.signature) {
            return Err(RejectReason::BadSignature.into());
        }
        let claims: AccessClaims = jws.payload()?;
        policy.check_claims(&claims, now)?;
        self.inner.sessions.check(kid, &claims).await?;
        Ok(Principal::from_verified_claims(claims))
    }
}

/// Counts and logs a refused token. The reason is a fixed label: nothing from the token itself
/// reaches a log line or a metric.
pub fn record_rejection(reason: RejectReason) {
    metrics::counter!("auth_verify_total", "outcome" => reason.as_str()).increment(1);
    tracing::debug!(reason = reason.as_str(), "access token refused");
}
