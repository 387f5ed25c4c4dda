//! The signing-key lifecycle: `next` → `active` → `retired` → removed at the right times (driven
//! by a controllable clock: `KeyManager::tick(now)`), revocation, manual rotation, the stores
//! (database with encryption at rest, managed files, a mounted directory), several replicas on
//! one database, and the command line.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use auth_service::Config;
use auth_service::config::{KeyStoreKind, KeysConfig, RevocationConfig};
use auth_service::keys::{KeyState, RotationKind, SIGNING_KEY_FILE};
use authn::jws::UnverifiedJws;
use authn::sign::Signer;
use authn::verifier::Policy;
use base64::Engine as _;
use proto::auth::v1::revocation_event::Target;
use reqwest::StatusCode;
use secrecy::SecretString;
use testkit::PgDatabase;
use testkit::auth::{TestAuth, cli, keys_dir, spawn_auth, spawn_auth_with, test_config};
use testkit::eventually;

const PASSWORD: &str = "correct horse battery";
const DAY: i64 = 24 * 3600;

/// A random AES-256 key as `AUTH_KEY_ENCRYPTION_KEY` takes it.
fn new_encryption_key() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("random");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn database_config(dir: &Path, encryption_key: &str) -> Config {
    Config {
        keys: KeysConfig {
            encryption_key: Some(SecretString::from(encryption_key)),
            ..KeysConfig::default()
        },
        ..test_config(dir)
    }
}

fn kid_of(token: &str) -> String {
    UnverifiedJws::parse(token)
        .expect("a JWS")
        .header
        .kid
        .expect("a kid")
}

/// The kids of the served JWKS, in order, and its ETag.
async fn served(auth: &TestAuth) -> (Vec<String>, String) {
    let response = auth.http.get(auth.jwks_url()).send().await.expect("sent");
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let jwks: serde_json::Value = response.json().await.expect("JSON");
    let kids = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect();
    (kids, etag)
}

async fn user_token(auth: &TestAuth, username: &str) -> String {
    auth.login(username, PASSWORD).await.access_token
}

async fn admin_token(auth: &TestAuth) -> String {
    let name = format!("admin-{}", uuid::Uuid::new_v4().simple());
    auth.create_user(&name, PASSWORD, "admin,user", "keys:admin")
        .await;
    user_token(auth, &name).await
}

/// `GET /v1/sessions` with `token`: whether the issuer's own verifier accepts it.
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

