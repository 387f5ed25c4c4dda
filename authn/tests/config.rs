//! The verifier configuration of a benchmark build (feature `bench-auth-off`).
#![cfg(feature = "bench-auth-off")]

use authn::config::{ConfigError, VerifierConfig};
use testkit::TestIssuer;

fn skipping(value: &str) -> VerifierConfig {
    VerifierConfig {
        insecure_skip_verify: Some(value.into()),
        ..VerifierConfig::default()
    }
}

#[tokio::test]
async fn benchmark_builds_switch_verification_off_only_when_asked() {
    let issuer = TestIssuer::new();
    let token = issuer.user_token("alice", "orders:read", &[]);
    // Nothing serves the default JWKS URL: a real verifier cannot verify anything.
    assert!(
        VerifierConfig::default()
            .build_verifier()
            .unwrap()
            .verify(&token)
            .await
            .is_err()
    );
    assert!(
        skipping("false")
            .build_verifier()
            .unwrap()
            .verify(&token)
            .await
            .is_err()
    );
    let off = skipping("true").build_verifier().unwrap();
    assert_eq!(off.verify(&token).await.unwrap().sub(), "alice");
    assert!(matches!(
        skipping("maybe").build_verifier(),
        Err(ConfigError::SkipVerifyInvalid(_))
    ));
}
