//! Which signing keys the verifiers hold, from their `SessionService.ReportKeys` calls.
//!
//! - [`VerifierReports`]: the reports in the database (`verifier_key_reports`), one row per
//!   (client, instance), shared by every replica: a verifier reports to whichever replica its
//!   connection reaches, and the promotion of a `next` key runs on whichever replica takes the
//!   key-set lock first, so a per-replica view would wait forever or not at all.
//! - [`Coverage`]: what the live reports say at one moment, as pure data: how many verifiers
//!   are connected (their report has not expired) and how many of them hold each `kid`. The
//!   schedule ([`super::schedule::tick`]) holds a due `next` key back until every connected
//!   verifier holds it.
//!
//! Reports are stamped and expire on the issuer's wall clock (milliseconds), whatever clock the
//! key schedule runs on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use sqlx::AnyPool;

/// Most `kid`s one report may carry; the issuer publishes a handful of keys at most.
pub const MAX_REPORTED_KIDS: usize = 64;
/// Longest `kid` or instance accepted in a report; our `kid`s are 43 characters.
pub const MAX_REPORT_FIELD_LEN: usize = 128;

/// What the live reports say: the connected verifiers and the keys each holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Connected verifiers: those whose last report has not expired.
    pub connected: usize,
    /// For each reported `kid`, how many connected verifiers hold it.
    pub holders: BTreeMap<String, usize>,
}

impl Coverage {
    /// No verifier reports: nothing to wait for.
    pub fn nobody() -> Self {
        Self::default()
    }

    /// The coverage of `reports` at `now_ms`: expired reports do not count.
    pub fn of<'a>(reports: impl IntoIterator<Item = &'a Report>, now_ms: i64) -> Self {
        let mut coverage = Self::default();
        for report in reports.into_iter().filter(|r| r.expires_at_ms > now_ms) {
            coverage.connected += 1;
            for kid in &report.kids {
                *coverage.holders.entry(kid.clone()).or_default() += 1;
            }
        }
        coverage
    }

    /// How many connected verifiers hold `kid`.
    pub fn holding(&self, kid: &str) -> usize {
        self.holders.get(kid).copied().unwrap_or(0)
    }

    /// How many connected verifiers do not hold `kid` (yet).
    pub fn missing(&self, kid: &str) -> usize {
        self.connected.saturating_sub(self.holding(kid))
    }

    /// [`Coverage::holding`] and [`Coverage::connected`] together, as listed.
    pub fn of_key(&self, kid: &str) -> KeyCoverage {
        KeyCoverage {
            holding: self.holding(kid),
            connected: self.connected,
        }
    }
}

/// How many of the connected verifiers hold one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KeyCoverage {
    pub holding: usize,
    pub connected: usize,
}

/// One verifier's last report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The client of the token it reported with.
    pub client_id: String,
    /// The verifier process (its own random id).
    pub instance: String,
    pub kids: BTreeSet<String>,
    pub reported_at_ms: i64,
    pub expires_at_ms: i64,
}

#[derive(sqlx::FromRow)]
struct ReportRow {
    client_id: String,
    instance: String,
    kids: String,
    reported_at_ms: i64,
    expires_at_ms: i64,
}

impl From<ReportRow> for Report {
    fn from(row: ReportRow) -> Self {
        Self {
            client_id: row.client_id,
            instance: row.instance,
            kids: row.kids.split_whitespace().map(str::to_owned).collect(),
            reported_at_ms: row.reported_at_ms,
            expires_at_ms: row.expires_at_ms,
        }
    }
}

/// A report that cannot be recorded.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error("verifier key reports: {0}")]
    Db(#[from] sqlx::Error),
}

/// The verifiers' reports in the database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct VerifierReports {
    pool: AnyPool,
    ttl: Duration,
}

impl VerifierReports {
    /// Reports over `pool`, each counting for `ttl` after it arrived.
    pub fn new(pool: AnyPool, ttl: Duration) -> Self {
        Self { pool, ttl }
    }

