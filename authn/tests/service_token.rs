//! The verifier's own client-credentials token ([`ServiceToken`]) against a scriptable token
//! endpoint: renewed in the background well before it expires, with retries, so that a renewal
//! that fails (a flood at the issuer, a restart) never lets it lapse; the lazy path stays as the
//! fallback. Counted by the endpoint's hits, never timed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authn::service_token::ServiceToken;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::SecretString;
use testkit::{PATIENCE, eventually};

/// A token endpoint answering from a script, then with tokens `t1`, `t2`, ... for good.
#[derive(Clone, Default)]
struct Endpoint {
    /// Statuses to answer before issuing, one per request (`None`: issue a token).
    script: Arc<Mutex<VecDeque<Option<StatusCode>>>>,
    hits: Arc<Mutex<u32>>,
    issued: Arc<Mutex<u32>>,
    lifetime_secs: u64,
}

impl Endpoint {
    async fn start(lifetime_secs: u64, script: &[Option<StatusCode>]) -> (Self, String) {
        let endpoint = Self {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            lifetime_secs,
            ..Self::default()
        };
        let router = Router::new()
            .route("/oauth/token", post(token))
            .with_state(endpoint.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/oauth/token", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (endpoint, url)
    }

    fn hits(&self) -> u32 {
        *self.hits.lock().unwrap()
    }
}

async fn token(State(endpoint): State<Endpoint>) -> Response {
    *endpoint.hits.lock().unwrap() += 1;
    let scripted = endpoint.script.lock().unwrap().pop_front().flatten();
    if let Some(status) = scripted {
        return (status, [("retry-after", "1")], "{}").into_response();
    }
    let n = {
        let mut issued = endpoint.issued.lock().unwrap();
        *issued += 1;
        *issued
    };
    axum::Json(serde_json::json!({
        "access_token": format!("t{n}"),
        "token_type": "Bearer",
        "expires_in": endpoint.lifetime_secs,
    }))
    .into_response()
}

fn service_token(url: &str) -> ServiceToken {
    ServiceToken::new(
        url,
        "gateway",
        SecretString::from("s3cret"),
        Duration::from_secs(2),
    )
    .expect("service token")
}

#[tokio::test]
async fn the_token_is_renewed_in_the_background_before_it_expires() {
    let (endpoint, url) = Endpoint::start(4, &[]).await;
    let token = service_token(&url);
    assert_eq!(token.get().await.unwrap(), "t1");
    assert_eq!(endpoint.hits(), 1);
    // Nobody asks for the token: it is renewed all the same, ahead of its expiry.
    eventually("a background renewal", PATIENCE * 4, || {
        std::future::ready(endpoint.hits() >= 2)
    })
    .await;
    eventually("the renewed token is served", PATIENCE * 4, || async {
        token.get().await.unwrap() == "t2"
    })
    .await;
    assert_eq!(
        endpoint.hits(),
        2,
        "served from memory, not fetched by `get`"
    );
}

#[tokio::test]
async fn a_failed_renewal_is_retried_until_it_succeeds() {
    // The first token, then two refusals (a flood at the issuer), then tokens again.
    let script = [
        None,
        Some(StatusCode::TOO_MANY_REQUESTS),
        Some(StatusCode::SERVICE_UNAVAILABLE),
    ];
    let (endpoint, url) = Endpoint::start(20, &script).await;
    let token = service_token(&url);
    assert_eq!(token.get().await.unwrap(), "t1");
    eventually(
        "two refused renewals, then a third that succeeds",
        PATIENCE * 6,
        || std::future::ready(endpoint.hits() >= 4),
    )
    .await;
    eventually("the renewed token is served", PATIENCE * 4, || async {
        token.get().await.unwrap() == "t2"
    })
    .await;
    assert_eq!(
        endpoint.hits(),
        4,
        "served from memory, not fetched by `get`"
    );
}

#[tokio::test]
async fn an_invalidated_token_is_fetched_again_on_demand() {
    let (endpoint, url) = Endpoint::start(300, &[]).await;
    let token = service_token(&url);
    assert_eq!(token.get().await.unwrap(), "t1");
    assert_eq!(token.get().await.unwrap(), "t1", "from memory");
    token.invalidate().await;
    assert_eq!(token.get().await.unwrap(), "t2");
    assert_eq!(endpoint.hits(), 2);
}
