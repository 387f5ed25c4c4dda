//! Stock relying parties, unmodified, complete the OpenID Connect code flow against the running
//! issuer: discovery, the authorization request with `state`, `nonce` and PKCE S256, the hosted
//! sign-in form (CSRF token and `__Host-` cookie), the code exchange, the ID token checked with
//! the JWKS, `/userinfo` (again after a refresh), a refresh, and a logout after which the refresh
//! token is refused: RP-initiated logout at the `end_session_endpoint`, or RFC 7009 revocation of
//! the refresh token (each relying party does both, in two tests).
//!
//! - Python [Authlib](https://authlib.org) (`OAuth2Session`, `authlib.jose`) as a confidential
//!   client: `tests/rp/authlib_rp.py`;
//! - Node [openid-client](https://github.com/panva/openid-client) v6 as a public client:
//!   `tests/rp/openid-client/rp.mjs`, its exact version in that folder's `package-lock.json`.
//!
//! Each script plays the browser itself (a cookie jar, the form read from the HTML, a stop at
//! the redirect to the client) and prints what it checked as JSON. They need `python3` with
//! `authlib` and `requests`, and `node` with `npm ci` run in `tests/rp/openid-client`, so they are
//! `#[ignore]`d in a plain `cargo test`; `-- --include-ignored` runs them (as `.ci/run` does),
//! and each fails, naming what to install, when its tool is missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use auth_service::Config;
use auth_service::clients::{self, Registration};
use auth_service::passwords::ExposeSecret as _;
use auth_service::scope::ScopeSet;
use auth_service::users::User;
use serde_json::{Value, json};
use testkit::TcpProxy;
use testkit::auth::{TestAuth, spawn_auth_with, test_config};
use tokio::process::Command;

const ALICE_PASSWORD: &str = "correct horse battery";
const SCOPE: &str = "openid orders:read";
/// Never served: the relying parties stop at the issuer's redirect to it.
const CALLBACK: &str = "http://127.0.0.1:1/callback";
const SIGNED_OUT: &str = "http://127.0.0.1:1/signed-out";
/// A relying party may take this long, start-up included.
const RP_DEADLINE: Duration = Duration::from_secs(60);

/// How the relying party ends the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Logout {
    /// RP-initiated logout: the browser is sent to the `end_session_endpoint`.
    EndSession,
    /// RFC 7009: the refresh token is revoked.
    Revocation,
}

impl Logout {
    fn as_str(self) -> &'static str {
        match self {
            Logout::EndSession => "end_session_endpoint",
            Logout::Revocation => "revocation_endpoint",
        }
    }
}

/// A running issuer whose identifier is the very URL the relying parties reach it at (discovery,
/// `iss` of the ID token and of the authorization response must all name it): a proxy bound on
/// port 0 first gives that URL, the issuer is built with it, and the proxy forwards to it.
struct Issuer {
    auth: TestAuth,
    url: String,
    alice: User,
    _front: TcpProxy,
}

async fn issuer() -> Issuer {
    let front = TcpProxy::start(Vec::new()).await;
    let url = front.url("http", "");
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = Config {
        issuer: url.clone(),
        ..test_config(dir.path())
    };
    let auth = spawn_auth_with(config, dir).await;
    let http_addr: SocketAddr = auth
        .http_url
        .trim_start_matches("http://")
        .parse()
        .expect("the issuer's address");
    front.set_upstreams(vec![http_addr]);
    let alice = auth
        .create_user("alice", ALICE_PASSWORD, "user", "orders:read orders:write")
        .await;
    Issuer {
        auth,
        url,
        alice,
        _front: front,
    }
}

impl Issuer {
    /// Registers a client with [`CALLBACK`] and [`SIGNED_OUT`]; returns its secret, `None` for
    /// a public one.
    async fn register(&self, id: &str, public: bool) -> Option<String> {
        let (_, secret) = clients::register(
            &self.auth.state.pool,
            &self.auth.state.passwords,
            Registration {
                id: id.into(),
                scopes: ScopeSet::parse(SCOPE).expect("scopes"),
                public,
                redirect_uris: vec![CALLBACK.into()],
                post_logout_redirect_uris: vec![SIGNED_OUT.into()],
                ..Registration::default()
            },
        )
        .await
        .expect("client registered");
        secret.map(|secret| secret.expose_secret().to_owned())
    }

    /// What a relying party is configured with.
    fn settings(
        &self,
        client_id: &str,
        secret: Option<&str>,
        logout: Logout,
    ) -> Vec<(&'static str, String)> {
        let mut settings = vec![
            ("RP_ISSUER", self.url.clone()),
            ("RP_CLIENT_ID", client_id.into()),
            ("RP_CLIENT_SECRET", secret.unwrap_or_default().into()),
            ("RP_REDIRECT_URI", CALLBACK.into()),
            ("RP_POST_LOGOUT_REDIRECT_URI", SIGNED_OUT.into()),
            ("RP_SCOPE", SCOPE.into()),
            ("RP_USERNAME", "alice".into()),
            ("RP_PASSWORD", ALICE_PASSWORD.into()),
        ];
        if logout == Logout::Revocation {
            settings.push(("RP_LOGOUT", "revocation".into()));
        }
        settings
    }

