//! How many sessions are active, for whom, from which client, begun when: the counts the
//! stateful model promises, computed from the store so that every replica reports the same
//! numbers.
//!
//! **What is counted.** A session is active as [`super::SessionStore`] defines it (created, not
//! ended, not past `expires_at`), at the instant of the snapshot:
//!
//! - `active_sessions`: the active sessions;
//! - `active_users`: the distinct users with at least one active session;
//! - `by_client`: the active sessions of each client (`client_id` absent for sessions begun
//!   without one), clients with none omitted;
//! - `by_day`: of the active sessions, how many **began** (logged in) on each of the last
//!   [`DAYS`] UTC calendar days, today included, oldest first; `started_earlier` counts the
//!   active sessions begun before the first of those days. So `by_day` plus `started_earlier`
//!   is `active_sessions`. Sessions that have ended since they began are not in `by_day`: it
//!   says how old the live sessions are, not how many logins happened.
//!
//! **How.** [`super::SessionStore::stats`] takes a snapshot. The SQL store reads the `sessions`
//! rows through a partial index on the active rows (migration
//! `20251001000001_session_stats_index.sql`): one grouped scan of that index and one distinct
//! count, no table access on PostgreSQL. The Redis store keeps sorted sets scored by the
//! sessions' ends, updated by the same scripts that create and end sessions
//! ([`super::redis`]), so a snapshot costs a few `ZCARD`s after removing what has expired,
//! whatever the number of sessions.
//!
//! **The gauges.** [`super::StatsRefresher`] takes a snapshot every
//! `AUTH_SESSION_STATS_INTERVAL` (15 s by default) and sets `auth_sessions_active` and
//! `auth_users_active`: a scrape reads two numbers and never queries the store. Every replica
//! reports the same store-wide values: aggregate them across replicas with `max`, not `sum`.

use std::time::Duration;

use serde::Serialize;

/// The UTC days `by_day` covers, today included.
pub const DAYS: i64 = 7;

/// A UTC day (no leap seconds in Unix time).
pub const SECONDS_PER_DAY: i64 = 86_400;

/// A snapshot of the active sessions (see the module documentation for each count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionStats {
    /// When the snapshot was taken (Unix seconds).
    pub at: i64,
    pub active_sessions: u64,
    pub active_users: u64,
    /// By `client_id`, sessions without a client last.
    pub by_client: Vec<ClientSessions>,
    /// The last [`DAYS`] UTC days, oldest first, every day present (0 when none began).
    pub by_day: Vec<DaySessions>,
    pub started_earlier: u64,
}

/// The active sessions of one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientSessions {
    /// `None` for sessions begun without a client.
    pub client_id: Option<String>,
    pub sessions: u64,
}

/// The active sessions that began on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaySessions {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub started: u64,
}

/// The UTC day (days since the Unix epoch) of `at` (Unix seconds).
pub fn day_of(at: i64) -> i64 {
    at.div_euclid(SECONDS_PER_DAY)
}

/// `YYYY-MM-DD` of a day number.
pub fn day_name(day: i64) -> String {
    let secs = u64::try_from(day.saturating_mul(SECONDS_PER_DAY)).unwrap_or(0);
    let at = std::time::UNIX_EPOCH + Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(at).to_string()[..10].to_owned()
}

/// The first day `by_day` covers for a snapshot at `now`.
pub fn first_day(now: i64) -> i64 {
    day_of(now) - (DAYS - 1)
}

impl SessionStats {
    /// Assembles a snapshot from per-(client, day) counts: `day` is the day number of the
    /// sessions' start, or `None` for a start before [`first_day`].
    pub fn from_groups(
        at: i64,
        active_users: u64,
        groups: impl IntoIterator<Item = (Option<String>, Option<i64>, u64)>,
    ) -> Self {
        let first = first_day(at);
        let days = usize::try_from(DAYS).unwrap_or(7);
        let mut by_day: Vec<u64> = vec![0; days];
        let mut by_client = std::collections::BTreeMap::<Option<String>, u64>::new();
        let mut started_earlier = 0;
        let mut active_sessions = 0;
        for (client_id, day, sessions) in groups {
            if sessions == 0 {
                continue;
            }
            active_sessions += sessions;
            *by_client.entry(client_id).or_default() += sessions;
            let slot = day
                .and_then(|day| usize::try_from(day - first).ok())
                .and_then(|index| by_day.get_mut(index));
            match slot {
                Some(slot) => *slot += sessions,
                // Before the window, or (clock skew between replicas) after today.
                None if day.is_some_and(|day| day > first) => by_day[days - 1] += sessions,
                None => started_earlier += sessions,
            }
        }
        let mut by_client: Vec<ClientSessions> = by_client
            .into_iter()
            .map(|(client_id, sessions)| ClientSessions {
                client_id,
                sessions,
            })
            .collect();
        // BTreeMap puts `None` first; sessions without a client read better last.
        by_client.sort_by(|a, b| match (&a.client_id, &b.client_id) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (Some(a), Some(b)) => a.cmp(b),
        });
        Self {
            at,
            active_sessions,
            active_users,
            by_client,
            by_day: by_day
                .into_iter()
                .zip(first..)
                .map(|(started, day)| DaySessions {
                    day: day_name(day),
                    started,
                })
                .collect(),
            started_earlier,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_990_000; // 2025-12-06T03:00:00Z

    #[test]
    fn days_are_utc_calendar_days() {
        assert_eq!(day_name(day_of(NOW)), "2025-12-06");
        assert_eq!(day_name(day_of(NOW - 3 * 3600)), "2025-12-06");
        assert_eq!(day_name(day_of(NOW - 3 * 3600 - 1)), "2025-12-05");
        assert_eq!(day_name(first_day(NOW)), "2025-11-30");
    }

    #[test]
    fn a_snapshot_adds_up() {
        let today = day_of(NOW);
        let stats = SessionStats::from_groups(
            NOW,
            2,
            [
                (Some("web".to_owned()), Some(today), 3),
                (Some("web".to_owned()), None, 1),
                (None, Some(today - 6), 2),
                (Some("cli".to_owned()), Some(today - 7), 4),
            ],
        );
        assert_eq!(stats.active_sessions, 10);
        assert_eq!(stats.active_users, 2);
        assert_eq!(
            stats
                .by_client
                .iter()
                .map(|c| (c.client_id.as_deref(), c.sessions))
                .collect::<Vec<_>>(),
            [(Some("cli"), 4), (Some("web"), 4), (None, 2)],
            "by client id, sessions without a client last"
        );
        assert_eq!(stats.by_day.len(), 7);
        assert_eq!(stats.by_day[0].day, "2025-11-30");
        assert_eq!(stats.by_day[0].started, 2);
        assert_eq!(stats.by_day[6].day, "2025-12-06");
        assert_eq!(stats.by_day[6].started, 3);
        assert_eq!(
            stats.started_earlier, 5,
            "the day before the window and the unknown"
        );
        let in_days: u64 = stats.by_day.iter().map(|d| d.started).sum();
        assert_eq!(in_days + stats.started_earlier, stats.active_sessions);
    }
}
