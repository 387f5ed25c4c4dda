//! The gauges of the session counts: `auth_sessions_active` and `auth_users_active`, set from a
//! snapshot of the store ([`super::stats`]) every `AUTH_SESSION_STATS_INTERVAL`, so that a
//! scrape never queries the store.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::revocation::stopped;
use super::stats::SessionStats;
use super::store::{SharedStore, StoreError};

/// Publishes `auth_sessions_active` and `auth_users_active` from a snapshot of the store,
/// every interval.
#[derive(Debug, Clone)]
pub struct StatsRefresher {
    store: SharedStore,
    interval: Duration,
}

impl StatsRefresher {
    pub fn new(store: SharedStore, interval: Duration) -> Self {
        Self { store, interval }
    }

    /// Takes one snapshot and sets the gauges from it.
    pub async fn refresh(&self) -> Result<SessionStats, StoreError> {
        let started = std::time::Instant::now();
        let stats = self.store.stats(crate::db::now()).await?;
        #[allow(clippy::cast_precision_loss)]
        {
            metrics::gauge!("auth_sessions_active").set(stats.active_sessions as f64);
            metrics::gauge!("auth_users_active").set(stats.active_users as f64);
            metrics::gauge!("auth_session_stats_timestamp_seconds").set(stats.at as f64);
        }
        metrics::gauge!("auth_session_stats_duration_seconds").set(started.elapsed().as_secs_f64());
        Ok(stats)
    }

    /// Refreshes the gauges at once, then every interval, in `tasks` until `stop` turns true;
    /// nothing with an interval of zero.
    pub fn spawn(self, tasks: &mut JoinSet<()>, stop: watch::Receiver<bool>) {
        if self.interval.is_zero() {
            tracing::info!("AUTH_SESSION_STATS_INTERVAL=0s: no session gauges on this replica");
            return;
        }
        tasks.spawn(self.run_loop(stop));
    }

    async fn run_loop(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stopped(&mut stop) => return,
                _ = tick.tick() => {}
            }
            if let Err(error) = self.refresh().await {
                metrics::counter!("auth_session_stats_failures_total").increment(1);
                tracing::warn!(%error, "cannot count the active sessions; the gauges keep their last values");
            }
        }
    }
}

/// Describes the gauges of the session counts.
pub fn describe_metrics() {
    metrics::describe_gauge!(
        "auth_sessions_active",
        "Active sessions in the store (store-wide: every replica reports the same; aggregate with max)"
    );
    metrics::describe_gauge!(
        "auth_users_active",
        "Distinct users with an active session (store-wide; aggregate with max)"
    );
    metrics::describe_gauge!(
        "auth_session_stats_timestamp_seconds",
        "When auth_sessions_active and auth_users_active were last computed (Unix seconds)"
    );
    metrics::describe_gauge!(
        "auth_session_stats_duration_seconds",
        "How long the last count of the active sessions took"
    );
    metrics::describe_counter!(
        "auth_session_stats_failures_total",
        "Counts of the active sessions that failed (the gauges keep their last values)"
    );
}
