//! ES256 and EdDSA signing keys beside RS256 (docs/KEYS.md, "Algorithms"): `AUTH_SIGNING_ALG`
//! for the first key, `keys rotate --alg` and `/v1/admin/keys/rotate?alg=` between
//! algorithms, each key's algorithm kept by every store and published in the JWKS.

use std::path::Path;
use std::sync::Arc;

use auth_service::Config;
use auth_service::config::{KeyStoreKind, KeysConfig};
use authn::jwk::Algorithm;
use authn::jws::UnverifiedJws;
use base64::Engine as _;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;
use testkit::auth::{TestAuth, cli, spawn_auth, spawn_auth_with, test_config};

const PASSWORD: &str = "correct horse battery";

fn config(dir: &Path, alg: Algorithm, database: bool) -> Config {
    let encryption_key = database.then(|| {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).expect("random");
        SecretString::from(base64::engine::general_purpose::STANDARD.encode(bytes))
    });
    Config {
        keys: KeysConfig {
            signing_alg: alg,
            store: if database {
                KeyStoreKind::Database
            } else {
                KeyStoreKind::Files
            },
            encryption_key,
            ..KeysConfig::default()
        },
        ..test_config(dir)
    }
}

async fn jwks(auth: &TestAuth) -> Vec<Value> {
    let jwks: Value = auth
        .http
        .get(auth.jwks_url())
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    jwks["keys"].as_array().expect("keys").clone()
}

fn header(token: &str) -> (String, String) {
    let header = UnverifiedJws::parse(token).expect("a JWS").header;
    (header.alg, header.kid.expect("kid"))
}

async fn issuer_accepts(auth: &TestAuth, token: &str) -> bool {
    let response = auth
        .http
        .get(auth.url("/v1/sessions"))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    match response.status() {
        StatusCode::OK => true,
        StatusCode::UNAUTHORIZED => false,
        other => panic!("unexpected status {other}"),
    }
}

/// What the JWKS publishes for a key of `alg`: its type, curve and members, and nothing
/// private.
fn assert_published(key: &Value, alg: Algorithm) {
    assert_eq!(key["alg"], alg.as_str(), "{key}");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kty"], alg.key_type());
    match alg {
        Algorithm::Rs256 => assert!(key["n"].is_string() && key["crv"].is_null()),
        Algorithm::Es256 => {
            assert_eq!(key["crv"], "P-256");
            assert!(key["x"].is_string() && key["y"].is_string() && key["n"].is_null());
        }
        Algorithm::EdDsa => {
            assert_eq!(key["crv"], "Ed25519");
            assert!(key["x"].is_string() && key["y"].is_null());
        }
    }
    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        assert!(key[private].is_null(), "{private} published");
    }
    let jwk: authn::jwk::Jwk = serde_json::from_value(key.clone()).expect("JWK");
    assert_eq!(
        key["kid"].as_str(),
        Some(jwk.thumbprint().expect("thumbprint").as_str()),
        "the kid is the RFC 7638 thumbprint"
    );
}

async fn first_key_signs_with(alg: Algorithm, database: bool) {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = config(dir.path(), alg, database);
    let auth = spawn_auth_with(config.clone(), dir.clone()).await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let token = auth.login("alice", PASSWORD).await.access_token;
    let (header_alg, kid) = header(&token);
    assert_eq!(header_alg, alg.as_str());
    let keys = jwks(&auth).await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], kid.as_str());
    assert_published(&keys[0], alg);
    assert!(issuer_accepts(&auth, &token).await);
    drop(auth);

    // The stored key keeps its algorithm across a restart, whatever AUTH_SIGNING_ALG says now
    // (it only chooses the algorithm of keys generated from now on).
    let restarted = Config {
        keys: KeysConfig {
            signing_alg: Algorithm::Rs256,
            ..config.keys.clone()
        },
        ..config
    };
    let again = spawn_auth_with(restarted, dir).await;
    let keys = jwks(&again).await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], kid.as_str());
    assert_published(&keys[0], alg);
    assert!(issuer_accepts(&again, &token).await);
    let token = again.login("alice", PASSWORD).await.access_token;
    assert_eq!(header(&token), (alg.as_str().to_owned(), kid));
}

#[tokio::test]
async fn an_es256_first_key_in_the_key_directory() {
    first_key_signs_with(Algorithm::Es256, false).await;
}

