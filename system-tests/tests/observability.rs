//! Request ids and W3C trace context from the edge to the services behind it, in spans and in
//! JSON log lines; request metrics as histograms.

use axum::http::StatusCode;
use serde_json::{Value, json};
use testkit::gateway::spawn_stack;
use testkit::logs::CapturedLogs;
use testkit::{READ, WRITE};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

fn span<'a>(line: &'a Value, name: &str) -> &'a Value {
    line["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {name} span in {line}"))
}

#[tokio::test]
async fn a_request_reaches_orders_service_with_the_same_trace_and_request_id() {
    let logs = CapturedLogs::default();
    let _capture = logs.install();
    let stack = spawn_stack().await;
    let token = stack.issuer.user("alice", &format!("{READ} {WRITE}"));

    let response = stack
        .gateway
        .post("/v1/orders")
        .bearer_auth(&token)
        .header("x-request-id", "e2e-request-1")
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .json(&json!({ "item": "traced book", "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-request-id"], "e2e-request-1");

    // The gateway's own line for the request: its span continues the client's trace.
    let edge = logs
        .find("request finished", Some("/v1/orders"))
        .expect("the gateway logged the request");
    assert_eq!(edge["request_id"], "e2e-request-1", "{edge}");
    assert_eq!(edge["trace_id"], TRACE_ID, "{edge}");
    assert_eq!(span(&edge, "request")["parent_span_id"], CLIENT_SPAN);
    let gateway_span = edge["span_id"].as_str().unwrap();

    // orders-service's line, logged inside its RPC: same trace, same request id, and the
    // gateway's span as the parent.
    let order = logs
        .find("order placed", None)
        .expect("orders-service logged the order");
    assert_eq!(order["request_id"], "e2e-request-1", "{order}");
    assert_eq!(order["trace_id"], TRACE_ID, "{order}");
    let rpc = span(&order, "rpc");
    assert_eq!(rpc["parent_span_id"], gateway_span, "{order}");
    assert_ne!(order["span_id"], gateway_span);
}

#[tokio::test]
async fn the_auth_service_receives_the_trace_context_and_never_a_malformed_one() {
    let logs = CapturedLogs::default();
    let _capture = logs.install();
    let stack = spawn_stack().await;

    let traced = stack
        .gateway
        .post("/oauth/token")
        .header("x-request-id", "e2e-request-2")
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(traced.headers()["x-request-id"], "e2e-request-2");
    let malformed = stack
        .gateway
        .post("/oauth/token")
        .header("x-request-id", "not a valid id")
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-1"))
        .send()
        .await
        .unwrap();
    let replaced_id = malformed.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(replaced_id, "not a valid id");

    let received = stack.auth.received();
    assert_eq!(received.len(), 2, "{received:#?}");
    let parent = |headers: &axum::http::HeaderMap| {
        platform::trace::TraceParent::parse(headers["traceparent"].to_str().unwrap())
            .expect("a valid traceparent upstream")
    };

    let first = &received[0].headers;
    assert_eq!(first["x-request-id"], "e2e-request-2");
    let sent = parent(first);
    assert_eq!(sent.trace_id.to_string(), TRACE_ID);
    // The gateway's span is the parent, not the client's.
    assert_ne!(sent.parent_id.to_string(), CLIENT_SPAN);
    let edge = logs
        .lines()
        .into_iter()
        .find(|line| {
            line["request_id"] == "e2e-request-2" && line["fields"]["message"] == "request finished"
        })
        .expect("the gateway logged the proxied request");
    assert_eq!(edge["span_id"], sent.parent_id.to_string());

    let second = &received[1].headers;
    assert_eq!(second["x-request-id"], replaced_id.as_str());
    assert_eq!(second.get_all("traceparent").iter().count(), 1);
    assert_ne!(parent(second).trace_id.to_string(), TRACE_ID, "a new trace");
}

#[tokio::test]
async fn request_latency_is_a_histogram_by_route_and_status() {
    platform::telemetry::prometheus();
    let stack = spawn_stack().await;
    let token = stack.issuer.user("alice", READ);
    let listed = stack
        .gateway
        .get("/v1/orders")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let refused = stack.gateway.get("/v1/orders").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let text = stack
        .gateway
        .get_metrics()
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        r#"gateway_requests_total{method="GET",route="/v1/orders",status="200"}"#,
        r#"gateway_requests_total{method="GET",route="/v1/orders",status="401"}"#,
        r#"gateway_request_duration_seconds_bucket{method="GET",route="/v1/orders",status="200",le="0.005"}"#,
        r#"gateway_request_duration_seconds_bucket{method="GET",route="/v1/orders",status="200",le="+Inf"}"#,
        r#"gateway_request_duration_seconds_count{method="GET",route="/v1/orders",status="200"}"#,
        // orders-service's calls, made by the gateway, in the same process.
        r#"orders_request_duration_seconds_bucket{rpc="ListOrders",code="OK""#,
    ] {
        assert!(text.contains(expected), "{expected} missing in\n{text}");
    }
    assert!(!text.contains("quantile="), "no summaries: {text}");
    assert!(!text.contains(&token), "metrics never carry a token");
}