    /// Asserts what every relying party must have seen of alice's flow through `client_id`.
    fn assert_report(&self, report: &Report, client_id: &str, kind: &str, logout: Logout) {
        let json = &report.json;
        let steps = [
            "discovery",
            "authorization",
            "code_exchange",
            "id_token",
            "userinfo",
            "refresh",
            "userinfo_after_refresh",
            "logout",
            "refresh_after_logout",
        ];
        assert_eq!(json["steps"], json!(steps), "{json}");
        assert_eq!(json["client"], kind, "{json}");
        assert_eq!(json["discovery"], true, "{json}");
        // RFC 9207: the redirect carried the issuer's `iss`, and the RP compared it.
        assert_eq!(json["authorization_response_iss"], true, "{json}");
        let hidden = json["sign_in_form"]["hidden_fields"]
            .as_array()
            .expect("the hidden fields of the form");
        assert!(hidden.contains(&json!("csrf_token")), "{json}");
        assert_eq!(json["code_exchange"], true, "{json}");
        let id_token = &json["id_token"];
        assert_eq!(id_token["sub"], self.alice.id.as_str(), "{json}");
        assert_eq!(id_token["aud"], client_id, "{json}");
        assert_eq!(id_token["has_sid"], true, "{json}");
        assert_eq!(json["userinfo"]["sub"], self.alice.id.as_str(), "{json}");
        assert_eq!(json["userinfo"]["preferred_username"], "alice", "{json}");
        assert_eq!(
            json["refresh"]["rotated"], true,
            "a refresh rotates the refresh token: {json}"
        );
        assert_eq!(
            json["refresh"]["userinfo"], true,
            "the refreshed access token still reads /userinfo (it keeps `openid`): {json}"
        );
        assert_eq!(json["logout"], logout.as_str(), "{json}");
        assert_eq!(json["refresh_after_logout"], "invalid_grant", "{json}");
    }
}

/// What a relying party printed, and whether it exited successfully.
struct Report {
    json: Value,
    success: bool,
}

impl Report {
    /// Panics, with the step and the reason, unless the relying party completed.
    fn assert_completed(&self, name: &str) {
        let json = &self.json;
        let failed = &json["failed"];
        assert_eq!(self.success, failed.is_null(), "{name}: {json}");
        assert!(
            failed.is_null(),
            "{name} failed at {}: {}\n{json}",
            failed["step"],
            failed["error"]
        );
    }
}

fn rp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rp")
}

/// Runs a relying party to its end and returns its report.
async fn run_rp(name: &str, mut command: Command) -> Report {
    command.kill_on_drop(true);
    let output = tokio::time::timeout(RP_DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| panic!("{name} did not finish within {RP_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("{name} could not be started: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{name} printed no JSON report ({e}, {}): {stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    });
    Report {
        json,
        success: output.status.success(),
    }
}

async fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .await
        .is_ok_and(|output| output.status.success())
}

/// Alice signs in with Authlib as the confidential client `authlib-rp`, and logs out with
/// `logout`.
async fn authlib_flow(logout: Logout) {
    assert!(
        succeeds("python3", &["-c", "import authlib, requests"]).await,
        "python3 cannot import authlib and requests \
         (python3 -m pip install 'authlib>=1.3,<2' requests)"
    );
    let issuer = issuer().await;
    let secret = issuer.register("authlib-rp", false).await;

    let mut command = Command::new("python3");
    command
        .arg(rp_dir().join("authlib_rp.py"))
        .envs(issuer.settings("authlib-rp", secret.as_deref(), logout));
    let report = run_rp("the authlib relying party", command).await;

    report.assert_completed("the authlib relying party");
    assert_eq!(report.json["rp"], "authlib");
    issuer.assert_report(&report, "authlib-rp", "confidential", logout);
}

/// Alice signs in with openid-client as the public client `openid-client-rp`, and logs out
/// with `logout`.
async fn openid_client_flow(logout: Logout) {
    let dir = rp_dir().join("openid-client");
    assert!(
        succeeds("node", &["--version"]).await,
        "node is not installed (it runs the openid-client relying party)"
    );
    assert!(
        dir.join("node_modules/openid-client/package.json")
            .is_file(),
        "openid-client is not installed: npm ci --prefix auth-service/tests/rp/openid-client"
    );
    let issuer = issuer().await;
    let secret = issuer.register("openid-client-rp", true).await;
    assert_eq!(secret, None, "a public client has no secret");

    let mut command = Command::new("node");
    command
        .arg(dir.join("rp.mjs"))
        .envs(issuer.settings("openid-client-rp", None, logout));
    let report = run_rp("the openid-client relying party", command).await;

    report.assert_completed("the openid-client relying party");
    assert_eq!(report.json["rp"], "openid-client");
    issuer.assert_report(&report, "openid-client-rp", "public", logout);
}

#[tokio::test]
#[ignore = "needs python3 with authlib and requests: run with -- --include-ignored"]
async fn authlib_completes_the_code_flow_and_logs_out_at_the_end_session_endpoint() {
    authlib_flow(Logout::EndSession).await;
}

#[tokio::test]
#[ignore = "needs python3 with authlib and requests: run with -- --include-ignored"]
async fn authlib_completes_the_code_flow_and_revokes_the_refresh_token() {
    authlib_flow(Logout::Revocation).await;
}

#[tokio::test]
#[ignore = "needs node and `npm ci` in auth-service/tests/rp/openid-client: run with -- --include-ignored"]
async fn openid_client_completes_the_code_flow_and_logs_out_at_the_end_session_endpoint() {
    openid_client_flow(Logout::EndSession).await;
}

#[tokio::test]
#[ignore = "needs node and `npm ci` in auth-service/tests/rp/openid-client: run with -- --include-ignored"]
async fn openid_client_completes_the_code_flow_and_revokes_the_refresh_token() {
    openid_client_flow(Logout::Revocation).await;
}
