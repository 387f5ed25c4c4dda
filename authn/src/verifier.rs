//! Access-token verification: the algorithm pinned per key, one issuer, one audience, checked
//! times.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::authz::Principal;
use crate::check::SessionCheck;
use crate::claims::AccessClaims;
use crate::error::{AuthError, RejectReason};
use crate::freshness::{Freshness, RoutePolicy, RoutePolicyError};
use crate::jwk::{Algorithm, AllowedAlgorithms, KeySet, VerifyingKey};
use crate::jwks::JwksClient;
use crate::jws::{ACCESS_TOKEN_TYPE, CompactJws, Header, MAX_KID_LEN};
use crate::session::StatefulCheck;

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
    /// The algorithms accepted at all (`AUTH_ALLOWED_ALGS`). A token's `alg` must be one of
    /// them *and* the algorithm of the key its `kid` names.
    pub algorithms: AllowedAlgorithms,
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
            algorithms: AllowedAlgorithms::all(),
        }
    }

    /// Checks the JOSE header: an allowed `alg` (exact JOSE name), `typ` of an access token,
    /// no `crit`, a `kid`. Returns the `kid` and the algorithm the header claims, which the
    /// caller must match against the key the `kid` names ([`VerifyingKey::verify_as`]).
    /// Runs before any key lookup, so a token refused here never causes a JWKS fetch.
    pub fn check_header<'h>(
        &self,
        header: &'h Header,
    ) -> Result<(&'h str, Algorithm), RejectReason> {
        let alg = Algorithm::from_jose(&header.alg)
            .filter(|alg| self.algorithms.contains(*alg))
            .ok_or(RejectReason::AlgorithmNotAllowed)?;
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
            Some(kid) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => Ok((kid, alg)),
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
    current: Arc<ArcSwap<KeySet>>,
}