#[tokio::test]
async fn an_eddsa_first_key_in_the_key_directory() {
    first_key_signs_with(Algorithm::EdDsa, false).await;
}

#[tokio::test]
async fn es256_and_eddsa_keys_encrypted_in_the_database() {
    first_key_signs_with(Algorithm::Es256, true).await;
    first_key_signs_with(Algorithm::EdDsa, true).await;
}

async fn rotate(auth: &TestAuth, admin: &str, query: &str) -> (StatusCode, Value) {
    let response = auth
        .http
        .post(auth.url(&format!("/v1/admin/keys/rotate{query}")))
        .bearer_auth(admin)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn the_admin_api_rotates_between_algorithms_and_old_tokens_keep_verifying() {
    let auth = spawn_auth().await;
    auth.create_user("root", PASSWORD, "admin,user", "keys:admin")
        .await;
    let admin = auth.login("root", PASSWORD).await.access_token;
    let rs256 = admin.clone();
    assert_eq!(header(&rs256).0, "RS256");

    let (status, body) = rotate(&auth, &admin, "?alg=HS256").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A scheduled-style rotation to ES256: the next key is published as ES256.
    let (status, body) = rotate(&auth, &admin, "?alg=ES256").await;
    assert_eq!(status, 200, "{body}");
    let next = body["created"].as_str().expect("created").to_owned();
    let listed = body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == next.as_str())
        .expect("listed")
        .clone();
    assert_eq!(listed["alg"], "ES256");
    // Asking for another algorithm while that key is pending is refused, not ignored.
    let (status, body) = rotate(&auth, &admin, "?alg=EdDSA&immediate=true").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Promote it: the ES256 key signs, the RS256 token keeps verifying.
    let (status, body) = rotate(&auth, &admin, "?alg=ES256&immediate=true").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["signing_kid"], next.as_str());
    let es256 = auth.login("root", PASSWORD).await.access_token;
    assert_eq!(header(&es256), ("ES256".to_owned(), next.clone()));
    assert!(
        issuer_accepts(&auth, &rs256).await,
        "RS256 token after the rotation"
    );
    assert!(issuer_accepts(&auth, &es256).await);

    // And on to EdDSA at once.
    let (status, body) = rotate(&auth, &admin, "?alg=EdDSA&immediate=true").await;
    assert_eq!(status, 200, "{body}");
    let eddsa = auth.login("root", PASSWORD).await.access_token;
    assert_eq!(header(&eddsa).0, "EdDSA");
    for token in [&rs256, &es256, &eddsa] {
        assert!(issuer_accepts(&auth, token).await, "{}", header(token).0);
    }
    let keys = jwks(&auth).await;
    let mut algs: Vec<&str> = keys
        .iter()
        .map(|k| k["alg"].as_str().expect("alg"))
        .collect();
    algs.sort_unstable();
    assert_eq!(algs, ["ES256", "EdDSA", "RS256"]);
    for key in &keys {
        let alg = Algorithm::from_jose(key["alg"].as_str().expect("alg")).expect("known");
        assert_published(key, alg);
    }

    // The discovery document names all three.
    let discovery: Value = auth
        .http
        .get(auth.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256", "ES256", "EdDSA"])
    );
}

#[tokio::test]
async fn the_command_line_rotates_to_another_algorithm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &'static [&'static str]| {
        let dir = dir.path().to_owned();
        async move {
            cli(env!("CARGO_BIN_EXE_auth-service"), &dir)
                .args(args)
                .env("AUTH_SIGNING_ALG", "EdDSA")
                .output()
                .await
                .expect("auth-service runs")
        }
    };
    let listed = run(&["keys", "list"]).await;
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("active") && l.trim_end().ends_with("EdDSA")),
        "{text}"
    );
    let rotated = run(&["keys", "rotate", "--immediate", "--alg", "es256"]).await;
    let text = String::from_utf8_lossy(&rotated.stdout).into_owned();
    assert!(
        rotated.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(
        text.lines()
            .any(|l| l.contains("active") && l.trim_end().ends_with("ES256")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("retired") && l.trim_end().ends_with("EdDSA")),
        "{text}"
    );
    let refused = run(&["keys", "rotate", "--alg", "HS256"]).await;
    assert!(!refused.status.success());
}
