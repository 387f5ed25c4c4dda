//! Interoperability: an access token of auth-service verifies with an independent JOSE
//! implementation (PyJWT) fed only the served JWKS URL.
//!
//! Needs `python3` with `pyjwt[crypto]`, so it is `#[ignore]`d in a plain `cargo test` (shown as
//! ignored in the summary); `-- --include-ignored` runs it, and it fails without PyJWT.

use std::path::Path;

use std::sync::Arc;

use authn::jwk::Algorithm;
use testkit::auth::{TEST_AUDIENCE, TEST_ISSUER, spawn_auth_with, test_config};
use tokio::process::Command;

async fn pyjwt_available() -> bool {
    Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .output()
        .await
        .is_ok_and(|output| output.status.success())
}

#[tokio::test]
#[ignore = "needs python3 with pyjwt[crypto]: run with -- --include-ignored"]
async fn pyjwt_verifies_an_access_token_with_the_served_jwks() {
    pyjwt_verifies(Algorithm::Rs256).await;
}

#[tokio::test]
#[ignore = "needs python3 with pyjwt[crypto]: run with -- --include-ignored"]
async fn pyjwt_verifies_an_es256_access_token_with_the_served_jwks() {
    pyjwt_verifies(Algorithm::Es256).await;
}

#[tokio::test]
#[ignore = "needs python3 with pyjwt[crypto]: run with -- --include-ignored"]
async fn pyjwt_verifies_an_eddsa_access_token_with_the_served_jwks() {
    pyjwt_verifies(Algorithm::EdDsa).await;
}

/// PyJWT verifies a token of an issuer signing with `alg`, and refuses it under any other
/// algorithm.
async fn pyjwt_verifies(alg: Algorithm) {
    assert!(
        pyjwt_available().await,
        "python3 cannot import jwt and cryptography (pip install 'pyjwt[crypto]')"
    );
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut config = test_config(dir.path());
    config.keys.signing_alg = alg;
    let auth = spawn_auth_with(config, dir).await;
    let user = auth
        .create_user(
            "alice",
            "correct horse battery",
            "user",
            "orders:read orders:write",
        )
        .await;
    let token = auth
        .login("alice", "correct horse battery")
        .await
        .access_token;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pyjwt_verify.py");
    let output = Command::new("python3")
        .arg(&script)
        .args([
            &auth.jwks_url(),
            &token,
            TEST_ISSUER,
            TEST_AUDIENCE,
            alg.as_str(),
        ])
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "PyJWT refused the token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let verified: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("PyJWT prints JSON");
    assert_eq!(verified["kid"], auth.kid.as_str());
    assert_eq!(verified["alg"], alg.as_str());
    assert_eq!(verified["jwk_alg"], alg.as_str());
    let claims = &verified["claims"];
    assert_eq!(claims["iss"], TEST_ISSUER);
    assert_eq!(claims["aud"], TEST_AUDIENCE);
    assert_eq!(claims["sub"], user.id.as_str());
    assert_eq!(claims["scope"], "orders:read orders:write");
    assert_eq!(claims["roles"], serde_json::json!(["user"]));
    assert!(claims["sid"].is_string());

    // PyJWT, too, refuses the token under another algorithm than its key's.
    for other in Algorithm::ALL.into_iter().filter(|a| *a != alg) {
        let output = Command::new("python3")
            .arg(&script)
            .args([
                &auth.jwks_url(),
                &token,
                TEST_ISSUER,
                TEST_AUDIENCE,
                other.as_str(),
            ])
            .output()
            .await
            .expect("python3 runs");
        assert!(!output.status.success(), "PyJWT accepted {alg} as {other}");
    }
}
