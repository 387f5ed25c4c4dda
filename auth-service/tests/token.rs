//! `POST /oauth/token`: the three grants, refresh rotation, and every way a request is refused.

use auth_service::scope::{ScopeSet, parse_roles};
use authn::claims::Audience;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use testkit::auth::{TEST_AUDIENCE, TEST_ISSUER, expect_error, expect_tokens, spawn_auth};

const PASSWORD: &str = "correct horse battery";

fn jose_header(token: &str) -> serde_json::Value {
    let header = token.split('.').next().expect("header segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("JSON")
}

async fn count(auth: &testkit::auth::TestAuth, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&auth.state.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn password_grant_issues_an_access_token_that_verifies_with_the_served_jwks() {
    let auth = spawn_auth().await;
    let user = auth
        .create_user("alice", PASSWORD, "user", "orders:read orders:write")
        .await;

    let response = auth
        .post_token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let tokens = expect_tokens(response).await;
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, 300);
    assert_eq!(tokens.scope.as_deref(), Some("orders:read orders:write"));
    assert!(tokens.refresh_token.is_some());

    let header = jose_header(&tokens.access_token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], auth.kid.as_str());

    let principal = auth
        .jwks_verifier()
        .await
        .verify(&tokens.access_token)
        .await
        .expect("the token verifies with the published key");
    let claims = principal.claims();
    assert_eq!(claims.iss, TEST_ISSUER);
    assert_eq!(claims.aud, Audience::One(TEST_AUDIENCE.to_owned()));
    assert_eq!(claims.sub, user.id);
    assert_eq!(claims.scope.as_deref(), Some("orders:read orders:write"));
    assert_eq!(claims.roles, ["user"]);
    assert_eq!(claims.exp - claims.iat, 300);
    assert_eq!(claims.nbf, Some(claims.iat));
    assert!(uuid::Uuid::parse_str(&claims.jti).is_ok(), "jti is a UUID");
    assert_eq!(claims.client_id, None);
    let sid = claims.sid.as_deref().expect("user tokens carry a sid");
    assert!(
        auth.state.sessions.is_active(sid).await.expect("lookup"),
        "the session of the login is active"
    );
}

#[tokio::test]
async fn every_login_gets_its_own_session_and_a_fresh_jti() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.jwks_verifier().await;
    let first = verifier
        .verify(&auth.login("alice", PASSWORD).await.access_token)
        .await
        .expect("valid");
    let second = verifier
        .verify(&auth.login("alice", PASSWORD).await.access_token)
        .await
        .expect("valid");
    assert_ne!(first.sid(), second.sid());
    assert_ne!(first.jti(), second.jti());
}

#[tokio::test]
async fn a_login_may_ask_for_fewer_scopes_but_not_more() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read orders:write")
        .await;

    let narrow = expect_tokens(
        auth.post_token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("scope", "orders:read"),
        ])
        .await,
    )
    .await;
    assert_eq!(narrow.scope.as_deref(), Some("orders:read"));

    let (status, body) = expect_error(
        auth.post_token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("scope", "orders:read sessions:check"),
        ])
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test]
async fn wrong_password_unknown_user_and_disabled_user_get_the_same_answer() {
    let auth = spawn_auth().await;
    let user = auth
        .create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let mallory = auth
        .create_user("mallory", PASSWORD, "user", "orders:read")
        .await;
    auth.disable_user(&mallory.id).await;

    let mut answers = Vec::new();
    for (username, password) in [
        ("alice", "wrong password"),
        ("nobody", PASSWORD),
        ("not a valid name!", PASSWORD),
        ("mallory", PASSWORD),
    ] {
        let response = auth
            .post_token(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ])
            .await;
        let status = response.status();
        let body = response.text().await.expect("body");
        answers.push((status, body));
    }
    assert_eq!(answers[0].0, 400);
    assert!(answers[0].1.contains("invalid_grant"), "{}", answers[0].1);
    for other in &answers[1..] {
        assert_eq!(other, &answers[0]);
    }
    assert_eq!(count(&auth, "sessions").await, 0, "no session was created");

    // The right password still works for the enabled user.
    let tokens = auth.login("alice", PASSWORD).await;
    let principal = auth
        .jwks_verifier()
        .await
        .verify(&tokens.access_token)
        .await
        .expect("valid");
    assert_eq!(principal.sub(), user.id);
}

/// An unknown user costs what a wrong password costs: one Argon2 verification, against a
/// dummy hash (counted, not timed: a test asserts no latency). Without it an unknown user is
/// answered many times faster, which tells an attacker which usernames exist.
#[tokio::test]
async fn an_unknown_user_costs_one_argon2_verification_like_a_wrong_password() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let passwords = &auth.state.passwords;
    for username in ["alice", "nobody"] {
        let before = passwords.verifications();
        let (status, body) = expect_error(
            auth.post_token(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", "wrong password"),
            ])
            .await,
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        assert_eq!(
            passwords.verifications() - before,
            1,
            "Argon2 verifications for {username}"
        );
    }
}

