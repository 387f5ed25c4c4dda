//! The purge: deletes from SQL what can no longer matter, in small batches, on an interval.
//!
//! **What is kept, and how long.**
//!
//! - A **refresh token** matters until it expires: until then, presenting it again after its
//!   rotation is a reuse, which must be recognised to end its session (`docs/SECURITY.md`, class
//!   17; [`super::refresh_tokens::begin_rotation`] looks the used token up for that). Every token
//!   of a family expires with the family (the session's absolute end), so a family's tokens are
//!   kept until the session's `expires_at`, plus `AUTH_PURGE_GRACE`, whether the session ended
//!   early (logout, reuse, disable) or not: a stolen token presented after its session was ended
//!   is still recognised as a reuse and counted.
//! - A **session** (the family row, `sessions`) is kept as long as its refresh tokens, and never
//!   while one still references it: past its absolute end it can be neither active nor
//!   refreshed, and nothing else reads it.
//! - A **revocation event** is kept until its `expires_at`, which the log sets when it appends
//!   the event (the access-token lifetime plus a margin, 25 h for `KeyRevoked`,
//!   [`super::revocation`]); [`RevocationLog::prune_batch`] deletes those only.
//!
//! `AUTH_PURGE_GRACE` (1 h by default) keeps expired families a while longer than strictly
//! needed: it absorbs clock differences between replicas and the database, and leaves an
//! incident's most recent families in place for a look.
//!
//! **How.** Each table is purged by statements of the form `DELETE .. WHERE key IN (SELECT key
//! .. WHERE expires_at <= cutoff ORDER BY expires_at LIMIT batch)`, one transaction each, with a
//! short pause between them, until a batch deletes fewer rows than the batch size: no statement
//! holds its locks for long, and SQLite's single writer is never kept from the logins for more
//! than one batch. Refresh tokens go first, then the sessions no token references any more, then
//! the events. The `expires_at` indexes make every batch an index range scan.
//!
//! **Several replicas.** Every replica purges, without coordination: a batch deletes only rows
//! that are expired for good, so running it twice, or on two replicas at once, deletes each row
//! once and changes nothing else (a replica that finds its batch already deleted by another gets
//! a short batch and stops until its next run). The first run of each replica comes after a
//! random part of the interval, so replicas started together do not purge in step.

use std::time::{Duration, Instant};

use sqlx::AnyPool;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::revocation::{RevocationLog, stopped};
use crate::config::PurgeConfig;

/// The tables the purge deletes from, in the order it purges them (refresh tokens before the
/// sessions they reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    RefreshTokens,
    Sessions,
    RevocationEvents,
}

impl Table {
    pub const ALL: [Table; 3] = [
        Table::RefreshTokens,
        Table::Sessions,
        Table::RevocationEvents,
    ];

    /// The table's name: the label of `auth_purged_rows_total`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Table::RefreshTokens => "refresh_tokens",
            Table::Sessions => "sessions",
            Table::RevocationEvents => "revocation_events",
        }
    }
}

/// What one run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub refresh_tokens: u64,
    pub sessions: u64,
    pub revocation_events: u64,
    /// Statements run (each deletes at most one batch).
    pub batches: u64,
}

impl Purged {
    pub fn total(&self) -> u64 {
        self.refresh_tokens + self.sessions + self.revocation_events
    }
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
#[error("cannot purge {}: {source}", table.as_str())]
pub struct PurgeError {
    pub table: Table,
    /// What the run had deleted before it failed.
    pub purged: Purged,
    #[source]
    pub source: sqlx::Error,
}

/// The purge of one issuer's database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Purger {
    pool: AnyPool,
    log: RevocationLog,
    settings: PurgeConfig,
}

impl Purger {
    pub fn new(pool: AnyPool, log: RevocationLog, settings: PurgeConfig) -> Self {
        Self {
            pool,
            log,
            settings,
        }
    }

