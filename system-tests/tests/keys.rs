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
//! - Rotation coordinated with the verifiers: with JWKS refresh and minimum refetch intervals of
//!   ten minutes, `hybrid` verifiers fetch the next key on the `KeyAdded` event and report it;
//!   the due key waits for a verifier cut off from the issuer, and signs within a second of its
//!   report once it is back, refusing no token.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use auth_service::keys::{KeyCoverage, KeyManager};
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

    /// Stops the traffic `task` and fails the test if any request failed; the kids of the fresh
    /// tokens it used.
    async fn finish(&self, task: tokio::task::JoinHandle<()>) -> BTreeSet<String> {
        self.stop.store(true, Ordering::SeqCst);
        task.await.expect("traffic task");
        let failures = self.failures.lock().await;
        let rounds = self.rounds.load(Ordering::SeqCst);
        eprintln!(
            "{rounds} rounds ({} requests), {} failed",
            rounds * 4,
            failures.len()
        );
        assert!(failures.is_empty(), "failed requests: {failures:#?}");
        self.kids.lock().await.clone()
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

/// Until `expected` connected verifiers all hold `kid` by their reports.
async fn until_reported(keys: &KeyManager, kid: &str, expected: usize) -> Duration {
    eventually(
        &format!("{expected} verifiers report holding {kid}"),
        Duration::from_secs(30),
        || async {
            keys.coverage().await.expect("coverage").of_key(kid)
                == KeyCoverage {
                    holding: expected,
                    connected: expected,
                }
        },
    )
    .await
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("after 1970")
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
    // They report it too; the due key would wait for them otherwise.
    until_reported(&keys, &k2, 2).await;
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
    until_reported(&keys, &k3, 2).await;
    let activated = keys.tick(activates_at).await.expect("tick");
    assert_eq!(activated.activated, [k3.as_str()]);
    traffic.until_rounds(5).await;

    let kids = traffic.finish(task).await;
    assert_eq!(
        kids,
        BTreeSet::from([k1, k2, k3]),
        "the traffic used every key"
    );
}

#[tokio::test]
async fn a_rotation_waits_for_every_verifier_and_signs_as_the_last_one_reports() {
    const TEN_MINUTES: Duration = Duration::from_secs(600);
    let stack = Arc::new(
        Stack::start(Options {
            mode: AuthMode::Hybrid,
            // Neither verifier fetches the JWKS by itself during the test: only the
            // `KeyAdded` event makes them.
            jwks_refresh_interval: Some(TEN_MINUTES),
            jwks_min_refetch_interval: Some(TEN_MINUTES),
            orders_feed_proxy: true,
            // orders-service's last report counts while it is cut off, and its revocation set
            // stays trusted meanwhile.
            verifier_report_ttl: Some(TEN_MINUTES),
            max_staleness: Duration::from_secs(120),
            ..Options::default()
        })
        .await,
    );
    stack.add_user("traffic", "user", SCOPES).await;
    stack.add_user("root", "admin,user", "keys:admin").await;
    let keys = stack.auth_state.keys.clone();
    let k1 = keys.kid();
    until_reported(&keys, &k1, 2).await;
    let traffic = Arc::new(Traffic::default());
    let task = tokio::spawn(send_traffic(stack.clone(), traffic.clone()));
    traffic.until_rounds(3).await;

    // orders-service loses its line to the issuer: no feed, no reports.
    let proxy = stack.orders_feed_proxy.as_ref().expect("the proxy");
    proxy.refuse();

    // The schedule publishes the next key; the gateway hears `KeyAdded` and reports it.
    let timing = keys.timing();
    let t0 = keys.keys()[0].activates_at;
    let due = t0 + timing.rotation_interval.expect("scheduled").as_secs() as i64
        - timing.prepublish.as_secs() as i64;
    let published = keys.tick(due).await.expect("tick");
    let published_ms = unix_ms();
    keys.set_clock(due);
    let k2 = published.created.expect("the next key is published");
    eventually(
        "the gateway reports k2",
        Duration::from_secs(30),
        || async { keys.coverage().await.expect("coverage").holding(&k2) == 1 },
    )
    .await;
    let gateway_report = keys
        .reports()
        .all()
        .await
        .expect("reports")
        .into_iter()
        .find(|r| r.kids.contains(&k2))
        .expect("the gateway's report");
    eprintln!(
        "KeyAdded to the gateway's report of the new key: {} ms",
        gateway_report.reported_at_ms - published_ms
    );

    // Its activation time comes: it waits for orders-service, and k1 goes on signing.
    let activates_at = keys
        .keys()
        .iter()
        .find(|k| k.kid == k2)
        .expect("k2")
        .activates_at;
    let waiting = keys.tick(activates_at).await.expect("tick");
    assert!(waiting.activated.is_empty(), "{waiting:?}");
    keys.set_clock(activates_at);
    assert_eq!(keys.kid(), k1);
    let admin = stack.token("root", None).await;
    let listing: Value = stack
        .http
        .get(stack.auth_url("/v1/admin/keys"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    let next = listing["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == k2.as_str())
        .expect("k2 listed");
    assert_eq!(next["state"], "next");
    assert_eq!(
        next["verifiers"],
        serde_json::json!({"holding": 1, "connected": 2})
    );
    traffic.until_rounds(2).await;

    // orders-service is back: its feed's backlog carries `KeyAdded`, it fetches the JWKS past
    // its ten-minute interval and reports; that report makes the issuer promote k2.
    proxy.restore();
    eventually("k2 signs", Duration::from_secs(60), || async {
        keys.kid() == k2
    })
    .await;
    let signed_ms = unix_ms();
    let last_report = keys
        .reports()
        .all()
        .await
        .expect("reports")
        .into_iter()
        .filter(|r| r.kids.contains(&k2))
        .map(|r| r.reported_at_ms)
        .max()
        .expect("reports of k2");
    let lag = signed_ms - last_report;
    eprintln!("k2 signed at most {lag} ms after the last verifier reported it");
    assert!(lag < 1000, "k2 signed {lag} ms after the last report");
    until_reported(&keys, &k2, 2).await;

    traffic.until_rounds(5).await;
    let kids = traffic.finish(task).await;
    assert!(kids.contains(&k2), "fresh tokens use k2");
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
