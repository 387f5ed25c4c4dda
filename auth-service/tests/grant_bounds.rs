//! The bound on the roles and scopes a token may carry (`scope::check_grants`): refused with a
//! 400 naming the limit by the admin API, with an error by the CLI, and never exceeded by an
//! issued token, whatever the signing algorithm.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use auth_service::scope::{MAX_ACCESS_TOKEN_BYTES, MAX_GRANT_BYTES, MAX_ROLES, MAX_SCOPES};
use authn::jwk::Algorithm;
use http::StatusCode;
use serde_json::{Value, json};
use testkit::auth::{
    TestAuth, cli, expect_error, output_with_stdin, spawn_auth, spawn_auth_with, test_config,
};

const PASSWORD: &str = "correct horse battery";

/// `n` distinct role (or scope) names of `len` characters each.
fn names(prefix: &str, n: usize, len: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let name = format!("{prefix}{i}-");
            format!("{name}{}", "x".repeat(len.saturating_sub(name.len())))
        })
        .collect()
}

async fn admin_token(auth: &TestAuth) -> String {
    auth.create_user("root", PASSWORD, "admin,user", "users:admin")
        .await;
    auth.login("root", PASSWORD).await.access_token
}

async fn call(
    auth: &TestAuth,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = auth
        .http
        .request(method, auth.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_admin_api_refuses_more_roles_or_scopes_than_a_token_may_carry() {
    let auth = spawn_auth().await;
    let root = admin_token(&auth).await;
    let post = |body: Value| call(&auth, reqwest::Method::POST, "/v1/admin/users", &root, body);

    let (status, body) = post(json!({
        "username": "many-roles",
        "password": PASSWORD,
        "roles": names("r", MAX_ROLES + 1, 8),
    }))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_request");
    let description = body["error_description"].as_str().expect("description");
    assert!(
        description.contains("too many roles: 65, at most 64"),
        "{description}"
    );

    let (status, body) = post(json!({
        "username": "many-scopes",
        "password": PASSWORD,
        "scopes": names("s", MAX_SCOPES + 1, 8).join(" "),
    }))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .expect("description")
            .contains("at most 64")
    );

    // At the bound is fine: 32 roles of 61 characters take 2,048 bytes.
    let at_bound = names("r", 32, 61);
    let (status, created) = post(json!({
        "username": "at-bound",
        "password": PASSWORD,
        "roles": at_bound,
    }))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();

    // One scope more is over it, and the user stays as it was.
    let path = format!("/v1/admin/users/{id}");
    let (status, body) = call(
        &auth,
        reqwest::Method::PATCH,
        &path,
        &root,
        json!({"scopes": "orders:read"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let description = body["error_description"].as_str().expect("description");
    assert!(
        description.contains(&format!("at most {MAX_GRANT_BYTES}")),
        "{description}"
    );
    let (status, body) = call(
        &auth,
        reqwest::Method::PATCH,
        &path,
        &root,
        json!({"roles": names("r", MAX_ROLES + 1, 4)}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, user) = call(&auth, reqwest::Method::GET, &path, &root, Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["roles"], created["roles"]);
    assert_eq!(user["scopes"], "");
    auth.stop().await;
}

/// Runs `auth-service <args>` on the data directory `dir`, feeding `stdin`.
async fn auth_cli(dir: &Path, args: &[&str], stdin: &str) -> Output {
    output_with_stdin(
        cli(env!("CARGO_BIN_EXE_auth-service"), dir).args(args),
        stdin,
    )
    .await
}

#[tokio::test]
async fn the_cli_refuses_more_roles_or_scopes_than_a_token_may_carry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let too_many = names("r", MAX_ROLES + 1, 4).join(",");
    let output = auth_cli(
        dir.path(),
        &[
            "user",
            "add",
            "--username",
            "carol",
            "--roles",
            &too_many,
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("too many roles: 65, at most 64"),
        "{stderr}"
    );

    let output = auth_cli(
        dir.path(),
        &[
            "user",
            "add",
            "--username",
            "carol",
            "--roles",
            "user",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let long_scopes = names("s", 40, 60).join(" ");
    let output = auth_cli(
        dir.path(),
        &[
            "user",
            "update",
            "--username",
            "carol",
            "--scopes",
            &long_scopes,
        ],
        "",
    )
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("at most {MAX_GRANT_BYTES}")),
        "{stderr}"
    );
    let output = auth_cli(dir.path(), &["user", "list"], "").await;
    let listing = String::from_utf8_lossy(&output.stdout);
    let carol = listing
        .lines()
        .find(|l| l.contains("carol"))
        .expect("carol listed");
    assert!(!carol.contains("s0-"), "unchanged: {carol}");
}

/// The largest grants the bound allows make a token under `MAX_ACCESS_TOKEN_BYTES` with every
/// algorithm; grants stored over the bound (before it existed) get no token at all.
#[tokio::test]
async fn no_issued_token_is_over_the_bound_whatever_the_algorithm() {
    for alg in [Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa] {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let mut config = test_config(dir.path());
        config.keys.signing_alg = alg;
        let auth = spawn_auth_with(config, dir).await;
        // Half the bytes in roles, half in scopes: both claims at their longest.
        let roles = names("r", 16, 61).join(",");
        let scopes = names("s", 16, 63).join(" ");
        auth.create_user("largest", PASSWORD, &roles, &scopes).await;
        let token = auth.login("largest", PASSWORD).await.access_token;
        assert!(
            token.len() <= MAX_ACCESS_TOKEN_BYTES,
            "{alg:?}: {} bytes",
            token.len()
        );

        // As if written before the bound: straight into the row.
        let over = names("r", MAX_ROLES + 1, 8).join(" ");
        sqlx::query("UPDATE users SET roles = $1 WHERE username = 'largest'")
            .bind(&over)
            .execute(&auth.state.pool)
            .await
            .expect("updated");
        let (status, body) = expect_error(
            auth.post_token(&[
                ("grant_type", "password"),
                ("username", "largest"),
                ("password", PASSWORD),
            ])
            .await,
        )
        .await;
        assert_eq!(status, 500, "{alg:?}: {body}");
        auth.stop().await;
    }
}

/// The bytes of an access token per algorithm, for a usual user and at the bound: the numbers
/// of docs/MODES.md, "Token size". Run with `--nocapture` to read them.
#[tokio::test]
async fn token_sizes_per_algorithm() {
    let mut lines = Vec::new();
    for alg in [Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa] {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let mut config = test_config(dir.path());
        config.keys.signing_alg = alg;
        let auth = spawn_auth_with(config, dir).await;
        auth.create_user("usual", PASSWORD, "user", "orders:read orders:write")
            .await;
        let usual = auth.login("usual", PASSWORD).await.access_token;
        let roles = names("r", 16, 61).join(",");
        let scopes = names("s", 16, 63).join(" ");
        auth.create_user("largest", PASSWORD, &roles, &scopes).await;
        let largest = auth.login("largest", PASSWORD).await.access_token;
        let secret = auth.create_client("svc", "orders:read", "").await;
        let service = auth.client_token("svc", &secret).await.access_token;
        let (header, rest) = usual.split_once('.').expect("JWS");
        let signature = rest.rsplit_once('.').expect("JWS").1;
        assert!(usual.len() < largest.len() && largest.len() <= MAX_ACCESS_TOKEN_BYTES);
        lines.push(format!(
            "{alg:?}: usual user {} bytes (header {}, signature {}), service {} bytes, at the bound {} bytes",
            usual.len(),
            header.len(),
            signature.len(),
            service.len(),
            largest.len()
        ));
        auth.stop().await;
    }
    eprintln!("{}", lines.join("\n"));
}
