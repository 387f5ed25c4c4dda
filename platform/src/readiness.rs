//! Readiness that answers at once: each service's dependency checks (its database, its session
//! store) run in one background task, bounded and on a fixed beat, and `/readyz` reads the last
//! result instead of checking inline.
//!
//! Why: a probe that waits on the database is as slow as the database, and a slow database is
//! slow for every replica at once, so inline checks make every replica miss its probe deadline
//! together and the Service empties. Here a check that takes longer than [`CHECK_TIMEOUT`] is a
//! failure, `/readyz` never waits for one, and a replica turns unready only after
//! [`FAILURES_BEFORE_UNREADY`] failures in a row (a few seconds), so one slow query or a
//! database failover blip does not take every replica out at once, while a real outage still
//! does. A dependency that never answered since the start is unready from the first failure:
//! a replica that never reached its database must not receive traffic. One success makes it
//! ready again.
//!
//! Shutdown is not a check: the handlers look at `Lifecycle::is_serving` first, so `/readyz`
//! still turns 503 the moment a shutdown begins.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How often the dependencies are checked: often enough that a recovery is seen within a
/// second, rarely enough that the checks cost nothing (one `SELECT 1`, one `PING`).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long one round of checks may take; they run concurrently, so this is the round's total
/// budget. Far below a probe's timeout (2 s in the manifests), so the cached answer is never
/// older than [`CHECK_INTERVAL`] + this.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// Failed checks in a row after which a dependency that was ready counts as down: at
/// [`CHECK_INTERVAL`], a dependency failing for about three seconds. Shorter blips (a
/// failover, a dropped connection the pool replaces) leave the replica ready.
pub const FAILURES_BEFORE_UNREADY: u32 = 3;

/// The timing of the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckPolicy {
    pub interval: Duration,
    pub timeout: Duration,
    pub failures_before_unready: u32,
}

impl Default for CheckPolicy {
    fn default() -> Self {
        Self {
            interval: CHECK_INTERVAL,
            timeout: CHECK_TIMEOUT,
            failures_before_unready: FAILURES_BEFORE_UNREADY,
        }
    }
}

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One dependency check: a name (the key in `/readyz`'s `checks`) and an async function that
/// answers `Err(why)` when the dependency is unusable.
#[derive(Clone)]
pub struct Check {
    name: &'static str,
    run: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check").field("name", &self.name).finish()
    }
}

impl Check {
    pub fn new<F, Fut>(name: &'static str, run: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            run: Arc::new(move || Box::pin(run()) as CheckFuture),
        }
    }

    /// The database behind `pool`, checked over a connection of its own: a `SELECT 1` on a
    /// second pool of one connection to `url`, opened lazily and reopened by itself after an
    /// outage. Not through `pool`, because a pool busy with requests is load, not an outage:
    /// waiting for one of its connections would make every busy replica unready together, the
    /// very thing readiness must not do. `pool` closed (the service stopping) fails the check.
    ///
    /// Costs one connection per replica, counted in the connection budget.
    pub fn database(name: &'static str, pool: &AnyPool, url: &str) -> Result<Self, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let probe = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(CHECK_TIMEOUT)
            .connect_lazy(url)?;
        let pool = pool.clone();
        Ok(Self::new(name, move || {
            let (pool, probe) = (pool.clone(), probe.clone());
            async move {
                if pool.is_closed() {
                    return Err("the connection pool is closed".to_owned());
                }
                sqlx::query("SELECT 1")
                    .execute(&probe)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        }))
    }
}

/// What one dependency looks like at the last check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyStatus {
    pub name: &'static str,
    /// Whether it counts as up: answered at least once since the start, and has not failed
    /// `failures_before_unready` times in a row since.
    pub ready: bool,
    /// Failed checks in a row, 0 after a success.
    pub consecutive_failures: u32,
    /// Why the last check failed, while it fails.
    pub last_error: Option<String>,
}

impl DependencyStatus {
    /// Before the first check: not ready.
    fn unknown(name: &'static str) -> Self {
        Self {
            name,
            ready: false,
            consecutive_failures: 0,
            last_error: None,
        }
    }

