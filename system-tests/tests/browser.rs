//! The web app and its sign-in, hop by hop, as a browser goes through them: the real gateway and
//! orders-service, and an OpenID Provider that plays the issuer's part of the protocol (RFC 6749
//! code flow, RFC 7636 PKCE S256, OpenID Connect ID token and nonce, RFC 7009 revocation, the
//! session API) and records what it was asked. Redirects are never followed: every hop is
//! asserted. The browser keeps its own cookie jar, since `__Host-` cookies are `Secure` and the
//! test talks plain HTTP to 127.0.0.1.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use secrecy::SecretString;
use serde_json::json;
use testkit::gateway::{Gateway, start_gateway};
use testkit::orders::spawn_orders;
use testkit::{Issuer, PATIENCE, eventually, random_token};

const PUBLIC_URL: &str = "https://shop.test";
const CLIENT_ID: &str = "web";
const CLIENT_SECRET: &str = "web-client-secret";
const PASSWORD: &str = "correct horse battery staple";
const SCOPES: &str = "openid orders:read orders:write";

// ---------------------------------------------------------------------------------------------
// The OpenID Provider.

#[derive(Clone)]
struct AuthRequest {
    redirect_uri: String,
    state: String,
    nonce: String,
    code_challenge: String,
}

#[derive(Clone)]
struct OpSession {
    id: String,
    user: String,
    user_agent: Option<String>,
    ip: Option<String>,
    created_at: i64,
    ended: bool,
}

#[derive(Default)]
struct OpState {
    pending: HashMap<String, AuthRequest>,
    codes: HashMap<String, (AuthRequest, String)>,
    /// refresh token -> (session id, used)
    refresh: HashMap<String, (String, bool)>,
    sessions: Vec<OpSession>,
    /// `grant_type`s and revocations, in order.
    calls: Vec<String>,
}

#[derive(Clone)]
struct Op {
    issuer: Arc<Issuer>,
    state: Arc<Mutex<OpState>>,
}

impl Op {
    async fn start(issuer: Arc<Issuer>) -> (Self, String) {
        let op = Op {
            issuer,
            state: Arc::default(),
        };
        let router = axum::Router::new()
            .route("/oauth/authorize", get(authorize).post(sign_in))
            .route("/oauth/token", post(token))
            .route("/oauth/revoke", post(revoke))
            .route("/v1/sessions", get(list_sessions))
            .route("/v1/sessions/{sid}", delete(end_session))
            .route("/v1/logout-all", post(logout_all))
            .with_state(op.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (op, url)
    }

    fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    fn session_active(&self, sid: &str) -> bool {
        let state = self.state.lock().unwrap();
        state.sessions.iter().any(|s| s.id == sid && !s.ended)
    }

    fn issue(&self, state: &mut OpState, sid: &str, nonce: Option<&str>) -> serde_json::Value {
        let user = state
            .sessions
            .iter()
            .find(|s| s.id == sid)
            .unwrap()
            .user
            .clone();
        let mut claims = self.issuer.issuer.claims(&user, SCOPES, &["user"]);
        claims.sid = Some(sid.to_owned());
        let access_token = self.issuer.issuer.token(&claims);
        let refresh_token = random_token(32);
        state
            .refresh
            .insert(refresh_token.clone(), (sid.to_owned(), false));
        let mut body = json!({
            "access_token": access_token, "token_type": "Bearer", "expires_in": 300,
            "refresh_token": refresh_token, "scope": SCOPES,
        });
        if let Some(nonce) = nonce {
            let now = authn::unix_now();
            let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.issuer.issuer.kid()});
            let payload = json!({
                "iss": self.issuer.issuer.issuer, "sub": user, "aud": CLIENT_ID, "exp": now + 300,
                "iat": now, "auth_time": now, "nonce": nonce, "sid": sid,
            });
            body["id_token"] = self
                .issuer
                .issuer
                .forge(&header.to_string(), &payload.to_string())
                .into();
        }
        body
    }

    /// The active session of a bearer token, or `None` (401).
    async fn bearer_session(&self, headers: &HeaderMap) -> Option<OpSession> {
        let token = headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        let principal = self.issuer.issuer.verifier().verify(token).await.ok()?;
        let state = self.state.lock().unwrap();
        state
            .sessions
            .iter()
            .find(|s| Some(s.id.as_str()) == principal.sid() && !s.ended)
            .cloned()
    }
}

fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))).into_response()
}

