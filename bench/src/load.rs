//! The throughput load: a closed loop per connection (one request in flight each), warm-up,
//! then a measured window. A request counts when it completes inside the window; anything but a
//! 200 / `OK` is an error, counted by kind.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use proto::orders::v1::order_service_client::OrderServiceClient;
use tokio::task::JoinSet;

use crate::cli::Transport;
use crate::client::{HttpConnection, bearer_header, bearer_metadata, get, get_order, grpc_channel};
use crate::stats::Latencies;

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// Pause after a transport error, so a dead server is not hammered in a hot loop.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// What one load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Requests completed in the window, successful or not.
    pub requests: u64,
    /// Non-200 / non-`OK` answers and transport errors in the window, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Latency of every request completed in the window.
    pub latencies: Latencies,
    /// Length of the window.
    pub window: Duration,
}

impl LoadResult {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    #[allow(clippy::cast_precision_loss)]
    pub fn requests_per_second(&self) -> f64 {
        if self.window.is_zero() {
            0.0
        } else {
            self.requests as f64 / self.window.as_secs_f64()
        }
    }

    fn merge(&mut self, worker: WorkerResult) {
        self.requests += worker.latencies.count();
        self.latencies.merge(&worker.latencies);
        for (kind, n) in worker.errors {
            *self.errors.entry(kind).or_default() += n;
        }
    }
}

/// What one worker measured.
#[derive(Default)]
pub(crate) struct WorkerResult {
    latencies: Latencies,
    errors: BTreeMap<String, u64>,
}

impl WorkerResult {
    fn record(&mut self, latency: Duration, outcome: Result<(), String>) {
        self.latencies.record(latency);
        if let Err(kind) = outcome {
            *self.errors.entry(kind).or_default() += 1;
        }
    }
}

/// Shared between the driver and its workers.
struct Control {
    phase: AtomicU8,
    completed: Arc<AtomicU64>,
}

/// What the load asks for.
#[derive(Debug, Clone)]
pub struct Target {
    pub transport: Transport,
    /// The gateway (HTTP) or orders-service (gRPC).
    pub addr: SocketAddr,
    pub order_id: String,
    /// Access tokens, spread over the connections.
    pub tokens: Vec<String>,
}

/// A load running on `connections` connections, in its warm-up until [`Running::measure`].
pub struct Running {
    control: Arc<Control>,
    workers: JoinSet<WorkerResult>,
    window_start: Option<Instant>,
}

impl Running {
    /// Opens every connection, then starts the workers (warming up).
    pub async fn start(target: &Target, connections: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(!target.tokens.is_empty(), "no token to load with");
        let mut running = Self::without_workers();
        for i in 0..connections {
            let token = &target.tokens[i % target.tokens.len()];
            let recorder = running.recorder();
            match target.transport {
                Transport::Http => {
                    let path = format!("/v1/orders/{}", target.order_id);
                    let authorization = bearer_header(token)?;
                    let connection = HttpConnection::new(target.addr);
                    running.spawn(http_worker(connection, path, authorization, recorder));
                }
                Transport::Grpc => {
                    let channel = grpc_channel(target.addr).await?;
                    let client = OrderServiceClient::new(channel);
                    let authorization = bearer_metadata(token)?;
                    let id = target.order_id.clone();
                    running.spawn(grpc_worker(client, id, authorization, recorder));
                }
            }
        }
        Ok(running)
    }

    /// A load in its warm-up, with no worker yet: add them with [`Running::spawn`], each
    /// recording through its own [`Running::recorder`].
    pub(crate) fn without_workers() -> Self {
        Self {
            control: Arc::new(Control {
                phase: AtomicU8::new(WARMUP),
                completed: Arc::default(),
            }),
            workers: JoinSet::new(),
            window_start: None,
        }
    }

    /// The bookkeeping of one more worker.
    pub(crate) fn recorder(&self) -> Recorder {
        Recorder::new(Arc::clone(&self.control))
    }

    /// Starts a worker: a closed loop while [`Recorder::running`], returning
    /// [`Recorder::finish`].
    pub(crate) fn spawn(&mut self, worker: impl Future<Output = WorkerResult> + Send + 'static) {
        self.workers.spawn(worker);
    }

    /// Requests completed so far, warm-up included (for the progress line and the store load).
    pub fn completed(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.control.completed)
    }

    /// Opens the measured window.
    pub fn measure(&mut self) {
        self.control.phase.store(MEASURE, Ordering::SeqCst);
        self.window_start = Some(Instant::now());
    }

    /// Closes the window, waits for every worker to finish its request in flight, and merges.
    pub async fn finish(mut self) -> anyhow::Result<LoadResult> {
        self.control.phase.store(STOP, Ordering::SeqCst);
        let window = self
            .window_start
            .map(|start| start.elapsed())
            .unwrap_or_default();
        let mut result = LoadResult {
            window,
            ..LoadResult::default()
        };
        while let Some(worker) = self.workers.join_next().await {
            result.merge(worker?);
        }
        Ok(result)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.control.phase.store(STOP, Ordering::SeqCst);
    }
}