    /// The status after one more check with `outcome`. Pure, so the rule is tested without a
    /// clock.
    pub fn after(&self, outcome: Result<(), String>, failures_before_unready: u32) -> Self {
        match outcome {
            Ok(()) => Self {
                name: self.name,
                ready: true,
                consecutive_failures: 0,
                last_error: None,
            },
            Err(error) => {
                let consecutive_failures = self.consecutive_failures.saturating_add(1);
                Self {
                    name: self.name,
                    ready: self.ready && consecutive_failures < failures_before_unready,
                    consecutive_failures,
                    last_error: Some(error),
                }
            }
        }
    }
}

/// The cached readiness of a service's dependencies. Cheap to clone; every clone sees the
/// latest round.
#[derive(Debug, Clone)]
pub struct Readiness {
    status: watch::Receiver<Arc<[DependencyStatus]>>,
}

/// Stops the background checks when dropped.
#[derive(Debug)]
pub struct ReadinessTask {
    task: JoinHandle<()>,
}

impl Drop for ReadinessTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Readiness {
    /// Runs a first round of `checks` (bounded by `policy.timeout`), so that a service built on
    /// reachable dependencies is ready from its first probe, then keeps checking every
    /// `policy.interval` until the returned task is dropped.
    pub async fn start(checks: Vec<Check>, policy: CheckPolicy) -> (Self, ReadinessTask) {
        let checks: Arc<[Check]> = checks.into();
        let initial: Arc<[DependencyStatus]> = checks
            .iter()
            .map(|check| DependencyStatus::unknown(check.name))
            .collect();
        let first = round(&checks, &initial, policy).await;
        let (sender, status) = watch::channel(first);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(policy.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let previous = sender.borrow().clone();
                let next = round(&checks, &previous, policy).await;
                sender.send_replace(next);
            }
        });
        (Self { status }, ReadinessTask { task })
    }

    /// Every dependency as of the last round.
    pub fn dependencies(&self) -> Arc<[DependencyStatus]> {
        self.status.borrow().clone()
    }

    /// Whether every dependency is ready.
    pub fn is_ready(&self) -> bool {
        self.status.borrow().iter().all(|d| d.ready)
    }

    /// Whether the dependency `name` is ready (`false` for a name never checked).
    pub fn is_dependency_ready(&self, name: &str) -> bool {
        self.status
            .borrow()
            .iter()
            .any(|d| d.name == name && d.ready)
    }
}

/// One round: every check at once, each bounded by `policy.timeout`; then the new statuses,
/// with a log line when one starts failing, turns unready, or recovers.
async fn round(
    checks: &Arc<[Check]>,
    previous: &[DependencyStatus],
    policy: CheckPolicy,
) -> Arc<[DependencyStatus]> {
    let mut running = JoinSet::new();
    for (index, check) in checks.iter().enumerate() {
        let run = Arc::clone(&check.run);
        running.spawn(async move {
            let outcome = match tokio::time::timeout(policy.timeout, run()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {:?}", policy.timeout)),
            };
            (index, outcome)
        });
    }
    let mut outcomes: Vec<Result<(), String>> = vec![Ok(()); checks.len()];
    let mut answered = vec![false; checks.len()];
    while let Some(joined) = running.join_next().await {
        if let Ok((index, outcome)) = joined {
            outcomes[index] = outcome;
            answered[index] = true;
        }
    }
    previous
        .iter()
        .zip(outcomes)
        .zip(answered)
        .map(|((before, outcome), answered)| {
            // A check task that panicked answered nothing: a failure like any other.
            let outcome = if answered {
                outcome
            } else {
                Err("the check failed".to_owned())
            };
            let after = before.after(outcome, policy.failures_before_unready);
            log_transition(before, &after, policy.failures_before_unready);
            after
        })
        .collect()
}

