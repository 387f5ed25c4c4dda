//! gRPC: `auth.v1.SessionService`, for verifiers in `stateful` mode (`CheckSession`) and in
//! `hybrid` mode (`WatchRevocations`), and for every verifier with credentials (`ReportKeys`:
//! the signing keys it holds, which a due `next` key waits for; see `crate::keys::verifiers`).
//!
//! Callers authenticate with an access token of this issuer (a `client_credentials` token)
//! carrying scope `sessions:check`; [`authn::grpc::RequireAuthLayer`] verifies it against the
//! issuer's own public key before any RPC runs. A `WatchRevocations` stream stays authorized only
//! as long as that token: it ends when the token expires, and at every heartbeat the token is
//! verified again (its key still published, its session still active) and its client looked
//! up (still registered, still with `sessions:check`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authn::verifier::Verifier;
use authn::{AuthError, Principal, Scope};
use platform::request_metrics::MetricNames;
use platform::shutdown::Lifecycle;
use proto::auth::v1::session_service_server::{SessionService, SessionServiceServer};
use proto::auth::v1::watch_revocations_response::Message;
use proto::auth::v1::{
    CheckSessionRequest, CheckSessionResponse, Heartbeat, ReportKeysRequest, ReportKeysResponse,
    Reset, WatchRevocationsRequest, WatchRevocationsResponse,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::clients::ClientRows;
use crate::keys::KeyManager;
use crate::keys::verifiers::ReportError;
use crate::sessions::SharedStore;
use crate::sessions::revocation::{Event, LogState, PAGE, RevocationLog};

/// The gRPC methods this service serves, the only values of the `rpc` metric label.
pub const RPC_METHODS: &[&str] = &[
    "/auth.v1.SessionService/CheckSession",
    "/auth.v1.SessionService/WatchRevocations",
    "/auth.v1.SessionService/ReportKeys",
];

/// `auth_grpc_requests_total{rpc, code}` and `auth_grpc_request_duration_seconds{rpc, code}`,
/// every call whoever answered it (the authentication layer's refusals included). A
/// `WatchRevocations` stream is counted when it ends, with its whole life as its duration: `OK`
/// when the server ends it (shutdown), `CANCELLED` when the verifier goes away,
/// `UNAUTHENTICATED`/`PERMISSION_DENIED` when its authorization ran out, `UNAVAILABLE` when the
/// log could not be read.
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
    /// What a stream's caller is checked against again at every heartbeat.
    callers: Callers,
    heartbeat: Duration,
    /// The server's shutdown phase: every stream ends once the listeners close
    /// ([`Lifecycle::stopping`]), so the drain never waits on a stream that would never finish
    /// by itself. While the service only reports not ready (the shutdown delay), streams go on:
    /// their verifiers keep receiving revocations until they reconnect elsewhere.
    lifecycle: Lifecycle,
    /// Where `ReportKeys` reports go.
    keys: KeyManager,
}

/// How a stream's caller is authorized again while its stream lasts: the issuer's own verifier
/// (the same that admitted the call) and the client rows.
#[derive(Debug, Clone)]
pub struct Callers {
    pub verifier: Verifier,
    pub clients: ClientRows,
}

impl SessionChecker {
    pub fn new(
        sessions: SharedStore,
        log: RevocationLog,
        callers: Callers,
        heartbeat: Duration,
        lifecycle: Lifecycle,
        keys: KeyManager,
    ) -> Self {
        Self {
            sessions,
            log,
            callers,
            heartbeat,
            lifecycle,
            keys,
        }
    }

    pub fn into_server(self) -> SessionServiceServer<Self> {
        SessionServiceServer::new(self)
    }
}

