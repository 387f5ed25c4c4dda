//! User administration (`/v1/admin/users`): listing, creating and changing users, what bad input
//! answers, the role-and-scope rule of every admin route, and what a change of roles or scopes
//! does to the user's tokens (refused as stale, by the issuer's own API, `CheckSession` and the
//! revocation feed) and sessions (they stay: a refresh carries the new claims).

use http::StatusCode;
use proto::auth::v1::CheckSessionRequest;
use proto::auth::v1::revocation_event::Target;
use serde_json::{Value, json};
use testkit::auth::{TestAuth, claims_of, sid_of, spawn_auth};

const PASSWORD: &str = "correct horse battery";
const STALE: &str = "the user's claims changed; refresh the token";

/// An administrator's token with `scope`.
async fn admin(auth: &TestAuth, scope: &str) -> String {
    let name = format!("admin-{}", uuid::Uuid::new_v4().simple());
    auth.create_user(
        &name,
        PASSWORD,
        "admin,user",
        "orders:read users:admin keys:admin",
    )
    .await;
    let response = auth
        .post_token(&[
            ("grant_type", "password"),
            ("username", &name),
            ("password", PASSWORD),
            ("scope", scope),
        ])
        .await;
    testkit::auth::expect_tokens(response).await.access_token
}

async fn call(
    auth: &TestAuth,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = auth.http.request(method, auth.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"))
    };
    (status, body)
}

async fn patch(auth: &TestAuth, id: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let path = format!("/v1/admin/users/{id}");
    call(auth, reqwest::Method::PATCH, &path, token, Some(body)).await
}

async fn sessions_status(auth: &TestAuth, token: &str) -> (StatusCode, Value) {
    call(auth, reqwest::Method::GET, "/v1/sessions", token, None).await
}