fn log_transition(before: &DependencyStatus, after: &DependencyStatus, threshold: u32) {
    let error = after.last_error.as_deref().unwrap_or_default();
    match (before.ready, after.ready) {
        (true, false) => tracing::warn!(
            dependency = after.name,
            failures = after.consecutive_failures,
            error,
            "not ready: a dependency keeps failing"
        ),
        (false, true) if before.consecutive_failures > 0 => {
            tracing::info!(
                dependency = after.name,
                "ready: the dependency answers again"
            );
        }
        (false, false) if after.consecutive_failures == 1 => tracing::warn!(
            dependency = after.name,
            error,
            "not ready: a dependency does not answer"
        ),
        (true, true) if after.consecutive_failures == 1 => tracing::warn!(
            dependency = after.name,
            error,
            threshold,
            "a dependency check failed; still ready until it fails {threshold} times in a row"
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    fn fail() -> Result<(), String> {
        Err("down".to_owned())
    }

    #[test]
    fn a_dependency_never_reached_is_unready_until_it_answers() {
        let start = DependencyStatus::unknown("database");
        assert!(!start.ready);
        let failed = start.after(fail(), 3);
        assert!(
            !failed.ready,
            "never reached: unready from the first failure"
        );
        assert!(failed.after(Ok(()), 3).ready);
    }

    #[test]
    fn a_ready_dependency_survives_a_blip_and_falls_after_three_failures_in_a_row() {
        let ready = DependencyStatus::unknown("database").after(Ok(()), 3);
        let once = ready.after(fail(), 3);
        let twice = once.after(fail(), 3);
        assert!(
            once.ready && twice.ready,
            "a blip of two checks keeps it ready"
        );
        assert_eq!(twice.consecutive_failures, 2);
        let thrice = twice.after(fail(), 3);
        assert!(!thrice.ready);
        assert_eq!(thrice.last_error.as_deref(), Some("down"));
        // A success in between starts the count again.
        let recovered = twice.after(Ok(()), 3).after(fail(), 3).after(fail(), 3);
        assert!(recovered.ready);
        // One success after an outage is enough to come back.
        assert!(thrice.after(Ok(()), 3).ready);
    }

    fn switch_check(name: &'static str, up: &Arc<AtomicBool>, calls: &Arc<AtomicUsize>) -> Check {
        let (up, calls) = (Arc::clone(up), Arc::clone(calls));
        Check::new(name, move || {
            let up = up.load(Ordering::SeqCst);
            calls.fetch_add(1, Ordering::SeqCst);
            async move { if up { Ok(()) } else { Err("down".to_owned()) } }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_cached_status_follows_the_checks_with_the_threshold() {
        let up = Arc::new(AtomicBool::new(true));
        let calls = Arc::new(AtomicUsize::new(0));
        let policy = CheckPolicy::default();
        let (readiness, _task) =
            Readiness::start(vec![switch_check("database", &up, &calls)], policy).await;
        assert!(
            readiness.is_ready(),
            "the first round ran before start returned"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        up.store(false, Ordering::SeqCst);
        // Two failed rounds: still ready.
        tokio::time::sleep(policy.interval * 2 + Duration::from_millis(100)).await;
        assert!(readiness.is_ready());
        assert_eq!(readiness.dependencies()[0].consecutive_failures, 2);
        // The third: unready.
        tokio::time::sleep(policy.interval).await;
        assert!(!readiness.is_ready());
        assert!(!readiness.is_dependency_ready("database"));

        up.store(true, Ordering::SeqCst);
        tokio::time::sleep(policy.interval).await;
        assert!(readiness.is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_hangs_fails_within_the_timeout_and_the_answer_never_waits() {
        let policy = CheckPolicy::default();
        let hang = Check::new("database", std::future::pending::<Result<(), String>>);
        let started = tokio::time::Instant::now();
        let (readiness, _task) = Readiness::start(vec![hang], policy).await;
        assert!(started.elapsed() <= policy.timeout + Duration::from_millis(10));
        assert!(!readiness.is_ready());
        let status = &readiness.dependencies()[0];
        assert!(
            status
                .last_error
                .as_deref()
                .unwrap_or_default()
                .contains("no answer"),
            "{status:?}"
        );
        // Reading the status is instant, whatever the checks do.
        let read = tokio::time::Instant::now();
        let _ = readiness.is_ready();
        assert_eq!(read.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_task_stops_the_checks() {
        let up = Arc::new(AtomicBool::new(true));
        let calls = Arc::new(AtomicUsize::new(0));
        let (_readiness, task) = Readiness::start(
            vec![switch_check("database", &up, &calls)],
            CheckPolicy::default(),
        )
        .await;
        tokio::time::sleep(CHECK_INTERVAL * 2 + Duration::from_millis(100)).await;
        let before = calls.load(Ordering::SeqCst);
        assert!(before >= 3, "{before}");
        drop(task);
        tokio::time::sleep(CHECK_INTERVAL * 3).await;
        assert_eq!(calls.load(Ordering::SeqCst), before);
    }
}
