//! The published documents (JWKS, discovery), the signing key's life on disk, and health.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use auth_service::keys::SIGNING_KEY_FILE;
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use testkit::auth::{TEST_ISSUER, spawn_auth, spawn_auth_with, test_config};

/// RFC 7638 §3: SHA-256 over `{"e":..,"kty":"RSA","n":..}` (members in lexicographic order,
/// no whitespace), base64url. Computed here independently of `authn`.
fn rfc7638_thumbprint(jwk: &serde_json::Value) -> String {
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        jwk["e"].as_str().expect("e"),
        jwk["n"].as_str().expect("n")
    );
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}

#[tokio::test]
async fn jwks_publishes_the_public_key_with_a_cache_lifetime() {
    let auth = spawn_auth().await;
    let response = auth.http.get(auth.jwks_url()).send().await.expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    let jwks: serde_json::Value = response.json().await.expect("JSON");
    let keys = jwks["keys"].as_array().expect("keys array");
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], auth.kid.as_str());
    assert_eq!(key["kid"].as_str(), Some(rfc7638_thumbprint(key).as_str()));
    // 2048-bit modulus: 256 bytes, 342 base64url characters.
    assert_eq!(key["n"].as_str().expect("n").len(), 342);
    for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
        assert!(
            key.get(private).is_none(),
            "JWKS leaks private member {private}"
        );
    }
}

#[tokio::test]
async fn discovery_document_points_at_the_issuer_endpoints() {
    let auth = spawn_auth().await;
    let doc: serde_json::Value = auth
        .http
        .get(auth.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(doc["issuer"], TEST_ISSUER);
    assert_eq!(
        doc["jwks_uri"],
        format!("{TEST_ISSUER}/.well-known/jwks.json")
    );
    assert_eq!(doc["token_endpoint"], format!("{TEST_ISSUER}/oauth/token"));
    assert_eq!(
        doc["grant_types_supported"],
        serde_json::json!([
            "authorization_code",
            "password",
            "refresh_token",
            "client_credentials"
        ])
    );
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{TEST_ISSUER}/oauth/authorize")
    );
    assert_eq!(
        doc["access_token_signing_alg_values_supported"],
        serde_json::json!(["RS256", "ES256", "EdDSA"])
    );
    assert_eq!(
        doc["revocation_endpoint"],
        format!("{TEST_ISSUER}/oauth/revoke")
    );
    assert_eq!(
        doc["introspection_endpoint"],
        format!("{TEST_ISSUER}/oauth/introspect")
    );
    assert_eq!(
        doc["introspection_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
}

#[tokio::test]
async fn the_signing_key_survives_a_restart() {
    let first = spawn_auth().await;
    first
        .create_user("alice", "correct horse battery", "user", "orders:read")
        .await;
    let token = first
        .login("alice", "correct horse battery")
        .await
        .access_token;
    let kid = first.kid.clone();
    let dir = first.shared_dir();
    let key_path = testkit::auth::keys_dir(dir.path()).join(SIGNING_KEY_FILE);
    let mode = std::fs::metadata(&key_path)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    let dir_mode = std::fs::metadata(testkit::auth::keys_dir(dir.path()))
        .expect("key dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700, "key dir mode {dir_mode:o}");
    first.stop().await;

    let second = spawn_auth_with(test_config(dir.path()), Arc::clone(&dir)).await;
    assert_eq!(second.kid, kid, "same key after the restart");
    let principal = second
        .jwks_verifier()
        .await
        .verify(&token)
        .await
        .expect("a token from before the restart still verifies");
    assert_eq!(principal.scopes().collect::<Vec<_>>(), ["orders:read"]);
    // And users survived too.
    second.login("alice", "correct horse battery").await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let auth = spawn_auth().await;
    for path in ["/healthz", "/readyz"] {
        let response = auth.http.get(auth.url(path)).send().await.expect("sent");
        assert_eq!(response.status(), 200, "{path}");
    }
    // Metrics live on their own listener, which no ingress exposes; the public port has none.
    let public = auth
        .http
        .get(auth.url("/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(public.status(), 404);
    let metrics = auth
        .http
        .get(format!("{}/metrics", auth.metrics_url))
        .send()
        .await
        .expect("sent");
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );

    // Readiness follows the database, from the background checks: unready within a few
    // seconds (three failed checks a second apart), never by waiting on the database.
    auth.state.pool.close().await;
    testkit::eventually(
        "readyz reports the database down",
        std::time::Duration::from_secs(10),
        || async {
            let (status, body) = auth.readyz().await;
            status == 503 && body["checks"]["database"] == false
        },
    )
    .await;
    let response = auth
        .http
        .get(auth.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
}