/// A worker's bookkeeping: counts every completion, records those inside the window, and
/// pauses after a transport error.
pub(crate) struct Recorder {
    control: Arc<Control>,
    result: WorkerResult,
}

impl Recorder {
    fn new(control: Arc<Control>) -> Self {
        Self {
            control,
            result: WorkerResult::default(),
        }
    }

    pub(crate) fn finish(self) -> WorkerResult {
        self.result
    }

    pub(crate) fn running(&self) -> bool {
        self.control.phase.load(Ordering::Relaxed) != STOP
    }

    /// `outcome`: `Err((kind, is_transport_error))` for anything but success.
    pub(crate) async fn complete(&mut self, started: Instant, outcome: Result<(), (String, bool)>) {
        let latency = started.elapsed();
        self.control.completed.fetch_add(1, Ordering::Relaxed);
        let transport_error = matches!(outcome, Err((_, true)));
        if self.control.phase.load(Ordering::Relaxed) == MEASURE {
            self.result
                .record(latency, outcome.map_err(|(kind, _)| kind));
        }
        if transport_error {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
}

/// One request after the other on one connection until stopped.
async fn http_worker(
    mut connection: HttpConnection,
    path: String,
    authorization: http::HeaderValue,
    mut recorder: Recorder,
) -> WorkerResult {
    while recorder.running() {
        let started = Instant::now();
        let (outcome, _) = http_outcome(connection.send(get(&path, Some(&authorization))).await);
        recorder.complete(started, outcome).await;
    }
    recorder.finish()
}

/// One request after the other on one HTTP/2 connection until stopped.
async fn grpc_worker(
    mut client: OrderServiceClient<tonic::transport::Channel>,
    id: String,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    mut recorder: Recorder,
) -> WorkerResult {
    while recorder.running() {
        let started = Instant::now();
        let outcome = get_order(&mut client, &id, &authorization)
            .await
            .map_err(|status| {
                let transport = status.code() == tonic::Code::Unavailable;
                (format!("gRPC {:?}", status.code()), transport)
            });
        recorder.complete(started, outcome).await;
    }
    recorder.finish()
}

/// The outcome of an HTTP request, as [`Recorder::complete`] takes it (only a 200 succeeds),
/// and the body of a 200.
pub(crate) fn http_outcome(
    answer: anyhow::Result<crate::client::HttpResponse>,
) -> (Result<(), (String, bool)>, Option<hyper::body::Bytes>) {
    match answer {
        Ok(response) if response.status == StatusCode::OK => (Ok(()), Some(response.body)),
        Ok(response) => (
            Err((format!("HTTP {}", response.status.as_u16()), false)),
            None,
        ),
        Err(error) => (
            Err((transport_error_kind(&format!("{error:#}")), true)),
            None,
        ),
    }
}

/// A short, stable kind for a transport error (the full text varies by peer address).
fn transport_error_kind(message: &str) -> String {
    let short: String = message.chars().take(60).collect();
    format!("transport error: {short}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers_are_classified() {
        let ok = http_outcome(Ok(crate::client::HttpResponse {
            status: StatusCode::OK,
            body: hyper::body::Bytes::from_static(b"{}"),
        }));
        assert!(ok.0.is_ok() && ok.1.is_some());
        let refused = http_outcome(Ok(crate::client::HttpResponse {
            status: StatusCode::BAD_REQUEST,
            body: hyper::body::Bytes::new(),
        }));
        assert_eq!(refused.0, Err(("HTTP 400".to_owned(), false)));
        let lost = http_outcome(Err(anyhow::anyhow!("connection reset")));
        assert!(matches!(lost.0, Err((kind, true)) if kind.contains("connection reset")));
    }

    #[test]
    fn rates_and_errors() {
        let mut result = LoadResult {
            window: Duration::from_secs(2),
            ..LoadResult::default()
        };
        let mut worker = WorkerResult::default();
        for _ in 0..9 {
            worker.record(Duration::from_millis(1), Ok(()));
        }
        worker.record(Duration::from_millis(5), Err("HTTP 401".into()));
        result.merge(worker);
        let mut other = WorkerResult::default();
        other.record(Duration::from_millis(1), Err("HTTP 401".into()));
        result.merge(other);
        assert_eq!(result.requests, 11);
        assert_eq!(result.error_count(), 2);
        assert_eq!(result.errors.get("HTTP 401"), Some(&2));
        assert!((result.requests_per_second() - 5.5).abs() < 1e-9);
        assert_eq!(LoadResult::default().requests_per_second(), 0.0);
    }
}