impl LocalKeys {
    pub fn new(keys: KeySet) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(keys)),
        }
    }

    /// Replaces the whole set at once.
    pub fn replace(&self, keys: KeySet) {
        self.current.store(Arc::new(keys));
    }

    pub fn get(&self) -> Arc<KeySet> {
        self.current.load_full()
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

    /// Whether `kid` is in the current, usable key set (no fetch).
    fn has(&self, kid: &str) -> bool {
        match self {
            Keys::Fixed(keys) => keys.get(kid).is_some(),
            Keys::Local(keys) => keys.get().get(kid).is_some(),
            Keys::Remote(client) => client.has(kid),
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

#[derive(Debug, Clone)]
struct Inner {
    keys: Keys,
    policy: Policy,
    sessions: SessionCheck,
    /// The lookup of [`Freshness::Live`] requests when the mode has none of its own (or
    /// instead of it); `None`: the mode's ([`SessionCheck::lookup`]).
    live: Option<StatefulCheck>,
    /// The routes with a level of their own; consulted by the HTTP and gRPC adapters.
    routes: RoutePolicy,
    cache: Option<moka::sync::Cache<Box<str>, Verified>>,
    /// Header segments already decoded and accepted by [`Policy::check_header`], with their
    /// `kid` and claimed algorithm. Every token one key signs carries the same header segment, so after the first
    /// token of a key the header costs one lookup instead of a base64 decode and two JSON
    /// passes (a third of the work around the signature check). Only accepted headers are
    /// kept, and the capacity is small: a flood of distinct headers only evicts entries.
    headers: moka::sync::Cache<Box<str>, (Arc<str>, Algorithm)>,
    /// Benchmark builds only: accept every well-formed token unchecked (see
    /// [`Verifier::insecure_skip_verification`]).
    #[cfg(feature = "bench-auth-off")]
    skip_verification: bool,
}

/// Accepted header segments remembered: a few keys (active, next, retiring) per issuer.
const HEADER_CACHE_CAPACITY: u64 = 64;

impl Verifier {
    /// A `stateless` verifier: signature and claims only.
    pub fn new(keys: Keys, policy: Policy) -> Self {
        Self {
            inner: Arc::new(Inner {
                keys,
                policy,
                sessions: SessionCheck::Stateless,
                live: None,
                routes: RoutePolicy::default(),
                cache: None,
                headers: moka::sync::Cache::new(HEADER_CACHE_CAPACITY),
                #[cfg(feature = "bench-auth-off")]
                skip_verification: false,
            }),
        }
    }

    /// A copy of this verifier with `change` applied to its configuration.
    fn with(&self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner::clone(&self.inner);
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The same verifier with a verified-token cache of up to `capacity` tokens (0: none).
    /// A cached token skips parsing and the signature check but not expiry, the key's presence
    /// in the current set, or the mode's session check: the cache never bypasses revocation.
    pub fn with_token_cache(self, capacity: u64) -> Self {
        let cache = (capacity > 0).then(|| token_cache(capacity, self.inner.policy.leeway));
        self.with(|inner| inner.cache = cache)
    }

    /// BENCHMARK BUILDS ONLY (cargo feature `bench-auth-off`), never in production: the same
    /// verifier accepting every token that merely parses, its claims read from the payload
    /// with no key, signature, claim, session or cache check at all.
    ///
    /// It exists for one measurement: issue 7 sets the throughput of an authenticated route
    /// against "the same route with authentication switched off", and only a build of the very
    /// same services with verification cut out gives that baseline (handlers still get a
    /// [`Principal`], so the route does its usual work). The feature is off in every deployable
    /// build; without it this method does not exist and `AUTH_INSECURE_SKIP_VERIFY` refuses to
    /// start the service.
    #[cfg(feature = "bench-auth-off")]
    pub fn insecure_skip_verification(self) -> Self {
        self.with(|inner| {
            inner.cache = None;
            inner.skip_verification = true;
        })
    }

    /// Whether the header cache holds this header segment (tests of what it may skip).
    pub fn remembers_header(&self, header_b64: &str) -> bool {
        self.inner.headers.contains_key(header_b64)
    }

    /// Number of header segments the header cache holds.
    pub fn remembered_headers(&self) -> u64 {
        self.inner.headers.run_pending_tasks();
        self.inner.headers.entry_count()
    }

    /// Number of tokens in the verified-token cache.
    pub fn cached_tokens(&self) -> u64 {
        self.inner.cache.as_ref().map_or(0, |cache| {
            cache.run_pending_tasks();
            cache.entry_count()
        })
    }

    /// The same verifier with `check` applied to every token that passed signature and claims.
    pub fn with_session_check(self, check: SessionCheck) -> Self {
        metrics::gauge!("auth_verifier_mode", "mode" => check.mode()).set(1.0);
        self.with(|inner| inner.sessions = check)
    }

    /// The same verifier with `check` as the session lookup of [`Freshness::Live`] requests: a
    /// `stateless` verifier whose few sensitive routes are to be checked live. Without one,
    /// `live` uses the mode's own lookup (`stateful`, or the `hybrid` feed's fallback).
    pub fn with_live_check(self, check: StatefulCheck) -> Self {
        self.with(|inner| inner.live = Some(check))
    }

    /// Whether this verifier can check requests at `level`: `Pushed` needs the revocation feed
    /// (a `hybrid` verifier), `Live` a session lookup.
    pub fn supports(&self, level: Freshness) -> bool {
        match level {
            Freshness::Token => true,
            Freshness::Pushed => self.inner.sessions.has_feed(),
            Freshness::Live => self.inner.live.is_some() || self.inner.sessions.lookup().is_some(),
        }
    }

    /// The same verifier with `policy`: the routes that do not follow the mode, which the HTTP
    /// extractors and the gRPC layer consult by the route that serves each request. Refused
    /// when a rule asks for a level this verifier cannot check ([`Verifier::supports`]); set
    /// it after the session check and any [`Verifier::with_live_check`].
    pub fn with_route_policy(self, policy: RoutePolicy) -> Result<Self, RoutePolicyError> {
        policy.check_levels(|level| self.supports(level))?;
        Ok(self.with(|inner| inner.routes = policy))
    }

    /// The routes with a level of their own (empty unless set).
    pub fn route_policy(&self) -> &RoutePolicy {
        &self.inner.routes
    }

    /// The level of the route `path` (a route template or gRPC method path) served for
    /// `method`: `None` when the policy does not name it, and the mode decides. Free with an
    /// empty policy.
    pub fn level_of(&self, method: &str, path: &str) -> Option<Freshness> {
        if self.inner.routes.is_empty() {
            return None;
        }
        self.inner.routes.level(method, path)
    }

    /// The session check of this verifier (its mode).
    pub fn session_check(&self) -> &SessionCheck {
        &self.inner.sessions
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The key named `kid`, from the same key set access tokens are verified with (fetched on
    /// an unknown `kid` like theirs): what [`crate::id_token`] checks ID tokens against.
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, AuthError> {
        self.inner.keys.key(kid).await
    }

    /// Whether a usable key set is loaded: a verifier that cannot verify is not ready.
    pub fn is_ready(&self) -> bool {
        self.inner.keys.is_ready() && self.inner.sessions.is_ready()
    }

    /// Verifies `token` now, with the mode's check.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_as_of(token, crate::unix_now(), None).await
    }

    /// Verifies `token` now, checking `level` instead of the mode's check
    /// ([`crate::freshness`]): `Live` looks the session up even in a `stateless` verifier,
    /// `Token` skips the lookup of a `stateful` one. A level the verifier cannot check
    /// ([`Verifier::supports`]) is refused as [`AuthError::Unavailable`].
    pub async fn verify_fresh(
        &self,
        token: &str,
        level: Freshness,
    ) -> Result<Principal, AuthError> {
        self.verify_as_of(token, crate::unix_now(), Some(level))
            .await
    }

    /// Verifies `token` now at `level`, or with the mode's check for `None`: what the adapters
    /// call with [`Verifier::level_of`] the route.
    pub async fn verify_with(
        &self,
        token: &str,
        level: Option<Freshness>,
    ) -> Result<Principal, AuthError> {
        self.verify_as_of(token, crate::unix_now(), level).await
    }

    /// Verifies `token` as of `now` (Unix seconds), recording the outcome as a metric.
    pub async fn verify_at(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        self.verify_as_of(token, now, None).await
    }

    async fn verify_as_of(
        &self,
        token: &str,
        now: i64,
        level: Option<Freshness>,
    ) -> Result<Principal, AuthError> {
        #[cfg(feature = "bench-auth-off")]
        if self.inner.skip_verification {
            // Parse and decode only: see `insecure_skip_verification`.
            let claims: AccessClaims = CompactJws::split(token)?.payload()?;
            return Ok(Principal::from_verified_claims(claims));
        }
        let result = self.check(token, now, level).await;
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

    async fn check(
        &self,
        token: &str,
        now: i64,
        level: Option<Freshness>,
    ) -> Result<Principal, AuthError> {
        let inner = &self.inner;
        if let Some(cache) = &inner.cache
            && let Some(hit) = cache.get(token)
        {
            // A cached signature and claims check, still subject to everything that can change
            // after it: expiry, the key's presence in the current key set (an emergency-revoked
            // key is removed from it), and the session check of the mode.
            let leeway = i64::try_from(inner.policy.leeway.as_secs()).unwrap_or(i64::MAX);
            if now < hit.principal.claims().exp.saturating_add(leeway) && inner.keys.has(&hit.kid) {
                self.stands(level, &hit.kid, hit.principal.claims()).await?;
                return Ok(hit.principal.clone());
            }
            cache.invalidate(token);
        }
        let jws = CompactJws::split(token)?;
        // The same checks, in the same order, as `jws::UnverifiedJws::parse` then `check_header`;
        // a header segment seen before was decoded, parsed and accepted then.
        let ((kid, alg), signature) = match inner.headers.get(jws.header_b64) {
            Some(checked) => (checked, jws.signature()?),
            None => {
                let header = jws.header()?;
                let signature = jws.signature()?;
                let (kid, alg) = inner.policy.check_header(&header)?;
                let checked: (Arc<str>, Algorithm) = (kid.into(), alg);
                inner.headers.insert(jws.header_b64.into(), checked.clone());
                (checked, signature)
            }
        };
        let key = inner.keys.key(&kid).await?;
        // The pinning: the key decides the algorithm; a header naming another one (an ES256
        // token with the kid of an RSA key) is refused before any signature check.
        if key.algorithm() != alg {
            return Err(RejectReason::AlgorithmNotAllowed.into());
        }
        if !key.verify_as(alg, jws.signing_input.as_bytes(), &signature) {
            return Err(RejectReason::BadSignature.into());
        }
        let claims: AccessClaims = jws.payload()?;
        inner.policy.check_claims(&claims, now)?;
        self.stands(level, &kid, &claims).await?;
        let principal = Principal::from_verified_claims(claims);
        if let Some(cache) = &inner.cache {
            cache.insert(
                token.into(),
                Verified {
                    principal: principal.clone(),
                    kid,
                },
            );
        }
        Ok(principal)
    }
}

impl Verifier {
    /// Whether a token with good signature and claims still stands: the mode's check, or the
    /// one of `level`.
    async fn stands(
        &self,
        level: Option<Freshness>,
        kid: &str,
        claims: &AccessClaims,
    ) -> Result<(), AuthError> {
        let inner = &self.inner;
        match level {
            None => inner.sessions.check(kid, claims).await,
            Some(level) => {
                inner
                    .sessions
                    .check_at(level, inner.live.as_ref(), kid, claims)
                    .await
            }
        }
    }
}

/// A token whose signature and claims were verified, kept by the verified-token cache.
#[derive(Debug, Clone)]
struct Verified {
    principal: Principal,
    kid: Arc<str>,
}

/// Entries live until their token expires (plus leeway), never longer.
struct UntilTokenExpiry {
    leeway: i64,
}

impl moka::Expiry<Box<str>, Verified> for UntilTokenExpiry {
    fn expire_after_create(
        &self,
        _token: &Box<str>,
        verified: &Verified,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        let remaining = verified
            .principal
            .claims()
            .exp
            .saturating_add(self.leeway)
            .saturating_sub(crate::unix_now());
        Some(Duration::from_secs(u64::try_from(remaining).unwrap_or(0)))
    }
}

/// The verified-token cache: a repeated token skips parsing and the RSA signature check.
/// Keyed by the whole token text (moka hashes it with a random key; a hit compares the full
/// text), bounded in size, entries expiring with their token.
fn token_cache(capacity: u64, leeway: Duration) -> moka::sync::Cache<Box<str>, Verified> {
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .expire_after(UntilTokenExpiry {
            leeway: i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX),
        })
        .build()
}

/// Counts and logs a refused token. The reason is a fixed label: nothing from the token itself
/// reaches a log line or a metric.
pub fn record_rejection(reason: RejectReason) {
    metrics::counter!("auth_verify_total", "outcome" => reason.as_str()).increment(1);
    tracing::debug!(reason = reason.as_str(), "access token refused");
}
