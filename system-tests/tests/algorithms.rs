//! ES256 and EdDSA issuers through the running services (docs/KEYS.md): auth-service started
//! with `AUTH_SIGNING_ALG=ES256` or `EdDSA` issues tokens the gateway (HTTP) and
//! orders-service (gRPC) accept, the most relevant forgeries against such an issuer are
//! refused by both, and a rotation from RS256 to ES256 in a running stack refuses no token.

use std::time::Duration;

use authn::jwk::Algorithm;
use authn::jws::{UnverifiedJws, b64_decode, b64_encode};
use reqwest::StatusCode;
use serde_json::json;
use testkit::stack::{Options, Stack};

fn alg_of(token: &str) -> String {
    UnverifiedJws::parse(token).expect("a JWS").header.alg
}

/// Forgeries of a real token of the stack: its header's `alg` changed to every other
/// algorithm (`none` and HS256 included) over the real signature, an altered and a truncated
/// signature. (HS256 keyed with the published key in every encoding is class 3 of the
/// catalog, run against ES256 and EdDSA issuers in `attacks.rs`.)
fn forgeries(token: &str) -> Vec<(String, String)> {
    let (input, signature) = token.rsplit_once('.').expect("three segments");
    let (header_b64, payload_b64) = input.split_once('.').expect("three segments");
    let mut header: serde_json::Value =
        serde_json::from_slice(&b64_decode(header_b64).expect("header")).expect("JSON");
    let own = header["alg"].clone();
    let mut out = Vec::new();
    for alg in ["RS256", "ES256", "EdDSA", "none", "HS256", "ES384", "es256"] {
        if alg == own {
            continue;
        }
        header["alg"] = json!(alg);
        let forged = format!(
            "{}.{payload_b64}.{signature}",
            b64_encode(header.to_string())
        );
        out.push((format!("header alg {alg}, the real signature"), forged));
    }
    let mut raw = b64_decode(signature).expect("signature");
    raw[10] ^= 0x40;
    out.push((
        "altered signature".into(),
        format!("{input}.{}", b64_encode(&raw)),
    ));
    out.push((
        "truncated signature".into(),
        format!("{input}.{}", b64_encode(&raw[..raw.len() - 1])),
    ));
    out
}

async fn an_issuer_signing_with(alg: Algorithm) {
    let stack = Stack::start(Options {
        signing_alg: Some(alg),
        ..Options::default()
    })
    .await;
    stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    let token = stack.token("alice", None).await;
    assert_eq!(alg_of(&token), alg.as_str());
    assert_eq!(stack.gateway_status(&token).await, StatusCode::OK);
    assert_eq!(stack.orders_code(&token).await, tonic::Code::Ok);
    stack.create_order(&token).await;
    let mut grpc = stack.grpc(&token).await;
    assert_eq!(grpc.list().await.expect("listed").len(), 1);

    let jwks: serde_json::Value = stack
        .http
        .get(stack.auth_url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(jwks["keys"][0]["alg"], alg.as_str());
    for (name, forged) in forgeries(&token) {
        assert_eq!(
            stack.gateway_status(&forged).await,
            StatusCode::UNAUTHORIZED,
            "gateway: {name}"
        );
        assert_eq!(
            stack.orders_code(&forged).await,
            tonic::Code::Unauthenticated,
            "orders-service: {name}"
        );
    }
    // The genuine token still passes: the refusals came from the defences.
    assert_eq!(stack.gateway_status(&token).await, StatusCode::OK);
}

#[tokio::test]
async fn an_es256_issuer_is_accepted_by_the_gateway_and_orders_service() {
    an_issuer_signing_with(Algorithm::Es256).await;
}

#[tokio::test]
async fn an_eddsa_issuer_is_accepted_by_the_gateway_and_orders_service() {
    an_issuer_signing_with(Algorithm::EdDsa).await;
}

#[tokio::test]
async fn a_rotation_from_rs256_to_es256_refuses_no_token() {
    let stack = Stack::start(Options {
        jwks_taps: true,
        jwks_refresh_interval: Some(Duration::from_millis(500)),
        jwks_min_refetch_interval: Some(Duration::from_millis(500)),
        ..Options::default()
    })
    .await;
    stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    let rs256 = stack.token("alice", None).await;
    assert_eq!(alg_of(&rs256), "RS256");
    let all_accepted = |tokens: Vec<String>| {
        let stack = &stack;
        async move {
            for token in &tokens {
                assert_eq!(
                    stack.gateway_status(token).await,
                    StatusCode::OK,
                    "{}",
                    alg_of(token)
                );
                assert_eq!(
                    stack.orders_code(token).await,
                    tonic::Code::Ok,
                    "{}",
                    alg_of(token)
                );
            }
        }
    };
    all_accepted(vec![rs256.clone()]).await;

    // Publish an ES256 next key; once every verifier holds it, promote it.
    let keys = &stack.auth_state.keys;
    let outcome = keys
        .rotate_as(authn::unix_now(), false, Some(Algorithm::Es256))
        .await
        .expect("rotation");
    assert!(outcome.created.is_some());
    all_accepted(vec![rs256.clone(), stack.token("alice", None).await]).await;
    stack.wait_for_current_jwks(Duration::from_secs(10)).await;
    keys.rotate_as(authn::unix_now(), true, Some(Algorithm::Es256))
        .await
        .expect("promotion");
    let es256 = stack.token("alice", None).await;
    assert_eq!(alg_of(&es256), "ES256");
    // Tokens of both keys, old and new, are accepted everywhere.
    all_accepted(vec![rs256, es256]).await;
}
