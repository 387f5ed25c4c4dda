//! ID tokens as the gateway's browser sign-in checks them: the issuer's key and name, the client
//! as audience, the nonce of the sign-in.

use authn::{AuthError, RejectReason};
use serde_json::{Value, json};
use testkit::TestIssuer;

const CLIENT: &str = "web";
const NONCE: &str = "n-0S6_WzA2Mj";

fn claims(issuer: &TestIssuer) -> Value {
    let now = authn::unix_now();
    json!({
        "iss": issuer.issuer, "sub": "alice", "aud": CLIENT, "exp": now + 300, "iat": now,
        "nonce": NONCE, "sid": "s1", "auth_time": now
    })
}

fn sign(issuer: &TestIssuer, header: &Value, claims: &Value) -> String {
    issuer.forge(&header.to_string(), &claims.to_string())
}

fn header(issuer: &TestIssuer) -> Value {
    json!({ "alg": "RS256", "typ": "JWT", "kid": issuer.kid() })
}

async fn verify(issuer: &TestIssuer, token: &str) -> Result<authn::id_token::IdClaims, AuthError> {
    issuer
        .verifier()
        .verify_id_token(token, CLIENT, NONCE)
        .await
}

fn refused(reason: RejectReason) -> Result<(), AuthError> {
    Err(AuthError::Unauthenticated(reason))
}

#[tokio::test]
async fn a_good_id_token_is_accepted() {
    let issuer = TestIssuer::new();
    let token = sign(&issuer, &header(&issuer), &claims(&issuer));
    let claims = verify(&issuer, &token).await.unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.sid.as_deref(), Some("s1"));
}

#[tokio::test]
async fn each_claim_is_checked() {
    let issuer = TestIssuer::new();
    let now = authn::unix_now();
    let cases: [(&str, Value, RejectReason); 7] = [
        ("iss", json!("https://evil.test"), RejectReason::WrongIssuer),
        ("aud", json!("another-client"), RejectReason::WrongAudience),
        ("aud", json!([CLIENT, "other"]), RejectReason::WrongAudience),
        ("exp", json!(now - 3600), RejectReason::Expired),
        ("iat", json!(now + 3600), RejectReason::IssuedInFuture),
        ("nonce", json!("another-nonce"), RejectReason::InvalidClaims),
        ("nonce", Value::Null, RejectReason::InvalidClaims),
    ];
    for (claim, value, reason) in cases {
        let mut bad = claims(&issuer);
        bad[claim] = value.clone();
        if value.is_null() {
            bad.as_object_mut().unwrap().remove(claim);
        }
        let token = sign(&issuer, &header(&issuer), &bad);
        assert_eq!(
            verify(&issuer, &token).await.map(|_| ()),
            refused(reason),
            "{claim} = {value}"
        );
    }
    let mut several = claims(&issuer);
    several["aud"] = json!([CLIENT, "other"]);
    several["azp"] = json!(CLIENT);
    let token = sign(&issuer, &header(&issuer), &several);
    assert!(
        verify(&issuer, &token).await.is_ok(),
        "azp names the client"
    );
}

#[tokio::test]
async fn the_header_is_checked_before_the_key() {
    let issuer = TestIssuer::new();
    let cases = [
        (
            json!({"alg": "HS256", "kid": issuer.kid()}),
            RejectReason::AlgorithmNotAllowed,
        ),
        (
            json!({"alg": "RS256", "typ": "at+jwt", "kid": issuer.kid()}),
            RejectReason::WrongType,
        ),
        (json!({"alg": "RS256"}), RejectReason::MissingKid),
        (
            json!({"alg": "RS256", "kid": "unknown"}),
            RejectReason::UnknownKey,
        ),
        (
            json!({"alg": "RS256", "kid": issuer.kid(), "crit": ["x"]}),
            RejectReason::CriticalHeader,
        ),
    ];
    for (header, reason) in cases {
        let token = sign(&issuer, &header, &claims(&issuer));
        assert_eq!(
            verify(&issuer, &token).await.map(|_| ()),
            refused(reason),
            "{header}"
        );
    }
    let untyped = json!({"alg": "RS256", "kid": issuer.kid()});
    let token = sign(&issuer, &untyped, &claims(&issuer));
    assert!(verify(&issuer, &token).await.is_ok(), "typ is optional");
}

#[tokio::test]
async fn another_keys_signature_is_refused() {
    let issuer = TestIssuer::new();
    let impostor = TestIssuer::new();
    // The impostor signs with its own key but names the real issuer's key id.
    let token = sign(&impostor, &header(&issuer), &claims(&issuer));
    assert_eq!(
        verify(&issuer, &token).await.map(|_| ()),
        refused(RejectReason::BadSignature)
    );
}
