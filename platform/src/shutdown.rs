//! The shutdown trigger every binary waits on, and the readiness-first shutdown sequence every
//! server runs ([`serve`]).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::task::{JoinError, JoinHandle};

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what Kubernetes sends before killing a pod).
pub async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Where a service is in its shutdown sequence (see [`serve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Ready for traffic.
    Serving,
    /// The shutdown signal arrived: `/readyz` answers 503 so that Kubernetes withdraws the
    /// endpoint, while every listener still serves whatever is routed here in the meantime.
    Draining,
    /// The listeners are closed; in-flight requests and streams are finishing.
    Stopping,
}

/// The shutdown phase of one service, shared by its readiness probe, its servers and its
/// long-lived streams. Cheap to clone; every clone sees the same phase.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    phase: std::sync::Arc<tokio::sync::watch::Sender<Phase>>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// A service that is serving.
    pub fn new() -> Self {
        Self {
            phase: std::sync::Arc::new(tokio::sync::watch::Sender::new(Phase::Serving)),
        }
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Whether the service still wants new traffic: what `/readyz` reports, before any other
    /// check.
    pub fn is_serving(&self) -> bool {
        self.phase() == Phase::Serving
    }

    /// Resolves when the listeners must stop accepting: the graceful-shutdown future to give to
    /// `axum::serve(..).with_graceful_shutdown` and tonic's `serve_with_incoming_shutdown`, and
    /// the signal on which long-lived streams (server-streaming RPCs) end themselves, so that the
    /// drain does not wait for them until its deadline.
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        self.reached(Phase::Stopping)
    }

    /// Resolves once the shutdown signal has arrived (readiness is off).
    pub fn draining(&self) -> impl Future<Output = ()> + Send + 'static {
        self.reached(Phase::Draining)
    }

    fn reached(&self, phase: Phase) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.phase.subscribe();
        async move {
            // An error means every sender is gone: nothing will ever change again, so stop.
            let _ = receiver
                .wait_for(|current| rank(*current) >= rank(phase))
                .await;
        }
    }

    fn enter(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }
}

fn rank(phase: Phase) -> u8 {
    match phase {
        Phase::Serving => 0,
        Phase::Draining => 1,
        Phase::Stopping => 2,
    }
}

/// The timing of a graceful shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// How long to keep serving, not ready, after the signal (`*_SHUTDOWN_DELAY`): the time
    /// Kubernetes needs to take the pod out of every Service's endpoints and for kube-proxy,
    /// ingress controllers and client-side balancers to notice, so that no new request is
    /// sent to a closed listener.
    pub delay: Duration,
    /// How long in-flight requests and streams may take to finish once the listeners are
    /// closed (`*_SHUTDOWN_GRACE`); whatever is left after it is cut.
    pub grace: Duration,
}

/// Runs a service's servers until `signal` resolves, then shuts down readiness first:
///
/// 1. [`Phase::Draining`]: `/readyz` turns 503 at once; everything keeps serving for
///    [`Drain::delay`].
/// 2. [`Phase::Stopping`]: the servers (which were given [`Lifecycle::stopping`] as their
///    graceful-shutdown future) close their listeners and let in-flight requests and streams
///    finish, for at most [`Drain::grace`]; what is still running then is aborted.
///
/// A server that stops on its own (an error) stops the others and its result is returned.
pub async fn serve<E>(
    lifecycle: &Lifecycle,
    signal: impl Future<Output = ()>,
    drain: Drain,
    mut servers: Vec<JoinHandle<Result<(), E>>>,
) -> Result<(), E>
where
    E: From<JoinError>,
{
    tokio::select! {
        () = signal => {}
        (index, result) = first_exit(&mut servers) => {
            return stopped_early(servers, index, result).await;
        }
    }

    lifecycle.enter(Phase::Draining);
    tracing::info!(
        delay = ?drain.delay,
        "shutting down: not ready any more, still serving while the endpoint is withdrawn"
    );
    tokio::select! {
        () = tokio::time::sleep(drain.delay) => {}
        (index, result) = first_exit(&mut servers) => {
            return stopped_early(servers, index, result).await;
        }
    }

    lifecycle.enter(Phase::Stopping);
    tracing::info!(grace = ?drain.grace, "listeners closed, draining in-flight requests");
    let mut outcome = Ok(());
    let drained = tokio::time::timeout(drain.grace, async {
        while let Some(server) = servers.last_mut() {
            let result = server.await.map_err(E::from).and_then(|result| result);
            // A finished handle must not be polled again.
            servers.pop();
            if outcome.is_ok() {
                outcome = result;
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("drain deadline reached, closing the remaining connections");
        abort_all(servers).await;
    }
    outcome
}

/// The first server task to finish, and how it finished.
fn first_exit<T>(
    servers: &mut [JoinHandle<T>],
) -> impl Future<Output = (usize, Result<T, JoinError>)> + '_ {
    std::future::poll_fn(move |cx| {
        for (index, server) in servers.iter_mut().enumerate() {
            if let Poll::Ready(result) = Pin::new(server).poll(cx) {
                return Poll::Ready((index, result));
            }
        }
        Poll::Pending
    })
}

async fn stopped_early<E: From<JoinError>>(
    mut servers: Vec<JoinHandle<Result<(), E>>>,
    index: usize,
    result: Result<Result<(), E>, JoinError>,
) -> Result<(), E> {
    // The finished handle must not be polled again.
    drop(servers.swap_remove(index));
    tracing::error!("a server stopped on its own; stopping the others");
    abort_all(servers).await;
    result.map_err(E::from).and_then(|result| result)
}

async fn abort_all<T>(servers: Vec<JoinHandle<T>>) {
    for server in &servers {
        server.abort();
    }
    for server in servers {
        // Finished or cancelled: either way it no longer holds a socket.
        let _ = server.await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    type Server = JoinHandle<Result<(), std::io::Error>>;

    /// A server that serves until told to stop, then takes `drain` to finish.
    fn server(lifecycle: &Lifecycle, drain: Duration) -> Server {
        let stopping = lifecycle.stopping();
        tokio::spawn(async move {
            stopping.await;
            tokio::time::sleep(drain).await;
            Ok(())
        })
    }

    // Real time, kept short: the durations are what is under test.
    const DRAIN: Drain = Drain {
        delay: Duration::from_millis(300),
        grace: Duration::from_millis(600),
    };

    #[tokio::test]
    async fn readiness_turns_off_first_then_the_servers_stop_and_drain() {
        let lifecycle = Lifecycle::new();
        let servers = vec![server(&lifecycle, Duration::from_millis(100))];
        let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn({
            let lifecycle = lifecycle.clone();
            async move {
                serve(
                    &lifecycle,
                    async move {
                        let _ = signalled.await;
                    },
                    DRAIN,
                    servers,
                )
                .await
            }
        });
        assert!(lifecycle.is_serving());

        signal.send(()).unwrap();
        let signalled_at = Instant::now();
        lifecycle.draining().await;
        assert_eq!(lifecycle.phase(), Phase::Draining);
        assert!(!running.is_finished(), "still serving during the delay");

        lifecycle.stopping().await;
        assert!(signalled_at.elapsed() >= DRAIN.delay);
        running.await.unwrap().unwrap();
        assert!(signalled_at.elapsed() >= DRAIN.delay + Duration::from_millis(100));
    }

    #[tokio::test]
    async fn what_outlives_the_grace_period_is_cut() {
        let lifecycle = Lifecycle::new();
        let stuck = server(&lifecycle, Duration::from_secs(3600));
        let started = Instant::now();
        serve(&lifecycle, async {}, DRAIN, vec![stuck])
            .await
            .unwrap();
        let elapsed = started.elapsed();
        assert!(elapsed >= DRAIN.delay + DRAIN.grace, "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
        assert_eq!(lifecycle.phase(), Phase::Stopping);
    }

    #[tokio::test]
    async fn a_failing_server_stops_the_others() {
        let lifecycle = Lifecycle::new();
        let healthy = server(&lifecycle, Duration::ZERO);
        let failing: Server = tokio::spawn(async { Err(std::io::Error::other("bind lost")) });
        let error = serve(
            &lifecycle,
            std::future::pending(),
            DRAIN,
            vec![healthy, failing],
        )
        .await
        .unwrap_err();
        assert_eq!(error.to_string(), "bind lost");
        assert!(lifecycle.is_serving(), "no shutdown sequence was started");
    }
}
