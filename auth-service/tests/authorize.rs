//! The authorization code flow with PKCE, end to end over real HTTP against the service started
//! in process, redirects never followed: what a relying party sees, and what an attacker does
//! not get (docs/SECURITY.md, the code-flow classes).

use std::collections::HashMap;
use std::sync::Arc;

use auth_service::clients::{self, Registration};
use auth_service::oidc::pkce;
use auth_service::scope::ScopeSet;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{StatusCode, Url};
use testkit::auth::{
    TestAuth, claims_of, expect_error, expect_tokens, spawn_auth, spawn_auth_with, test_config,
};

const WEB: &str = "web";
const WEB_CALLBACK: &str = "https://web.example.com/callback";
const WEB_SIGNED_OUT: &str = "https://web.example.com/";
const SPA: &str = "spa";
const SPA_CALLBACK: &str = "http://localhost:3000/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const ALICE_PASSWORD: &str = "alice-password-1";

/// A browser without a cookie jar of its own: the test carries the cookies it was given.
struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

/// One answer, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// The `Location` of a redirect, parsed.
    fn location(&self) -> Url {
        let location = self
            .headers
            .get(LOCATION)
            .unwrap_or_else(|| panic!("no redirect ({}): {}", self.status, self.body));
        Url::parse(location.to_str().expect("ascii")).expect("absolute Location")
    }

    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// The value of the hidden input `name` of the sign-in form.
    fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].to_owned())
    }
}

/// The query parameters of `url`.
fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

impl Browser {
    fn new() -> Self {
        Self::with_user_agent("browser-under-test")
    }

    fn with_user_agent(user_agent: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(user_agent)
                .build()
                .expect("client"),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        for value in headers.get_all(SET_COOKIE) {
            let value = value.to_str().expect("ascii");
            let (pair, _) = value.split_once(';').unwrap_or((value, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            self.cookies.insert(name.to_owned(), value.to_owned());
        }
        let body = response.text().await.expect("body");
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, url: &str) -> Answer {
        let response = self
            .http
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("GET sent");
        self.read(response).await
    }

    async fn post(&mut self, url: &str, form: &[(String, String)]) -> Answer {
        let response = self
            .http
            .post(url)
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .expect("POST sent");
        self.read(response).await
    }

    /// Submits the sign-in form `page` with `username` and `password`.
    async fn sign_in(
        &mut self,
        auth: &TestAuth,
        page: &Answer,
        username: &str,
        password: &str,
    ) -> Answer {
        let mut form: Vec<(String, String)> = [
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "nonce",
            "code_challenge",
            "code_challenge_method",
            "csrf_token",
        ]
        .into_iter()
        .filter_map(|name| page.hidden(name).map(|v| (name.to_owned(), unescape(&v))))
        .collect();
        form.push(("username".into(), username.into()));
        form.push(("password".into(), password.into()));
        self.post(&auth.url("/oauth/authorize"), &form).await
    }
}

/// The inverse of the page's escaping, for values the test reads back from hidden inputs.
fn unescape(value: &str) -> String {
    value
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// An authorization request URL of `client` with `params` (PKCE with [`VERIFIER`] unless
/// overridden).
fn authorize_url(
    auth: &TestAuth,
    client: &str,
    redirect_uri: &str,
    extra: &[(&str, &str)],
) -> String {
    let challenge = pkce::s256_challenge(VERIFIER);
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect_uri),
        ("scope", "openid orders:read"),
        ("state", "af0ifjsldkj"),
        ("nonce", "n-0S6_WzA2Mj"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in extra {
        params.retain(|(n, _)| n != name);
        if !value.is_empty() {
            params.push((name, value));
        }
    }
    let mut url = Url::parse(&auth.url("/oauth/authorize")).expect("url");
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

/// An issuer with alice, the confidential client `web` and the public client `spa`; returns
/// the secret of `web`.
async fn issuer() -> (TestAuth, String) {
    issuer_with(spawn_auth().await).await
}

async fn issuer_with(auth: TestAuth) -> (TestAuth, String) {
    auth.create_user("alice", ALICE_PASSWORD, "user", "orders:read orders:write")
        .await;
    let (_, secret) = clients::register(
        &auth.state.pool,
        &auth.state.passwords,
        Registration {
            id: WEB.into(),
            scopes: ScopeSet::parse("openid orders:read orders:write").expect("scopes"),
            redirect_uris: vec![WEB_CALLBACK.into()],
            post_logout_redirect_uris: vec![WEB_SIGNED_OUT.into()],
            ..Registration::default()
        },
    )
    .await
    .expect("web registered");
    clients::register(
        &auth.state.pool,
        &auth.state.passwords,
        Registration {
            id: SPA.into(),
            scopes: ScopeSet::parse("openid orders:read").expect("scopes"),
            public: true,
            redirect_uris: vec![SPA_CALLBACK.into()],
            ..Registration::default()
        },
    )
    .await
    .expect("spa registered");
    use secrecy::ExposeSecret as _;
    let secret = secret.expect("confidential").expose_secret().to_owned();
    (auth, secret)
}

/// Signs alice in through the form for `client` and returns the code of the redirect.
async fn code_for(
    auth: &TestAuth,
    browser: &mut Browser,
    client: &str,
    redirect_uri: &str,
) -> String {
    let page = browser
        .get(&authorize_url(auth, client, redirect_uri, &[]))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let answer = browser.sign_in(auth, &page, "alice", ALICE_PASSWORD).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let location = answer.location();
    assert!(location.as_str().starts_with(redirect_uri), "{location}");
    query(&location)["code"].clone()
}

async fn redeem(auth: &TestAuth, form: &[(&str, &str)]) -> reqwest::Response {
    auth.post_token(form).await
}

fn public_redemption<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", SPA_CALLBACK),
        ("code_verifier", verifier),
        ("client_id", SPA),
    ]
}

#[tokio::test]
async fn the_full_code_flow_of_a_public_client() {
    let (auth, _) = issuer().await;
    let mut browser = Browser::new();

    let page = browser
        .get(&authorize_url(&auth, SPA, SPA_CALLBACK, &[]))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"username\"") && page.body.contains("name=\"password\""));
    let csrf_cookie = page.set_cookie("__Host-auth_csrf").expect("CSRF cookie");
    for attribute in ["Secure", "HttpOnly", "Path=/"] {
        assert!(csrf_cookie.contains(attribute), "{csrf_cookie}");
    }

