//! gRPC: `auth.v1.SessionService`, for verifiers in `stateful` mode (`CheckSession`) and in
//! `hybrid` mode (`WatchRevocations`).
//!
//! Callers authenticate with an access token of this issuer (a `client_credentials` token)
//! carrying scope `sessions:check`; [`authn::grpc::RequireAuthLayer`] verifies it against the
//! issuer's own public key before any RPC runs.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authn::Scope;
use platform::request_metrics::MetricNames;
use platform::shutdown::Lifecycle;
use proto::auth::v1::session_service_server::{SessionService, SessionServiceServer};
use proto::auth::v1::watch_revocations_response::Message;
use proto::auth::v1::{
    CheckSessionRequest, CheckSessionResponse, Heartbeat, WatchRevocationsRequest,
    WatchRevocationsResponse,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::sessions::SharedStore;
use crate::sessions::revocation::{Event, PAGE, RevocationLog};

/// The gRPC methods this service serves, the only values of the `rpc` metric label.
pub const RPC_METHODS: &[&str] = &[
    "/auth.v1.SessionService/CheckSession",
    "/auth.v1.SessionService/WatchRevocations",
];

/// `auth_grpc_requests_total{rpc, code}` and `auth_grpc_request_duration_seconds{rpc, code}`,
/// every call whoever answered it (the authentication layer's refusals included). A
/// `WatchRevocations` stream is counted when it ends, with its whole life as its duration: `OK`
/// when the server ends it (shutdown), `CANCELLED` when the verifier goes away.
pub const GRPC_METRICS: MetricNames = MetricNames::new(
    "auth_grpc_requests_total",
    "auth_grpc_request_duration_seconds",
);

/// Longest `sid` looked up; ours are 22 characters.
const MAX_SID_LEN: usize = 128;
/// Messages buffered per stream before the stream task waits for the client.
const STREAM_BUFFER: usize = 64;

/// The `SessionService` implementation.
#[derive(Debug, Clone)]
pub struct SessionChecker {
    sessions: SharedStore,
    log: RevocationLog,
    heartbeat: Duration,
    /// The server's shutdown phase: every stream ends once the listeners close
    /// ([`Lifecycle::stopping`]), so the drain never waits on a stream that would never finish
    /// by itself. While the service only reports not ready (the shutdown delay), streams go on:
    /// their verifiers keep receiving revocations until they reconnect elsewhere.
    lifecycle: Lifecycle,
}

impl SessionChecker {
    pub fn new(
        sessions: SharedStore,
        log: RevocationLog,
        heartbeat: Duration,
        lifecycle: Lifecycle,
    ) -> Self {
        Self {
            sessions,
            log,
            heartbeat,
            lifecycle,
        }
    }

    pub fn into_server(self) -> SessionServiceServer<Self> {
        SessionServiceServer::new(self)
    }
}

fn internal(error: impl std::fmt::Display) -> Status {
    tracing::error!(%error, "session service failed");
    Status::internal("internal error")
}

#[tonic::async_trait]
impl SessionService for SessionChecker {
    #[tracing::instrument(name = "auth.v1.SessionService/CheckSession", skip_all, fields(caller))]
    async fn check_session(
        &self,
        request: Request<CheckSessionRequest>,
    ) -> Result<Response<CheckSessionResponse>, Status> {
        let principal = authn::grpc::principal(&request)?;
        tracing::Span::current().record("caller", principal.sub());
        principal.require(Scope::SessionsCheck)?;
        let sid = request.get_ref().sid.as_str();
        if sid.is_empty() {
            return Err(Status::invalid_argument("sid is required"));
        }
        if sid.len() > MAX_SID_LEN {
            return Ok(Response::new(CheckSessionResponse {
                active: false,
                expires_at: 0,
            }));
        }
        let session = self.sessions.get(sid).await.map_err(|e| {
            tracing::error!(error = %e, "session lookup failed");
            Status::unavailable("the session store is unavailable")
        })?;
        Ok(Response::new(CheckSessionResponse {
            active: session.is_some(),
            expires_at: session.map_or(0, |s| s.expires_at),
        }))
    }

    type WatchRevocationsStream = ReceiverStream<Result<WatchRevocationsResponse, Status>>;

    #[tracing::instrument(
        name = "auth.v1.SessionService/WatchRevocations",
        skip_all,
        fields(caller, after_sequence)
    )]
    async fn watch_revocations(
        &self,
        request: Request<WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let principal = authn::grpc::principal(&request)?;
        tracing::Span::current().record("caller", principal.sub());
        principal.require(Scope::SessionsCheck)?;
        let after = request.get_ref().after_sequence;
        tracing::Span::current().record("after_sequence", after);

        // Live events first, so nothing committed after the backlog query can slip between
        // the two.
        let live = self.log.subscribe();
        let head = self.log.head().await.map_err(internal)?;
        let start = if after > head {
            // Not a sequence of this issuer (a database restored from a backup, or another
            // deployment): start from our head, so new events are delivered; the heartbeat's
            // head_sequence tells the verifier where we are.
            tracing::warn!(after, head, "a watcher is ahead of the revocation log");
            head
        } else {
            after
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let watch = Watch {
            log: self.log.clone(),
            tx,
            last: start,
            head_at_connect: head,
            heartbeat: self.heartbeat,
            lifecycle: self.lifecycle.clone(),
        };
        tokio::spawn(watch.run(live).instrument(tracing::Span::current()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// One `WatchRevocations` stream.
struct Watch {
    log: RevocationLog,
    tx: mpsc::Sender<Result<WatchRevocationsResponse, Status>>,
    /// Every retained event up to this sequence has been sent (or was before `after_sequence`).
    last: u64,
    head_at_connect: u64,
    heartbeat: Duration,
    lifecycle: Lifecycle,
}

/// Why a stream ends other than by shutdown.
enum End {
    /// The client went away.
    Gone,
    /// The table could not be read: the client is told, and reconnects.
    Failed(String),
}

/// Counts open streams in `auth_revocation_watchers`.
struct Watching;

impl Watching {
    fn start() -> Self {
        metrics::gauge!("auth_revocation_watchers").increment(1.0);
        Watching
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        metrics::gauge!("auth_revocation_watchers").decrement(1.0);
    }
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Watch {
    async fn run(mut self, live: broadcast::Receiver<Arc<Event>>) {
        let _watching = Watching::start();
        tracing::debug!(after = self.last, "revocation watcher connected");
        match self.serve(live).await {
            Ok(()) => tracing::debug!("revocation stream ended by shutdown"),
            Err(End::Gone) => tracing::debug!("revocation watcher went away"),
            Err(End::Failed(error)) => {
                tracing::warn!(%error, "revocation stream failed");
                let _ = self
                    .tx
                    .send(Err(Status::unavailable(
                        "the revocation feed is unavailable; reconnect",
                    )))
                    .await;
            }
        }
    }

    /// The backlog, a heartbeat, then live events and periodic heartbeats until shutdown.
    async fn serve(&mut self, mut live: broadcast::Receiver<Arc<Event>>) -> Result<(), End> {
        // Subscribed before anything is sent, so a shutdown during the backlog is not missed.
        let stopping = self.lifecycle.stopping();
        tokio::pin!(stopping);
        self.catch_up().await?;
        // Every committed event up to the head read at connect was in the backlog query (read
        // after it), unless pruned.
        self.last = self.last.max(self.head_at_connect);
        self.send_heartbeat().await?;
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + self.heartbeat, self.heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let tx = self.tx.clone();
        loop {
            tokio::select! {
                biased;
                () = &mut stopping => return Ok(()),
                () = tx.closed() => return Err(End::Gone),
                received = live.recv() => match received {
                    Ok(event) if event.sequence <= self.last => {}
                    Ok(event) if event.sequence == self.last + 1 => self.send_event(&event).await?,
                    // Sequences have no gaps: a jump means something was missed. Re-read.
                    Ok(_) => self.catch_up().await?,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "revocation watcher lagged; re-reading the log");
                        self.catch_up().await?;
                    }
                    Err(RecvError::Closed) => return Ok(()),
                },
                _ = ticks.tick() => self.send_heartbeat().await?,
            }
        }
    }

    /// Sends every retained event after `last`, from the table.
    async fn catch_up(&mut self) -> Result<(), End> {
        loop {
            let events = self
                .log
                .read_after(self.last, PAGE)
                .await
                .map_err(|e| End::Failed(e.to_string()))?;
            let full_page = events.len() == usize::try_from(PAGE).unwrap_or(usize::MAX);
            for event in &events {
                self.send_event(event).await?;
            }
            if !full_page {
                return Ok(());
            }
        }
    }

    async fn send_event(&mut self, event: &Event) -> Result<(), End> {
        self.send(Message::Event(event.to_proto())).await?;
        self.last = event.sequence;
        Ok(())
    }

    /// A heartbeat, after whatever the tailer has seen that this stream has not sent yet.
    async fn send_heartbeat(&mut self) -> Result<(), End> {
        let tail = self.log.tail();
        if tail > self.last {
            self.catch_up().await?;
            self.last = self.last.max(tail);
        }
        self.send(Message::Heartbeat(Heartbeat {
            head_sequence: self.last,
            sent_at_ms: unix_millis(),
        }))
        .await
    }

    async fn send(&self, message: Message) -> Result<(), End> {
        self.tx
            .send(Ok(WatchRevocationsResponse {
                message: Some(message),
            }))
            .await
            .map_err(|_| End::Gone)
    }
}

#[cfg(test)]
mod tests {
    use proto::auth::v1::session_service_server::SERVICE_NAME;

    use super::RPC_METHODS;

    #[test]
    fn the_metric_methods_are_the_services_methods() {
        for method in RPC_METHODS {
            let name = method
                .strip_prefix(&format!("/{SERVICE_NAME}/"))
                .unwrap_or_else(|| panic!("{method} is not a method of {SERVICE_NAME}"));
            assert!(
                ["CheckSession", "WatchRevocations"].contains(&name),
                "{method}"
            );
        }
        assert_eq!(RPC_METHODS.len(), 2);
    }
}
