//! The verifier library against the attack catalog (`testkit::attacks`): classes 1-6
//! and 8-14 of SECURITY-TESTS.md, each refused for the expected reason. The gateway and
//! orders-service run the same catalog at their edges.
//!
//! The positive controls below make sure the refusals come from the defence under test, not
//! from a verifier that refuses everything.

use authn::AuthError;
use serde_json::json;
use testkit::TestIssuer;
use testkit::attacks::catalog;

#[tokio::test]
async fn every_forged_token_is_refused_for_its_reason() {
    for alg in authn::jwk::Algorithm::ALL {
        every_forged_token_is_refused_by_an_issuer_of(alg).await;
    }
}

/// The catalog against a verifier trusting one issuer key of `alg`.
async fn every_forged_token_is_refused_by_an_issuer_of(alg: authn::jwk::Algorithm) {
    let issuer = TestIssuer::with_alg(alg);
    let attacker = TestIssuer::new();
    let verifier = issuer.verifier();
    let attacks = catalog(&issuer, &attacker, "http://127.0.0.1:9/never");
    let mut classes: Vec<u8> = attacks.iter().map(|a| a.class).collect();
    classes.dedup();
    assert_eq!(classes, [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14]);
    for attack in &attacks {
        match verifier.verify(&attack.token).await {
            Err(AuthError::Unauthenticated(reason)) => assert!(
                attack.expected.contains(&reason),
                "class {} {}: refused as {reason:?}, expected one of {:?}",
                attack.class,
                attack.name,
                attack.expected
            ),
            other => panic!("class {} {}: {other:?}", attack.class, attack.name),
        }
    }
}

#[tokio::test]
async fn positive_controls_are_accepted() {
    let issuer = TestIssuer::new();
    let verifier = issuer.verifier();
    let now = authn::unix_now();
    let sign = |header: serde_json::Value, claims: serde_json::Value| {
        issuer.forge(&header.to_string(), &claims.to_string())
    };
    let claims = || serde_json::to_value(issuer.claims("alice", "orders:read", &["user"])).unwrap();

    let mut accepted = vec![("valid", sign(issuer.header(), claims()))];
    let mut within_leeway = claims();
    within_leeway["iat"] = json!(now - 600);
    within_leeway["exp"] = json!(now - 5);
    accepted.push((
        "expired within the leeway",
        sign(issuer.header(), within_leeway),
    ));
    for typ in ["AT+JWT", "application/at+jwt"] {
        let mut header = issuer.header();
        header["typ"] = json!(typ);
        accepted.push(("typ variant", sign(header, claims())));
    }
    // Key-carrying members are ignored, not refused, when the issuer itself signed the token.
    for member in ["jwk", "jku", "x5u", "x5c"] {
        let mut header = issuer.header();
        header[member] = json!("ignored");
        accepted.push(("ignored key member", sign(header, claims())));
    }
    let mut two_audiences = claims();
    two_audiences["aud"] = json!(["payments", "orders"]);
    accepted.push((
        "audience among several",
        sign(issuer.header(), two_audiences),
    ));

    for (name, token) in accepted {
        let principal = verifier.verify(&token).await;
        assert!(principal.is_ok(), "{name}: {principal:?}");
    }
}
