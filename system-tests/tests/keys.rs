//! Signing-key rotation and revocation through the whole stack: the gateway (HTTP) and
//! orders-service (gRPC) verify with the issuer's JWKS while the issuer rotates its key.
//!
//! - Under continuous traffic with fresh tokens, a scheduled rotation (the issuer's clock driven
//!   by the test through `KeyManager::tick`) and then a manual one fail no request: each new key
//!   is published before it signs, and the verifiers are seen to hold it (through JWKS taps)
//!   before the clock reaches its activation, as the pre-publication window guarantees in
//!   production.
//! - An emergency revocation refuses the revoked key's tokens at both verifiers within the
//!   documented bound: at once in `hybrid` mode (the `KeyRevoked` event), after the JWKS refresh
//!   in `stateless` mode.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use authn::config::AuthMode;
use authn::jws::UnverifiedJws;
use proto::orders::v1 as pb;
use proto::orders::v1::order_service_client::OrderServiceClient;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use testkit::eventually;
use testkit::stack::{Options, Stack};
use tokio::sync::Mutex;
use tonic::Code;

const SCOPES: &str = "orders:read orders:write";

fn kid_of(token: &str) -> String {
    UnverifiedJws::parse(token)
        .expect("a JWS")
        .header
        .kid
        .expect("a kid")
}

/// What the traffic task saw.
#[derive(Default)]
struct Traffic {
    stop: AtomicBool,
    /// Rounds completed (a fresh token, then four requests).
    rounds: AtomicUsize,
    failures: Mutex<Vec<String>>,
    /// The kids of the fresh tokens used.
    kids: Mutex<BTreeSet<String>>,
}

impl Traffic {
    async fn fail(&self, what: String) {
        self.failures.lock().await.push(what);
    }

    async fn until_rounds(&self, more: usize) {
        let target = self.rounds.load(Ordering::SeqCst) + more;
        eventually(
            &format!("{more} more rounds of traffic"),
            Duration::from_secs(30),
            || async { self.rounds.load(Ordering::SeqCst) >= target },
        )
        .await;
    }
}