async fn authorize(State(op): State<Op>, Query(q): Query<HashMap<String, String>>) -> Response {
    let redirect_uri = format!("{PUBLIC_URL}/callback");
    let ok = q.get("response_type").map(String::as_str) == Some("code")
        && q.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && q.get("redirect_uri") == Some(&redirect_uri)
        && q.get("code_challenge_method").map(String::as_str) == Some("S256")
        && q.get("scope").map(String::as_str) == Some(SCOPES)
        && q.contains_key("code_challenge")
        && q.contains_key("state")
        && q.contains_key("nonce");
    if !ok {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let id = random_token(16);
    op.state.lock().unwrap().pending.insert(
        id.clone(),
        AuthRequest {
            redirect_uri,
            state: q["state"].clone(),
            nonce: q["nonce"].clone(),
            code_challenge: q["code_challenge"].clone(),
        },
    );
    Html(format!(
        r#"<form method="post" action="/oauth/authorize">
<input type="hidden" name="request" value="{id}">
<input type="hidden" name="csrf_token" value="op-csrf">
<label for="u">Username</label><input id="u" name="username">
<label for="p">Password</label><input id="p" name="password" type="password">
<button>Sign in</button></form>"#
    ))
    .into_response()
}

async fn sign_in(
    State(op): State<Op>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut state = op.state.lock().unwrap();
    let Some(request) = state.pending.remove(&form["request"]) else {
        return (StatusCode::BAD_REQUEST, "unknown request").into_response();
    };
    assert_eq!(form["csrf_token"], "op-csrf");
    if form["password"] != PASSWORD {
        let mut url = reqwest::Url::parse(&request.redirect_uri).unwrap();
        url.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "<script>alert('x')</script>")
            .append_pair("state", &request.state);
        return Redirect::to(url.as_str()).into_response();
    }
    let sid = random_token(16);
    let header_value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    state.sessions.push(OpSession {
        id: sid.clone(),
        user: form["username"].clone(),
        user_agent: header_value("user-agent"),
        ip: header_value("x-forwarded-for"),
        created_at: authn::unix_now(),
        ended: false,
    });
    let code = random_token(16);
    let mut url = reqwest::Url::parse(&request.redirect_uri).unwrap();
    url.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &request.state);
    state.codes.insert(code, (request, sid));
    Redirect::to(url.as_str()).into_response()
}

fn client_authenticated(headers: &HeaderMap) -> bool {
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Basic {expected}").as_str())
}

