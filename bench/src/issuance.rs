//! The issuance scenario: `POST /oauth/token` straight at auth-service, closed loops on
//! keep-alive connections, for the two grants without Argon2 on their path (issue 7):
//!
//! - `client_credentials`: the seeded client and its secret, in the body, on every request (the
//!   issuer remembers a verified client secret for a while, so Argon2 runs about once a minute);
//! - `refresh_token`: each connection logs in once (before the load), then refreshes with the
//!   refresh token of its previous answer, as a client does (rotation: every answer carries the
//!   next one).
//!
//! Tokens per second and latency come from the load; the issuer's CPU time per token from
//! `/proc` ([`crate::cpu`]), so that tokens per CPU-second of auth-service ("per core") can be
//! set against `openssl speed rsa2048` signatures per second of one core.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;

use crate::client::{Api, HttpConnection, form_encode, json_string, request};
use crate::cpu::CpuUsage;
use crate::load::{LoadResult, Recorder, Running, WorkerResult, http_outcome};
use crate::openssl::RsaSpeed;

const FORM: &str = "application/x-www-form-urlencoded";
const TOKEN_PATH: &str = "/oauth/token";

/// Pause before logging in again after a broken refresh chain.
const RELOGIN_PAUSE: Duration = Duration::from_millis(10);

/// A grant the scenario measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grant {
    ClientCredentials,
    RefreshToken,
}

impl Grant {
    pub const ALL: [Grant; 2] = [Grant::ClientCredentials, Grant::RefreshToken];

    /// Its `grant_type`, also its name in the report.
    pub const fn label(self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken => "refresh_token",
        }
    }
}

/// Who asks for tokens.
#[derive(Debug, Clone)]
pub struct Setup {
    /// auth-service's HTTP listener.
    pub auth: SocketAddr,
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
}

/// One grant's measured window.
#[derive(Debug, Clone)]
pub struct GrantRun {
    pub load: LoadResult,
    pub cpu: Option<CpuUsage>,
}

impl GrantRun {
    /// Tokens issued in the window (answers 200).
    pub fn tokens(&self) -> u64 {
        self.load.requests.saturating_sub(self.load.error_count())
    }

    /// Tokens issued per second.
    #[allow(clippy::cast_precision_loss)]
    pub fn tokens_per_second(&self) -> f64 {
        let window = self.load.window.as_secs_f64();
        if window > 0.0 {
            self.tokens() as f64 / window
        } else {
            0.0
        }
    }

    /// CPU-seconds auth-service spent in the window.
    pub fn issuer_cpu(&self) -> Option<f64> {
        let cpu = self.cpu.as_ref()?;
        cpu.processes
            .iter()
            .find(|(name, _)| name == "auth-service")
            .map(|(_, seconds)| *seconds)
    }

    /// Tokens per CPU-second of auth-service: its rate on one fully busy core.
    #[allow(clippy::cast_precision_loss)]
    pub fn tokens_per_cpu_second(&self) -> Option<f64> {
        let seconds = self.issuer_cpu().filter(|s| *s > 0.0)?;
        let tokens = self.tokens();
        (tokens > 0).then(|| tokens as f64 / seconds)
    }
}

/// What one repeat of the scenario measured.
#[derive(Debug, Clone)]
pub struct IssuanceRun {
    pub grants: BTreeMap<Grant, GrantRun>,
    /// `openssl speed rsa2048` of this machine, or why it was not measured.
    pub openssl: Result<RsaSpeed, String>,
    /// Things the reader must know.
    pub notes: Vec<String>,
}

/// Starts `connections` workers asking for tokens with `grant` (warming up: see
/// [`Running::measure`]). For `refresh_token`, logs each of them in first.
pub async fn start(grant: Grant, setup: &Setup, connections: usize) -> anyhow::Result<Running> {
    let mut running = Running::without_workers();
    match grant {
        Grant::ClientCredentials => {
            let body = form_encode(&[
                ("grant_type", "client_credentials"),
                ("client_id", &setup.client_id),
                ("client_secret", &setup.client_secret),
            ]);
            for _ in 0..connections {
                let recorder = running.recorder();
                let connection = HttpConnection::new(setup.auth);
                running.spawn(client_credentials_worker(
                    connection,
                    body.clone(),
                    recorder,
                ));
            }
        }
        Grant::RefreshToken => {
            // Every session first, so that no login runs alongside the refreshes.
            let mut api = Api::new(setup.auth);
            let mut tokens = Vec::with_capacity(connections);
            for _ in 0..connections {
                tokens.push(
                    api.login_for_refresh(&setup.username, &setup.password)
                        .await?,
                );
            }
            for refresh_token in tokens {
                let recorder = running.recorder();
                let worker = RefreshWorker {
                    connection: HttpConnection::new(setup.auth),
                    api: Api::new(setup.auth),
                    setup: setup.clone(),
                    refresh_token,
                };
                running.spawn(worker.run(recorder));
            }
        }
    }
    Ok(running)
}