async fn admin_post(auth: &TestAuth, token: &str, path: &str) -> (StatusCode, serde_json::Value) {
    let response = auth
        .http
        .post(auth.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn the_lifecycle_follows_the_clock() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let auth = spawn_auth_with(
        database_config(dir.path(), &new_encryption_key()),
        Arc::clone(&dir),
    )
    .await;
    let keys = auth.state.keys.clone();
    let timing = keys.timing();
    assert_eq!(keys.keys().len(), 1);
    let first = keys.keys()[0].clone();
    let (k1, t0) = (first.kid.clone(), first.activates_at);
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let before = user_token(&auth, "alice").await;
    assert_eq!(kid_of(&before), k1);

    let (kids, etag1) = served(&auth).await;
    assert_eq!(kids, [k1.as_str()]);
    let response = auth
        .http
        .get(auth.jwks_url())
        .header("if-none-match", &etag1)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()["etag"], etag1.as_str());
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");

    // The next key is published one pre-publication window before its turn, not earlier.
    let interval = timing
        .rotation_interval
        .expect("scheduled rotation")
        .as_secs() as i64;
    let prepublish = timing.prepublish.as_secs() as i64;
    assert_eq!(interval, 30 * DAY);
    assert_eq!(prepublish, 11 * 60, "2 x max-age + 1 min");
    let due = t0 + interval - prepublish;
    assert!(keys.tick(due - 1).await.expect("tick").is_empty());
    let published = keys.tick(due).await.expect("tick");
    assert_eq!(published.rotation, Some(RotationKind::Scheduled));
    let k2 = published.created.expect("a next key");
    let (kids, etag2) = served(&auth).await;
    assert_eq!(kids, [k1.clone(), k2.clone()], "the next key is published");
    assert_ne!(etag1, etag2);
    let response = auth
        .http
        .get(auth.jwks_url())
        .header("if-none-match", &etag1)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200, "a stale ETag gets the new document");
    assert_eq!(
        kid_of(&user_token(&auth, "alice").await),
        k1,
        "a next key does not sign"
    );

    // At its activation time it signs and the previous key retires.
    assert!(keys.tick(t0 + interval - 1).await.expect("tick").is_empty());
    let activated = keys.tick(t0 + interval).await.expect("tick");
    assert_eq!(activated.activated, [k2.as_str()]);
    assert_eq!(activated.retired, [k1.as_str()]);
    let (kids, _) = served(&auth).await;
    assert_eq!(
        kids,
        [k2.clone(), k1.clone()],
        "the retired key stays published"
    );
    let after = user_token(&auth, "alice").await;
    assert_eq!(kid_of(&after), k2);
    let verifier = auth.jwks_verifier().await;
    verifier
        .verify(&before)
        .await
        .expect("a token signed before the rotation still verifies");
    verifier.verify(&after).await.expect("new tokens verify");
    assert!(issuer_accepts(&auth, &before).await);

    // The retired key is kept until every token it signed has expired, leeway included.
    let retired_at = t0 + interval;
    let ttl = auth.config.access_token_ttl.as_secs() as i64;
    let leeway = Policy::DEFAULT_LEEWAY.as_secs() as i64;
    let removal = retired_at + timing.retention.as_secs() as i64;
    assert!(
        removal >= retired_at + ttl + leeway,
        "a token signed at the retirement is accepted until then"
    );
    let listing = keys.listed(&keys.coverage().await.expect("coverage"));
    let retired = listing.iter().find(|k| k.info.kid == k1).expect("k1");
    assert_eq!(retired.info.state, KeyState::Retired);
    assert_eq!(retired.removed_at, Some(removal));
    assert!(keys.tick(removal - 1).await.expect("tick").is_empty());
    let removed = keys.tick(removal).await.expect("tick");
    assert_eq!(removed.removed, [k1.as_str()]);
    let (kids, _) = served(&auth).await;
    assert_eq!(kids, [k2.as_str()]);
    let rows: Vec<String> = sqlx::query_scalar("SELECT kid FROM signing_keys")
        .fetch_all(&auth.state.pool)
        .await
        .expect("rows");
    assert_eq!(
        rows,
        [k2.as_str()],
        "the removed key's row (and private key) is gone"
    );

    let metrics = auth.metrics().await;
    assert!(
        metrics.contains("auth_signing_keys{state=\"active\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("auth_key_rotations_total{kind=\"scheduled\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_admin_api_lists_and_rotates_keys() {
    let auth = spawn_auth().await;
    let admin = admin_token(&auth).await;
    auth.create_user("bob", PASSWORD, "user", "").await;
    let user = user_token(&auth, "bob").await;
    let k1 = auth.kid.clone();

    let (status, _) = admin_post(&auth, &user, "/v1/admin/keys/rotate").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admins only");
    let response = auth
        .http
        .get(auth.url("/v1/admin/keys"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let listing: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(listing["store"], "files");
    assert_eq!(listing["signing_kid"], k1.as_str());
    assert_eq!(listing["prepublish_secs"], 660);
    assert_eq!(listing["keys"][0]["state"], "active");

    // A manual rotation publishes the next key and activates it after the window.
    let (status, body) = admin_post(&auth, &admin, "/v1/admin/keys/rotate").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rotation"], "manual");
    let k2 = body["created"].as_str().expect("created").to_owned();
    assert_eq!(body["signing_kid"], k1.as_str(), "not signing yet");
    let next = body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == k2.as_str())
        .expect("listed")
        .clone();
    assert_eq!(next["state"], "next");
    assert_eq!(
        next["activates_at"].as_i64().expect("time") - next["created_at"].as_i64().expect("time"),
        660
    );
    // Asking again while one is pending changes nothing.
    let (status, body) = admin_post(&auth, &admin, "/v1/admin/keys/rotate").await;
    assert_eq!(status, 200);
    assert!(body["created"].is_null(), "{body}");

    // `immediate` promotes the pending key (verifiers may know it already).
    let (status, body) = admin_post(&auth, &admin, "/v1/admin/keys/rotate?immediate=true").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rotation"], "immediate");
    assert_eq!(body["activated"], serde_json::json!([k2]));
    assert_eq!(body["signing_kid"], k2.as_str());
    assert_eq!(kid_of(&user_token(&auth, "bob").await), k2);
    assert!(
        issuer_accepts(&auth, &user).await,
        "the old key is retired, not gone"
    );
    let (kids, _) = served(&auth).await;
    assert_eq!(kids, [k2.clone(), k1.clone()]);

    // And a further immediate rotation creates a fresh key.
    let (status, body) = admin_post(&auth, &admin, "/v1/admin/keys/rotate?immediate=true").await;
    assert_eq!(status, 200, "{body}");
    let k3 = body["created"].as_str().expect("created").to_owned();
    assert_eq!(body["signing_kid"], k3.as_str());
    let (mut kids, _) = served(&auth).await;
    assert_eq!(kids[0], k3, "the active key comes first");
    kids.sort();
    let mut expected = [k1, k2, k3];
    expected.sort();
    assert_eq!(kids, expected);
}

#[tokio::test]
async fn revocation_withdraws_the_key_at_once_and_tells_the_verifiers() {
    let auth = spawn_auth().await;
    let k1 = auth.kid.clone();
    auth.create_user("carol", PASSWORD, "user", "").await;
    let user = user_token(&auth, "carol").await;
    let verifier_token = auth.verifier_token().await;
    let mut watcher = auth.watch(&verifier_token, 0).await;
    let (_, head) = watcher.until_heartbeat().await;

    let admin = admin_token(&auth).await;
    let (status, _) = admin_post(&auth, &user, &format!("/v1/admin/keys/{k1}/revoke")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = admin_post(&auth, &admin, "/v1/admin/keys/no-such-kid/revoke").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The only usable key: a replacement takes over first.
    let (status, body) = admin_post(&auth, &admin, &format!("/v1/admin/keys/{k1}/revoke")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], k1.as_str());
    assert_eq!(body["rotation"], "emergency");
    let k2 = body["signing_kid"].as_str().expect("kid").to_owned();
    assert_ne!(k2, k1);
    assert_eq!(body["activated"], serde_json::json!([k2]));

    let (kids, _) = served(&auth).await;
    assert_eq!(kids, [k2.as_str()], "withdrawn from the JWKS at once");
    let event = watcher.next_event().await;
    assert_eq!(event.sequence, head + 1);
    match event.target {
        Some(Target::KeyRevoked(revoked)) => assert_eq!(revoked.kid, k1),
        other => panic!("unexpected event {other:?}"),
    }
    // Held as long as a verifier may serve a stale JWKS with the key in it.
    assert_eq!(event.expires_at, event.occurred_at + 25 * 3600);
    assert!(
        !issuer_accepts(&auth, &user).await,
        "the issuer's own verifier refuses the revoked key"
    );
    assert!(
        !auth.dir().join("keys").join(SIGNING_KEY_FILE).exists(),
        "the revoked private key is deleted"
    );
    let metadata = std::fs::read_to_string(auth.dir().join("keys/keys.json")).expect("metadata");
    assert!(metadata.contains("\"revoked\""), "{metadata}");

    let fresh = user_token(&auth, "carol").await;
    assert_eq!(kid_of(&fresh), k2);
    assert!(issuer_accepts(&auth, &fresh).await);
    let admin = admin_token(&auth).await;
    let (status, body) = admin_post(&auth, &admin, &format!("/v1/admin/keys/{k1}/revoke")).await;
    assert_eq!(status, 200, "revoking twice is harmless: {body}");
    assert!(body["revoked"].is_null(), "no second event: {body}");

    // A pending key can be revoked too; the active one is untouched.
    let (_, body) = admin_post(&auth, &admin, "/v1/admin/keys/rotate").await;
    let k3 = body["created"].as_str().expect("created").to_owned();
    let (status, body) = admin_post(&auth, &admin, &format!("/v1/admin/keys/{k3}/revoke")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["rotation"].is_null());
    assert_eq!(body["signing_kid"], k2.as_str());
    assert_eq!(served(&auth).await.0, [k2]);
}

#[tokio::test]
async fn private_keys_are_encrypted_at_rest_and_a_wrong_key_stops_start_up() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let encryption_key = new_encryption_key();
    let auth = spawn_auth_with(
        database_config(dir.path(), &encryption_key),
        Arc::clone(&dir),
    )
    .await;
    let kid = auth.kid.clone();
    let pem = auth.state.keys.signer().to_pkcs8_pem().expect("PEM");
    let der_b64 = pem.lines().nth(1).expect("a base64 line").to_owned();
    let (stored_kid, stored): (String, String) =
        sqlx::query_as("SELECT kid, private_key FROM signing_keys")
            .fetch_one(&auth.state.pool)
            .await
            .expect("one key");
    assert_eq!(stored_kid, kid);
    assert!(stored.starts_with("v1:"), "{stored}");
    assert!(!stored.contains("PRIVATE KEY"));
    assert!(
        !stored.contains(&der_b64[..32]),
        "the key is not stored in the clear"
    );
    assert!(
        !keys_dir(dir.path()).join(SIGNING_KEY_FILE).exists(),
        "no key file in database mode"
    );
    auth.stop().await;

    // Another encryption key: start-up fails, saying what is wrong and nothing secret.
    let wrong = new_encryption_key();
    let error = auth_service::App::build(database_config(dir.path(), &wrong))
        .await
        .expect_err("a wrong encryption key must not start");
    let message = error.to_string();
    assert!(message.contains("cannot decrypt signing key"), "{message}");
    assert!(message.contains(&kid), "{message}");
    assert!(message.contains("AUTH_KEY_ENCRYPTION_KEY"), "{message}");
    assert!(!message.contains(&wrong) && !message.contains(&encryption_key));

    // Without one, the service refuses rather than start with a key set of its own.
    let error = auth_service::App::build(test_config(dir.path()))
        .await
        .expect_err("files next to keys in the database");
    assert!(
        error
            .to_string()
            .contains("the database holds signing keys"),
        "{error}"
    );
    let error = auth_service::App::build(Config {
        keys: KeysConfig {
            store: KeyStoreKind::Database,
            ..KeysConfig::default()
        },
        ..test_config(dir.path())
    })
    .await
    .expect_err("database without an encryption key");
    assert!(
        error.to_string().contains("needs AUTH_KEY_ENCRYPTION_KEY"),
        "{error}"
    );
    let error = auth_service::App::build(database_config(dir.path(), "c2hvcnQ="))
        .await
        .expect_err("a short encryption key");
    assert!(error.to_string().contains("32 bytes"), "{error}");

    // The right key from a file (a mounted Secret): the same key set.
    let key_file = dir.path().join("encryption-key");
    std::fs::write(&key_file, format!("{encryption_key}\n")).expect("write");
    let again = spawn_auth_with(
        Config {
            keys: KeysConfig {
                encryption_key_file: Some(key_file),
                ..KeysConfig::default()
            },
            ..test_config(dir.path())
        },
        Arc::clone(&dir),
    )
    .await;
    assert_eq!(again.kid, kid);
}

#[tokio::test]
async fn a_key_directory_moves_into_the_database_with_its_kid() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let files = spawn_auth_with(test_config(dir.path()), Arc::clone(&dir)).await;
    files
        .create_user("dave", PASSWORD, "user", "orders:read")
        .await;
    let token = user_token(&files, "dave").await;
    let kid = files.kid.clone();
    files.stop().await;

    let database = spawn_auth_with(
        database_config(dir.path(), &new_encryption_key()),
        Arc::clone(&dir),
    )
    .await;
    assert_eq!(database.kid, kid, "the imported key still signs");
    assert_eq!(database.state.keys.store_kind(), KeyStoreKind::Database);
    database
        .jwks_verifier()
        .await
        .verify(&token)
        .await
        .expect("tokens signed before the move verify");
}

#[tokio::test]
async fn a_mounted_directory_is_read_only_and_follows_the_operator() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let keys = keys_dir(dir.path());
    std::fs::create_dir_all(&keys).expect("dir");
    let write = |name: &str, signer: &Signer| {
        std::fs::write(keys.join(name), signer.to_pkcs8_pem().expect("PEM")).expect("write");
    };
    let (old, new) = (
        Signer::generate().expect("key"),
        Signer::generate().expect("key"),
    );
    write(SIGNING_KEY_FILE, &old);
    write("next.pem", &new);
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
    assert_eq!(auth.kid, old.kid());
    assert_eq!(
        served(&auth).await.0,
        [old.kid().to_owned(), new.kid().to_owned()]
    );
    let admin = admin_token(&auth).await;
    let (status, body) = admin_post(&auth, &admin, "/v1/admin/keys/rotate").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = admin_post(
        &auth,
        &admin,
        &format!("/v1/admin/keys/{}/revoke", old.kid()),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The operator swaps the keys (the Secret is updated); the service follows at its reload.
    std::fs::remove_file(keys.join("next.pem")).expect("rm");
    write(SIGNING_KEY_FILE, &new);
    write("previous.pem", &old);
    auth.state
        .keys
        .tick(authn::unix_now())
        .await
        .expect("reload");
    assert_eq!(auth.state.keys.kid(), new.kid());
    assert_eq!(
        served(&auth).await.0,
        [new.kid().to_owned(), old.kid().to_owned()]
    );
    assert!(
        issuer_accepts(&auth, &admin).await,
        "old tokens still verify"
    );
}

/// Two replicas on one database, ticking at the same moment: one rotates, the other follows.
async fn replicas_rotate_once(a: &TestAuth, b: &TestAuth) {
    let (ka, kb) = (a.state.keys.clone(), b.state.keys.clone());
    assert_eq!(ka.kid(), kb.kid(), "one key set");
    let t0 = ka.keys()[0].activates_at;
    let timing = ka.timing();
    let due = t0 + timing.rotation_interval.expect("interval").as_secs() as i64
        - timing.prepublish.as_secs() as i64;

    let (ra, rb) = tokio::join!(ka.tick(due), kb.tick(due));
    let created: Vec<_> = [ra.expect("a ticks"), rb.expect("b ticks")]
        .into_iter()
        .filter_map(|o| o.created)
        .collect();
    assert_eq!(created.len(), 1, "exactly one replica published a key");
    let next = ka.keys().into_iter().find(|k| k.state == KeyState::Next);
    assert_eq!(next.map(|k| k.kid), created.first().cloned());
    assert_eq!(ka.keys(), kb.keys(), "both replicas see the same set");

    let activates_at = ka
        .keys()
        .iter()
        .find(|k| k.state == KeyState::Next)
        .expect("next")
        .activates_at;
    let (ra, rb) = tokio::join!(ka.tick(activates_at), kb.tick(activates_at));
    let activated: Vec<_> = [ra.expect("a ticks"), rb.expect("b ticks")]
        .into_iter()
        .flat_map(|o| o.activated)
        .collect();
    assert_eq!(activated, created, "activated once");
    assert_eq!(ka.kid(), kb.kid());
    assert_eq!(ka.jwks().etag, kb.jwks().etag);

    // Concurrent manual rotations: still one key.
    let now = authn::unix_now();
    let (ra, rb) = tokio::join!(ka.rotate(now, false), kb.rotate(now, false));
    let created = [ra.expect("a rotates"), rb.expect("b rotates")]
        .into_iter()
        .filter(|o| o.created.is_some())
        .count();
    assert_eq!(created, 1);

    // A revocation at one replica reaches the other through the revocation feed.
    let revoked = ka.kid();
    ka.revoke(&revoked, authn::unix_now())
        .await
        .expect("revoked");
    eventually(
        "the other replica withdraws the revoked key",
        Duration::from_secs(10),
        || async {
            let (kids, _) = served(b).await;
            !kids.contains(&revoked)
        },
    )
    .await;
    assert_eq!(kb.kid(), ka.kid());
}

fn replica_config(config: Config) -> Config {
    Config {
        revocation: RevocationConfig {
            poll_interval: Duration::from_millis(100),
            heartbeat: Duration::from_millis(100),
        },
        ..config
    }
}

#[tokio::test]
async fn two_replicas_on_one_sqlite_database_rotate_once() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = replica_config(database_config(dir.path(), &new_encryption_key()));
    let a = spawn_auth_with(config.clone(), Arc::clone(&dir)).await;
    let b = spawn_auth_with(config, Arc::clone(&dir)).await;
    replicas_rotate_once(&a, &b).await;
}

