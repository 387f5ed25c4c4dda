//! gRPC `auth.v1.SessionService/CheckSession`, called with a `client_credentials` token.

use proto::auth::v1::{CheckSessionRequest, CheckSessionResponse};
use testkit::auth::{TestAuth, spawn_auth};
use tonic::Code;

async fn check(
    auth: &TestAuth,
    token: Option<&str>,
    sid: &str,
) -> Result<CheckSessionResponse, tonic::Status> {
    let mut request = tonic::Request::new(CheckSessionRequest {
        sid: sid.to_owned(),
    });
    if let Some(token) = token {
        authn::grpc::with_bearer(&mut request, token).expect("bearer metadata");
    }
    auth.grpc_client()
        .await
        .check_session(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn login_sid(auth: &TestAuth) -> (String, String) {
    let user = auth
        .create_user("alice", "correct horse battery", "user", "orders:read")
        .await;
    let tokens = auth.login("alice", "correct horse battery").await;
    let principal = auth
        .jwks_verifier()
        .await
        .verify(&tokens.access_token)
        .await
        .expect("valid");
    (user.id, principal.sid().expect("sid").to_owned())
}

#[tokio::test]
async fn a_session_is_active_after_login_and_unknown_sessions_are_not() {
    let auth = spawn_auth().await;
    let secret = auth.create_client("gateway", "sessions:check", "").await;
    let token = auth.client_token("gateway", &secret).await.access_token;
    let (user_id, sid) = login_sid(&auth).await;

    let active = check(&auth, Some(&token), &sid).await.expect("checked");
    assert!(active.active);
    let fourteen_days = 14 * 24 * 3600;
    let remaining = active.expires_at - authn::unix_now();
    assert!(
        (fourteen_days - 60..=fourteen_days).contains(&remaining),
        "expires in {remaining}s"
    );

    let unknown = check(&auth, Some(&token), "no-such-session")
        .await
        .expect("checked");
    assert_eq!((unknown.active, unknown.expires_at), (false, 0));

    // A disabled user's sessions are inactive.
    auth.disable_user(&user_id).await;
    let disabled = check(&auth, Some(&token), &sid).await.expect("checked");
    assert!(!disabled.active);
}

#[tokio::test]
async fn an_empty_sid_is_an_invalid_argument() {
    let auth = spawn_auth().await;
    let secret = auth.create_client("gateway", "sessions:check", "").await;
    let token = auth.client_token("gateway", &secret).await.access_token;
    let status = check(&auth, Some(&token), "").await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn callers_need_a_valid_token_with_scope_sessions_check() {
    let auth = spawn_auth().await;
    let (_, sid) = login_sid(&auth).await;

    let status = check(&auth, None, &sid).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);

    let status = check(&auth, Some("not-a-jwt"), &sid)
        .await
        .expect_err("garbage");
    assert_eq!(status.code(), Code::Unauthenticated);

    // A valid token of this issuer, but without `sessions:check`.
    let secret = auth.create_client("reporting", "orders:read", "").await;
    let token = auth.client_token("reporting", &secret).await.access_token;
    let status = check(&auth, Some(&token), &sid)
        .await
        .expect_err("no scope");
    assert_eq!(status.code(), Code::PermissionDenied);

    // A user token does not carry it either.
    let user_token = auth
        .login("alice", "correct horse battery")
        .await
        .access_token;
    let status = check(&auth, Some(&user_token), &sid)
        .await
        .expect_err("no scope");
    assert_eq!(status.code(), Code::PermissionDenied);

    // A token signed by another key, however well-formed, is refused.
    let forger = testkit::TestIssuer::new();
    let mut claims = forger.claims("gateway", "sessions:check", &[]);
    claims.iss = testkit::auth::TEST_ISSUER.to_owned();
    let status = check(&auth, Some(&forger.token(&claims)), &sid)
        .await
        .expect_err("foreign key");
    assert_eq!(status.code(), Code::Unauthenticated);
}