fn feed_unavailable(error: impl std::fmt::Display) -> Status {
    tracing::warn!(%error, "refusing a revocation stream: the revocation log cannot be read");
    Status::unavailable("the revocation feed is unavailable; reconnect")
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
            return Ok(Response::new(CheckSessionResponse::default()));
        }
        let unavailable = |e: crate::sessions::StoreError| {
            tracing::error!(error = %e, "session lookup failed");
            Status::unavailable("the session store is unavailable")
        };
        let Some(session) = self.sessions.get(sid).await.map_err(unavailable)? else {
            return Ok(Response::new(CheckSessionResponse::default()));
        };
        let user_changed_at = self
            .sessions
            .user_changed_at(&session.user_id)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(CheckSessionResponse {
            active: true,
            expires_at: session.expires_at,
            user_changed_at: user_changed_at.unwrap_or(0),
        }))
    }

    #[tracing::instrument(
        name = "auth.v1.SessionService/ReportKeys",
        skip_all,
        fields(caller, instance, kids)
    )]
    async fn report_keys(
        &self,
        request: Request<ReportKeysRequest>,
    ) -> Result<Response<ReportKeysResponse>, Status> {
        let principal = authn::grpc::principal(&request)?;
        tracing::Span::current().record("caller", principal.sub());
        principal.require(Scope::SessionsCheck)?;
        let claims = principal.claims();
        // A verifier reports with its own client's token; a user's token names no verifier.
        if claims.sid.is_some() {
            return Err(Status::permission_denied(
                "a verifier reports with its client's token",
            ));
        }
        let client = claims
            .client_id
            .clone()
            .unwrap_or_else(|| claims.sub.clone());
        let report = request.into_inner();
        tracing::Span::current().record("instance", report.instance.as_str());
        tracing::Span::current().record("kids", report.kids.len());
        match self
            .keys
            .report(&client, &report.instance, &report.kids)
            .await
        {
            Ok(()) => {}
            Err(ReportError::Invalid(reason)) => return Err(Status::invalid_argument(reason)),
            Err(ReportError::Db(error)) => {
                tracing::error!(%error, "cannot record a verifier's key report");
                return Err(Status::unavailable("cannot record the report; retry"));
            }
        }
        let reports = self.keys.reports();
        let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        Ok(Response::new(ReportKeysResponse {
            report_interval_seconds: secs(reports.report_interval()),
            ttl_seconds: secs(reports.ttl()),
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
        let principal = authn::grpc::principal(&request)?.clone();
        tracing::Span::current().record("caller", principal.sub());
        principal.require(Scope::SessionsCheck)?;
        // The layer tolerates the verifiers' clock leeway past `exp`; a stream does not.
        if authn::unix_now() >= principal.claims().exp {
            return Err(Status::unauthenticated("the access token expired"));
        }
        // The layer verified this very token; it is verified again at every heartbeat.
        let token = authn::grpc::token_from_metadata(request.metadata().as_ref())
            .map_err(|_| Status::unauthenticated("an access token is required"))?
            .to_owned();
        let resume = request.into_inner();
        tracing::Span::current().record("after_sequence", resume.after_sequence);

        // Live events first, so nothing committed after the backlog query can slip between
        // the two; the state before the position, so a reset found meanwhile is not missed.
        let live = self.log.subscribe();
        let state = self.log.watch_state();
        self.log.vouch(self.heartbeat).map_err(feed_unavailable)?;
        let position = self.log.position().await.map_err(feed_unavailable)?;
        let reset = self
            .reset_reason(&resume, &position)
            .await
            .map_err(feed_unavailable)?;
        let start = if let Some(reason) = reset {
            tracing::warn!(
                reason,
                after = resume.after_sequence,
                head = position.head,
                "a watcher's position is not in this revocation log; resetting it"
            );
            0
        } else {
            resume.after_sequence
        };
        let generation = state.borrow().generation;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let watch = Watch {
            log: self.log.clone(),
            tx,
            last: start,
            epoch: position.epoch.clone(),
            generation,
            heartbeat: self.heartbeat,
            lifecycle: self.lifecycle.clone(),
            caller: Caller {
                principal,
                token,
                checks: self.callers.clone(),
            },
        };
        let opening = Opening {
            reset,
            head: position.head,
        };
        tokio::spawn(
            watch
                .run(live, state, opening)
                .instrument(tracing::Span::current()),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

impl SessionChecker {
    /// Why a watcher resuming with `resume` must be reset, if it must: another epoch, a position
    /// above the head, or another event than ours at its position. A position whose event is no
    /// longer retained (expired and pruned) is trusted: it is at or below the head.
    async fn reset_reason(
        &self,
        resume: &WatchRevocationsRequest,
        position: &crate::sessions::revocation::Position,
    ) -> Result<Option<&'static str>, String> {
        if !resume.log_epoch.is_empty() && resume.log_epoch != position.epoch {
            return Ok(Some("epoch"));
        }
        if resume.after_sequence > position.head {
            return Ok(Some("behind"));
        }
        if resume.after_sequence > 0 && !resume.after_fingerprint.is_empty() {
            let ours = self
                .log
                .event_at(resume.after_sequence)
                .await
                .map_err(|e| e.to_string())?;
            if ours.is_some_and(|event| event.fingerprint != resume.after_fingerprint) {
                return Ok(Some("diverged"));
            }
        }
        Ok(None)
    }
}

/// What a stream sends first.
struct Opening {
    /// Why the watcher is reset, if it is.
    reset: Option<&'static str>,
    /// The head read at connect: every committed event up to it is in the backlog query.
    head: u64,
}

/// The caller of one stream, and what its authorization is checked against.
struct Caller {
    principal: Principal,
    /// The bearer token that opened the stream.
    token: String,
    checks: Callers,
}

impl Caller {
    /// Whether the caller is still authorized: `Err` with the status to end the stream with.
    async fn authorize(&self) -> Result<(), End> {
        let claims = self.principal.claims();
        if authn::unix_now() >= claims.exp {
            return Err(End::Refused(Status::unauthenticated(
                "the access token expired",
            )));
        }
        // Its key still published (a revoked key is withdrawn), its session still active.
        match self.checks.verifier.verify(&self.token).await {
            Ok(_) => {}
            Err(AuthError::Unavailable) => {
                return Err(End::Failed("the caller's token cannot be verified".into()));
            }
            Err(error) => return Err(End::Refused(error.into())),
        }
        if claims.sid.is_none() {
            // A service token: its client must still be registered, with the scope.
            let id = claims.client_id.as_deref().unwrap_or(&claims.sub);
            match self.checks.clients.find(id).await {
                Ok(Some(client)) if client.scopes.contains(Scope::SessionsCheck.as_str()) => {}
                Ok(Some(_)) => {
                    return Err(End::Refused(Status::permission_denied(
                        "scope sessions:check is required",
                    )));
                }
                Ok(None) => {
                    return Err(End::Refused(Status::unauthenticated(
                        "the client is no longer registered",
                    )));
                }
                Err(error) => return Err(End::Failed(error.to_string())),
            }
        }
        Ok(())
    }

    /// When the token expires (its `exp`, to the millisecond), on the monotonic clock.
    fn expiry(&self) -> tokio::time::Instant {
        let left_ms = self
            .principal
            .claims()
            .exp
            .saturating_mul(1000)
            .saturating_sub(unix_millis())
            .max(0);
        tokio::time::Instant::now() + Duration::from_millis(u64::try_from(left_ms).unwrap_or(0))
    }
}

/// One `WatchRevocations` stream.
struct Watch {
    log: RevocationLog,
    tx: mpsc::Sender<Result<WatchRevocationsResponse, Status>>,
    /// Every retained event up to this sequence has been sent (or was before `after_sequence`).
    last: u64,
    /// The epoch of the log this stream follows, sent with every heartbeat.
    epoch: String,
    /// The log's generation the stream's position belongs to.
    generation: u64,
    heartbeat: Duration,
    lifecycle: Lifecycle,
    caller: Caller,
}

/// Why a stream ends other than by shutdown.
enum End {
    /// The client went away.
    Gone,
    /// The table could not be read, or this replica cannot vouch for it: the client is told,
    /// and reconnects (perhaps to another replica).
    Failed(String),
    /// The caller is no longer authorized: the client is told why, and reconnects with a fresh
    /// token if it can get one.
    Refused(Status),
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
    async fn run(
        mut self,
        live: broadcast::Receiver<Arc<Event>>,
        state: watch::Receiver<LogState>,
        opening: Opening,
    ) {
        let _watching = Watching::start();
        tracing::debug!(after = self.last, "revocation watcher connected");
        let ended = match self.serve(live, state, opening).await {
            Ok(()) => {
                tracing::debug!("revocation stream ended by shutdown");
                return;
            }
            Err(End::Gone) => {
                tracing::debug!("revocation watcher went away");
                return;
            }
            Err(End::Failed(error)) => {
                tracing::warn!(%error, "revocation stream failed");
                Status::unavailable("the revocation feed is unavailable; reconnect")
            }
            Err(End::Refused(status)) => {
                tracing::info!(
                    reason = status.message(),
                    "revocation stream no longer authorized; ending it"
                );
                status
            }
        };
        let _ = self.tx.send(Err(ended)).await;
    }

    /// The opening (a reset if the watcher's position is not in this log), the backlog, a
    /// heartbeat, then live events and periodic heartbeats until shutdown.
    async fn serve(
        &mut self,
        mut live: broadcast::Receiver<Arc<Event>>,
        mut state: watch::Receiver<LogState>,
        opening: Opening,
    ) -> Result<(), End> {
        // Subscribed before anything is sent, so a shutdown during the backlog is not missed.
        let stopping = self.lifecycle.stopping();
        tokio::pin!(stopping);
        let expired = tokio::time::sleep_until(self.caller.expiry());
        tokio::pin!(expired);
        if let Some(reason) = opening.reset {
            self.send_reset(reason, opening.head).await?;
        }
        self.catch_up().await?;
        // Every committed event up to the head read at connect was in the backlog query (read
        // after it), unless pruned.
        self.last = self.last.max(opening.head);
        self.send_heartbeat(&mut live).await?;
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + self.heartbeat, self.heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let tx = self.tx.clone();
        loop {
            tokio::select! {
                biased;
                () = &mut stopping => return Ok(()),
                () = tx.closed() => return Err(End::Gone),
                () = &mut expired => {
                    return Err(End::Refused(Status::unauthenticated("the access token expired")));
                }
                changed = state.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let current = state.borrow_and_update().clone();
                    if let Some(failure) = current.failure {
                        return Err(End::Failed(failure.to_string()));
                    }
                    if current.generation != self.generation {
                        self.restart(&mut live).await?;
                    }
                }
                received = live.recv() => match received {
                    // Read in another generation of the log: the restart re-reads the table.
                    Ok(_) if self.log.state().generation != self.generation => {
                        self.restart(&mut live).await?;
                    }
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
                _ = ticks.tick() => {
                    self.caller.authorize().await?;
                    self.send_heartbeat(&mut live).await?;
                }
            }
        }
    }

    /// The log went back under this stream: tells the watcher, and delivers the log again from
    /// its oldest retained event, as at a connection that needed a reset.
    async fn restart(&mut self, live: &mut broadcast::Receiver<Arc<Event>>) -> Result<(), End> {
        // A new subscription drops whatever was broadcast from the old history; then the state
        // and the head, as at connect.
        *live = self.log.subscribe();
        let state = self.log.state();
        let position = self
            .log
            .position()
            .await
            .map_err(|e| End::Failed(e.to_string()))?;
        self.generation = state.generation;
        self.epoch = position.epoch.clone();
        self.last = 0;
        tracing::warn!(
            found = state.reason,
            head = position.head,
            "resetting a revocation watcher: the log went back"
        );
        self.send_reset("restored", position.head).await?;
        self.catch_up().await?;
        self.last = self.last.max(position.head);
        self.send_heartbeat(live).await
    }

    async fn send_reset(&mut self, reason: &'static str, head: u64) -> Result<(), End> {
        metrics::counter!("auth_revocation_stream_resets_total", "reason" => reason).increment(1);
        self.send(Message::Reset(Reset {
            reason: reason.to_owned(),
            log_epoch: self.epoch.clone(),
            head_sequence: head,
        }))
        .await
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

    /// A heartbeat, after whatever the tailer has seen that this stream has not sent yet, if
    /// this replica can vouch for its log; none otherwise (the verifier then goes stale), and
    /// the stream ends if the tailer failed.
    async fn send_heartbeat(
        &mut self,
        live: &mut broadcast::Receiver<Arc<Event>>,
    ) -> Result<(), End> {
        if self.log.state().generation != self.generation {
            return Box::pin(self.restart(live)).await;
        }
        if let Err(reason) = self.log.vouch(self.heartbeat) {
            if self.log.state().failure.is_some() {
                return Err(End::Failed(reason));
            }
            tracing::debug!(%reason, "withholding a heartbeat");
            return Ok(());
        }
        let tail = self.log.tail();
        if tail > self.last {
            self.catch_up().await?;
            self.last = self.last.max(tail);
        }
        self.send(Message::Heartbeat(Heartbeat {
            head_sequence: self.last,
            sent_at_ms: unix_millis(),
            log_epoch: self.epoch.clone(),
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
                ["CheckSession", "WatchRevocations", "ReportKeys"].contains(&name),
                "{method}"
            );
        }
        assert_eq!(RPC_METHODS.len(), 3);
    }
}