    let answer = browser.sign_in(&auth, &page, "alice", ALICE_PASSWORD).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let session_cookie = answer
        .set_cookie("__Host-auth_session")
        .expect("session cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    let location = answer.location();
    assert_eq!(&location.as_str()[..SPA_CALLBACK.len()], SPA_CALLBACK);
    let params = query(&location);
    assert_eq!(params["state"], "af0ifjsldkj");
    assert_eq!(params["iss"], auth.config.issuer);
    let code = params["code"].clone();

    let tokens = expect_tokens(redeem(&auth, &public_redemption(&code, VERIFIER)).await).await;
    assert_eq!(tokens.scope.as_deref(), Some("openid orders:read"));
    let refresh_token = tokens.refresh_token.clone().expect("a refresh token");
    let principal = auth
        .jwks_verifier()
        .await
        .verify(&tokens.access_token)
        .await
        .expect("the access token verifies like any other");
    assert_eq!(principal.claims().client_id.as_deref(), Some(SPA));

    // The ID token: from the raw response, which the testkit type does not carry.
    let raw: serde_json::Value = {
        let code = code_for(&auth, &mut Browser::new(), SPA, SPA_CALLBACK).await;
        redeem(&auth, &public_redemption(&code, VERIFIER))
            .await
            .json()
            .await
            .expect("json")
    };
    let id_token = raw["id_token"].as_str().expect("an id_token with openid");
    let header: serde_json::Value = serde_json::from_slice(
        &authn::base64url::decode(id_token.split('.').next().expect("header")).expect("b64"),
    )
    .expect("json");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], auth.kid);
    let claims = claims_of(id_token);
    let access = claims_of(raw["access_token"].as_str().expect("access token"));
    assert_eq!(claims["aud"], SPA);
    assert_eq!(claims["iss"], auth.config.issuer);
    assert_eq!(claims["sub"], access["sub"]);
    assert_eq!(claims["sid"], access["sid"]);
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert!(
        claims["auth_time"].as_i64().expect("auth_time") <= claims["iat"].as_i64().expect("iat")
    );
    assert_eq!(
        claims["at_hash"],
        auth_service::oidc::id_token::at_hash(raw["access_token"].as_str().expect("token"))
    );
    // An ID token is not an access token.
    assert!(auth.jwks_verifier().await.verify(id_token).await.is_err());

    // userinfo with the access token.
    let info: serde_json::Value = auth
        .http
        .get(auth.url("/userinfo"))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .expect("userinfo")
        .json()
        .await
        .expect("json");
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info["sub"], access["sub"]);
    assert_eq!(info["roles"], serde_json::json!(["user"]));
    assert_eq!(info["scope"], "openid orders:read");
    // A token without `openid` (a password login) is not for userinfo: RFC 6750 §3.1.
    let login = auth.login("alice", ALICE_PASSWORD).await;
    let refused = auth
        .http
        .get(auth.url("/userinfo"))
        .bearer_auth(&login.access_token)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(refused.status(), 403);
    let challenge = refused.headers()["www-authenticate"]
        .to_str()
        .expect("ascii");
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    // And no token at all is a 401.
    let anonymous = auth
        .http
        .get(auth.url("/userinfo"))
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401);

    // The session is a real one: its refresh token rotates for the public client.
    let refreshed = expect_tokens(
        redeem(
            &auth,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("client_id", SPA),
            ],
        )
        .await,
    )
    .await;
    assert_ne!(refreshed.access_token, tokens.access_token);

    // A second authorization in the same browser skips the form.
    let again = browser
        .get(&authorize_url(&auth, SPA, SPA_CALLBACK, &[]))
        .await;
    assert_eq!(again.status, 302, "{}", again.body);
    let params = query(&again.location());
    assert!(params.contains_key("code"));
    assert_eq!(params["iss"], auth.config.issuer);
    // prompt=login shows the form even so.
    let forced = browser
        .get(&authorize_url(
            &auth,
            SPA,
            SPA_CALLBACK,
            &[("prompt", "login")],
        ))
        .await;
    assert_eq!(forced.status, 200);
    assert!(forced.body.contains("name=\"password\""));
}