async fn token(
    State(op): State<Op>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !client_authenticated(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let mut state = op.state.lock().unwrap();
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    state.calls.push(grant.clone());
    match grant.as_str() {
        "authorization_code" => {
            let Some((request, sid)) = state.codes.remove(&form["code"]) else {
                return oauth_error("invalid_grant");
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            if gateway::web::flow::pkce_challenge(&verifier) != request.code_challenge
                || form.get("redirect_uri") != Some(&request.redirect_uri)
            {
                return oauth_error("invalid_grant");
            }
            let body = op.issue(&mut state, &sid, Some(&request.nonce));
            axum::Json(body).into_response()
        }
        "refresh_token" => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            let Some((sid, used)) = state.refresh.get(&presented).cloned() else {
                return oauth_error("invalid_grant");
            };
            let session = state.sessions.iter_mut().find(|s| s.id == sid).unwrap();
            if used {
                // Reuse of a rotated token: the whole session ends.
                session.ended = true;
            }
            if session.ended {
                return oauth_error("invalid_grant");
            }
            state.refresh.get_mut(&presented).unwrap().1 = true;
            let body = op.issue(&mut state, &sid, None);
            axum::Json(body).into_response()
        }
        _ => oauth_error("unsupported_grant_type"),
    }
}

async fn revoke(
    State(op): State<Op>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    assert!(
        client_authenticated(&headers),
        "revocation authenticates the client"
    );
    let mut state = op.state.lock().unwrap();
    state.calls.push("revoke".into());
    if let Some((sid, _)) = state.refresh.get(&form["token"]).cloned() {
        for session in state.sessions.iter_mut().filter(|s| s.id == sid) {
            session.ended = true;
        }
    }
    StatusCode::OK.into_response()
}

async fn list_sessions(State(op): State<Op>, headers: HeaderMap) -> Response {
    let Some(current) = op.bearer_session(&headers).await else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let state = op.state.lock().unwrap();
    let views: Vec<_> = state
        .sessions
        .iter()
        .filter(|s| s.user == current.user && !s.ended)
        .map(|s| {
            json!({
                "id": s.id, "client_id": CLIENT_ID, "created_at": s.created_at,
                "last_seen_at": s.created_at, "expires_at": s.created_at + 1_209_600,
                "user_agent": s.user_agent, "ip": s.ip, "current": s.id == current.id,
            })
        })
        .collect();
    axum::Json(views).into_response()
}

async fn end_session(
    State(op): State<Op>,
    headers: HeaderMap,
    Path(sid): Path<String>,
) -> Response {
    let Some(current) = op.bearer_session(&headers).await else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let mut state = op.state.lock().unwrap();
    match state
        .sessions
        .iter_mut()
        .find(|s| s.id == sid && s.user == current.user && !s.ended)
    {
        Some(session) => {
            session.ended = true;
            StatusCode::NO_CONTENT.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn logout_all(State(op): State<Op>, headers: HeaderMap) -> Response {
    let Some(current) = op.bearer_session(&headers).await else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let mut state = op.state.lock().unwrap();
    for session in state.sessions.iter_mut().filter(|s| s.user == current.user) {
        session.ended = true;
    }
    StatusCode::NO_CONTENT.into_response()
}

// ---------------------------------------------------------------------------------------------
// The platform and a browser.

struct World {
    op: Op,
    gateway: Gateway,
    _orders: testkit::orders::Orders,
    _issuer: Arc<Issuer>,
}

async fn world() -> World {
    let issuer = Arc::new(Issuer::start().await);
    let orders = spawn_orders(&issuer).await;
    let (op, op_url) = Op::start(issuer.clone()).await;
    let gateway = start_gateway(gateway::Config {
        orders_grpc_url: orders.url(),
        auth_http_url: op_url,
        auth: issuer.verifier_config(),
        public_url: Some(PUBLIC_URL.into()),
        client_id: Some(CLIENT_ID.into()),
        client_secret: Some(SecretString::from(CLIENT_SECRET)),
        ..gateway::Config::default()
    })
    .await;
    eventually("gateway ready", PATIENCE, || async {
        gateway.get("/readyz").send().await.unwrap().status() == StatusCode::OK
    })
    .await;
    World {
        op,
        gateway,
        _orders: orders,
        _issuer: issuer,
    }
}

/// A browser: a cookie jar, a user agent, and the public URL mapped onto the test gateway.
struct Browser {
    /// The gateway's real base URL (`http://127.0.0.1:port`).
    base: String,
    http: reqwest::Client,
    jar: BTreeMap<String, String>,
    user_agent: &'static str,
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

impl Browser {
    fn new(world: &World, user_agent: &'static str) -> Self {
        Self::at(&world.gateway.url(""), user_agent)
    }

    /// A browser of the gateway at `base`; redirects are never followed.
    fn at(base: &str, user_agent: &'static str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: BTreeMap::new(),
            user_agent,
        }
    }

    /// A path, or an absolute URL of the public origin, as a URL of the test gateway.
    fn url(&self, target: &str) -> String {
        let path = target.strip_prefix(PUBLIC_URL).unwrap_or(target);
        assert!(path.starts_with('/'), "off-site navigation to {target}");
        format!("{}{path}", self.base)
    }

    fn absorb(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let value = value.to_str().unwrap();
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            let (name, cookie) = pair.split_once('=').unwrap();
            if name.starts_with("__Host-") {
                assert!(attributes.contains("Secure") && attributes.contains("Path=/"));
                assert!(
                    attributes.contains("HttpOnly"),
                    "{name} is out of JavaScript's reach"
                );
            }
            if attributes.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), cookie.to_owned());
            }
        }
    }

    fn cookies(&self) -> String {
        self.jar
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let mut request = request.header("user-agent", self.user_agent);
        if !self.jar.is_empty() {
            request = request.header(COOKIE, self.cookies());
        }
        let response = request.send().await.unwrap();
        self.absorb(&response);
        response
    }

    async fn get(&mut self, target: &str) -> reqwest::Response {
        let request = self.http.get(self.url(target));
        self.send(request).await
    }

    async fn post(&mut self, target: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let request = self
            .http
            .post(self.url(target))
            .header("origin", self.base.clone())
            .header("sec-fetch-site", "same-origin")
            .form(form);
        self.send(request).await
    }

    /// Signs in through every hop; returns the page the callback sends to.
    async fn sign_in(&mut self, user: &str, return_to: Option<&str>) -> String {
        let login = match return_to {
            Some(path) => format!("/login?return_to={}", urlencode(path)),
            None => "/login".to_owned(),
        };
        let start = self.get(&login).await;
        assert_eq!(start.status(), StatusCode::SEE_OTHER);
        assert!(
            self.jar.contains_key("__Host-login"),
            "the sign-in is sealed in a cookie"
        );
        let authorize = location(&start);
        assert!(
            authorize.starts_with(&format!("{PUBLIC_URL}/oauth/authorize?")),
            "{authorize}"
        );
        let page = self.get(&authorize).await;
        assert_eq!(
            page.status(),
            StatusCode::OK,
            "the issuer accepts the request"
        );
        let form_page = page.text().await.unwrap();
        let mut fields = hidden_inputs(&form_page);
        fields.push(("username".into(), user.into()));
        fields.push(("password".into(), PASSWORD.into()));
        let fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let signed = self.post(&form_action(&form_page), &fields).await;
        assert!(signed.status().is_redirection());
        let callback = location(&signed);
        assert!(
            callback.starts_with(&format!("{PUBLIC_URL}/callback?")),
            "{callback}"
        );
        let done = self.get(&callback).await;
        assert_eq!(
            done.status(),
            StatusCode::SEE_OTHER,
            "{:?}",
            done.text().await
        );
        assert!(
            !self.jar.contains_key("__Host-login"),
            "the sign-in cookie is spent"
        );
        for cookie in ["__Host-access_token", "__Host-refresh_token", "__Host-csrf"] {
            assert!(self.jar.contains_key(cookie), "{cookie}");
        }
        location(&done)
    }

    async fn home(&mut self) -> String {
        let page = self.get("/").await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()["cache-control"], "no-store");
        page.text().await.unwrap()
    }

    /// Posts one of the page's forms with its CSRF token; expects the redirect back.
    async fn submit(&mut self, action: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let page = self.home().await;
        let csrf = csrf_of(&page);
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(extra);
        self.post(action, &form).await
    }

    /// What an access token's expiry does to the jar: the browser drops the cookie.
    fn expire_access_token(&mut self) {
        self.jar.remove("__Host-access_token");
    }
}

fn urlencode(text: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", &[("v", text)])
        .unwrap()
        .query()
        .unwrap()
        .trim_start_matches("v=")
        .to_owned()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()[LOCATION].to_str().unwrap().to_owned()
}

