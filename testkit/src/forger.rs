//! An in-process issuer that mints and forges tokens, and a scriptable JWKS server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde_json::{Value, json};

use authn::claims::{AccessClaims, Audience};
use authn::config::VerifierConfig;
use authn::jwk::{JwkSet, KeySet};
use authn::jws::b64_encode;
use authn::sign::Signer;
use authn::verifier::{Keys, Policy, Verifier};

/// A token issuer for tests: a fresh RSA-2048 key, issuer [`TestIssuer::ISSUER`], audience
/// [`TestIssuer::AUDIENCE`].
#[derive(Debug, Clone)]
pub struct TestIssuer {
    pub issuer: String,
    pub audience: String,
    signer: Arc<Signer>,
}

impl Default for TestIssuer {
    fn default() -> Self {
        Self::new()
    }
}

impl TestIssuer {
    pub const ISSUER: &'static str = "https://issuer.test";
    pub const AUDIENCE: &'static str = "orders";

    pub fn new() -> Self {
        Self::with_signer(Signer::generate().expect("RSA key generation"))
    }

    /// An issuer signing with a fresh key of `alg` (RS256, ES256 or EdDSA).
    pub fn with_alg(alg: authn::jwk::Algorithm) -> Self {
        Self::with_signer(Signer::generate_for(alg).expect("key generation"))
    }

    pub fn with_signer(signer: Signer) -> Self {
        Self {
            issuer: Self::ISSUER.to_owned(),
            audience: Self::AUDIENCE.to_owned(),
            signer: Arc::new(signer),
        }
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    pub fn kid(&self) -> &str {
        self.signer.kid()
    }

    /// Valid claims for `sub`, issued now for five minutes, with a session id.
    pub fn claims(&self, sub: &str, scope: &str, roles: &[&str]) -> AccessClaims {
        let now = authn::unix_now();
        AccessClaims {
            iss: self.issuer.clone(),
            sub: sub.to_owned(),
            aud: Audience::One(self.audience.clone()),
            exp: now + 300,
            iat: now,
            nbf: Some(now),
            jti: crate::random_token(16),
            scope: (!scope.is_empty()).then(|| scope.to_owned()),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            sid: Some(crate::random_token(16)),
            client_id: None,
        }
    }

    /// Signs `claims` exactly as the real issuer does.
    pub fn token(&self, claims: &AccessClaims) -> String {
        self.signer.sign(claims).expect("signing")
    }

    /// A valid user token.
    pub fn user_token(&self, sub: &str, scope: &str, roles: &[&str]) -> String {
        self.token(&self.claims(sub, scope, roles))
    }

    /// The standard header of our tokens, to edit when forging.
    pub fn header(&self) -> Value {
        json!({ "alg": self.signer.algorithm().as_str(), "typ": "at+jwt", "kid": self.kid() })
    }

    /// Signs an arbitrary header and payload (given as JSON text, so duplicate members and odd
    /// types can be expressed) with this issuer's real key.
    pub fn forge(&self, header_json: &str, payload_json: &str) -> String {
        let signing_input = format!("{}.{}", b64_encode(header_json), b64_encode(payload_json));
        let signature = self
            .signer
            .sign_bytes(signing_input.as_bytes())
            .expect("signing");
        format!("{signing_input}.{}", b64_encode(signature))
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet::from_keys([self.signer.public_jwk()])
    }

    pub fn key_set(&self) -> KeySet {
        KeySet::from_jwks(&self.jwks()).0
    }

    pub fn policy(&self) -> Policy {
        Policy::new(&self.issuer, &self.audience)
    }

    /// A verifier trusting only this issuer's key, with no network.
    pub fn verifier(&self) -> Verifier {
        Verifier::new(Keys::fixed(self.key_set()), self.policy())
    }

    /// A verifier configuration for a service under test, fetching keys from `jwks_url`.
    pub fn verifier_config(&self, jwks_url: &str) -> VerifierConfig {
        VerifierConfig {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            jwks_url: jwks_url.to_owned(),
            ..VerifierConfig::default()
        }
    }

    /// Serves this issuer's JWKS on `127.0.0.1:0`.
    pub async fn serve_jwks(&self) -> JwksServer {
        JwksServer::start(
            StatusCode::OK,
            serde_json::to_string(&self.jwks()).expect("json"),
        )
        .await
    }
}

/// What a [`JwksServer`] answers.
#[derive(Debug, Clone)]
struct Script {
    status: StatusCode,
    body: String,
    cache_control: Option<String>,
    etag: Option<String>,
    delay: std::time::Duration,
}

/// A JWKS endpoint whose answer a test can change (status, body, `Cache-Control`, `ETag`, a
/// delay), counting the requests it receives and the conditional ones it answered with 304.
#[derive(Debug)]
pub struct JwksServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    not_modified: Arc<AtomicUsize>,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(status: StatusCode, body: String) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let not_modified = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Mutex::new(Script {
            status,
            body,
            cache_control: None,
            etag: None,
            delay: std::time::Duration::ZERO,
        }));
        let handler = {
            let (hits, not_modified, script) = (hits.clone(), not_modified.clone(), script.clone());
            move |headers: axum::http::HeaderMap| async move {
                use axum::http::header;
                use axum::response::IntoResponse;
                hits.fetch_add(1, Ordering::SeqCst);
                let script = script.lock().expect("lock").clone();
                tokio::time::sleep(script.delay).await;
                let matches = script.etag.as_deref().is_some_and(|etag| {
                    headers
                        .get(header::IF_NONE_MATCH)
                        .and_then(|v| v.to_str().ok())
                        == Some(etag)
                });
                let mut response = if matches {
                    not_modified.fetch_add(1, Ordering::SeqCst);
                    StatusCode::NOT_MODIFIED.into_response()
                } else {
                    (
                        script.status,
                        [(header::CONTENT_TYPE, "application/json")],
                        script.body,
                    )
                        .into_response()
                };
                for (name, value) in [
                    (header::CACHE_CONTROL, script.cache_control),
                    (header::ETAG, script.etag),
                ] {
                    if let Some(value) = value.and_then(|v| v.parse().ok()) {
                        response.headers_mut().insert(name, value);
                    }
                }
                response
            }
        };
        let router = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        Self {
            addr,
            hits,
            not_modified,
            script,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    /// How many requests arrived so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// How many conditional requests were answered 304 Not Modified.
    pub fn not_modified(&self) -> usize {
        self.not_modified.load(Ordering::SeqCst)
    }

    /// Changes what the endpoint answers from now on.
    pub fn respond(&self, status: StatusCode, body: impl Into<String>) {
        let mut script = self.script.lock().expect("lock");
        script.status = status;
        script.body = body.into();
    }

    /// Sends this `Cache-Control` from now on.
    pub fn cache_control(&self, value: Option<&str>) {
        self.script.lock().expect("lock").cache_control = value.map(str::to_owned);
    }

    /// Sends this `ETag`, and answers 304 to requests that present it, from now on.
    pub fn etag(&self, value: Option<&str>) {
        self.script.lock().expect("lock").etag = value.map(str::to_owned);
    }

    /// Waits this long before answering, from now on.
    pub fn delay(&self, delay: std::time::Duration) {
        self.script.lock().expect("lock").delay = delay;
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
