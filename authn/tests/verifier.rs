//! The verifier's caches (verified tokens, remembered headers) and the benchmark-only auth-off
//! switch: what they skip and what they never skip.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use authn::check::SessionCheck;
use authn::session::{BoxFuture, LookupError, SessionLookup};
use authn::verifier::{Keys, LocalKeys, Verifier};
use authn::{AuthError, RejectReason};
use testkit::TestIssuer;

#[derive(Debug, Default)]
struct Sessions {
    revoked: AtomicBool,
    lookups: AtomicUsize,
}

impl SessionLookup for Sessions {
    fn is_active<'a>(&'a self, _sid: &'a str) -> BoxFuture<'a, Result<bool, LookupError>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let active = !self.revoked.load(Ordering::SeqCst);
        Box::pin(async move { Ok(active) })
    }
}

#[tokio::test]
async fn a_cached_token_is_still_checked_for_revocation_expiry_and_its_key() {
    let issuer = TestIssuer::new();
    let keys = LocalKeys::new(issuer.key_set());
    let sessions = Arc::new(Sessions::default());
    let verifier = Verifier::new(Keys::local(keys.clone()), issuer.policy())
        .with_session_check(SessionCheck::stateful(sessions.clone(), Duration::ZERO))
        .with_token_cache(100);
    let token = issuer.user_token("alice", "orders:read", &[]);
    let now = authn::unix_now();

    verifier.verify_at(&token, now).await.unwrap();
    verifier.verify_at(&token, now).await.unwrap();
    assert_eq!(verifier.cached_tokens(), 1);
    assert_eq!(
        sessions.lookups.load(Ordering::SeqCst),
        2,
        "the session is checked on a hit"
    );

    sessions.revoked.store(true, Ordering::SeqCst);
    assert_eq!(
        verifier.verify_at(&token, now).await.unwrap_err(),
        AuthError::Unauthenticated(RejectReason::Revoked)
    );
    sessions.revoked.store(false, Ordering::SeqCst);

    let after_expiry = now + 300 + 31;
    assert_eq!(
        verifier.verify_at(&token, after_expiry).await.unwrap_err(),
        AuthError::Unauthenticated(RejectReason::Expired)
    );

    verifier.verify_at(&token, now).await.unwrap();
    keys.replace(TestIssuer::new().key_set());
    assert_eq!(
        verifier.verify_at(&token, now).await.unwrap_err(),
        AuthError::Unauthenticated(RejectReason::UnknownKey),
        "a key removed from the set stops verifying its cached tokens"
    );
}

/// The benchmark-only auth-off verifier checks nothing but the token's shape.
#[cfg(feature = "bench-auth-off")]
#[tokio::test]
async fn skipping_verification_reads_the_claims_of_any_well_formed_token() {
    let issuer = TestIssuer::new();
    let sessions = Arc::new(Sessions::default());
    sessions.revoked.store(true, Ordering::SeqCst);
    let verifier = Verifier::new(Keys::fixed(issuer.key_set()), issuer.policy())
        .with_session_check(SessionCheck::stateful(sessions.clone(), Duration::ZERO))
        .with_token_cache(100)
        .insecure_skip_verification();
    // Signed by a key the verifier does not know, for another issuer, long expired, and
    // its session revoked: everything a real verifier refuses.
    let stranger = TestIssuer::new();
    let mut claims = stranger.claims("mallory", "orders:read", &["admin"]);
    claims.iss = "https://elsewhere.example".into();
    claims.exp = 1_000;
    claims.iat = 900;
    let token = stranger.token(&claims);
    let principal = verifier.verify_at(&token, authn::unix_now()).await.unwrap();
    assert_eq!(principal.sub(), "mallory");
    assert_eq!(principal.claims().iss, "https://elsewhere.example");
    assert_eq!(
        sessions.lookups.load(Ordering::SeqCst),
        0,
        "no session check"
    );
    assert_eq!(verifier.cached_tokens(), 0, "no cache");
    // Only what cannot be read at all is refused.
    assert_eq!(
        verifier.verify("not.a.token").await.unwrap_err(),
        AuthError::Unauthenticated(RejectReason::Malformed)
    );
}

/// The header cache skips decoding a header segment seen before, and nothing else: the
/// signature and claims of every token are still checked, a refused header is never
/// remembered, and a seen header does not excuse a malformed signature segment.
#[tokio::test]
async fn a_remembered_header_skips_only_the_header() {
    let issuer = TestIssuer::new();
    let verifier = issuer.verifier();
    let good = issuer.user_token("alice", "orders:read", &[]);
    verifier.verify(&good).await.unwrap();
    let header_b64 = good.split('.').next().unwrap();
    assert!(verifier.remembers_header(header_b64));

    let refuse = |token: String, reason: RejectReason| {
        let verifier = verifier.clone();
        async move {
            assert_eq!(
                verifier.verify(&token).await.unwrap_err(),
                AuthError::Unauthenticated(reason),
                "{token}"
            );
        }
    };
    // Same header, another payload under the old signature; a non-canonical signature.
    let (_, payload, signature) = {
        let mut parts = good.split('.');
        (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        )
    };
    let other = issuer.user_token("mallory", "orders:write", &["admin"]);
    let other_payload = other.split('.').nth(1).unwrap();
    refuse(
        format!("{header_b64}.{other_payload}.{signature}"),
        RejectReason::BadSignature,
    )
    .await;
    refuse(
        format!("{header_b64}.{payload}.{signature}="),
        RejectReason::Malformed,
    )
    .await;
    // Expired claims under a remembered header, signed for real.
    let mut claims = issuer.claims("alice", "orders:read", &[]);
    claims.exp = 1_000;
    claims.iat = 900;
    refuse(issuer.token(&claims), RejectReason::Expired).await;

    // A refused header is refused every time and never remembered.
    let wrong_typ = issuer.forge(
        &serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": issuer.kid() }).to_string(),
        &serde_json::to_string(&issuer.claims("alice", "orders:read", &[])).unwrap(),
    );
    for _ in 0..2 {
        refuse(wrong_typ.clone(), RejectReason::WrongType).await;
    }
    assert_eq!(verifier.remembered_headers(), 1);
}

#[tokio::test]
async fn only_the_exact_token_text_hits() {
    let issuer = TestIssuer::new();
    let verifier = issuer.verifier().with_token_cache(100);
    let token = issuer.user_token("alice", "orders:read", &[]);
    verifier.verify(&token).await.unwrap();
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let mut altered = signature.to_owned();
    altered.replace_range(..1, if signature.starts_with('A') { "B" } else { "A" });
    assert!(
        verifier
            .verify(&format!("{signing_input}.{altered}"))
            .await
            .is_err()
    );
    assert!(verifier.verify(&format!("{token} ")).await.is_err());
}
