//! A freshness level per route: the verifier checks what the level says, whatever its mode, and
//! a route policy it could not honour is refused when it is set, never at request time.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authn::check::SessionCheck;
use authn::config::{AuthMode, ConfigError, VerifierConfig};
use authn::freshness::RoutePolicyError;
use authn::session::{BoxFuture, LookupError, SessionLookup, StatefulCheck};
use authn::{AuthError, Freshness, RejectReason, RoutePolicy};
use clap::Parser;
use secrecy::SecretString;
use testkit::TestIssuer;

const GATEWAY_ROUTES: &[&str] = &[
    "POST /v1/orders",
    "GET /v1/orders",
    "GET /v1/orders/{id}",
    "POST /v1/orders/{id}/cancel",
];
const CANCEL_LIVE: &str = "POST /v1/orders/{id}/cancel=live";

/// A session store holding the ended sessions, counting its lookups.
#[derive(Debug, Default)]
struct Sessions {
    ended: Mutex<HashSet<String>>,
    lookups: AtomicUsize,
}

impl Sessions {
    fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

impl SessionLookup for Sessions {
    fn is_active<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<bool, LookupError>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let active = !self.ended.lock().unwrap().contains(sid);
        Box::pin(async move { Ok(active) })
    }
}

fn sid(token: &str) -> String {
    let claims: authn::claims::AccessClaims = authn::jws::UnverifiedJws::parse(token)
        .unwrap()
        .payload()
        .unwrap();
    claims.sid.unwrap()
}

#[tokio::test]
async fn a_stateless_verifier_looks_up_live_requests_only_even_for_cached_tokens() {
    let issuer = TestIssuer::new();
    let sessions = Arc::new(Sessions::default());
    let verifier = issuer
        .verifier()
        .with_token_cache(100)
        .with_live_check(StatefulCheck::new(sessions.clone(), Duration::ZERO));
    let token = issuer.user_token("alice", "orders:read orders:write", &[]);

    verifier.verify(&token).await.unwrap();
    verifier
        .verify_fresh(&token, Freshness::Token)
        .await
        .unwrap();
    assert_eq!(
        sessions.lookups(),
        0,
        "the mode's check and `token` ask nobody"
    );
    verifier
        .verify_fresh(&token, Freshness::Live)
        .await
        .unwrap();
    assert_eq!(sessions.lookups(), 1);

    // Logged out: the cached token still passes the mode's check, never a live one.
    sessions.ended.lock().unwrap().insert(sid(&token));
    assert_eq!(verifier.cached_tokens(), 1);
    verifier.verify(&token).await.unwrap();
    assert_eq!(
        verifier
            .verify_fresh(&token, Freshness::Live)
            .await
            .unwrap_err(),
        AuthError::Unauthenticated(RejectReason::Revoked)
    );
    assert_eq!(
        verifier
            .verify_with(&token, Some(Freshness::Live))
            .await
            .unwrap_err(),
        AuthError::Unauthenticated(RejectReason::Revoked)
    );
    assert_eq!(sessions.lookups(), 3);
}

#[tokio::test]
async fn a_stateful_verifier_skips_the_lookup_of_token_routes() {
    let issuer = TestIssuer::new();
    let sessions = Arc::new(Sessions::default());
    let verifier = issuer
        .verifier()
        .with_session_check(SessionCheck::stateful(sessions.clone(), Duration::ZERO));
    let token = issuer.user_token("alice", "orders:read", &[]);
    verifier
        .verify_fresh(&token, Freshness::Token)
        .await
        .unwrap();
    assert_eq!(sessions.lookups(), 0);
    verifier.verify(&token).await.unwrap();
    verifier
        .verify_fresh(&token, Freshness::Live)
        .await
        .unwrap();
    assert_eq!(sessions.lookups(), 2);
}

#[test]
fn a_route_policy_the_verifier_cannot_honour_is_refused_when_set() {
    let issuer = TestIssuer::new();
    let stateless = issuer.verifier();
    assert!(stateless.supports(Freshness::Token));
    assert!(!stateless.supports(Freshness::Pushed) && !stateless.supports(Freshness::Live));
    assert_eq!(
        stateless
            .clone()
            .with_route_policy(RoutePolicy::parse(CANCEL_LIVE).unwrap())
            .unwrap_err(),
        RoutePolicyError::LiveWithoutLookup {
            entry: CANCEL_LIVE.into()
        }
    );
    assert_eq!(
        stateless
            .clone()
            .with_route_policy(RoutePolicy::parse("GET /v1/orders=pushed").unwrap())
            .unwrap_err(),
        RoutePolicyError::PushedWithoutFeed {
            entry: "GET /v1/orders=pushed".into()
        }
    );

    let live = stateless.with_live_check(StatefulCheck::new(
        Arc::new(Sessions::default()),
        Duration::ZERO,
    ));
    let verifier = live
        .with_route_policy(
            RoutePolicy::parse(&format!("{CANCEL_LIVE},GET /v1/orders=token")).unwrap(),
        )
        .unwrap();
    assert_eq!(
        verifier.level_of("POST", "/v1/orders/{id}/cancel"),
        Some(Freshness::Live)
    );
    assert_eq!(
        verifier.level_of("GET", "/v1/orders"),
        Some(Freshness::Token)
    );
    assert_eq!(verifier.level_of("GET", "/v1/orders/{id}"), None);
    assert_eq!(issuer.verifier().level_of("GET", "/v1/orders"), None);
}

