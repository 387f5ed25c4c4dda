//! `AUTH_ROUTE_POLICY` at the gateway: a policy the gateway cannot honour stops it at start,
//! with a message naming the entry at fault. (What a policy does to requests is tested across
//! the services: `system-tests/tests/route_policy.rs`.)

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the gateway binary with `AUTH_ROUTE_POLICY=policy` (and `extra`); it must refuse to
/// start. Returns its standard error.
fn refused_start(policy: &str, extra: &[(&str, &str)]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    command
        .env_clear()
        .env("GATEWAY_ADDR", "127.0.0.1:0")
        .env("GATEWAY_METRICS_ADDR", "127.0.0.1:0")
        .env("AUTH_ROUTE_POLICY", policy)
        .env("RUST_LOG", "off")
        .envs(extra.iter().copied());
    let output = with_deadline(command);
    assert!(!output.status.success(), "{policy}: it started");
    String::from_utf8(output.stderr).unwrap()
}

/// A gateway that wrongly started would serve until killed: give it a deadline.
fn with_deadline(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gateway runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

const CREDENTIALS: [(&str, &str); 2] = [
    ("AUTH_CLIENT_ID", "gateway"),
    ("AUTH_CLIENT_SECRET", "secret"),
];

#[test]
fn an_unknown_route_stops_the_gateway_naming_the_entry_and_the_routes() {
    // A raw path instead of the route template.
    let stderr = refused_start("POST /v1/orders/42/cancel=live", &CREDENTIALS);
    assert!(
        stderr.contains(
            "AUTH_ROUTE_POLICY entry \"POST /v1/orders/42/cancel=live\": this service has no \
             such route; its routes: POST /v1/orders, GET /v1/orders, GET /v1/orders/{id}, \
             POST /v1/orders/{id}/cancel"
        ),
        "{stderr}"
    );
    // orders-service's method, at the gateway.
    let stderr = refused_start("/orders.v1.OrderService/CancelOrder=live", &CREDENTIALS);
    assert!(
        stderr.contains("this service has no such route"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_level_stops_the_gateway_naming_the_entry_and_the_levels() {
    let stderr = refused_start(
        "GET /v1/orders=token,POST /v1/orders/{id}/cancel=strict",
        &CREDENTIALS,
    );
    assert!(
        stderr.contains(
            "AUTH_ROUTE_POLICY entry \"POST /v1/orders/{id}/cancel=strict\": unknown level \
             \"strict\" (expected token, pushed or live)"
        ),
        "{stderr}"
    );
}

#[test]
fn live_without_a_session_lookup_stops_the_gateway() {
    let stderr = refused_start("POST /v1/orders/{id}/cancel=live", &[]);
    assert!(
        stderr.contains(
            "AUTH_ROUTE_POLICY entry \"POST /v1/orders/{id}/cancel=live\": `live` needs a \
             session lookup and this verifier has none: set REDIS_URL, or AUTH_CLIENT_ID and \
             AUTH_CLIENT_SECRET (a client with scope sessions:check) to ask the issuer at \
             AUTH_GRPC_URL"
        ),
        "{stderr}"
    );
    // A client id without its secret is no way to ask either.
    let stderr = refused_start(
        "POST /v1/orders/{id}/cancel=live",
        &[("AUTH_CLIENT_ID", "gateway")],
    );
    assert!(stderr.contains("`live` needs a session lookup"), "{stderr}");
}

#[test]
fn pushed_outside_hybrid_mode_stops_the_gateway() {
    for mode in ["stateless", "stateful"] {
        let stderr = refused_start(
            "GET /v1/orders=pushed",
            &[CREDENTIALS[0], CREDENTIALS[1], ("AUTH_MODE", mode)],
        );
        assert!(
            stderr.contains(
                "AUTH_ROUTE_POLICY entry \"GET /v1/orders=pushed\": `pushed` needs the issuer's \
                 revocation feed, which runs with AUTH_MODE=hybrid only"
            ),
            "{mode}: {stderr}"
        );
    }
}
