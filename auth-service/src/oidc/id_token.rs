//! ID tokens (OpenID Connect Core §2): `typ: JWT`, the client as audience, signed by the same
//! active key as the access tokens. The header differs from an access token's (`typ`), so the
//! token is assembled here over [`Signer::sign_bytes`]: an ID token can never pass for an
//! access token (RFC 9068 §4: verifiers require `typ: at+jwt`), nor the reverse.

use authn::sign::{SignError, Signer};
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

/// The claims of an ID token.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    /// The client id.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    /// When the user signed in (the browser session's sign-in, not this token's issue).
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// [`at_hash`] of the access token issued with it.
    pub at_hash: String,
    /// The token session: what RP-initiated logout ends.
    pub sid: String,
}

/// OpenID Connect Core §3.1.3.6: the left half of the hash of the access token's ASCII, with the
/// hash of the signing algorithm, base64url. The ID token is signed by the key that signed the
/// access token it comes with, so the access token's own header names the algorithm: SHA-256
/// for RS256 and ES256, SHA-512 for EdDSA with Ed25519 (the hash Ed25519 uses internally, as
/// OpenID Connect's errata and the common libraries read it).
pub fn at_hash(access_token: &str) -> String {
    let alg = authn::jws::CompactJws::split(access_token)
        .and_then(|jws| jws.header())
        .ok()
        .and_then(|header| authn::jwk::Algorithm::from_jose(&header.alg))
        .unwrap_or_default();
    at_hash_for(alg, access_token)
}

/// [`at_hash`] of an access token signed with `alg`.
pub fn at_hash_for(alg: authn::jwk::Algorithm, access_token: &str) -> String {
    let hash_alg = match alg {
        authn::jwk::Algorithm::EdDsa => &digest::SHA512,
        authn::jwk::Algorithm::Rs256 | authn::jwk::Algorithm::Es256 => &digest::SHA256,
    };
    let hash = digest::digest(hash_alg, access_token.as_bytes());
    let bytes = hash.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

/// Signs `claims` with `signer` under the header `{"alg":..,"typ":"JWT","kid":...}`, `alg` being
/// the signer's.
pub fn sign(signer: &Signer, claims: &IdTokenClaims) -> Result<String, SignError> {
    let header = serde_json::json!({
        "alg": signer.algorithm().as_str(),
        "typ": "JWT",
        "kid": signer.kid(),
    });
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims)?, &mut token);
    let signature = signer.sign_bytes(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// What RP-initiated logout reads from an `id_token_hint`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Hint {
    pub iss: String,
    pub sub: String,
    /// The client the ID token was issued to (ours always have one audience).
    pub aud: String,
    #[serde(default)]
    pub sid: Option<String>,
}

/// An ID token of this issuer presented as an `id_token_hint`: `typ: JWT`, no `crit`, a key of
/// `keys` (a revoked key is no longer in it), the algorithm of that key, and its signature,
/// `iss` = `issuer`. Its
/// expiry is not checked: RP-Initiated Logout 1.0 §2 lets a relying party send an expired ID
/// token, which is what it usually holds when the user signs out.
pub fn verify_hint(keys: &authn::jwk::KeySet, issuer: &str, token: &str) -> Option<Hint> {
    let jws = authn::jws::CompactJws::split(token).ok()?;
    let header = jws.header().ok()?;
    let alg = authn::jwk::Algorithm::from_jose(&header.alg)?;
    if header.typ.as_deref() != Some("JWT") || header.crit {
        return None;
    }
    let key = keys.get(header.kid.as_deref()?)?;
    if !key.verify_as(alg, jws.signing_input.as_bytes(), &jws.signature().ok()?) {
        return None;
    }
    let hint: Hint = jws.payload().ok()?;
    (hint.iss == issuer).then_some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of OpenID Connect Core §A.3 (an RS256 ID token with an access token).
    #[test]
    fn at_hash_matches_the_specification_example() {
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    #[test]
    fn an_id_token_is_typ_jwt_and_verifies_with_the_signing_key() {
        let signer = Signer::generate().expect("key");
        let claims = IdTokenClaims {
            iss: "https://issuer.example".into(),
            sub: "user-1".into(),
            aud: "web".into(),
            exp: 2_000_000_000,
            iat: 1_999_999_700,
            auth_time: 1_999_999_600,
            nonce: Some("n-0S6_WzA2Mj".into()),
            at_hash: at_hash("token"),
            sid: "sid-1".into(),
        };
        let token = sign(&signer, &claims).expect("signed");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], signer.kid());
        let payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(payload["aud"], "web");
        assert_eq!(payload["nonce"], "n-0S6_WzA2Mj");
        let key = authn::jwk::VerifyingKey::from_jwk(signer.public_jwk()).expect("key");
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        let signed = &token[..parts[0].len() + 1 + parts[1].len()];
        assert!(key.verify(signed.as_bytes(), &signature));
    }

    #[test]
    fn a_hint_must_be_our_id_token_whatever_its_expiry() {
        let signer = Signer::generate().expect("key");
        let keys = authn::jwk::KeySet::from_keys([authn::jwk::VerifyingKey::from_jwk(
            signer.public_jwk(),
        )
        .expect("key")]);
        let claims = IdTokenClaims {
            iss: "https://issuer.example".into(),
            sub: "user-1".into(),
            aud: "web".into(),
            exp: 1,
            iat: 0,
            auth_time: 0,
            nonce: None,
            at_hash: at_hash("token"),
            sid: "sid-1".into(),
        };
        let token = sign(&signer, &claims).expect("signed");
        let hint =
            verify_hint(&keys, "https://issuer.example", &token).expect("long expired, valid");
        assert_eq!(
            (hint.aud.as_str(), hint.sid.as_deref()),
            ("web", Some("sid-1"))
        );
        assert_eq!(verify_hint(&keys, "https://other.example", &token), None);
        // An access token (typ at+jwt) of the same key is no hint.
        let access = signer.sign(&claims).expect("signed");
        assert_eq!(verify_hint(&keys, "https://issuer.example", &access), None);
        // Another key's token.
        let other = sign(&Signer::generate().expect("key"), &claims).expect("signed");
        assert_eq!(verify_hint(&keys, "https://issuer.example", &other), None);
    }
}
