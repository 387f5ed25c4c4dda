//! Publication: which keys the JWKS lists and in what order, and the document as served, with
//! its `ETag` and its `Cache-Control: max-age` (the schedule's capped max-age, see
//! [`KeyTiming`]).

use std::collections::HashMap;
use std::sync::Arc;

use authn::jwk::JwkSet;
use authn::sign::Signer;
use axum::body::Bytes;
use http::HeaderValue;

use super::schedule::{KeyInfo, KeyState, KeyTiming};

/// The JWKS document as served: bytes, their `ETag`, and the `Cache-Control` header.
#[derive(Debug, Clone)]
pub struct PublishedJwks {
    pub body: Bytes,
    /// A strong validator: the base64url SHA-256 of the body, quoted.
    pub etag: HeaderValue,
    pub cache_control: HeaderValue,
}

impl PublishedJwks {
    pub(super) fn new(jwks: &JwkSet, timing: &KeyTiming) -> Self {
        let body = serde_json::to_vec(jwks).expect("BUG: a JWKS always serializes");
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
        let etag = HeaderValue::from_str(&format!("\"{}\"", authn::jws::b64_encode(digest)))
            .expect("BUG: an ETag is ASCII");
        let cache_control = HeaderValue::from_str(&format!(
            "public, max-age={}",
            timing.jwks_max_age.as_secs()
        ))
        .expect("BUG: a Cache-Control value is ASCII");
        Self {
            body: Bytes::from(body),
            etag,
            cache_control,
        }
    }

    /// Whether an `If-None-Match` header value names this document (weak comparison, RFC 9110
    /// §13.1.2).
    pub fn matches(&self, if_none_match: &HeaderValue) -> bool {
        let Ok(value) = if_none_match.to_str() else {
            return false;
        };
        let ours = self.etag.to_str().unwrap_or_default();
        value
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours)
    }
}

/// The public keys of the published keys of `keys` (those whose private key is in `signers`):
/// the active key first, then the pending ones, then the retired ones, the newest first within
/// each.
pub(super) fn published_set(keys: &[KeyInfo], signers: &HashMap<String, Arc<Signer>>) -> JwkSet {
    let mut published: Vec<&KeyInfo> = keys.iter().filter(|k| k.state.is_published()).collect();
    published.sort_by_key(|k| {
        let rank = match k.state {
            KeyState::Active => 0,
            KeyState::Next => 1,
            KeyState::Retired | KeyState::Revoked => 2,
        };
        (rank, std::cmp::Reverse(k.activates_at))
    });
    JwkSet::from_keys(
        published
            .iter()
            .filter_map(|k| signers.get(&k.kid))
            .map(|s| s.public_jwk()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn if_none_match_uses_the_weak_comparison() {
        let timing = KeyTiming::new(
            Duration::ZERO,
            None,
            Duration::from_secs(10),
            Duration::from_secs(300),
            Duration::from_secs(300),
        )
        .unwrap();
        let jwks = PublishedJwks::new(&JwkSet::default(), &timing);
        let etag = jwks.etag.to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 45);
        assert_eq!(jwks.cache_control, "public, max-age=300");
        let header = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(jwks.matches(&header(&etag)));
        assert!(jwks.matches(&header(&format!("W/{etag}"))));
        assert!(jwks.matches(&header(&format!("\"other\", {etag}"))));
        assert!(jwks.matches(&header("*")));
        assert!(!jwks.matches(&header("\"other\"")));
        assert!(!jwks.matches(&header(etag.trim_matches('"'))));
    }
}