    /// Deletes everything that expired long enough before `now` (Unix seconds), batch after
    /// batch, and publishes what it did (`auth_purged_rows_total{table}` after every batch; the
    /// last run's time and duration at the end of a successful run). Stops between two batches
    /// once `stop` turns true.
    pub async fn run(
        &self,
        now: i64,
        stop: Option<&watch::Receiver<bool>>,
    ) -> Result<Purged, PurgeError> {
        let started = Instant::now();
        let grace = i64::try_from(self.settings.grace.as_secs()).unwrap_or(i64::MAX / 2);
        let family_cutoff = now.saturating_sub(grace);
        let limit = i64::from(self.settings.batch.max(1));
        let mut purged = Purged::default();
        for table in Table::ALL {
            loop {
                let deleted = match self.batch(table, now, family_cutoff, limit).await {
                    Ok(deleted) => deleted,
                    Err(source) => {
                        metrics::counter!("auth_purge_failures_total").increment(1);
                        return Err(PurgeError {
                            table,
                            purged,
                            source,
                        });
                    }
                };
                purged.batches += 1;
                metrics::counter!("auth_purged_rows_total", "table" => table.as_str())
                    .increment(deleted);
                match table {
                    Table::RefreshTokens => purged.refresh_tokens += deleted,
                    Table::Sessions => purged.sessions += deleted,
                    Table::RevocationEvents => purged.revocation_events += deleted,
                }
                if deleted < self.settings.batch.into() || stop.is_some_and(|stop| *stop.borrow()) {
                    break;
                }
                tokio::time::sleep(self.settings.pause).await;
            }
        }
        metrics::gauge!("auth_purge_last_run_duration_seconds")
            .set(started.elapsed().as_secs_f64());
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("auth_purge_last_run_timestamp_seconds").set(now as f64);
        Ok(purged)
    }

    /// Deletes one batch of `table`.
    async fn batch(
        &self,
        table: Table,
        now: i64,
        family_cutoff: i64,
        limit: i64,
    ) -> Result<u64, sqlx::Error> {
        let sql = match table {
            Table::RefreshTokens => {
                "DELETE FROM refresh_tokens WHERE token_hash IN (SELECT token_hash \
                 FROM refresh_tokens WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)"
            }
            Table::Sessions => {
                "DELETE FROM sessions WHERE id IN (SELECT s.id FROM sessions s \
                 WHERE s.expires_at <= $1 \
                 AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id) \
                 ORDER BY s.expires_at LIMIT $2)"
            }
            Table::RevocationEvents => return self.log.prune_batch(now, limit).await,
        };
        let done = sqlx::query(sql)
            .bind(family_cutoff)
            .bind(limit)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Runs the purge every `AUTH_PURGE_INTERVAL` in `tasks` (the first run after a random part
    /// of it) until `stop` turns true; nothing with an interval of zero. Logs one line per run.
    pub fn spawn(self, tasks: &mut JoinSet<()>, stop: watch::Receiver<bool>) {
        if self.settings.interval.is_zero() {
            tracing::info!("AUTH_PURGE_INTERVAL=0s: this replica purges no expired rows");
            return;
        }
        tasks.spawn(self.run_loop(stop));
    }

    async fn run_loop(self, mut stop: watch::Receiver<bool>) {
        let interval = self.settings.interval;
        let first = tokio::time::Instant::now() + jitter(interval);
        let mut tick = tokio::time::interval_at(first, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stopped(&mut stop) => return,
                _ = tick.tick() => {}
            }
            let started = Instant::now();
            match self.run(crate::db::now(), Some(&stop)).await {
                Ok(purged) => {
                    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(0);
                    // Info when something went, debug for the (usual) empty run.
                    if purged.total() > 0 {
                        tracing::info!(
                            refresh_tokens = purged.refresh_tokens,
                            sessions = purged.sessions,
                            revocation_events = purged.revocation_events,
                            batches = purged.batches,
                            duration_ms,
                            "purged expired rows"
                        );
                    } else {
                        tracing::debug!(duration_ms, "purge: nothing has expired");
                    }
                }
                Err(error) => tracing::warn!(
                    table = error.table.as_str(),
                    %error,
                    refresh_tokens = error.purged.refresh_tokens,
                    sessions = error.purged.sessions,
                    revocation_events = error.purged.revocation_events,
                    "the purge of expired rows failed; it runs again at the next interval"
                ),
            }
        }
    }
}

/// A random delay shorter than `interval`.
fn jitter(interval: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return Duration::ZERO;
    }
    let millis = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(u64::from_le_bytes(bytes) % millis)
}

/// Describes the purge's metrics.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "auth_purged_rows_total",
        "Expired rows deleted by the purge, by table (refresh_tokens, sessions, revocation_events)"
    );
    metrics::describe_counter!(
        "auth_purge_failures_total",
        "Purge runs that stopped on a database error"
    );
    metrics::describe_gauge!(
        "auth_purge_last_run_timestamp_seconds",
        "When the last successful purge run started (Unix seconds)"
    );
    metrics::describe_gauge!(
        "auth_purge_last_run_duration_seconds",
        "How long the last successful purge run took, pauses between batches included"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_interval() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(50)) < Duration::from_millis(50));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