#[tokio::test]
async fn passwords_client_secrets_and_refresh_tokens_are_stored_only_hashed() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let client_secret = auth.create_client("web-app", "orders:read", "").await;
    auth.client_token("web-app", &client_secret).await;
    let login = auth.login("alice", PASSWORD).await;
    let first = login.refresh_token.expect("refresh token");
    let second = auth
        .refresh(&first)
        .await
        .refresh_token
        .expect("refresh token");

    // The database files themselves, write-ahead log included: no row, live or rotated, and no
    // index holds any of them in clear.
    let mut stored = Vec::new();
    for file in ["auth.db", "auth.db-wal"] {
        if let Ok(bytes) = std::fs::read(auth.dir().join(file)) {
            stored.extend(bytes);
        }
    }
    assert!(stored.len() > 4096, "the database files were not found");
    for (what, secret) in [
        ("password", PASSWORD),
        ("client secret", client_secret.as_str()),
        ("rotated refresh token", first.as_str()),
        ("current refresh token", second.as_str()),
    ] {
        assert!(
            !stored
                .windows(secret.len())
                .any(|window| window == secret.as_bytes()),
            "the {what} is stored in clear"
        );
    }
}

#[tokio::test]
async fn a_client_may_authenticate_a_password_login_and_is_named_in_the_token() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let secret = auth.create_client("web-app", "", "").await;

    let response = auth
        .http
        .post(auth.url("/oauth/token"))
        .basic_auth("web-app", Some(&secret))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("sent");
    let tokens = expect_tokens(response).await;
    let verifier = auth.jwks_verifier().await;
    let principal = verifier.verify(&tokens.access_token).await.expect("valid");
    assert_eq!(principal.client_id(), Some("web-app"));

    // The refresh token is bound to that client: only it can use it.
    let refresh_token = tokens.refresh_token.expect("refresh token");
    let (status, body) = expect_error(
        auth.post_token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ])
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // A wrong client secret fails the login even with the right password.
    let response = auth
        .http
        .post(auth.url("/oauth/token"))
        .basic_auth("web-app", Some("not the secret"))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Basic realm="auth-service""#
    );
    let (status, body) = expect_error(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test]
async fn refresh_rotates_the_token_and_the_old_one_stops_working() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.jwks_verifier().await;
    let login = auth.login("alice", PASSWORD).await;
    let first_refresh = login.refresh_token.clone().expect("refresh token");
    let login_sid = verifier
        .verify(&login.access_token)
        .await
        .expect("valid")
        .sid()
        .map(str::to_owned);

    let refreshed = auth.refresh(&first_refresh).await;
    let second_refresh = refreshed
        .refresh_token
        .clone()
        .expect("a new refresh token");
    assert_ne!(second_refresh, first_refresh);
    let principal = verifier
        .verify(&refreshed.access_token)
        .await
        .expect("the refreshed access token verifies");
    assert_eq!(
        principal.sid().map(str::to_owned),
        login_sid,
        "same session"
    );

    let again = auth.refresh(&second_refresh).await;
    assert!(again.refresh_token.is_some());

    // The used one no longer works (and its reuse ends the session: see `refresh_reuse.rs`).
    let (status, body) = expect_error(
        auth.post_token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first_refresh),
        ])
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // The rotation chain is recorded.
    let replaced_by: Option<String> =
        sqlx::query_scalar("SELECT replaced_by FROM refresh_tokens WHERE token_hash = $1")
            .bind(auth_service::crypto::token_hash(&first_refresh))
            .fetch_one(&auth.state.pool)
            .await
            .expect("row");
    assert_eq!(
        replaced_by,
        Some(auth_service::crypto::token_hash(&second_refresh))
    );
}