/// `(name, value)` of every `<input type="hidden">` of a page.
fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .map(|tag| &tag[..tag.find('>').unwrap()])
        .filter(|tag| tag.contains(r#"type="hidden""#))
        .map(|tag| (attribute(tag, "name"), attribute(tag, "value")))
        .collect()
}

fn attribute(tag: &str, name: &str) -> String {
    let start = tag.find(&format!(r#"{name}=""#)).unwrap() + name.len() + 2;
    tag[start..start + tag[start..].find('"').unwrap()].to_owned()
}

fn form_action(html: &str) -> String {
    let form = &html[html.find("<form").unwrap()..];
    attribute(&form[..form.find('>').unwrap()], "action")
}

fn csrf_of(page: &str) -> String {
    hidden_inputs(page)
        .into_iter()
        .find(|(name, _)| name == "csrf")
        .expect("a CSRF field")
        .1
}

/// The ids in the `action`s of a page's forms under `prefix` (`/orders/` …).
fn ids_in_actions(page: &str, prefix: &str, suffix: &str) -> Vec<String> {
    page.split(&format!(r#"action="{prefix}"#))
        .skip(1)
        .filter_map(|rest| rest.split_once(suffix).map(|(id, _)| id.to_owned()))
        .filter(|id| !id.contains('"'))
        .collect()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sign_in_then_place_and_cancel_an_order() {
    let world = world().await;
    let mut browser = Browser::new(&world, FIREFOX);

    let signed_out = browser.home().await;
    assert!(signed_out.contains(r#"href="/login""#), "a sign-in link");

    assert_eq!(browser.sign_in("alice", None).await, "/");
    assert_eq!(world.op.calls(), ["authorization_code"]);

    let page = browser.get("/").await;
    let csp = page.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let page = page.text().await.unwrap();
    assert!(page.contains("No orders yet."));
    assert!(!page.contains("<script"), "no script at all");
    assert!(page.contains(r#"<label for="item">"#) && page.contains(r#"<label for="quantity">"#));

    let placed = browser
        .submit("/orders", &[("item", "<b>tea</b>"), ("quantity", "3")])
        .await;
    assert_eq!(placed.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&placed), "/");
    let page = browser.home().await;
    assert!(page.contains("&lt;b&gt;tea&lt;/b&gt;"), "the item, escaped");
    assert!(!page.contains("<b>tea</b>"));
    let ids = ids_in_actions(&page, "/orders/", "/cancel");
    assert_eq!(ids.len(), 1, "one order, cancellable");

    let cancelled = browser
        .submit(&format!("/orders/{}/cancel", ids[0]), &[])
        .await;
    assert_eq!(cancelled.status(), StatusCode::SEE_OTHER);
    let page = browser.home().await;
    assert!(page.contains("cancelled"));
    assert!(ids_in_actions(&page, "/orders/", "/cancel").is_empty());

    // The same cookies work on the REST API.
    let listed = browser.get("/v1/orders").await;
    assert_eq!(listed.status(), StatusCode::OK);
    let json: serde_json::Value = listed.json().await.unwrap();
    assert_eq!(json["orders"][0]["status"], "cancelled");
}

#[tokio::test]
async fn a_link_from_another_site_reloads_once_to_send_the_strict_cookies() {
    let world = world().await;
    let mut browser = Browser::new(&world, FIREFOX);
    browser.sign_in("alice", None).await;
    // What the browser sends for a link from another site: no SameSite=Strict cookie.
    let from_mail = browser
        .http
        .get(browser.url("/"))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(from_mail.status(), StatusCode::OK);
    let page = from_mail.text().await.unwrap();
    assert!(page.contains(r#"<meta http-equiv="refresh" content="0; url=/?reloaded=1">"#));
    assert!(!page.contains("signed out"));
    // The reload starts on the site: the cookies come along, the orders show.
    let reloaded = browser
        .send(
            browser
                .http
                .get(browser.url("/?reloaded=1"))
                .header("sec-fetch-site", "same-origin")
                .header("sec-fetch-mode", "navigate"),
        )
        .await;
    assert!(reloaded.text().await.unwrap().contains("Your orders"));
    // And never more than once, whatever the browser says.
    let again = browser
        .http
        .get(browser.url("/?reloaded=1"))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert!(again.text().await.unwrap().contains("You are signed out."));
}

#[tokio::test]
async fn forms_without_the_csrf_token_or_from_another_site_are_refused() {
    let world = world().await;
    let mut browser = Browser::new(&world, FIREFOX);
    browser.sign_in("alice", None).await;
    let page = browser.home().await;
    let csrf = csrf_of(&page);

    let forged = browser
        .post(
            "/orders",
            &[("csrf", "forged"), ("item", "x"), ("quantity", "1")],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let missing = browser
        .post("/orders", &[("item", "x"), ("quantity", "1")])
        .await;
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);

    let cross_site = browser
        .send(
            browser
                .http
                .post(browser.url("/orders"))
                .header("sec-fetch-site", "cross-site")
                .form(&[("csrf", csrf.as_str()), ("item", "x"), ("quantity", "1")]),
        )
        .await;
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);

    // Another browser's token is not this one's.
    let mut other = Browser::new(&world, IPHONE);
    other.sign_in("alice", None).await;
    let theirs = other
        .post(
            "/orders",
            &[("csrf", csrf.as_str()), ("item", "x"), ("quantity", "1")],
        )
        .await;
    assert_eq!(theirs.status(), StatusCode::FORBIDDEN);

    assert!(
        browser.home().await.contains("No orders yet."),
        "nothing was placed"
    );
}

#[tokio::test]
async fn a_tampered_state_is_refused_and_the_sign_in_is_spent() {
    let world = world().await;
    let mut browser = Browser::new(&world, FIREFOX);
    let start = browser.get("/login").await;
    let authorize = location(&start);
    let page = browser.get(&authorize).await.text().await.unwrap();
    let mut fields = hidden_inputs(&page);
    fields.push(("username".into(), "alice".into()));
    fields.push(("password".into(), PASSWORD.into()));
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let callback = location(&browser.post("/oauth/authorize", &fields).await);

    let mut url = reqwest::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    url.query_pairs_mut().clear();
    for (name, value) in &pairs {
        let value = if name == "state" {
            "tampered"
        } else {
            value.as_str()
        };
        url.query_pairs_mut().append_pair(name, value);
    }
    let refused = browser.get(url.as_str()).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains(r#"<a href="/login">Sign in again</a>"#)
    );
    assert!(!browser.jar.contains_key("__Host-access_token"));
    assert!(world.op.calls().is_empty(), "no code was exchanged");

    // The genuine callback now finds the sign-in spent: a replay gets nothing either.
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(
        replay
            .text()
            .await
            .unwrap()
            .contains("expired or was already completed")
    );
    assert!(!browser.jar.contains_key("__Host-access_token"));
    assert!(world.op.calls().is_empty());
}

#[tokio::test]
async fn a_refused_sign_in_shows_the_issuers_error_escaped() {
    let world = world().await;
    let mut browser = Browser::new(&world, FIREFOX);
    let authorize = location(&browser.get("/login").await);
    let page = browser.get(&authorize).await.text().await.unwrap();
    let mut fields = hidden_inputs(&page);
    fields.push(("username".into(), "alice".into()));
    fields.push(("password".into(), "wrong".into()));
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let callback = location(&browser.post("/oauth/authorize", &fields).await);
    assert!(callback.contains("error=access_denied"));

    let answer = browser.get(&callback).await;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let text = answer.text().await.unwrap();
    assert!(text.contains("cancelled or refused"));
    assert!(
        text.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"),
        "{text}"
    );
    assert!(!text.contains("<script>"));
    assert!(text.contains(r#"href="/login""#));
}

#[tokio::test]
async fn return_to_goes_only_to_local_paths() {
    let world = world().await;
    let mut browser = Browser::new(&world, FIREFOX);
    assert_eq!(
        browser.sign_in("alice", Some("/?from=mail")).await,
        "/?from=mail"
    );
    for evil in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
    ] {
        let mut browser = Browser::new(&world, FIREFOX);
        assert_eq!(browser.sign_in("alice", Some(evil)).await, "/", "{evil}");
    }
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_without_the_user_noticing() {
    let world = world().await;
    let mut browser = Browser::new(&world, FIREFOX);
    browser.sign_in("alice", None).await;
    let first_refresh = browser.jar["__Host-refresh_token"].clone();

    browser.expire_access_token();
    let page = browser.get("/").await;
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "no detour through the sign-in"
    );
    assert!(page.text().await.unwrap().contains("Your orders"));
    assert_eq!(world.op.calls(), ["authorization_code", "refresh_token"]);
    assert!(
        browser.jar.contains_key("__Host-access_token"),
        "a new access token"
    );
    assert_ne!(
        browser.jar["__Host-refresh_token"], first_refresh,
        "rotated"
    );

    // A form posted after expiry goes through too, and rotates again.
    browser.expire_access_token();
    let csrf = csrf_of(&browser.home().await);
    browser.expire_access_token();
    let placed = browser
        .post(
            "/orders",
            &[("csrf", csrf.as_str()), ("item", "tea"), ("quantity", "1")],
        )
        .await;
    assert_eq!(placed.status(), StatusCode::SEE_OTHER);
    assert!(browser.home().await.contains("tea"));

    // A refused refresh (the session ended elsewhere) signs the browser out and sends it to
    // sign in again.
    let sid = world.op.state.lock().unwrap().sessions[0].id.clone();
    world.op.state.lock().unwrap().sessions[0].ended = true;
    assert!(!world.op.session_active(&sid));
    browser.expire_access_token();
    let refused = browser.get("/").await;
    assert_eq!(refused.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&refused), "/login");
    assert!(
        browser.jar.is_empty(),
        "every cookie cleared: {:?}",
        browser.jar
    );
}

#[tokio::test]
async fn the_rest_api_refreshes_a_signed_in_browser_too() {
    let world = world().await;
    let mut browser = Browser::new(&world, FIREFOX);
    browser.sign_in("alice", None).await;
    let refresh = browser.jar["__Host-refresh_token"].clone();

    browser.expire_access_token();
    let listed = browser.get("/v1/orders").await;
    assert_eq!(listed.status(), StatusCode::OK);
    assert!(browser.jar.contains_key("__Host-access_token"));
    assert_ne!(browser.jar["__Host-refresh_token"], refresh, "rotated");
    assert_eq!(world.op.calls(), ["authorization_code", "refresh_token"]);

    world.op.state.lock().unwrap().sessions[0].ended = true;
    browser.expire_access_token();
    let refused = browser.get("/v1/orders").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(browser.jar.is_empty(), "cookies cleared: {:?}", browser.jar);
}

#[tokio::test]
async fn two_tabs_refresh_once_and_a_replay_from_elsewhere_ends_the_session() {
    let world = world().await;
    let mut browser = Browser::new(&world, FIREFOX);
    browser.sign_in("alice", None).await;
    browser.expire_access_token();
    let stolen = browser.jar["__Host-refresh_token"].clone();

    // Two tabs load at once with the same expired session: one rotation between them.
    let tab = || {
        browser
            .http
            .get(browser.url("/"))
            .header("user-agent", FIREFOX)
            .header(COOKIE, browser.cookies())
            .send()
    };
    let (first, second) = tokio::join!(tab(), tab());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);
    let refreshes = world
        .op
        .calls()
        .iter()
        .filter(|c| *c == "refresh_token")
        .count();
    assert_eq!(refreshes, 1, "{:?}", world.op.calls());
    browser.absorb(&first);

    // The rotated token replayed from another device is not handed the new tokens: it reaches
    // the issuer, which ends the session.
    let mut thief = Browser::new(&world, IPHONE);
    thief.jar.insert("__Host-refresh_token".into(), stolen);
    assert_eq!(location(&thief.get("/").await), "/login");
    let sid = world.op.state.lock().unwrap().sessions[0].id.clone();
    assert!(
        !world.op.session_active(&sid),
        "reuse detected at the issuer"
    );
    browser.expire_access_token();
    assert_eq!(location(&browser.get("/").await), "/login");
}

#[tokio::test]
async fn logout_revokes_the_refresh_token_even_with_an_expired_access_cookie() {
    let world = world().await;
    let mut browser = Browser::new(&world, FIREFOX);
    browser.sign_in("alice", None).await;
    let refresh = browser.jar["__Host-refresh_token"].clone();
    let csrf = csrf_of(&browser.home().await);
    let sid = world.op.state.lock().unwrap().sessions[0].id.clone();

    browser.expire_access_token();
    let out = browser.post("/logout", &[("csrf", csrf.as_str())]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&out), "/");
    assert!(browser.jar.is_empty(), "cookies cleared: {:?}", browser.jar);
    assert_eq!(world.op.calls().last().map(String::as_str), Some("revoke"));
    assert!(
        !world.op.session_active(&sid),
        "the session is over at the issuer"
    );

    // The refresh token is worthless now, to whoever kept a copy.
    let mut thief = Browser::new(&world, FIREFOX);
    thief.jar.insert("__Host-refresh_token".into(), refresh);
    let page = thief.get("/").await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&page), "/login");
}

#[tokio::test]
async fn sessions_are_listed_and_other_devices_logged_out() {
    let world = world().await;
    let mut laptop = Browser::new(&world, FIREFOX);
    let mut phone = Browser::new(&world, IPHONE);
    laptop.sign_in("alice", None).await;
    phone.sign_in("alice", None).await;

    let page = laptop.home().await;
    assert!(page.contains("Firefox on Linux"), "{page}");
    assert!(page.contains("Safari on iPhone"));
    assert!(page.contains("This device"));
    assert!(
        page.contains("127.0.0.1"),
        "the address the issuer recorded"
    );
    assert!(page.contains("stateless"), "the verifier mode is shown");
    assert!(page.contains("stays signed in until its access token expires"));
    let others = ids_in_actions(&page, "/sessions/", "/end");
    assert_eq!(
        others.len(),
        1,
        "only the other device can be ended one by one"
    );

    let ended = laptop.submit("/sessions/end-others", &[]).await;
    assert_eq!(ended.status(), StatusCode::SEE_OTHER);
    let page = laptop.home().await;
    assert!(!page.contains("Safari on iPhone"));
    assert!(page.contains("Firefox on Linux"));

    // The phone keeps its access token until it expires (stateless), then cannot renew it.
    phone.expire_access_token();
    let refused = phone.get("/").await;
    assert_eq!(location(&refused), "/login");

    let everywhere = laptop.submit("/logout-everywhere", &[]).await;
    assert_eq!(location(&everywhere), "/");
    assert!(laptop.jar.is_empty());
    let sessions = world.op.state.lock().unwrap().sessions.clone();
    assert!(sessions.iter().all(|s| s.ended));
}

#[tokio::test]
async fn without_configuration_browser_sign_in_is_off() {
    let issuer = Issuer::start().await;
    let gateway = start_gateway(gateway::Config {
        auth: issuer.verifier_config(),
        ..gateway::Config::default()
    })
    .await;
    let login = gateway.get("/login").send().await.unwrap();
    assert_eq!(login.status(), StatusCode::NOT_FOUND);
    assert!(login.text().await.unwrap().contains("not configured"));
    let callback = gateway
        .get("/callback?code=x&state=y")
        .send()
        .await
        .unwrap();
    assert_eq!(callback.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_incomplete_configuration_does_not_start() {
    let issuer = Issuer::start().await;
    let built = gateway::App::build(gateway::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        auth: issuer.verifier_config(),
        public_url: Some("http://shop.example".into()),
        client_id: Some(CLIENT_ID.into()),
        client_secret: Some(SecretString::from(CLIENT_SECRET)),
        ..gateway::Config::default()
    })
    .await;
    let error = built.err().expect("refused").to_string();
    assert!(error.contains("GATEWAY_PUBLIC_URL"), "{error}");
}

/// The cookie transport (`/v1/cookie/*`, password grant, real auth-service): a logout after the
/// access cookie expired, the usual case after a pause, still ends the session, by revoking the
/// refresh token; before, it only cleared the cookies and the session lived on for the refresh
/// token's lifetime.
#[tokio::test]
async fn cookie_logout_with_an_expired_access_cookie_ends_the_session() {
    use testkit::stack::{Options, PASSWORD as STACK_PASSWORD, Stack};
    let stack = Stack::start(Options::default()).await;
    stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    let login = stack
        .http
        .post(stack.url("/v1/cookie/login"))
        .form(&[("username", "alice"), ("password", STACK_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::NO_CONTENT);
    let refresh_cookie = login
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|pair| pair.starts_with("__Host-refresh_token="))
        .expect("a refresh cookie");

    let logout = stack
        .http
        .post(stack.url("/v1/cookie/logout"))
        .header(COOKIE, &refresh_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);

    let refreshed = stack
        .http
        .post(stack.url("/v1/cookie/refresh"))
        .header(COOKIE, &refresh_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = refreshed.json().await.unwrap();
    assert_eq!(
        body["error"], "invalid_grant",
        "the session is over: {body}"
    );
}

/// The whole flow against the real auth-service (its authorization endpoint, hosted sign-in
/// page, code grant and ID token), orders-service and gateway.
#[tokio::test]
async fn the_real_issuer_signs_a_browser_in_and_out() {
    use testkit::stack::{Options, Stack, WEB_PUBLIC_URL};
    assert_eq!(WEB_PUBLIC_URL, PUBLIC_URL);
    let stack = Stack::start(Options {
        web: true,
        ..Options::default()
    })
    .await;
    stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    let mut laptop = Browser::at(&stack.gateway, FIREFOX);
    assert_eq!(laptop.sign_in("alice", Some("/")).await, "/");

    let page = laptop.home().await;
    assert!(page.contains("No orders yet."), "{page}");
    assert!(page.contains("This device"));
    let placed = laptop
        .submit("/orders", &[("item", "green tea"), ("quantity", "2")])
        .await;
    assert_eq!(placed.status(), StatusCode::SEE_OTHER);
    let page = laptop.home().await;
    let ids = ids_in_actions(&page, "/orders/", "/cancel");
    assert_eq!(ids.len(), 1, "{page}");
    let cancelled = laptop
        .submit(&format!("/orders/{}/cancel", ids[0]), &[])
        .await;
    assert_eq!(cancelled.status(), StatusCode::SEE_OTHER);
    assert!(laptop.home().await.contains("cancelled"));

    // A second device, then "log out other devices" from the first.
    let mut phone = Browser::at(&stack.gateway, IPHONE);
    phone.sign_in("alice", None).await;
    let page = laptop.home().await;
    assert_eq!(
        ids_in_actions(&page, "/sessions/", "/end").len(),
        1,
        "{page}"
    );
    assert!(
        page.contains("Firefox on Linux") && page.contains("Safari on iPhone"),
        "{page}"
    );
    assert!(
        page.contains("127.0.0.1"),
        "the browser's address reached the issuer"
    );
    laptop.submit("/sessions/end-others", &[]).await;
    assert!(ids_in_actions(&laptop.home().await, "/sessions/", "/end").is_empty());
    phone.expire_access_token();
    assert_eq!(
        location(&phone.get("/").await),
        "/login",
        "the phone's refresh is refused"
    );

    // Transparent refresh against the real token endpoint.
    let refresh = laptop.jar["__Host-refresh_token"].clone();
    laptop.expire_access_token();
    assert!(laptop.home().await.contains("green tea"));
    assert_ne!(laptop.jar["__Host-refresh_token"], refresh, "rotated");

    // Logout with an expired access cookie ends the session: its refresh token is dead.
    let refresh = laptop.jar["__Host-refresh_token"].clone();
    let csrf = csrf_of(&laptop.home().await);
    laptop.expire_access_token();
    let out = laptop.post("/logout", &[("csrf", csrf.as_str())]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        laptop
            .jar
            .keys()
            .all(|name| !name.starts_with("__Host-access")
                && !name.starts_with("__Host-refresh")
                && name != "__Host-csrf"
                && name != "__Host-id_token")
    );
    let discovery: serde_json::Value = stack
        .http
        .get(stack.auth_url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    if discovery["end_session_endpoint"].is_string() {
        // Through the issuer's RP-initiated logout, which ends its own sign-in session here
        // and sends the browser back to the registered post-logout URI.
        let end_session = location(&out);
        assert!(
            end_session.starts_with(&format!("{PUBLIC_URL}/")),
            "{end_session}"
        );
        assert!(end_session.contains("id_token_hint="), "{end_session}");
        let back = laptop.get(&end_session).await;
        assert!(back.status().is_redirection(), "{}", back.status());
        assert_eq!(location(&back), format!("{PUBLIC_URL}/"));
        let authorize = location(&laptop.get("/login").await);
        let again = laptop.get(&authorize).await;
        assert_eq!(
            again.status(),
            StatusCode::OK,
            "signing in again asks for the password"
        );
    } else {
        assert_eq!(location(&out), "/");
    }
    let refreshed = stack
        .http
        .post(stack.auth_url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        refreshed.status().is_client_error(),
        "{}",
        refreshed.status()
    );
}

/// In `stateful` and `hybrid` modes a device whose session was ended from another one is
/// signed out at its next request (hybrid: once the revocation has been pushed), without
/// waiting for its access token to expire; the page says which mode is in force.
#[tokio::test]
async fn other_devices_are_signed_out_at_once_in_stateful_and_hybrid_modes() {
    use authn::config::AuthMode;
    use testkit::stack::{Options, Stack};
    for mode in [AuthMode::Stateful, AuthMode::Hybrid] {
        let stack = Stack::start(Options {
            mode,
            web: true,
            ..Options::default()
        })
        .await;
        stack
            .add_user("alice", "user", "orders:read orders:write")
            .await;
        let mut laptop = Browser::at(&stack.gateway, FIREFOX);
        let mut phone = Browser::at(&stack.gateway, IPHONE);
        laptop.sign_in("alice", None).await;
        phone.sign_in("alice", None).await;
        let page = laptop.home().await;
        assert!(
            page.contains(&format!("<strong>{}</strong> mode", mode.as_str())),
            "{mode:?}"
        );
        assert!(!page.contains("until its access token expires"));

        let ended = laptop.submit("/sessions/end-others", &[]).await;
        assert_eq!(ended.status(), StatusCode::SEE_OTHER);
        assert!(phone.jar.contains_key("__Host-access_token"), "not expired");
        let jar = phone.cookies();
        eventually(
            &format!("{mode:?}: the phone is signed out"),
            PATIENCE,
            || {
                let request = phone
                    .http
                    .get(phone.url("/"))
                    .header("user-agent", IPHONE)
                    .header(COOKIE, jar.clone())
                    .send();
                async move {
                    let response = request.await.unwrap();
                    response.status() == StatusCode::SEE_OTHER && location(&response) == "/login"
                }
            },
        )
        .await;
        assert!(
            laptop.home().await.contains("Your orders"),
            "{mode:?}: the laptop stays"
        );
    }
}

/// An administrator takes `orders:write` away from a signed-in person. In `stateful` and `hybrid`
/// modes the gateway's next check refuses the access cookie as stale (`hybrid`: once the push has
/// arrived), refreshes it by itself, and serves the page with the new rights, in the same
/// session: the person sees the change at the next click, without signing in again.
#[tokio::test]
async fn new_rights_show_at_the_next_click_in_stateful_and_hybrid_modes() {
    use authn::config::AuthMode;
    use testkit::auth::claims_of;
    use testkit::stack::{Options, Stack};
    for mode in [AuthMode::Stateful, AuthMode::Hybrid] {
        let stack = Stack::start(Options {
            mode,
            web: true,
            ..Options::default()
        })
        .await;
        let alice = stack
            .add_user("alice", "user", "orders:read orders:write")
            .await;
        stack.add_user("root", "admin,user", "users:admin").await;
        let mut laptop = Browser::at(&stack.gateway, FIREFOX);
        laptop.sign_in("alice", None).await;
        let before = laptop.jar["__Host-access_token"].clone();
        let refresh = laptop.jar["__Host-refresh_token"].clone();
        assert_eq!(claims_of(&before)["scope"], SCOPES);

        let admin = stack.token("root", None).await;
        stack.change_scopes(&admin, &alice, "orders:read").await;

        let deadline = std::time::Instant::now() + PATIENCE;
        while laptop.jar["__Host-access_token"] == before {
            assert!(
                std::time::Instant::now() < deadline,
                "{mode:?}: the gateway never renewed the stale access cookie"
            );
            assert!(
                laptop.home().await.contains("Your orders"),
                "{mode:?}: still signed in"
            );
        }
        let after = claims_of(&laptop.jar["__Host-access_token"]);
        assert_eq!(after["scope"], "openid orders:read", "{mode:?}");
        assert_eq!(
            after["sid"],
            claims_of(&before)["sid"],
            "{mode:?}: same session"
        );
        assert_ne!(
            laptop.jar["__Host-refresh_token"], refresh,
            "{mode:?}: rotated"
        );
        assert!(laptop.home().await.contains("Your orders"), "{mode:?}");
    }
}

/// In `stateless` mode neither the gateway nor orders-service knows that a person's rights
/// changed, but the issuer does, and the page asks it for the session list: it refuses the old
/// access token as stale. The gateway renews the session then and there and serves the page with
/// the new rights; the person stays signed in (a refusal of the old token is not a sign-out).
/// The same renewal covers `hybrid` verifiers that hear of the change after the issuer.
#[tokio::test]
async fn a_change_the_issuer_reports_renews_the_session_instead_of_signing_out() {
    use authn::config::AuthMode;
    use testkit::auth::claims_of;
    use testkit::stack::{Options, Stack};
    let stack = Stack::start(Options {
        mode: AuthMode::Stateless,
        web: true,
        ..Options::default()
    })
    .await;
    let alice = stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    stack.add_user("root", "admin,user", "users:admin").await;
    let mut laptop = Browser::at(&stack.gateway, FIREFOX);
    laptop.sign_in("alice", None).await;
    assert!(laptop.home().await.contains("Place order"));
    let before = laptop.jar["__Host-access_token"].clone();

    let admin = stack.token("root", None).await;
    stack.change_scopes(&admin, &alice, "orders:read").await;

    let page = laptop.home().await;
    assert!(page.contains("Your sessions"), "still signed in: {page}");
    assert!(!page.contains("Place order"), "the new rights show: {page}");
    let after = claims_of(&laptop.jar["__Host-access_token"]);
    assert_eq!(after["scope"], "openid orders:read");
    assert_eq!(after["sid"], claims_of(&before)["sid"], "same session");
    assert!(laptop.home().await.contains("Your sessions"));
}