fn config(mode: AuthMode, policy: &str) -> VerifierConfig {
    VerifierConfig {
        mode,
        route_policy: RoutePolicy::parse(policy).unwrap(),
        ..VerifierConfig::default()
    }
}

fn with_client(mut config: VerifierConfig) -> VerifierConfig {
    config.client_id = Some("gateway".into());
    config.client_secret = Some(SecretString::from("secret"));
    config
}

#[tokio::test]
async fn live_in_stateless_mode_builds_the_lookup_stateful_would_use() {
    let over_grpc = with_client(config(AuthMode::Stateless, CANCEL_LIVE))
        .build_verifier_for(GATEWAY_ROUTES)
        .unwrap();
    assert_eq!(over_grpc.session_check().mode(), "stateless");
    assert!(over_grpc.supports(Freshness::Live));
    assert_eq!(
        over_grpc.level_of("POST", "/v1/orders/{id}/cancel"),
        Some(Freshness::Live)
    );

    let mut redis = config(AuthMode::Stateless, CANCEL_LIVE);
    redis.redis_url = Some("redis://127.0.0.1:1".into());
    assert!(
        redis
            .build_verifier_for(GATEWAY_ROUTES)
            .unwrap()
            .supports(Freshness::Live)
    );

    // Without a rule asking for it, a stateless verifier builds no lookup at all.
    let plain = with_client(config(AuthMode::Stateless, "GET /v1/orders=token"))
        .build_verifier_for(GATEWAY_ROUTES)
        .unwrap();
    assert!(!plain.supports(Freshness::Live));
}

#[tokio::test]
async fn the_service_refuses_to_start_with_a_policy_it_cannot_honour() {
    let refusal = |config: VerifierConfig| {
        config
            .build_verifier_for(GATEWAY_ROUTES)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refusal(config(AuthMode::Stateless, CANCEL_LIVE)),
        "AUTH_ROUTE_POLICY entry \"POST /v1/orders/{id}/cancel=live\": `live` needs a session \
         lookup and this verifier has none: set REDIS_URL, or AUTH_CLIENT_ID and \
         AUTH_CLIENT_SECRET (a client with scope sessions:check) to ask the issuer at \
         AUTH_GRPC_URL"
    );
    for mode in [AuthMode::Stateless, AuthMode::Stateful] {
        let error = refusal(with_client(config(mode, "GET /v1/orders=pushed")));
        assert_eq!(
            error,
            "AUTH_ROUTE_POLICY entry \"GET /v1/orders=pushed\": `pushed` needs the issuer's \
             revocation feed, which runs with AUTH_MODE=hybrid only",
            "{mode:?}"
        );
    }
    assert_eq!(
        refusal(with_client(config(
            AuthMode::Stateless,
            "POST /v1/orders/{id}/cancle=live"
        ))),
        "AUTH_ROUTE_POLICY entry \"POST /v1/orders/{id}/cancle=live\": this service has no such \
         route; its routes: POST /v1/orders, GET /v1/orders, GET /v1/orders/{id}, POST \
         /v1/orders/{id}/cancel"
    );
    // A service that names no routes refuses every rule.
    assert!(matches!(
        with_client(config(AuthMode::Stateless, CANCEL_LIVE)).build_verifier(),
        Err(ConfigError::RoutePolicy(
            RoutePolicyError::UnknownRoute { .. }
        ))
    ));
    // Hybrid has the feed for `pushed`, and its fallback for `live`.
    let hybrid = with_client(config(
        AuthMode::Hybrid,
        "GET /v1/orders=pushed,POST /v1/orders/{id}/cancel=live,POST /v1/orders=token",
    ))
    .build_verifier_for(GATEWAY_ROUTES)
    .unwrap();
    assert!(Freshness::ALL.into_iter().all(|l| hybrid.supports(l)));
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    verifier: VerifierConfig,
}

#[test]
fn auth_route_policy_is_a_flag_and_a_bad_level_stops_the_parse() {
    let parsed = Cli::try_parse_from([
        "verifier",
        "--auth-route-policy",
        "POST /v1/orders/{id}/cancel=live, GET /v1/orders=token",
    ])
    .unwrap();
    assert_eq!(
        parsed.verifier.route_policy.to_string(),
        "POST /v1/orders/{id}/cancel=live,GET /v1/orders=token"
    );
    let error = Cli::try_parse_from([
        "verifier",
        "--auth-route-policy",
        "POST /v1/orders/{id}/cancel=fresh",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        error.contains(
            "AUTH_ROUTE_POLICY entry \"POST /v1/orders/{id}/cancel=fresh\": unknown level \
             \"fresh\" (expected token, pushed or live)"
        ),
        "{error}"
    );
    assert!(
        Cli::try_parse_from(["verifier"])
            .unwrap()
            .verifier
            .route_policy
            .is_empty()
    );
}