    /// How long a report counts (`AUTH_VERIFIER_REPORT_TTL`).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often a verifier should report: a third of the TTL, so that two reports in a row
    /// may be lost before it stops counting.
    pub fn report_interval(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_secs(1))
    }

    /// Records that `instance` of `client_id` holds `kids` at `now_ms`, replacing its last
    /// report, and deletes the reports expired by then.
    pub async fn record(
        &self,
        client_id: &str,
        instance: &str,
        kids: &[String],
        now_ms: i64,
    ) -> Result<(), ReportError> {
        if instance.is_empty() || instance.len() > MAX_REPORT_FIELD_LEN {
            return Err(ReportError::Invalid("instance must be 1 to 128 characters"));
        }
        if kids.len() > MAX_REPORTED_KIDS {
            return Err(ReportError::Invalid("at most 64 kids"));
        }
        let valid_kid = |kid: &String| {
            !kid.is_empty()
                && kid.len() <= MAX_REPORT_FIELD_LEN
                && !kid.chars().any(char::is_whitespace)
        };
        if !kids.iter().all(valid_kid) {
            return Err(ReportError::Invalid(
                "a kid must be 1 to 128 characters without spaces",
            ));
        }
        let kids: BTreeSet<&str> = kids.iter().map(String::as_str).collect();
        let kids = kids.into_iter().collect::<Vec<_>>().join(" ");
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX / 4);
        sqlx::query(
            "INSERT INTO verifier_key_reports \
             (client_id, instance, kids, reported_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (client_id, instance) DO UPDATE SET kids = excluded.kids, \
             reported_at_ms = excluded.reported_at_ms, expires_at_ms = excluded.expires_at_ms",
        )
        .bind(client_id)
        .bind(instance)
        .bind(kids)
        .bind(now_ms)
        .bind(now_ms.saturating_add(ttl_ms))
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM verifier_key_reports WHERE expires_at_ms <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every stored report, live or expired (not yet deleted), oldest first.
    pub async fn all(&self) -> Result<Vec<Report>, sqlx::Error> {
        let rows: Vec<ReportRow> = sqlx::query_as(
            "SELECT client_id, instance, kids, reported_at_ms, expires_at_ms \
             FROM verifier_key_reports ORDER BY reported_at_ms, client_id, instance",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Report::from).collect())
    }

    /// The coverage of the live reports at `now_ms`.
    pub async fn coverage(&self, now_ms: i64) -> Result<Coverage, sqlx::Error> {
        Ok(Coverage::of(&self.all().await?, now_ms))
    }
}

/// Now, in Unix milliseconds: the clock reports are stamped with.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(instance: &str, kids: &[&str], reported_at_ms: i64) -> Report {
        Report {
            client_id: "orders".into(),
            instance: instance.into(),
            kids: kids.iter().map(|k| (*k).to_owned()).collect(),
            reported_at_ms,
            expires_at_ms: reported_at_ms + 90_000,
        }
    }

    #[test]
    fn coverage_counts_the_live_reports_only() {
        let reports = [
            report("a", &["k1", "k2"], 0),
            report("b", &["k1"], 10_000),
            report("c", &["k1", "k2"], 50_000),
        ];
        let at_start = Coverage::of(&reports, 60_000);
        assert_eq!(at_start.connected, 3);
        assert_eq!(
            at_start.of_key("k2"),
            KeyCoverage {
                holding: 2,
                connected: 3
            }
        );
        assert_eq!(at_start.missing("k2"), 1);
        assert_eq!(at_start.missing("k1"), 0);
        assert_eq!(at_start.missing("k3"), 3);
        // a's report expires at 90 s, b's (the one without k2) at 100 s.
        let later = Coverage::of(&reports, 100_000);
        assert_eq!(later.connected, 1);
        assert_eq!(later.missing("k2"), 0, "the verifier without k2 left");
        assert_eq!(Coverage::of(&reports, 140_000), Coverage::nobody());
        assert_eq!(Coverage::nobody().missing("k2"), 0, "nobody to wait for");
    }
}
