//! The attack catalog of SECURITY-TESTS.md (classes 1-6, 8-15) against the real orders-service
//! over gRPC: every forged token gets `UNAUTHENTICATED` with a generic message, and causes no
//! outbound request.

use authn::jwk::Algorithm;
use proto::orders::v1::ListOrdersRequest;
use proto::orders::v1::order_service_client::OrderServiceClient;
use testkit::Issuer;
use testkit::attacks::catalog;
use testkit::orders::spawn_orders;
use testkit::{JwksServer, TestIssuer};
use tonic::Code;
use tonic::metadata::MetadataValue;

async fn list_with(orders: &testkit::orders::Orders, values: &[&str]) -> Result<(), tonic::Status> {
    let mut client = OrderServiceClient::connect(format!("http://{}", orders.grpc_addr))
        .await
        .unwrap();
    let mut request = tonic::Request::new(ListOrdersRequest::default());
    for value in values {
        let value: MetadataValue<_> = value.parse().expect("ASCII metadata");
        request.metadata_mut().append("authorization", value);
    }
    client.list_orders(request).await.map(|_| ())
}

#[tokio::test]
async fn every_forged_token_gets_unauthenticated_without_outbound_requests() {
    every_forged_token_gets_unauthenticated(Algorithm::Rs256).await;
}

#[tokio::test]
async fn every_forged_token_gets_unauthenticated_from_an_es256_issuer() {
    every_forged_token_gets_unauthenticated(Algorithm::Es256).await;
}

#[tokio::test]
async fn every_forged_token_gets_unauthenticated_from_an_eddsa_issuer() {
    every_forged_token_gets_unauthenticated(Algorithm::EdDsa).await;
}

/// The catalog against an orders-service whose issuer signs with `alg`.
async fn every_forged_token_gets_unauthenticated(alg: Algorithm) {
    let issuer = Issuer::start_with(alg).await;
    let orders = spawn_orders(&issuer).await;
    let sink = JwksServer::start(axum::http::StatusCode::OK, "{}".into()).await;
    let attacker = TestIssuer::new();
    let valid = format!("Bearer {}", issuer.user("alice", "orders:read"));
    list_with(&orders, &[&valid]).await.unwrap();
    let jwks_fetches = issuer.jwks.hits();

    let mut sent = 0;
    for attack in catalog(&issuer.issuer, &attacker, &sink.url()) {
        let value = format!("Bearer {}", attack.token);
        if value.parse::<MetadataValue<_>>().is_err() {
            // Control characters cannot travel in gRPC metadata at all.
            continue;
        }
        let status = list_with(&orders, &[&value]).await.unwrap_err();
        // Oversized metadata (class 14) may already be cut by the HTTP/2 layer, before any
        // parsing: the connection is answered with ENHANCE_YOUR_CALM.
        let transport_limit = attack.class == 14 && status.code() == Code::ResourceExhausted;
        assert!(
            status.code() == Code::Unauthenticated || transport_limit,
            "class {} {}: {status:?}",
            attack.class,
            attack.name
        );
        assert!(
            !status.message().contains(&attack.token),
            "class {} {}: echoed",
            attack.class,
            attack.name
        );
        sent += 1;
    }
    assert!(sent > 150, "only {sent} attacks were sent");
    assert_eq!(sink.hits(), 0, "a URL from a token was fetched");
    assert!(
        issuer.jwks.hits() <= jwks_fetches + 1,
        "JWKS fetched for every unknown kid"
    );
    list_with(&orders, &[&valid]).await.unwrap();
}

/// Class 15: two `authorization` metadata entries are refused, even when both are valid.
#[tokio::test]
async fn two_tokens_in_one_call_are_refused() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let alice = format!("Bearer {}", issuer.user("alice", "orders:read"));
    let admin = format!("Bearer {}", issuer.admin("root", "orders:read"));
    let status = list_with(&orders, &[&alice, &admin]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    list_with(&orders, &[&alice]).await.unwrap();
}

/// Class 14: 64 KB of metadata is refused (by the transport or by the verifier), never served.
#[tokio::test]
async fn oversized_metadata_is_refused() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let huge = format!("Bearer {}", "a".repeat(64 * 1024));
    let status = list_with(&orders, &[&huge]).await.unwrap_err();
    assert!(
        matches!(
            status.code(),
            Code::Unauthenticated | Code::Internal | Code::Unavailable | Code::ResourceExhausted
        ),
        "{status:?}"
    );
}
