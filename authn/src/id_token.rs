//! OpenID Connect ID tokens, verified by a relying party (OpenID Connect Core 1.0 §3.1.3.7).
//!
//! The gateway signs browsers in with the authorization code flow and gets an ID token with the
//! tokens: it checks it here, with the same keys and issuer as access tokens, before it sets any
//! cookie. What differs from an access token: `typ` is `JWT` (or absent), the audience is the
//! relying party's client id (and `azp` names it when there are several audiences), and the
//! `nonce` must be the one the relying party put in its authorization request, which binds the
//! token to that browser's sign-in and stops an injected or replayed ID token.

use serde::Deserialize;

use crate::claims::Audience;
use crate::error::{AuthError, RejectReason};
use crate::jwk::Algorithm;
use crate::jws::{CompactJws, MAX_KID_LEN};
use crate::verifier::Verifier;

/// The `typ` an ID token may carry (OpenID Connect leaves it optional; the issuer sets `JWT`).
pub const ID_TOKEN_TYPE: &str = "JWT";

/// The claims of an ID token that a relying party uses. Unknown claims are ignored; times are
/// integers, as in access tokens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    #[serde(default)]
    pub nonce: Option<String>,
    /// The authorized party: required to be the client when `aud` has several values.
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub auth_time: Option<i64>,
    /// The issuer's session, as in the access tokens of the same sign-in.
    #[serde(default)]
    pub sid: Option<String>,
}

impl Verifier {
    /// Verifies an ID token issued to `client_id` in answer to an authorization request that
    /// carried `nonce`, now.
    pub async fn verify_id_token(
        &self,
        token: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<IdClaims, AuthError> {
        self.verify_id_token_at(token, client_id, nonce, crate::unix_now())
            .await
    }

    /// Verifies an ID token as of `now` (Unix seconds): pinned algorithm, no `crit`, a `kid` of
    /// the issuer's key set and its signature, then `iss`, `aud` (and `azp`), `exp`, `iat` with
    /// the verifier's leeway, and `nonce` (compared in constant time).
    pub async fn verify_id_token_at(
        &self,
        token: &str,
        client_id: &str,
        nonce: &str,
        now: i64,
    ) -> Result<IdClaims, AuthError> {
        let jws = CompactJws::split(token)?;
        let header = jws.header()?;
        let alg = Algorithm::from_jose(&header.alg)
            .filter(|alg| self.policy().algorithms.contains(*alg))
            .ok_or(RejectReason::AlgorithmNotAllowed)?;
        if let Some(typ) = header.typ.as_deref() {
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            if !typ.eq_ignore_ascii_case(ID_TOKEN_TYPE) {
                return Err(RejectReason::WrongType.into());
            }
        }
        if header.crit {
            return Err(RejectReason::CriticalHeader.into());
        }
        let kid = match header.kid.as_deref() {
            Some(kid) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => kid,
            _ => return Err(RejectReason::MissingKid.into()),
        };
        let key = self.key(kid).await?;
        if key.algorithm() != alg {
            return Err(RejectReason::AlgorithmNotAllowed.into());
        }
        if !key.verify_as(alg, jws.signing_input.as_bytes(), &jws.signature()?) {
            return Err(RejectReason::BadSignature.into());
        }
        let claims: IdClaims = jws.payload()?;
        check_claims(&claims, self, client_id, nonce, now)?;
        Ok(claims)
    }
}

fn check_claims(
    claims: &IdClaims,
    verifier: &Verifier,
    client_id: &str,
    nonce: &str,
    now: i64,
) -> Result<(), RejectReason> {
    let policy = verifier.policy();
    let leeway = i64::try_from(policy.leeway.as_secs()).unwrap_or(i64::MAX);
    if claims.iss != policy.issuer {
        return Err(RejectReason::WrongIssuer);
    }
    if !claims.aud.contains(client_id) {
        return Err(RejectReason::WrongAudience);
    }
    let several = matches!(&claims.aud, Audience::Many(many) if many.len() > 1);
    if (several || claims.azp.is_some()) && claims.azp.as_deref() != Some(client_id) {
        return Err(RejectReason::WrongAudience);
    }
    if now >= claims.exp.saturating_add(leeway) {
        return Err(RejectReason::Expired);
    }
    if claims.iat > now.saturating_add(leeway) {
        return Err(RejectReason::IssuedInFuture);
    }
    let nonce_matches = claims.nonce.as_deref().is_some_and(|claimed| {
        aws_lc_rs::constant_time::verify_slices_are_equal(claimed.as_bytes(), nonce.as_bytes())
            .is_ok()
    });
    if claims.sub.is_empty() || claims.exp <= claims.iat || !nonce_matches {
        return Err(RejectReason::InvalidClaims);
    }
    Ok(())
}