#[tokio::test]
async fn an_admin_lists_creates_reads_and_changes_users() {
    let auth = spawn_auth().await;
    let root = admin(&auth, "users:admin").await;

    let (status, created) = call(
        &auth,
        reqwest::Method::POST,
        "/v1/admin/users",
        &root,
        Some(json!({
            "username": "carol",
            "password": PASSWORD,
            "roles": ["user"],
            "scopes": "orders:write orders:read",
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["username"], "carol");
    assert_eq!(created["roles"], json!(["user"]));
    assert_eq!(created["scopes"], "orders:read orders:write", "canonical");
    assert_eq!(created["enabled"], true);
    assert!(created.get("claims_changed_at").is_none());
    assert!(created.get("password").is_none() && created.get("password_hash").is_none());
    auth.login("carol", PASSWORD).await;

    let (status, list) = call(&auth, reqwest::Method::GET, "/v1/admin/users", &root, None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|u| u["username"].as_str().expect("username").to_owned())
        .collect();
    assert!(names.contains(&"carol".to_owned()), "{names:?}");
    let (status, one) = call(
        &auth,
        reqwest::Method::GET,
        &format!("/v1/admin/users/{id}"),
        &root,
        None,
    )
    .await;
    assert_eq!((status, &one), (StatusCode::OK, &created));

    let (status, changed) = patch(
        &auth,
        &id,
        &root,
        json!({"roles": ["user", "auditor"], "scopes": "orders:read"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["roles"], json!(["auditor", "user"]));
    assert_eq!(changed["scopes"], "orders:read");
    assert!(changed["claims_changed_at"].is_i64());

    let (status, disabled) = patch(&auth, &id, &root, json!({"enabled": false})).await;
    assert_eq!(
        (status, &disabled["enabled"]),
        (StatusCode::OK, &json!(false))
    );
    let (status, enabled) = patch(&auth, &id, &root, json!({"enabled": true})).await;
    assert_eq!(
        (status, &enabled["enabled"]),
        (StatusCode::OK, &json!(true))
    );
    assert_eq!(enabled["roles"], json!(["auditor", "user"]), "unchanged");
}

#[tokio::test]
async fn bad_input_is_a_400_that_says_what_is_wrong_unknown_ids_404_taken_names_409() {
    let auth = spawn_auth().await;
    let root = admin(&auth, "users:admin").await;
    let alice = auth
        .create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let create = |body: Value| {
        let auth = &auth;
        let root = &root;
        async move {
            call(
                auth,
                reqwest::Method::POST,
                "/v1/admin/users",
                root,
                Some(body),
            )
            .await
        }
    };

    for (body, says) in [
        (
            json!({"username": "bob", "password": PASSWORD, "roles": ["a b"]}),
            "invalid roles",
        ),
        (
            json!({"username": "bob", "password": PASSWORD, "roles": ["ok", "no/slash"]}),
            "invalid roles",
        ),
        (
            json!({"username": "bob", "password": PASSWORD, "scopes": "orders:read \"x\""}),
            "invalid scope",
        ),
        (
            json!({"username": "bob", "password": PASSWORD, "admin": true}),
            "unknown field `admin`",
        ),
        (json!({"username": "bob"}), "missing field `password`"),
        (
            json!({"username": "b b", "password": PASSWORD}),
            "invalid username",
        ),
        (
            json!({"username": "bob", "password": "short"}),
            "the password must have",
        ),
    ] {
        let (status, error) = create(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {error}");
        assert_eq!(error["error"], "invalid_request");
        let description = error["error_description"].as_str().expect("description");
        assert!(description.contains(says), "{body} -> {description}");
    }
    let (status, error) = create(json!({"username": "alice", "password": PASSWORD})).await;
    assert_eq!(
        (status, &error["error"]),
        (StatusCode::CONFLICT, &json!("conflict"))
    );

    for (body, says) in [
        (json!({"roles": "admin"}), "invalid type"),
        (json!({"scopes": "a\\b"}), "invalid scope"),
        (json!({"enabled": "yes"}), "invalid type"),
        (json!({"password": PASSWORD}), "unknown field `password`"),
        (json!({}), "nothing to change"),
    ] {
        let (status, error) = patch(&auth, &alice.id, &root, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {error}");
        let description = error["error_description"].as_str().expect("description");
        assert!(description.contains(says), "{body} -> {description}");
    }
    let response = auth
        .http
        .patch(auth.url(&format!("/v1/admin/users/{}", alice.id)))
        .bearer_auth(&root)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let (status, _) = patch(&auth, "no-such-user", &root, json!({"roles": ["user"]})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &auth,
        reqwest::Method::GET,
        "/v1/admin/users/no-such-user",
        &root,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let unchanged = testkit::auth::expect_tokens(
        auth.post_token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .await,
    )
    .await;
    assert_eq!(claims_of(&unchanged.access_token)["roles"], json!(["user"]));
}

#[tokio::test]
async fn administration_needs_the_admin_role_and_the_scope_of_the_resource() {
    let auth = spawn_auth().await;
    let alice = auth
        .create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    // An administrator's token narrowed to orders:read carries the admin role all the same.
    let narrowed = admin(&auth, "orders:read").await;
    assert_eq!(claims_of(&narrowed)["roles"], json!(["admin", "user"]));
    let users_only = admin(&auth, "users:admin").await;
    let keys_only = admin(&auth, "keys:admin").await;
    auth.create_user("clerk", PASSWORD, "user", "users:admin keys:admin")
        .await;
    let not_admin = auth.login("clerk", PASSWORD).await.access_token;

    let user_routes = [
        (reqwest::Method::GET, "/v1/admin/users".to_owned()),
        (
            reqwest::Method::GET,
            format!("/v1/admin/users/{}", alice.id),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/admin/users/{}/disable", alice.id),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/admin/users/{}/enable", alice.id),
        ),
    ];
    let key_routes = [
        (reqwest::Method::GET, "/v1/admin/keys".to_owned()),
        (reqwest::Method::POST, "/v1/admin/keys/rotate".to_owned()),
    ];
    for (method, path) in user_routes.iter().chain(&key_routes) {
        let (status, body) = call(&auth, method.clone(), path, &narrowed, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["error"], "insufficient_scope", "{method} {path}");
        let (status, body) = call(&auth, method.clone(), path, &not_admin, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["error"], "forbidden", "{method} {path}");
    }
    for (method, path) in &key_routes {
        let (status, body) = call(&auth, method.clone(), path, &users_only, None).await;
        assert_eq!(body["scope"], "keys:admin", "{method} {path}");
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    for (method, path) in &user_routes {
        let (status, body) = call(&auth, method.clone(), path, &keys_only, None).await;
        assert_eq!(body["scope"], "users:admin", "{method} {path}");
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = patch(&auth, &alice.id, &narrowed, json!({"roles": ["admin"]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(
        &auth,
        reqwest::Method::POST,
        "/v1/admin/users",
        &narrowed,
        Some(json!({"username": "eve", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // With the role and the scope: allowed.
    let (status, _) = call(
        &auth,
        reqwest::Method::GET,
        "/v1/admin/users",
        &users_only,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &auth,
        reqwest::Method::GET,
        "/v1/admin/keys",
        &keys_only,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_change_refuses_older_tokens_as_stale_and_a_refresh_carries_the_new_claims() {
    let auth = spawn_auth().await;
    let root = admin(&auth, "users:admin").await;
    let alice = auth
        .create_user("alice", PASSWORD, "user", "orders:read orders:write")
        .await;
    let login = auth.login("alice", PASSWORD).await;
    let sid = sid_of(&login.access_token);
    let verifier = auth.verifier_token().await;
    let mut feed = auth.watch(&verifier, 0).await;
    let (_, head) = feed.until_heartbeat().await;
    assert_eq!(
        sessions_status(&auth, &login.access_token).await.0,
        StatusCode::OK
    );

    let (status, _) = patch(
        &auth,
        &alice.id,
        &root,
        json!({"roles": ["user", "auditor"], "scopes": "orders:read"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // hybrid verifiers: a UserChanged event, at the head.
    let event = feed.next_event().await;
    assert_eq!(event.sequence, head + 1);
    let Some(Target::UserChanged(changed)) = &event.target else {
        panic!("expected UserChanged, got {event:?}");
    };
    assert_eq!(changed.user_id, alice.id);
    // stateful verifiers: the session is active, with its user's change.
    let mut request = tonic::Request::new(CheckSessionRequest { sid: sid.clone() });
    authn::grpc::with_bearer(&mut request, &verifier).expect("bearer");
    let checked = auth
        .grpc_client()
        .await
        .check_session(request)
        .await
        .expect("CheckSession answers")
        .into_inner();
    assert!(checked.active, "the session stands");
    assert_eq!(checked.user_changed_at, event.occurred_at);
    assert!(claims_of(&login.access_token)["iat"].as_i64().unwrap() <= checked.user_changed_at);
    // The issuer's own API refuses the old token, saying why.
    let (status, error) = sessions_status(&auth, &login.access_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error["error"], "invalid_token");
    assert_eq!(error["error_description"], STALE);

    // The refresh token still works: same session, new claims.
    let refreshed = auth
        .refresh(login.refresh_token.as_deref().expect("refresh token"))
        .await;
    let claims = claims_of(&refreshed.access_token);
    assert_eq!(claims["sid"], sid.as_str());
    assert_eq!(claims["roles"], json!(["auditor", "user"]));
    assert_eq!(claims["scope"], "orders:read", "the removed scope is gone");
    assert!(claims["iat"].as_i64().unwrap() > checked.user_changed_at);
    assert_eq!(
        sessions_status(&auth, &refreshed.access_token).await.0,
        StatusCode::OK
    );
    let principal = auth
        .jwks_verifier()
        .await
        .verify(&refreshed.access_token)
        .await
        .expect("valid");
    assert_eq!(principal.claims().roles, ["auditor", "user"]);

    // Setting what the user has already changes nothing: no event, tokens stay good. The next
    // real change is the next event.
    let (status, _) = patch(&auth, &alice.id, &root, json!({"scopes": "orders:read"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sessions_status(&auth, &refreshed.access_token).await.0,
        StatusCode::OK
    );
    let (status, _) = patch(&auth, &alice.id, &root, json!({"roles": ["user"]})).await;
    assert_eq!(status, StatusCode::OK);
    let next = feed.next_event().await;
    assert_eq!(next.sequence, head + 2);
    assert!(matches!(next.target, Some(Target::UserChanged(_))));
}
