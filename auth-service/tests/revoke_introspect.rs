//! `POST /oauth/revoke` (RFC 7009) and `POST /oauth/introspect` (RFC 7662).

use serde_json::{Value, json};
use testkit::auth::{TestAuth, expect_error, sid_of, spawn_auth};

const PASSWORD: &str = "correct horse battery";

async fn revoke(auth: &TestAuth, form: &[(&str, &str)]) -> reqwest::Response {
    auth.http
        .post(auth.url("/oauth/revoke"))
        .form(form)
        .send()
        .await
        .expect("sent")
}

async fn introspect_as(auth: &TestAuth, client: (&str, &str), token: &str) -> reqwest::Response {
    auth.http
        .post(auth.url("/oauth/introspect"))
        .basic_auth(client.0, Some(client.1))
        .form(&[("token", token)])
        .send()
        .await
        .expect("sent")
}

async fn introspect_json(auth: &TestAuth, client: (&str, &str), token: &str) -> Value {
    let response = introspect_as(auth, client, token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_session() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let login = auth.login("alice", PASSWORD).await;
    let refresh_token = login.refresh_token.expect("rt");

    let response = revoke(
        &auth,
        &[
            ("token", refresh_token.as_str()),
            ("token_type_hint", "refresh_token"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        !auth
            .session_is_active(&verifier, &sid_of(&login.access_token))
            .await
    );
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
    // Revoking again, or with a wrong hint, is still 200.
    for hint in ["refresh_token", "access_token", "something_else"] {
        let response = revoke(
            &auth,
            &[("token", refresh_token.as_str()), ("token_type_hint", hint)],
        )
        .await;
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test]
async fn revoking_an_access_token_ends_its_session_even_with_a_wrong_hint() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let login = auth.login("alice", PASSWORD).await;
    let response = revoke(
        &auth,
        &[
            ("token", login.access_token.as_str()),
            ("token_type_hint", "refresh_token"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        !auth
            .session_is_active(&verifier, &sid_of(&login.access_token))
            .await
    );
}

#[tokio::test]
async fn unknown_and_invalid_tokens_are_revoked_with_200_and_nothing_changes() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let login = auth.login("alice", PASSWORD).await;
    let forger = testkit::TestIssuer::new();
    let mut forged = forger.claims("alice", "orders:read", &[]);
    forged.iss = testkit::auth::TEST_ISSUER.to_owned();
    forged.sid = Some(sid_of(&login.access_token));
    let forged = forger.token(&forged);
    let long = "x".repeat(9_000);
    for token in ["unknown", "a.b.c", forged.as_str(), long.as_str()] {
        let response = revoke(&auth, &[("token", token)]).await;
        assert_eq!(response.status(), 200);
    }
    assert!(
        auth.session_is_active(&verifier, &sid_of(&login.access_token))
            .await
    );

    // No token at all is a malformed request.
    let (status, body) =
        expect_error(revoke(&auth, &[("token_type_hint", "access_token")]).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn a_token_issued_to_a_client_is_revoked_only_by_that_client() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let app_secret = auth.create_client("mobile-app", "", "").await;
    let other_secret = auth.create_client("other-app", "", "").await;
    let response = auth
        .http
        .post(auth.url("/oauth/token"))
        .basic_auth("mobile-app", Some(&app_secret))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("sent");
    let login = testkit::auth::expect_tokens(response).await;
    let refresh_token = login.refresh_token.expect("rt");
    let sid = sid_of(&login.access_token);

    // Without credentials, or as another client: 200 and nothing happens.
    assert_eq!(
        revoke(&auth, &[("token", &refresh_token)]).await.status(),
        200
    );
    let response = auth
        .http
        .post(auth.url("/oauth/revoke"))
        .basic_auth("other-app", Some(&other_secret))
        .form(&[("token", &refresh_token)])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert!(auth.session_is_active(&verifier, &sid).await);

    // A failed client authentication is invalid_client, as at the token endpoint.
    let response = auth
        .http
        .post(auth.url("/oauth/revoke"))
        .basic_auth("mobile-app", Some("wrong"))
        .form(&[("token", &refresh_token)])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let (status, body) = expect_error(
        revoke(
            &auth,
            &[("token", &refresh_token), ("client_id", "mobile-app")],
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(auth.session_is_active(&verifier, &sid).await);

    // The client it was issued to (client_secret_post here).
    let response = revoke(
        &auth,
        &[
            ("token", refresh_token.as_str()),
            ("client_id", "mobile-app"),
            ("client_secret", app_secret.as_str()),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(!auth.session_is_active(&verifier, &sid).await);
}

#[tokio::test]
async fn a_service_token_cannot_be_revoked() {
    let auth = spawn_auth().await;
    let secret = auth.create_client("svc", "orders:read", "").await;
    let token = auth.client_token("svc", &secret).await.access_token;
    let response = auth
        .http
        .post(auth.url("/oauth/revoke"))
        .basic_auth("svc", Some(&secret))
        .form(&[("token", &token)])
        .send()
        .await
        .expect("sent");
    let (status, body) = expect_error(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_token_type"))
    );
}

#[tokio::test]
async fn introspection_describes_active_tokens_and_nothing_else() {
    let auth = spawn_auth().await;
    let user = auth
        .create_user("alice", PASSWORD, "user", "orders:read orders:write")
        .await;
    let rs_secret = auth.create_client("resource-server", "", "").await;
    let rs = ("resource-server", rs_secret.as_str());
    let login = auth.login("alice", PASSWORD).await;
    let refresh_token = login.refresh_token.clone().expect("rt");
    let sid = sid_of(&login.access_token);
    let claims = testkit::auth::claims_of(&login.access_token);

    let access = introspect_json(&auth, rs, &login.access_token).await;
    assert_eq!(
        access,
        json!({
            "active": true,
            "scope": "orders:read orders:write",
            "sub": user.id,
            "exp": claims["exp"],
            "iat": claims["iat"],
            "iss": testkit::auth::TEST_ISSUER,
            "aud": testkit::auth::TEST_AUDIENCE,
            "jti": claims["jti"],
            "sid": sid,
            "token_type": "Bearer",
        })
    );

    let refresh = introspect_json(&auth, rs, &refresh_token).await;
    assert_eq!(refresh["active"], true);
    assert_eq!(refresh["token_type"], "refresh_token");
    assert_eq!(refresh["sub"], user.id.as_str());
    assert_eq!(refresh["sid"], sid.as_str());
    assert!(refresh["exp"].as_i64().expect("exp") > claims["exp"].as_i64().expect("exp"));
    assert!(
        refresh.get("client_id").is_none(),
        "a first-party login has no client"
    );

    // A rotated refresh token is no longer active (introspection is not a use: no reuse).
    let rotated = auth.refresh(&refresh_token).await;
    assert_eq!(
        introspect_json(&auth, rs, &refresh_token).await,
        json!({"active": false})
    );
    let current = rotated.refresh_token.expect("rt");
    assert_eq!(introspect_json(&auth, rs, &current).await["active"], true);

    // After the session ends, neither its access nor its refresh token is active.
    let response = auth
        .http
        .post(auth.url("/v1/logout"))
        .bearer_auth(&rotated.access_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 204);
    for token in [
        rotated.access_token.as_str(),
        login.access_token.as_str(),
        current.as_str(),
    ] {
        assert_eq!(
            introspect_json(&auth, rs, token).await,
            json!({"active": false})
        );
    }

    // Unknown and forged tokens.
    let forger = testkit::TestIssuer::new();
    let mut forged = forger.claims(&user.id, "orders:read", &[]);
    forged.iss = testkit::auth::TEST_ISSUER.to_owned();
    for token in ["unknown", "a.b.c", forger.token(&forged).as_str()] {
        assert_eq!(
            introspect_json(&auth, rs, token).await,
            json!({"active": false})
        );
    }

    // A service token: active, with its client.
    let secret = auth.create_client("svc", "orders:read", "").await;
    let service = auth.client_token("svc", &secret).await.access_token;
    let described = introspect_json(&auth, rs, &service).await;
    assert_eq!(described["active"], true);
    assert_eq!(described["client_id"], "svc");
    assert!(described.get("sid").is_none());
}

#[tokio::test]
async fn introspection_requires_client_authentication() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let secret = auth.create_client("resource-server", "", "").await;
    let login = auth.login("alice", PASSWORD).await;

    let anonymous = auth
        .http
        .post(auth.url("/oauth/introspect"))
        .form(&[("token", login.access_token.as_str())])
        .send()
        .await
        .expect("sent");
    let (status, body) = expect_error(anonymous).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    let wrong = introspect_as(&auth, ("resource-server", "wrong"), &login.access_token).await;
    assert_eq!(
        wrong.headers()["www-authenticate"],
        r#"Basic realm="auth-service""#
    );
    let (status, body) = expect_error(wrong).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    let unknown = introspect_as(&auth, ("nobody", &secret), &login.access_token).await;
    assert_eq!(unknown.status(), 401);

    // By form too, and a malformed request is invalid_request.
    let response = auth
        .http
        .post(auth.url("/oauth/introspect"))
        .form(&[
            ("client_id", "resource-server"),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .expect("sent");
    let (status, body) = expect_error(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let response = auth
        .http
        .post(auth.url("/oauth/introspect"))
        .basic_auth("resource-server", Some(&secret))
        .json(&json!({"token": login.access_token}))
        .send()
        .await
        .expect("sent");
    let (status, body) = expect_error(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn discovery_names_the_revocation_and_introspection_endpoints() {
    let auth = spawn_auth().await;
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
        discovery["revocation_endpoint"],
        format!("{}/oauth/revoke", testkit::auth::TEST_ISSUER)
    );
    assert_eq!(
        discovery["introspection_endpoint"],
        format!("{}/oauth/introspect", testkit::auth::TEST_ISSUER)
    );
}
