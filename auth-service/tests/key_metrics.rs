//! The signing-key age metrics the `AuthSigningKeyTooOld` alert reads
//! (deploy/monitoring/alerts.rules.yaml): when the active key started signing, and the
//! rotation interval in effect. One test in its own binary: the metrics recorder is
//! process-wide, and the key tests elsewhere move their clocks years ahead.

use std::sync::Arc;

use auth_service::Config;
use auth_service::config::{KeyStoreKind, KeysConfig};
use auth_service::keys::SIGNING_KEY_FILE;
use authn::sign::Signer;
use testkit::auth::{keys_dir, spawn_auth, spawn_auth_with, test_config};

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{metrics}"))
        .trim()
        .parse()
        .expect("a number")
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

#[tokio::test]
async fn the_active_keys_activation_and_the_rotation_interval_are_exported() {
    // A fresh issuer creates its first key now and rotates it every 30 days (the default).
    let before = unix_now().floor();
    let auth = spawn_auth().await;
    let metrics = auth.metrics().await;
    let activated = sample(&metrics, "auth_signing_key_activated_timestamp_seconds");
    assert!(
        (before - 1.0..=unix_now() + 1.0).contains(&activated),
        "the first key started signing at start: {activated}, started at {before}"
    );
    assert_eq!(
        sample(&metrics, "auth_signing_key_rotation_interval_seconds"),
        30.0 * 24.0 * 3600.0
    );
    drop(auth);

    // A mounted key never rotates by itself: no interval, whatever AUTH_KEY_ROTATION_INTERVAL.
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let keys = keys_dir(dir.path());
    std::fs::create_dir_all(&keys).expect("dir");
    let signer = Signer::generate().expect("key");
    std::fs::write(
        keys.join(SIGNING_KEY_FILE),
        signer.to_pkcs8_pem().expect("PEM"),
    )
    .expect("write");
    let auth = spawn_auth_with(
        Config {
            keys: KeysConfig {
                store: KeyStoreKind::Mounted,
                ..KeysConfig::default()
            },
            ..test_config(dir.path())
        },
        Arc::clone(&dir),
    )
    .await;
    assert_eq!(auth.kid, signer.kid());
    let metrics = auth.metrics().await;
    assert_eq!(
        sample(&metrics, "auth_signing_key_rotation_interval_seconds"),
        0.0
    );
    let activated = sample(&metrics, "auth_signing_key_activated_timestamp_seconds");
    assert!(
        (before - 1.0..=unix_now() + 1.0).contains(&activated),
        "a mounted key's activation is its file's modification time: {activated}"
    );
}
