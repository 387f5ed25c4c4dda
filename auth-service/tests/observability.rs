//! Request metrics and trace context: every HTTP request is counted by method, route template
//! and status (`auth_http_*`), every gRPC call by method and code (`auth_grpc_*`), and every
//! request runs in a span carrying the request id and the W3C trace context it arrived with,
//! which JSON log lines carry at the top level and the answer returns as `x-request-id`.

use std::time::Duration;

use proto::auth::v1::CheckSessionRequest;
use proto::auth::v1::session_service_client::SessionServiceClient;
use reqwest::StatusCode;
use testkit::auth::{TestAuth, spawn_auth};
use testkit::eventually;
use testkit::logs::CapturedLogs;

const PASSWORD: &str = "correct horse battery";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// Everything the process-wide recorder holds, as `/metrics` renders it (also after a server
/// has stopped).
fn metrics() -> String {
    platform::telemetry::prometheus().render()
}

/// The value of `series` (name and labels, exactly as rendered), if it has been recorded.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|value| value.trim().parse().expect("a number"))
    })
}

async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.expect("request sent")
}

#[tokio::test]
async fn http_requests_are_counted_by_route_template_and_status() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let login = auth.login("alice", PASSWORD).await;
    let unknown_sid = "no-such-session-a1b2c3";
    let deleted = send(
        auth.http
            .delete(auth.url(&format!("/v1/sessions/{unknown_sid}")))
            .bearer_auth(&login.access_token),
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::NOT_FOUND);
    let unrouted = send(auth.http.get(auth.url("/no/such/route-x9y8"))).await;
    assert_eq!(unrouted.status(), StatusCode::NOT_FOUND);
    // A timeout or body limit answers from inside the layer: counted as what the client got.
    let too_large = send(
        auth.http
            .post(auth.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![b'a'; auth_service::http::MAX_BODY_BYTES + 1]),
    )
    .await;
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let text = send(auth.http.get(format!("{}/metrics", auth.metrics_url)))
        .await
        .text()
        .await
        .expect("metrics text");
    for series in [
        r#"auth_http_requests_total{method="POST",route="/oauth/token",status="200"}"#,
        r#"auth_http_requests_total{method="POST",route="/oauth/token",status="413"}"#,
        r#"auth_http_requests_total{method="DELETE",route="/v1/sessions/{sid}",status="404"}"#,
        r#"auth_http_requests_total{method="GET",route="unmatched",status="404"}"#,
        r#"auth_http_request_duration_seconds_count{method="POST",route="/oauth/token",status="200"}"#,
    ] {
        assert!(
            value(&text, series).is_some_and(|count| count >= 1.0),
            "no {series} in\n{text}"
        );
    }
    assert!(
        text.contains(r#"auth_http_request_duration_seconds_bucket{method="POST",route="/oauth/token",status="200",le="0.25"}"#),
        "the latency is a histogram with the platform's buckets:\n{text}"
    );
    // Labels are templates, never what the client sent.
    assert!(!text.contains(unknown_sid), "{text}");
    assert!(!text.contains("route-x9y8"), "{text}");
}

#[tokio::test]
async fn grpc_calls_and_revocation_streams_are_counted_by_method_and_code() {
    let auth = spawn_auth().await;
    let verifier = auth.verifier_token().await;
    assert!(!auth.session_is_active(&verifier, "no-such-session").await);
    let unauthenticated = auth
        .grpc_client()
        .await
        .check_session(CheckSessionRequest {
            sid: "no-such-session".into(),
        })
        .await
        .expect_err("no token");
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
    let ok = r#"auth_grpc_requests_total{rpc="CheckSession",code="OK"}"#;
    let refused = r#"auth_grpc_requests_total{rpc="CheckSession",code="UNAUTHENTICATED"}"#;
    let text = metrics();
    assert!(value(&text, ok).is_some_and(|n| n >= 1.0), "{text}");
    assert!(value(&text, refused).is_some_and(|n| n >= 1.0), "{text}");
    assert!(
        value(
            &text,
            r#"auth_grpc_request_duration_seconds_count{rpc="CheckSession",code="OK"}"#
        )
        .is_some(),
        "{text}"
    );

    // A stream is counted once it ends: here by the server's shutdown, which ends it cleanly.
    let streams = r#"auth_grpc_requests_total{rpc="WatchRevocations",code="OK"}"#;
    let before = value(&metrics(), streams).unwrap_or(0.0);
    let mut watcher = auth.watch(&verifier, 0).await;
    let _ = watcher.until_heartbeat().await;
    tokio::time::timeout(Duration::from_secs(10), auth.stop())
        .await
        .expect("stopped");
    while let Some(_message) = watcher.stream.message().await.expect("a clean end") {}
    eventually("the stream is counted", Duration::from_secs(5), || async {
        value(&metrics(), streams).unwrap_or(0.0) > before
    })
    .await;
}

/// The JWKS fetched with the given trace headers: its `x-request-id`.
async fn jwks_with(auth: &TestAuth, headers: &[(&str, &str)]) -> String {
    let mut request = auth.http.get(auth.jwks_url());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.headers()["x-request-id"]
        .to_str()
        .expect("ASCII")
        .to_owned()
}

#[tokio::test]
async fn the_callers_trace_context_is_continued_in_spans_and_json_logs() {
    let logs = CapturedLogs::default();
    let _capture = logs.install();
    let auth = spawn_auth().await;

    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let answered = jwks_with(
        &auth,
        &[
            ("x-request-id", "req-from-gateway-1"),
            ("traceparent", &traceparent),
        ],
    )
    .await;
    assert_eq!(answered, "req-from-gateway-1");
    // Without one, the issuer makes one up, and a malformed one is replaced.
    let made = jwks_with(&auth, &[]).await;
    assert!(!made.is_empty() && made != "req-from-gateway-1");
    let replaced = jwks_with(&auth, &[("x-request-id", "bad id with spaces")]).await;
    assert_ne!(replaced, "bad id with spaces");

    let finished = || {
        logs.lines()
            .into_iter()
            .find(|line| line["request_id"] == "req-from-gateway-1")
    };
    eventually("the request is logged", Duration::from_secs(5), || async {
        finished().is_some()
    })
    .await;
    let line = finished().expect("logged");
    assert_eq!(line["trace_id"], TRACE_ID, "{line}");
    let span_id = line["span_id"].as_str().expect("span_id").to_owned();
    assert_eq!(span_id.len(), 16);
    assert_ne!(span_id, CALLER_SPAN, "a span of its own");
    let request = line["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .find(|span| span["name"] == "request")
        .unwrap_or_else(|| panic!("no request span in {line}"));
    assert_eq!(request["route"], "/.well-known/jwks.json");
    assert_eq!(request["parent_span_id"], CALLER_SPAN);

    // gRPC: the same, from the call's metadata.
    let verifier = auth.verifier_token().await;
    let mut call = tonic::Request::new(CheckSessionRequest {
        sid: "no-such-session".into(),
    });
    authn::grpc::with_bearer(&mut call, &verifier).expect("bearer");
    call.metadata_mut().insert(
        "x-request-id",
        "req-from-gateway-2".parse().expect("metadata"),
    );
    call.metadata_mut()
        .insert("traceparent", traceparent.parse().expect("metadata"));
    let response = SessionServiceClient::connect(auth.grpc_url.clone())
        .await
        .expect("connects")
        .check_session(call)
        .await
        .expect("CheckSession answers");
    assert_eq!(
        response.metadata().get("x-request-id").expect("request id"),
        "req-from-gateway-2"
    );
}
