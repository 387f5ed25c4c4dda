//! Every call runs in a span carrying the request id and the W3C trace context it arrived with
//! (gRPC metadata `x-request-id`, `traceparent`), and JSON log lines written during the call
//! carry `request_id`, `trace_id` and `span_id` as top-level members.

use proto::orders::v1::CreateOrderRequest;
use proto::orders::v1::order_service_client::OrderServiceClient;
use testkit::logs::CapturedLogs;
use testkit::orders::spawn_orders;
use testkit::{Issuer, READ_WRITE, eventually};
use tonic::transport::Endpoint;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

async fn create(
    orders: &testkit::orders::Orders,
    token: &str,
    metadata: &[(&'static str, &str)],
) -> String {
    let channel = Endpoint::from_shared(format!("http://{}", orders.grpc_addr))
        .unwrap()
        .connect_lazy();
    let mut request = tonic::Request::new(CreateOrderRequest {
        item: "traced".into(),
        quantity: 1,
    });
    authn::grpc::with_bearer(&mut request, token).unwrap();
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    let response = OrderServiceClient::new(channel)
        .create_order(request)
        .await
        .expect("order created");
    response
        .metadata()
        .get("x-request-id")
        .expect("the answer carries the request id")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_callers_trace_context_is_continued_in_spans_and_json_logs() {
    let logs = CapturedLogs::default();
    let _capture = logs.install();
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let token = issuer.user("alice", READ_WRITE);

    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let answered_id = create(
        &orders,
        &token,
        &[
            ("x-request-id", "req-from-gateway-1"),
            ("traceparent", &traceparent),
        ],
    )
    .await;
    assert_eq!(answered_id, "req-from-gateway-1");

    eventually("the order is logged", testkit::PATIENCE, || async {
        !logs.with_message("order placed").is_empty()
    })
    .await;
    let line = logs.with_message("order placed").remove(0);
    assert_eq!(line["request_id"], "req-from-gateway-1", "{line}");
    assert_eq!(line["trace_id"], TRACE_ID, "{line}");
    let span_id = line["span_id"].as_str().expect("span_id").to_owned();
    assert_eq!(span_id.len(), 16);
    assert_ne!(span_id, CALLER_SPAN, "a span of its own");
    // The RPC span, with the caller's span as its parent.
    let rpc = line["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|span| span["name"] == "rpc")
        .unwrap_or_else(|| panic!("no rpc span in {line}"));
    assert_eq!(rpc["rpc"], "/orders.v1.OrderService/CreateOrder");
    assert_eq!(rpc["parent_span_id"], CALLER_SPAN);
    assert_eq!(rpc["trace_id"], TRACE_ID);
}

#[tokio::test]
async fn malformed_trace_headers_start_a_new_trace() {
    let logs = CapturedLogs::default();
    let _capture = logs.install();
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let token = issuer.user("alice", READ_WRITE);

    let uppercase = format!("00-{}-{CALLER_SPAN}-01", TRACE_ID.to_uppercase());
    let answered_id = create(
        &orders,
        &token,
        &[("x-request-id", "has space"), ("traceparent", &uppercase)],
    )
    .await;
    assert_ne!(answered_id, "has space");

    eventually("the order is logged", testkit::PATIENCE, || async {
        !logs.with_message("order placed").is_empty()
    })
    .await;
    let line = logs.with_message("order placed").remove(0);
    assert_eq!(line["request_id"], answered_id.as_str());
    let trace_id = line["trace_id"].as_str().unwrap();
    assert_eq!(trace_id.len(), 32);
    assert_ne!(trace_id, TRACE_ID);
    assert_ne!(trace_id.to_uppercase(), TRACE_ID.to_uppercase());
}