/// A code carries the scope granted when alice signed in; redeemed after an administrator took
/// a scope away, the tokens carry what she has now, and are issued after the change (the
/// verifiers would refuse them as stale otherwise).
#[tokio::test]
async fn a_code_redeemed_after_a_change_of_the_user_carries_what_the_user_has_now() {
    let (auth, _) = issuer().await;
    let mut browser = Browser::new();
    let code = code_for(&auth, &mut browser, SPA, SPA_CALLBACK).await;
    let alice = auth_service::users::find_by_username(&auth.state.pool, "alice")
        .await
        .expect("read")
        .expect("alice");
    let changed = auth_service::accounts::change_user(
        &auth.state.pool,
        auth.state.sessions.as_ref(),
        &auth.state.revocations,
        &alice.id,
        auth_service::accounts::GrantChange {
            roles: None,
            scopes: Some(ScopeSet::parse("orders:write").expect("scopes")),
        },
    )
    .await
    .expect("changed")
    .expect("alice exists");
    let tokens = expect_tokens(redeem(&auth, &public_redemption(&code, VERIFIER)).await).await;
    assert_eq!(
        tokens.scope.as_deref(),
        Some("openid"),
        "orders:read is gone"
    );
    let claims = testkit::auth::claims_of(&tokens.access_token);
    assert!(claims["iat"].as_i64().expect("iat") > changed.claims_changed_at.expect("time"));
    let verifier = auth.verifier_token().await;
    assert!(
        auth.session_is_active(&verifier, &testkit::auth::sid_of(&tokens.access_token))
            .await
    );
}