#[tokio::test]
async fn two_replicas_sharing_a_key_directory_rotate_once() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = replica_config(test_config(dir.path()));
    let a = spawn_auth_with(config.clone(), Arc::clone(&dir)).await;
    let b = spawn_auth_with(config, Arc::clone(&dir)).await;
    replicas_rotate_once(&a, &b).await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn two_replicas_on_one_postgres_database_rotate_once() {
    let db = PgDatabase::create("auth_test").await;
    let encryption_key = new_encryption_key();
    let start = || async {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let config = replica_config(Config {
            database_url: db.url.clone(),
            ..database_config(dir.path(), &encryption_key)
        });
        spawn_auth_with(config, dir).await
    };
    // Started together: the first key is created once.
    let (a, b) = tokio::join!(start(), start());
    replicas_rotate_once(&a, &b).await;
    a.stop().await;
    b.stop().await;
    db.drop().await;
}

#[tokio::test]
async fn the_background_task_rotates_on_schedule() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = Config {
        keys: KeysConfig {
            rotation_interval: Duration::from_secs(3),
            prepublish: Some(Duration::from_secs(2)),
            reload_interval: Duration::from_millis(200),
            ..KeysConfig::default()
        },
        ..test_config(dir.path())
    };
    let auth = spawn_auth_with(config, Arc::clone(&dir)).await;
    let first = auth.kid.clone();
    let response = auth.http.get(auth.jwks_url()).send().await.expect("sent");
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=0",
        "capped by the 2 s pre-publication window"
    );
    eventually(
        "a next key is published",
        Duration::from_secs(10),
        || async { served(&auth).await.0.len() == 2 },
    )
    .await;
    assert_eq!(auth.state.keys.kid(), first, "published before it signs");
    eventually("the next key signs", Duration::from_secs(10), || async {
        auth.state.keys.kid() != first
    })
    .await;
}