/// Until stopped: logs in for a fresh token, then calls `GET /v1/orders` at the gateway and
/// `ListOrders` at orders-service with it, and with the first token it ever got (signed by the
/// key in use when the traffic started), which must keep working until it expires.
async fn send_traffic(stack: Arc<Stack>, traffic: Arc<Traffic>) {
    let mut grpc = OrderServiceClient::connect(stack.orders_grpc.clone())
        .await
        .expect("gRPC connects");
    let first = stack.token("traffic", Some(SCOPES)).await;
    while !traffic.stop.load(Ordering::SeqCst) {
        let response = stack
            .http
            .post(stack.url("/oauth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", "traffic"),
                ("password", testkit::stack::PASSWORD),
            ])
            .send()
            .await;
        let fresh = match response {
            Ok(r) if r.status() == StatusCode::OK => {
                let body: Value = r.json().await.expect("token JSON");
                body["access_token"].as_str().expect("token").to_owned()
            }
            Ok(r) => {
                traffic.fail(format!("login: HTTP {}", r.status())).await;
                continue;
            }
            Err(e) => {
                traffic.fail(format!("login: {e}")).await;
                continue;
            }
        };
        traffic.kids.lock().await.insert(kid_of(&fresh));
        for (which, token) in [("fresh", &fresh), ("first", &first)] {
            let (status, body) = stack.rest(Method::GET, "/v1/orders", token, None).await;
            if status != StatusCode::OK {
                traffic
                    .fail(format!(
                        "gateway, {which} token {}: {status} {body}",
                        kid_of(token)
                    ))
                    .await;
            }
            let mut request = tonic::Request::new(pb::ListOrdersRequest::default());
            authn::grpc::with_bearer(&mut request, token).expect("bearer");
            if let Err(status) = grpc.list_orders(request).await {
                traffic
                    .fail(format!(
                        "orders-service, {which} token {}: {:?} {}",
                        kid_of(token),
                        status.code(),
                        status.message()
                    ))
                    .await;
            }
        }
        traffic.rounds.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn rotations_under_continuous_traffic_fail_no_request() {
    let stack = Arc::new(
        Stack::start(Options {
            mode: AuthMode::Stateless,
            // Equal intervals: an unknown kid cannot trigger an early refetch, so no request can
            // be rescued by one; only the pre-publication keeps the traffic green.
            jwks_refresh_interval: Some(Duration::from_secs(1)),
            jwks_min_refetch_interval: Some(Duration::from_secs(1)),
            jwks_taps: true,
            ..Options::default()
        })
        .await,
    );
    stack.add_user("traffic", "user", SCOPES).await;
    let admin_id = stack.add_user("root", "admin,user", "keys:admin").await;
    assert!(!admin_id.is_empty());
    let keys = stack.auth_state.keys.clone();
    let k1 = keys.kid();
    let traffic = Arc::new(Traffic::default());
    let task = tokio::spawn(send_traffic(stack.clone(), traffic.clone()));
    traffic.until_rounds(3).await;

    // Scheduled rotation: the issuer's clock reaches the moment the next key is due.
    let timing = keys.timing();
    let t0 = keys.keys()[0].activates_at;
    let interval = timing.rotation_interval.expect("scheduled").as_secs() as i64;
    let due = t0 + interval - timing.prepublish.as_secs() as i64;
    let published = keys.tick(due).await.expect("tick");
    let k2 = published.created.expect("the next key is published");
    traffic.until_rounds(2).await;
    assert_eq!(keys.kid(), k1, "published, not signing");
    // In production the pre-publication window (2 x max-age + 1 min) guarantees this; here
    // the test sees it through the taps before moving the clock on.
    let waited = stack.wait_for_current_jwks(Duration::from_secs(10)).await;
    eprintln!("verifiers held the next key {waited:?} after its publication");
    let activated = keys.tick(t0 + interval).await.expect("tick");
    assert_eq!(activated.activated, [k2.as_str()]);
    traffic.until_rounds(5).await;
    assert!(
        traffic.kids.lock().await.contains(&k2),
        "fresh tokens use k2"
    );

    // Manual rotation through the admin API, activated after its window (the clock again).
    let admin = stack.token("root", None).await;
    let response = stack
        .http
        .post(stack.auth_url("/v1/admin/keys/rotate"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    let k3 = body["created"].as_str().expect("created").to_owned();
    let activates_at = body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == k3.as_str())
        .and_then(|k| k["activates_at"].as_i64())
        .expect("activation time");
    traffic.until_rounds(2).await;
    stack.wait_for_current_jwks(Duration::from_secs(10)).await;
    let activated = keys.tick(activates_at).await.expect("tick");
    assert_eq!(activated.activated, [k3.as_str()]);
    traffic.until_rounds(5).await;

    traffic.stop.store(true, Ordering::SeqCst);
    task.await.expect("traffic task");
    let failures = traffic.failures.lock().await;
    let rounds = traffic.rounds.load(Ordering::SeqCst);
    eprintln!(
        "{rounds} rounds ({} requests), {} failed",
        rounds * 4,
        failures.len()
    );
    assert!(failures.is_empty(), "failed requests: {failures:#?}");
    let kids = traffic.kids.lock().await;
    assert_eq!(
        *kids,
        BTreeSet::from([k1, k2, k3]),
        "the traffic used every key"
    );
}

/// Revokes the active key at the issuer's admin API; returns when the issuer answered.
async fn revoke(stack: &Stack, kid: &str) -> Value {
    stack.add_user("security", "admin,user", "keys:admin").await;
    let admin = stack.token("security", None).await;
    let response = stack
        .http
        .post(stack.auth_url(&format!("/v1/admin/keys/{kid}/revoke")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("JSON")
}

/// A token of the revoked key is refused at the gateway and at orders-service within `bound`;
/// fresh tokens of the replacement key work at both. Returns how long the refusal took.
async fn emergency_revocation(options: Options, bound: Duration) -> Duration {
    let stack = Stack::start(options).await;
    stack.add_user("victim", "user", SCOPES).await;
    let leaked = stack.token("victim", None).await;
    assert_eq!(stack.gateway_status(&leaked).await, StatusCode::OK);
    assert_eq!(stack.orders_code(&leaked).await, Code::Ok);
    let k1 = kid_of(&leaked);

    let body = revoke(&stack, &k1).await;
    let started = Instant::now();
    assert_eq!(body["revoked"], k1.as_str());
    let k2 = body["signing_kid"]
        .as_str()
        .expect("replacement")
        .to_owned();
    eventually(
        "the revoked key's token is refused at the gateway and at orders-service",
        bound,
        || async {
            stack.gateway_status(&leaked).await == StatusCode::UNAUTHORIZED
                && stack.orders_code(&leaked).await == Code::Unauthenticated
        },
    )
    .await;
    let took = started.elapsed();

    let fresh = stack.token("victim", None).await;
    assert_eq!(kid_of(&fresh), k2);
    eventually(
        "tokens of the replacement key work everywhere",
        Duration::from_secs(5),
        || async {
            stack.gateway_status(&fresh).await == StatusCode::OK
                && stack.orders_code(&fresh).await == Code::Ok
        },
    )
    .await;
    // The leaked token stays refused.
    assert_eq!(
        stack.gateway_status(&leaked).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(stack.orders_code(&leaked).await, Code::Unauthenticated);
    took
}

/// `hybrid`: the `KeyRevoked` event reaches both verifiers within the feed's push delay (the
/// documented bound is 1 s; the verifiers' JWKS still holds the key meanwhile).
#[tokio::test]
async fn an_emergency_revocation_is_pushed_to_hybrid_verifiers() {
    let took = emergency_revocation(
        Options {
            mode: AuthMode::Hybrid,
            jwks_min_refetch_interval: Some(Duration::from_millis(100)),
            ..Options::default()
        },
        Duration::from_secs(1),
    )
    .await;
    eprintln!("hybrid: the revoked key was refused everywhere after {took:?}");
}

/// `stateless`: refused once each verifier has refreshed its JWKS, within its refresh interval
/// (the issuer's max-age, capped by `AUTH_JWKS_REFRESH_INTERVAL`; 1 s here).
#[tokio::test]
async fn an_emergency_revocation_reaches_stateless_verifiers_with_the_jwks_refresh() {
    let refresh = Duration::from_secs(1);
    let took = emergency_revocation(
        Options {
            mode: AuthMode::Stateless,
            jwks_refresh_interval: Some(refresh),
            jwks_min_refetch_interval: Some(Duration::from_millis(100)),
            ..Options::default()
        },
        // The refresh interval, plus one fetch and the request that sees it.
        refresh + Duration::from_secs(2),
    )
    .await;
    eprintln!("stateless: the revoked key was refused everywhere after {took:?}");
}