#[tokio::test]
async fn a_confidential_client_authenticates_and_a_code_is_bound_to_its_client() {
    let (auth, secret) = issuer().await;
    let mut browser = Browser::new();
    let code = code_for(&auth, &mut browser, WEB, WEB_CALLBACK).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", WEB_CALLBACK),
        ("code_verifier", VERIFIER),
    ];
    // Without its secret, `web` is not let in.
    let mut with_id = form.to_vec();
    with_id.push(("client_id", WEB));
    let (status, error) = expect_error(redeem(&auth, &with_id).await).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (401, Some("invalid_client"))
    );

    // Another client (spa) presenting web's code.
    let code = code_for(&auth, &mut Browser::new(), WEB, WEB_CALLBACK).await;
    let stolen = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", WEB_CALLBACK),
        ("code_verifier", VERIFIER),
        ("client_id", SPA),
    ];
    let (status, error) = expect_error(redeem(&auth, &stolen).await).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let code = code_for(&auth, &mut Browser::new(), WEB, WEB_CALLBACK).await;
    let response = auth
        .http
        .post(auth.url("/oauth/token"))
        .basic_auth(WEB, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", WEB_CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("sent");
    let tokens = expect_tokens(response).await;
    assert_eq!(claims_of(&tokens.access_token)["client_id"], WEB);
}

/// The session a code starts shows the device that signed in, not the backend that redeemed the
/// code: the gateway's token request carries its own `User-Agent` and address.
#[tokio::test]
async fn the_session_of_a_code_records_the_browser_not_the_backend() {
    const PHONE: &str = "Mozilla/5.0 (Linux; Android 14) Mobile Safari/537.36";
    let (auth, secret) = issuer().await;
    let mut browser = Browser::with_user_agent(PHONE);
    let code = code_for(&auth, &mut browser, WEB, WEB_CALLBACK).await;
    let response = auth
        .http
        .post(auth.url("/oauth/token"))
        .header("user-agent", "gateway-backend/1.0")
        .basic_auth(WEB, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", WEB_CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("sent");
    let tokens = expect_tokens(response).await;
    let sessions: serde_json::Value = auth
        .http
        .get(auth.url("/v1/sessions"))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    let sessions = sessions.as_array().expect("a list");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["user_agent"], PHONE, "{sessions:?}");
    assert_eq!(sessions[0]["ip"], "127.0.0.1", "{sessions:?}");
}