#[tokio::test]
async fn refresh_picks_up_changed_roles_and_scopes() {
    let auth = spawn_auth().await;
    let user = auth
        .create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let login = auth.login("alice", PASSWORD).await;

    auth_service::accounts::change_user(
        &auth.state.pool,
        auth.state.sessions.as_ref(),
        &auth.state.revocations,
        &user.id,
        auth_service::accounts::GrantChange {
            roles: Some(parse_roles("admin,user").expect("roles")),
            scopes: Some(ScopeSet::parse("orders:read orders:write").expect("scopes")),
        },
    )
    .await
    .expect("updated")
    .expect("the user exists");

    let refreshed = auth
        .refresh(login.refresh_token.as_deref().expect("refresh token"))
        .await;
    assert_eq!(refreshed.scope.as_deref(), Some("orders:read orders:write"));
    let principal = auth
        .jwks_verifier()
        .await
        .verify(&refreshed.access_token)
        .await
        .expect("valid");
    assert_eq!(principal.claims().roles, ["admin", "user"]);

    // A narrower scope may be asked for; a wider one may not.
    let narrow = expect_tokens(
        auth.post_token(&[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                refreshed.refresh_token.as_deref().expect("rt"),
            ),
            ("scope", "orders:read"),
        ])
        .await,
    )
    .await;
    assert_eq!(narrow.scope.as_deref(), Some("orders:read"));
    let (status, body) = expect_error(
        auth.post_token(&[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                narrow.refresh_token.as_deref().expect("rt"),
            ),
            ("scope", "orders:read sessions:check"),
        ])
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );

    // A disabled user cannot refresh.
    auth.disable_user(&user.id).await;
    let (status, body) = expect_error(
        auth.post_token(&[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                narrow.refresh_token.as_deref().expect("rt"),
            ),
        ])
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn a_login_with_a_narrow_scope_never_widens_on_refresh() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read orders:write")
        .await;
    let login = expect_tokens(
        auth.post_token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("scope", "orders:read"),
        ])
        .await,
    )
    .await;
    let refreshed = auth
        .refresh(login.refresh_token.as_deref().expect("rt"))
        .await;
    assert_eq!(refreshed.scope.as_deref(), Some("orders:read"));
}

#[tokio::test]
async fn of_two_concurrent_refreshes_with_one_token_exactly_one_wins() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    for _ in 0..5 {
        let refresh_token = auth
            .login("alice", PASSWORD)
            .await
            .refresh_token
            .expect("refresh token");
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ];
        let (a, b) = tokio::join!(auth.post_token(&form), auth.post_token(&form));
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 400]);
        let loser = if a.status() == 400 { a } else { b };
        let (_, body) = expect_error(loser).await;
        assert_eq!(body["error"], "invalid_grant");
    }
}

#[tokio::test]
async fn client_credentials_by_basic_and_by_form() {
    let auth = spawn_auth().await;
    // `@` must be form-encoded inside HTTP Basic (RFC 6749 §2.3.1).
    let secret = auth
        .create_client("reporting@svc", "orders:read sessions:check", "service")
        .await;
    let verifier = auth.jwks_verifier().await;

    let encoded_id = "reporting%40svc";
    let basic = auth
        .http
        .post(auth.url("/oauth/token"))
        .basic_auth(encoded_id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("sent");
    let tokens = expect_tokens(basic).await;
    assert!(
        tokens.refresh_token.is_none(),
        "no refresh token for clients"
    );
    assert_eq!(tokens.scope.as_deref(), Some("orders:read sessions:check"));
    let principal = verifier.verify(&tokens.access_token).await.expect("valid");
    assert_eq!(principal.sub(), "reporting@svc");
    assert_eq!(principal.client_id(), Some("reporting@svc"));
    assert_eq!(principal.sid(), None);
    assert_eq!(principal.claims().roles, ["service"]);

    let form = auth
        .post_token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "reporting@svc"),
            ("client_secret", &secret),
            ("scope", "orders:read"),
        ])
        .await;
    let tokens = expect_tokens(form).await;
    assert_eq!(tokens.scope.as_deref(), Some("orders:read"));
    assert!(verifier.verify(&tokens.access_token).await.is_ok());

    let (status, body) = expect_error(
        auth.post_token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "reporting@svc"),
            ("client_secret", &secret),
            ("scope", "orders:write"),
        ])
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
}