/// Runs `auth-service <args>` on the state in `dir`.
async fn auth_cli(dir: &Path, args: &[&str]) -> Output {
    cli(env!("CARGO_BIN_EXE_auth-service"), dir)
        .args(args)
        .output()
        .await
        .expect("auth-service runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn the_command_line_lists_rotates_and_revokes_next_to_a_server() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = Config {
        keys: KeysConfig {
            reload_interval: Duration::from_millis(200),
            ..KeysConfig::default()
        },
        revocation: RevocationConfig {
            poll_interval: Duration::from_millis(100),
            ..RevocationConfig::default()
        },
        ..test_config(dir.path())
    };
    let auth = spawn_auth_with(config, Arc::clone(&dir)).await;
    let k1 = auth.kid.clone();
    auth.create_user("erin", PASSWORD, "user", "").await;
    let token = user_token(&auth, "erin").await;

    let list = auth_cli(dir.path(), &["keys", "list"]).await;
    assert!(list.status.success(), "{}", text(&list));
    let out = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(out.contains(&format!("signing: {k1}")), "{out}");
    assert!(out.contains("active"), "{out}");

    let rotate = auth_cli(dir.path(), &["keys", "rotate", "--immediate"]).await;
    assert!(rotate.status.success(), "{}", text(&rotate));
    let out = String::from_utf8_lossy(&rotate.stdout).into_owned();
    let k2 = out
        .lines()
        .find_map(|l| l.strip_prefix("created key "))
        .expect("the new kid")
        .to_owned();
    assert!(out.contains(&format!("key {k2} signs now")), "{out}");
    eventually(
        "the server signs with the key the command created",
        Duration::from_secs(10),
        || async { auth.state.keys.kid() == k2 },
    )
    .await;

    let unknown = auth_cli(dir.path(), &["keys", "revoke", "nope"]).await;
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("no signing key"),
        "{}",
        text(&unknown)
    );
    let revoke = auth_cli(dir.path(), &["keys", "revoke", &k1]).await;
    assert!(revoke.status.success(), "{}", text(&revoke));
    assert!(
        String::from_utf8_lossy(&revoke.stdout).contains(&format!("revoked key {k1}")),
        "{}",
        text(&revoke)
    );
    eventually(
        "the server withdraws the key the command revoked",
        Duration::from_secs(10),
        || async { !served(&auth).await.0.contains(&k1) },
    )
    .await;
    assert!(!issuer_accepts(&auth, &token).await);
    let fresh = user_token(&auth, "erin").await;
    assert_eq!(kid_of(&fresh), k2);
    assert!(issuer_accepts(&auth, &fresh).await);
}