#[tokio::test]
async fn a_replayed_code_fails_and_ends_the_session_of_its_first_use() {
    let (auth, _) = issuer().await;
    let code = code_for(&auth, &mut Browser::new(), SPA, SPA_CALLBACK).await;
    let tokens = expect_tokens(redeem(&auth, &public_redemption(&code, VERIFIER)).await).await;
    let sid = testkit::auth::sid_of(&tokens.access_token);
    let sessions = auth
        .http
        .get(auth.url("/v1/sessions"))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(sessions.status(), 200, "the session is live");

    let (status, error) =
        expect_error(redeem(&auth, &public_redemption(&code, VERIFIER)).await).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let session = auth.state.sessions.get(&sid).await.expect("store");
    assert!(
        session.is_none_or(|s| s.revoked_at.is_some()),
        "the first use's session ended"
    );
    let sessions = auth
        .http
        .get(auth.url("/v1/sessions"))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        sessions.status(),
        401,
        "its access token is refused at once"
    );
    let (_, error) = expect_error(
        redeem(
            &auth,
            &[
                ("grant_type", "refresh_token"),
                (
                    "refresh_token",
                    tokens.refresh_token.as_deref().expect("refresh"),
                ),
                ("client_id", SPA),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(error["error"], "invalid_grant", "its refresh token too");
}

#[tokio::test]
async fn pkce_is_required_s256_only_and_the_verifier_must_match() {
    let (auth, _) = issuer().await;
    let mut browser = Browser::new();
    for (extra, what) in [
        (
            &[("code_challenge", ""), ("code_challenge_method", "")][..],
            "missing",
        ),
        (
            &[
                ("code_challenge_method", "plain"),
                ("code_challenge", VERIFIER),
            ][..],
            "plain",
        ),
        (&[("code_challenge_method", "")][..], "no method"),
    ] {
        let answer = browser
            .get(&authorize_url(&auth, SPA, SPA_CALLBACK, extra))
            .await;
        assert_eq!(answer.status, 302, "{what}: {}", answer.body);
        let params = query(&answer.location());
        assert_eq!(params["error"], "invalid_request", "{what}");
        assert_eq!(params["state"], "af0ifjsldkj", "{what}");
        assert_eq!(params["iss"], auth.config.issuer, "{what}");
        assert!(!params.contains_key("code"), "{what}");
    }
    let code = code_for(&auth, &mut browser, SPA, SPA_CALLBACK).await;
    let wrong = "a".repeat(43);
    let (_, error) = expect_error(redeem(&auth, &public_redemption(&code, &wrong)).await).await;
    assert_eq!(error["error"], "invalid_grant");
    // A failed redemption burns the code: the right verifier afterwards gets nothing.
    let (_, error) = expect_error(redeem(&auth, &public_redemption(&code, VERIFIER)).await).await;
    assert_eq!(error["error"], "invalid_grant");
    // Without a verifier at all.
    let code = code_for(&auth, &mut Browser::new(), SPA, SPA_CALLBACK).await;
    let (_, error) = expect_error(
        redeem(
            &auth,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", SPA_CALLBACK),
                ("client_id", SPA),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(error["error"], "invalid_request");
}

#[tokio::test]
async fn redirect_uri_variations_are_never_redirected_to() {
    let (auth, _) = issuer().await;
    let mut browser = Browser::new();
    for variant in [
        "https://web.example.com/callbac",
        "https://web.example.com/callback2",
        "https://web.example.com/callback/",
        "https://web.example.com/callback/extra",
        "https://WEB.example.com/callback",
        "https://web.example.com/Callback",
        "https://web.example.com/callback?x=1",
        "https://web.example.com/callback#x",
        "https://evil@web.example.com/callback",
        "https://web.example.com:8443/callback",
        "https://web.example.com.evil.com/callback",
        "http://web.example.com/callback",
        "https://evil.example/callback",
    ] {
        let answer = browser.get(&authorize_url(&auth, WEB, variant, &[])).await;
        assert_eq!(answer.status, 400, "{variant}");
        assert!(
            answer.headers.get(LOCATION).is_none(),
            "{variant} redirected"
        );
        assert!(
            answer.body.contains("not registered"),
            "{variant}: {}",
            answer.body
        );
    }
    // An unknown client and a missing redirect_uri: a page, no redirect.
    for url in [
        authorize_url(&auth, "nobody", WEB_CALLBACK, &[]),
        authorize_url(&auth, WEB, "", &[]),
    ] {
        let answer = browser.get(&url).await;
        assert_eq!(answer.status, 400);
        assert!(answer.headers.get(LOCATION).is_none(), "{url}");
    }
}

#[tokio::test]
async fn state_comes_back_unchanged_and_iss_is_in_every_redirect() {
    let (auth, _) = issuer().await;
    let mut browser = Browser::new();
    let odd_state = "a b&c=d/é?%20\"<x>";
    // An error redirect.
    let answer = browser
        .get(&authorize_url(
            &auth,
            SPA,
            SPA_CALLBACK,
            &[("response_type", "token"), ("state", odd_state)],
        ))
        .await;
    let params = query(&answer.location());
    assert_eq!(params["error"], "unsupported_response_type");
    assert_eq!(params["state"], odd_state);
    assert_eq!(params["iss"], auth.config.issuer);
    // A scope beyond the client's.
    let answer = browser
        .get(&authorize_url(
            &auth,
            SPA,
            SPA_CALLBACK,
            &[("scope", "openid orders:write")],
        ))
        .await;
    let params = query(&answer.location());
    assert_eq!(params["error"], "invalid_scope");
    assert_eq!(params["iss"], auth.config.issuer);
    // prompt=none without an issuer session.
    let answer = browser
        .get(&authorize_url(
            &auth,
            SPA,
            SPA_CALLBACK,
            &[("prompt", "none"), ("state", odd_state)],
        ))
        .await;
    let params = query(&answer.location());
    assert_eq!(params["error"], "login_required");
    assert_eq!(params["state"], odd_state);
    assert_eq!(params["iss"], auth.config.issuer);
    // A success, through the form.
    let page = browser
        .get(&authorize_url(
            &auth,
            SPA,
            SPA_CALLBACK,
            &[("state", odd_state)],
        ))
        .await;
    let answer = browser.sign_in(&auth, &page, "alice", ALICE_PASSWORD).await;
    let params = query(&answer.location());
    assert_eq!(params["state"], odd_state);
    assert_eq!(params["iss"], auth.config.issuer);
    // And prompt=none with the session: a code at once.
    let answer = browser
        .get(&authorize_url(
            &auth,
            SPA,
            SPA_CALLBACK,
            &[("prompt", "none")],
        ))
        .await;
    assert_eq!(answer.status, 302);
    let params = query(&answer.location());
    assert!(params.contains_key("code"));
    assert_eq!(params["iss"], auth.config.issuer);
}

#[tokio::test]
async fn login_csrf_is_refused_without_the_matching_token() {
    let (auth, _) = issuer().await;
    let mut browser = Browser::new();
    let page = browser
        .get(&authorize_url(&auth, SPA, SPA_CALLBACK, &[]))
        .await;
    let token = page.hidden("csrf_token").expect("a CSRF field");

    // An attacker's page posting the attacker's credentials: no CSRF cookie, no field.
    let mut attacker = Browser::new();
    let mut form: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", SPA),
        ("redirect_uri", SPA_CALLBACK),
        ("code_challenge", &pkce::s256_challenge(VERIFIER)),
        ("code_challenge_method", "S256"),
        ("username", "alice"),
        ("password", ALICE_PASSWORD),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let answer = attacker.post(&auth.url("/oauth/authorize"), &form).await;
    assert_eq!(answer.status, 403);
    assert!(answer.headers.get(LOCATION).is_none());
    assert!(answer.set_cookie("__Host-auth_session").is_none());

    // The field without the cookie (another browser), and a wrong field with the cookie.
    form.push(("csrf_token".into(), token.clone()));
    let answer = attacker.post(&auth.url("/oauth/authorize"), &form).await;
    assert_eq!(answer.status, 403);
    form.pop();
    form.push(("csrf_token".into(), format!("{token}x")));
    let answer = browser.post(&auth.url("/oauth/authorize"), &form).await;
    assert_eq!(answer.status, 403);
    assert!(answer.set_cookie("__Host-auth_session").is_none());
}

#[tokio::test]
async fn the_sign_in_page_cannot_be_framed_cached_or_scripted_and_escapes_what_it_reflects() {
    let (auth, _) = issuer().await;
    let mut browser = Browser::new();
    let payload = "\"><script>alert(1)</script>";
    let page = browser
        .get(&authorize_url(
            &auth,
            SPA,
            SPA_CALLBACK,
            &[("state", payload), ("nonce", payload)],
        ))
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["cache-control"], "no-store");
    let csp = page.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(!page.body.contains("<script"), "{}", page.body);
    assert!(
        page.body.contains("&quot;&gt;&lt;script&gt;"),
        "{}",
        page.body
    );

    // The error page reflects nothing of the request.
    let answer = browser
        .get(&authorize_url(&auth, payload, SPA_CALLBACK, &[]))
        .await;
    assert_eq!(answer.status, 400);
    assert!(!answer.body.contains("<script"));
    assert_eq!(answer.headers["x-frame-options"], "DENY");
}

#[tokio::test]
async fn unknown_users_and_wrong_passwords_get_the_same_answer() {
    let (auth, _) = issuer().await;
    let mut answers = Vec::new();
    for (username, password) in [("alice", "wrong-password"), ("nobody", "wrong-password")] {
        let mut browser = Browser::new();
        let page = browser
            .get(&authorize_url(&auth, SPA, SPA_CALLBACK, &[]))
            .await;
        let answer = browser.sign_in(&auth, &page, username, password).await;
        assert!(answer.set_cookie("__Host-auth_session").is_none());
        let token = answer.hidden("csrf_token").expect("the form again");
        answers.push((answer.status, answer.body.replace(&token, "")));
    }
    assert_eq!(answers[0].0, 401);
    assert!(answers[0].1.contains("invalid username or password"));
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn discovery_names_the_code_flow_and_the_password_grant_can_be_turned_off() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut config = test_config(dir.path());
    config.password_grant = false;
    let (auth, _) = issuer_with(spawn_auth_with(config, dir).await).await;
    let discovery: serde_json::Value = auth
        .http
        .get(auth.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let base = auth.config.issuer.trim_end_matches('/');
    assert_eq!(
        discovery["authorization_endpoint"],
        format!("{base}/oauth/authorize")
    );
    assert_eq!(discovery["userinfo_endpoint"], format!("{base}/userinfo"));
    assert_eq!(
        discovery["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        discovery["subject_types_supported"],
        serde_json::json!(["public"])
    );
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256", "ES256", "EdDSA"])
    );
    assert_eq!(
        discovery["authorization_response_iss_parameter_supported"],
        true
    );
    assert!(
        discovery["scopes_supported"]
            .as_array()
            .expect("array")
            .contains(&"openid".into())
    );
    assert!(
        discovery["claims_supported"]
            .as_array()
            .expect("array")
            .contains(&"at_hash".into())
    );
    let grants = discovery["grant_types_supported"]
        .as_array()
        .expect("array");
    assert!(grants.contains(&"authorization_code".into()));
    assert!(!grants.contains(&"password".into()), "{grants:?}");

    let (status, error) = expect_error(
        auth.post_token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", ALICE_PASSWORD),
        ])
        .await,
    )
    .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    // The code flow still works.
    let code = code_for(&auth, &mut Browser::new(), SPA, SPA_CALLBACK).await;
    expect_tokens(redeem(&auth, &public_redemption(&code, VERIFIER)).await).await;
}

/// The id_token and access token of a code redeemed by `web`.
async fn web_tokens(auth: &TestAuth, secret: &str, browser: &mut Browser) -> serde_json::Value {
    let code = code_for(auth, browser, WEB, WEB_CALLBACK).await;
    auth.http
        .post(auth.url("/oauth/token"))
        .basic_auth(WEB, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", WEB_CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

async fn session_status(auth: &TestAuth, access_token: &str) -> StatusCode {
    auth.http
        .get(auth.url("/v1/sessions"))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("sent")
        .status()
}

fn logout_url(auth: &TestAuth, params: &[(&str, &str)]) -> String {
    let mut url = Url::parse(&auth.url("/oauth/logout")).expect("url");
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

#[tokio::test]
async fn rp_initiated_logout_ends_the_token_session_and_the_browser_session() {
    let (auth, secret) = issuer().await;
    let mut browser = Browser::new();
    let tokens = web_tokens(&auth, &secret, &mut browser).await;
    let id_token = tokens["id_token"].as_str().expect("id_token");
    let access_token = tokens["access_token"].as_str().expect("access_token");
    assert_eq!(session_status(&auth, access_token).await, 200);

    let answer = browser
        .get(&logout_url(
            &auth,
            &[
                ("id_token_hint", id_token),
                ("post_logout_redirect_uri", WEB_SIGNED_OUT),
                ("state", "bye 1"),
            ],
        ))
        .await;
    assert_eq!(answer.status, 302, "{}", answer.body);
    let location = answer.location();
    assert_eq!(&location.as_str()[..WEB_SIGNED_OUT.len()], WEB_SIGNED_OUT);
    assert_eq!(query(&location)["state"], "bye 1");
    let cleared = answer
        .set_cookie("__Host-auth_session")
        .expect("cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    assert_eq!(
        session_status(&auth, access_token).await,
        401,
        "the token session ended"
    );
    // The browser session too: even with the old cookie, the form comes back.
    let page = browser
        .get(&authorize_url(&auth, WEB, WEB_CALLBACK, &[]))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"password\""));

    let discovery: serde_json::Value = auth
        .http
        .get(auth.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        discovery["end_session_endpoint"],
        format!("{}/oauth/logout", auth.config.issuer.trim_end_matches('/'))
    );
}

#[tokio::test]
async fn rp_initiated_logout_redirects_only_to_registered_uris_and_needs_a_real_hint() {
    let (auth, secret) = issuer().await;
    let mut browser = Browser::new();
    let tokens = web_tokens(&auth, &secret, &mut browser).await;
    let id_token = tokens["id_token"].as_str().expect("id_token");
    let access_token = tokens["access_token"].as_str().expect("access_token");

    for uri in [
        "https://web.example.com/x",
        "https://web.example.com",
        "https://evil.example/",
        WEB_CALLBACK,
    ] {
        let answer = browser
            .get(&logout_url(
                &auth,
                &[
                    ("id_token_hint", id_token),
                    ("post_logout_redirect_uri", uri),
                ],
            ))
            .await;
        assert_eq!(answer.status, 400, "{uri}");
        assert!(answer.headers.get(LOCATION).is_none(), "{uri} redirected");
    }
    // An access token is no ID token; a client that is not the hint's audience is refused.
    for params in [
        vec![("id_token_hint", access_token)],
        vec![("id_token_hint", id_token), ("client_id", SPA)],
    ] {
        let answer = browser.get(&logout_url(&auth, &params)).await;
        assert_eq!(answer.status, 400);
    }
    // Without a hint nothing ends, even with a registered redirect.
    let answer = browser
        .get(&logout_url(
            &auth,
            &[
                ("client_id", WEB),
                ("post_logout_redirect_uri", WEB_SIGNED_OUT),
            ],
        ))
        .await;
    assert_eq!(answer.status, 302);
    assert!(answer.set_cookie("__Host-auth_session").is_none());
    assert_eq!(
        session_status(&auth, access_token).await,
        200,
        "still signed in"
    );
}

/// The same flow on PostgreSQL: the code claim (a conditional `UPDATE`), the replay that ends the
/// session, the browser session and the client URIs, through sqlx's Any driver.
#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn the_code_flow_on_postgres() {
    let db = testkit::PgDatabase::create("auth_code_flow").await;
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = auth_service::Config {
        database_url: db.url.clone(),
        ..test_config(dir.path())
    };
    let (auth, _) = issuer_with(spawn_auth_with(config, dir).await).await;
    let mut browser = Browser::new();
    let code = code_for(&auth, &mut browser, SPA, SPA_CALLBACK).await;
    let tokens = expect_tokens(redeem(&auth, &public_redemption(&code, VERIFIER)).await).await;
    assert_eq!(session_status(&auth, &tokens.access_token).await, 200);
    // Without a nonce this time: a NULL bound through the Any driver.
    let again = browser
        .get(&authorize_url(&auth, SPA, SPA_CALLBACK, &[("nonce", "")]))
        .await;
    assert_eq!(
        again.status, 302,
        "the browser session holds: {}",
        again.body
    );
    let second = query(&again.location())["code"].clone();
    let raw: serde_json::Value = redeem(&auth, &public_redemption(&second, VERIFIER))
        .await
        .json()
        .await
        .expect("json");
    assert!(
        claims_of(raw["id_token"].as_str().expect("id_token"))
            .get("nonce")
            .is_none()
    );

    let (_, error) = expect_error(redeem(&auth, &public_redemption(&code, VERIFIER)).await).await;
    assert_eq!(error["error"], "invalid_grant");
    assert_eq!(
        session_status(&auth, &tokens.access_token).await,
        401,
        "replay ends the session"
    );
}

/// A code is bound to the browser session that approved it: once that session is signed out
/// at the issuer, its unredeemed codes are worthless.
#[tokio::test]
async fn a_code_dies_with_the_browser_session_that_approved_it() {
    let (auth, secret) = issuer().await;
    let mut browser = Browser::new();
    let tokens = web_tokens(&auth, &secret, &mut browser).await;
    // A second code from the same browser session, not redeemed yet.
    let again = browser
        .get(&authorize_url(&auth, SPA, SPA_CALLBACK, &[]))
        .await;
    let pending = query(&again.location())["code"].clone();
    let answer = browser
        .get(&logout_url(
            &auth,
            &[(
                "id_token_hint",
                tokens["id_token"].as_str().expect("id_token"),
            )],
        ))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let (_, error) =
        expect_error(redeem(&auth, &public_redemption(&pending, VERIFIER)).await).await;
    assert_eq!(error["error"], "invalid_grant");
}
