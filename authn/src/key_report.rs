//! Telling the issuer which signing keys this verifier holds (`SessionService/ReportKeys`), so
//! that a scheduled rotation waits until every verifier holds the next key before it signs.
//!
//! - A background task reports the `kid`s of the [`JwksClient`]'s set: once the set is loaded,
//!   after every change of its `kid`s, and again before the issuer's `report_interval_seconds`
//!   run out (a heartbeat: a report the verifier stops renewing expires, and the issuer stops
//!   waiting for it).
//! - Every verifier with client credentials reports, whatever its mode; `hybrid` verifiers also
//!   fetch the JWKS at once on the issuer's `KeyAdded` event ([`crate::revocation`]), so they
//!   report a new key within moments of its publication.
//! - A failed report is retried with backoff; nothing on the request path depends on it.

use std::sync::Arc;
use std::time::Duration;

use proto::auth::v1::ReportKeysRequest;
use proto::auth::v1::session_service_client::SessionServiceClient;

use crate::bearer::with_bearer;
use crate::jwks::{JwksClient, WeakJwksClient};
use crate::service_token::ServiceToken;

/// Where and how a verifier reports.
#[derive(Debug)]
pub struct ReporterConfig {
    /// The issuer's gRPC endpoint (`AUTH_GRPC_URL`).
    pub grpc_url: String,
    pub token: Arc<ServiceToken>,
    /// The key set reported.
    pub jwks: JwksClient,
    /// This verifier process, as the issuer counts it: random unless given.
    pub instance: Option<String>,
}

/// What the background task reported; it reports as long as the [`JwksClient`] lives. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct KeyReporter {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    instance: String,
    /// The `kid`s of the last report the issuer accepted, and how many were accepted.
    last: std::sync::Mutex<(Vec<String>, u64)>,
}

/// Used until the issuer's first answer says otherwise.
const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(5);

impl KeyReporter {
    /// Starts the background task. Needs a Tokio runtime.
    pub fn start(config: ReporterConfig) -> Result<Self, tonic::transport::Error> {
        let endpoint = tonic::transport::Endpoint::from_shared(config.grpc_url)?
            .connect_timeout(Duration::from_secs(2))
            .timeout(TIMEOUT)
            .tcp_nodelay(true);
        let instance = config.instance.unwrap_or_else(random_instance);
        let state = Arc::new(State {
            instance,
            last: std::sync::Mutex::new((Vec::new(), 0)),
        });
        tokio::spawn(report_loop(
            state.clone(),
            endpoint,
            config.token,
            config.jwks.downgrade(),
            config.jwks.changes(),
        ));
        Ok(Self { state })
    }

    /// This verifier's instance id, as the issuer lists it.
    pub fn instance(&self) -> &str {
        &self.state.instance
    }

    /// The `kid`s of the last report the issuer accepted.
    pub fn last_reported(&self) -> Vec<String> {
        self.state.last.lock().expect("report state").0.clone()
    }

    /// How many reports the issuer has accepted.
    pub fn reports(&self) -> u64 {
        self.state.last.lock().expect("report state").1
    }
}

fn random_instance() -> String {
    let mut bytes = [0u8; 12];
    aws_lc_rs::rand::fill(&mut bytes).expect("BUG: the system random generator fails");
    crate::base64url::encode(bytes)
}

/// Ends when the JWKS client is dropped (its change channel closes).
async fn report_loop(
    state: Arc<State>,
    endpoint: tonic::transport::Endpoint,
    token: Arc<ServiceToken>,
    jwks: WeakJwksClient,
    mut changes: tokio::sync::watch::Receiver<u64>,
) {
    let mut interval = DEFAULT_REPORT_INTERVAL;
    let mut backoff = Duration::from_millis(200);
    let channel = endpoint.connect_lazy();
    loop {
        changes.borrow_and_update();
        let Some(kids) = jwks.upgrade().map(|jwks| jwks.kids()) else {
            return;
        };
        // Nothing to report before the first key set: its arrival is a change.
        let pause = if kids.is_empty() {
            interval
        } else {
            match report_once(&channel, &token, &state.instance, &kids).await {
                Ok(next) => {
                    interval = next;
                    backoff = Duration::from_millis(200);
                    let mut last = state.last.lock().expect("report state");
                    last.0 = kids;
                    last.1 += 1;
                    interval
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot report the verifier's signing keys to the issuer; retrying");
                    metrics::counter!("auth_key_report_failures_total").increment(1);
                    let pause = backoff;
                    backoff = (backoff * 2).min(interval);
                    pause
                }
            }
        };
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One report; the interval the issuer asks for.
async fn report_once(
    channel: &tonic::transport::Channel,
    token: &ServiceToken,
    instance: &str,
    kids: &[String],
) -> Result<Duration, String> {
    let bearer = token.get().await.map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(ReportKeysRequest {
        instance: instance.to_owned(),
        kids: kids.to_vec(),
    });
    with_bearer(&mut request, &bearer).map_err(|e| e.to_string())?;
    let mut client = SessionServiceClient::new(channel.clone());
    match client.report_keys(request).await {
        Ok(response) => {
            let seconds = response.into_inner().report_interval_seconds;
            Ok(if seconds == 0 {
                DEFAULT_REPORT_INTERVAL
            } else {
                Duration::from_secs(u64::from(seconds))
            })
        }
        Err(status) => {
            if matches!(status.code(), tonic::Code::Unauthenticated) {
                token.invalidate().await;
            }
            Err(status.to_string())
        }
    }
}