async fn client_credentials_worker(
    mut connection: HttpConnection,
    body: String,
    mut recorder: Recorder,
) -> WorkerResult {
    while recorder.running() {
        let started = Instant::now();
        let answer = connection
            .send(request(
                Method::POST,
                TOKEN_PATH,
                None,
                Some((FORM, body.clone())),
            ))
            .await;
        let (outcome, _) = http_outcome(answer);
        recorder.complete(started, outcome).await;
    }
    recorder.finish()
}

/// A client refreshing its session over and over.
struct RefreshWorker {
    connection: HttpConnection,
    /// For logging in again when the chain breaks.
    api: Api,
    setup: Setup,
    refresh_token: String,
}

impl RefreshWorker {
    async fn run(mut self, mut recorder: Recorder) -> WorkerResult {
        while recorder.running() {
            let started = Instant::now();
            let body = form_encode(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &self.refresh_token),
            ]);
            let answer = self
                .connection
                .send(request(Method::POST, TOKEN_PATH, None, Some((FORM, body))))
                .await;
            let (mut outcome, body) = http_outcome(answer);
            let next = body.map(|body| json_string(&body, "refresh_token"));
            match next {
                Some(Ok(token)) => self.refresh_token = token,
                Some(Err(_)) => outcome = Err(("200 without a refresh_token".to_owned(), false)),
                None => {}
            }
            let broken = outcome.is_err();
            recorder.complete(started, outcome).await;
            // The chain is broken (the token was refused, or its answer lost, so the next one
            // would be a reuse that ends the session): a new session, outside the count.
            while broken && recorder.running() {
                match self
                    .api
                    .login_for_refresh(&self.setup.username, &self.setup.password)
                    .await
                {
                    Ok(token) => {
                        self.refresh_token = token;
                        break;
                    }
                    Err(_) => tokio::time::sleep(RELOGIN_PAUSE).await,
                }
            }
        }
        recorder.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(tokens: u64, errors: u64, auth_cpu: f64) -> GrantRun {
        let mut latencies = crate::stats::Latencies::default();
        for _ in 0..tokens + errors {
            latencies.record(Duration::from_millis(1));
        }
        GrantRun {
            load: LoadResult {
                requests: tokens + errors,
                errors: [("HTTP 400".to_owned(), errors)].into_iter().collect(),
                latencies,
                window: Duration::from_secs(2),
            },
            cpu: Some(CpuUsage {
                window: Duration::from_secs(2),
                busy: 2.0,
                processes: vec![("auth-service".into(), auth_cpu), ("loadgen".into(), 0.3)],
            }),
        }
    }

    #[test]
    fn rates_per_second_and_per_cpu_second() {
        let grant = run(5_000, 10, 1.6);
        assert_eq!(grant.tokens(), 5_000);
        assert!((grant.tokens_per_second() - 2_500.0).abs() < 1e-9);
        assert_eq!(grant.issuer_cpu(), Some(1.6));
        assert!((grant.tokens_per_cpu_second().unwrap() - 3_125.0).abs() < 1e-9);
        assert_eq!(run(0, 3, 1.0).tokens_per_cpu_second(), None);
        assert_eq!(run(10, 0, 0.0).tokens_per_cpu_second(), None);
        let without_cpu = GrantRun {
            cpu: None,
            ..run(10, 0, 1.0)
        };
        assert_eq!(without_cpu.tokens_per_cpu_second(), None);
    }

    #[test]
    fn grants_are_named_by_their_grant_type() {
        assert_eq!(Grant::RefreshToken.label(), "refresh_token");
    }
}