#[tokio::test]
async fn client_credentials_refusals() {
    let auth = spawn_auth().await;
    let secret = auth.create_client("svc", "orders:read", "").await;

    // Both methods at once.
    let both = auth
        .http
        .post(auth.url("/oauth/token"))
        .basic_auth("svc", Some(&secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .expect("sent");
    let (status, body) = expect_error(both).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // A wrong secret by Basic: 401 with a Basic challenge.
    let wrong = auth
        .http
        .post(auth.url("/oauth/token"))
        .basic_auth("svc", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("sent");
    assert_eq!(
        wrong.headers()["www-authenticate"],
        r#"Basic realm="auth-service""#
    );
    let (status, wrong_body) = expect_error(wrong).await;
    assert_eq!(
        (status, wrong_body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    // An unknown client looks exactly like a wrong secret.
    let unknown = auth
        .http
        .post(auth.url("/oauth/token"))
        .basic_auth("nobody", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("sent");
    let (status, unknown_body) = expect_error(unknown).await;
    assert_eq!((status, &unknown_body), (401, &wrong_body));

    // A wrong secret in the body: 401, no challenge (the client did not use Basic).
    let wrong_post = auth
        .post_token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            ("client_secret", "wrong"),
        ])
        .await;
    assert!(wrong_post.headers().get("www-authenticate").is_none());
    let (status, body) = expect_error(wrong_post).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    // No credentials at all, or an id without a secret.
    for form in [
        vec![("grant_type", "client_credentials")],
        vec![("grant_type", "client_credentials"), ("client_id", "svc")],
    ] {
        let (status, body) = expect_error(auth.post_token(&form).await).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
    }

    // Malformed Basic credentials.
    let malformed = auth
        .http
        .post(auth.url("/oauth/token"))
        .header("authorization", "Basic %%%not-base64")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("sent");
    let (status, body) = expect_error(malformed).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test]
async fn malformed_requests_get_rfc6749_errors_and_write_nothing() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let url = auth.url("/oauth/token");
    let form_type = "application/x-www-form-urlencoded";

    let cases: Vec<(&str, Option<&str>, Vec<u8>, &str)> = vec![
        (
            "unknown grant",
            Some(form_type),
            b"grant_type=implicit&code=x".to_vec(),
            "unsupported_grant_type",
        ),
        (
            "code without its redirect_uri",
            Some(form_type),
            b"grant_type=authorization_code&code=x".to_vec(),
            "invalid_request",
        ),
        (
            "missing grant_type",
            Some(form_type),
            b"username=alice".to_vec(),
            "invalid_request",
        ),
        ("empty body", Some(form_type), Vec::new(), "invalid_request"),
        (
            "missing username",
            Some(form_type),
            format!("grant_type=password&password={PASSWORD}").into_bytes(),
            "invalid_request",
        ),
        (
            "missing password",
            Some(form_type),
            b"grant_type=password&username=alice".to_vec(),
            "invalid_request",
        ),
        (
            "missing refresh_token",
            Some(form_type),
            b"grant_type=refresh_token".to_vec(),
            "invalid_request",
        ),
        (
            "JSON body",
            Some("application/json"),
            br#"{"grant_type":"password"}"#.to_vec(),
            "invalid_request",
        ),
        (
            "no content type",
            None,
            b"grant_type=password&username=alice&password=x".to_vec(),
            "invalid_request",
        ),
        (
            "invalid UTF-8",
            Some(form_type),
            b"grant_type=password&username=\xff\xfe&password=x".to_vec(),
            "invalid_request",
        ),
        (
            "percent-encoded invalid UTF-8",
            Some(form_type),
            b"grant_type=password&username=%FF&password=x".to_vec(),
            "invalid_request",
        ),
        (
            "repeated parameter",
            Some(form_type),
            format!("grant_type=password&username=alice&username=bob&password={PASSWORD}")
                .into_bytes(),
            "invalid_request",
        ),
        (
            "malformed scope",
            Some(form_type),
            format!("grant_type=password&username=alice&password={PASSWORD}&scope=%22quoted%22")
                .into_bytes(),
            "invalid_scope",
        ),
        (
            "unknown refresh token",
            Some(form_type),
            b"grant_type=refresh_token&refresh_token=nope".to_vec(),
            "invalid_grant",
        ),
    ];
    for (name, content_type, body, expected) in cases {
        let mut request = auth.http.post(&url).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("sent");
        assert_eq!(response.headers()["cache-control"], "no-store", "{name}");
        let (status, body) = expect_error(response).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"], expected, "{name}: {body}");
        assert!(body["error_description"].is_string(), "{name}: {body}");
    }

    // A 1 MB body is refused early, in the RFC 6749 shape too.
    let huge = format!(
        "grant_type=password&username=alice&password={}",
        "x".repeat(1 << 20)
    );
    let response = auth
        .http
        .post(&url)
        .header("content-type", form_type)
        .body(huge)
        .send()
        .await
        .expect("sent");
    let (status, body) = expect_error(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("invalid_request"))
    );

    // Only POST.
    let get = auth.http.get(&url).send().await.expect("sent");
    assert_eq!(get.status(), 405);

    assert_eq!(count(&auth, "sessions").await, 0, "nothing was written");
    assert_eq!(
        count(&auth, "refresh_tokens").await,
        0,
        "nothing was written"
    );
}

#[tokio::test]
async fn issued_tokens_and_errors_are_counted() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    auth.login("alice", PASSWORD).await;
    let _ = auth.post_token(&[("grant_type", "nonsense")]).await;

    let metrics = auth.metrics().await;
    assert!(
        metrics.contains(r#"auth_tokens_issued_total{grant="password"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"auth_token_errors_total{error="unsupported_grant_type"}"#),
        "{metrics}"
    );
}
