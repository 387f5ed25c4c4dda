//! Token issuance per grant, over repeats, against `openssl speed`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cli::Settings;
use crate::issuance::{Grant, IssuanceRun};
use crate::openssl::RsaSpeed;
use crate::stats::{median, median_duration};

use super::sum_by_kind;

/// The issuance scenario: its settings, each grant measured, and the openssl reference.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuanceSummary {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// `-seconds` of `openssl speed`.
    pub openssl_seconds: u64,
    /// Each grant with a result, in [`Grant::ALL`] order.
    pub grants: Vec<GrantSummary>,
    /// Medians over repeats of `openssl speed rsa2048`, or why it was not measured.
    pub openssl: Result<RsaSpeed, String>,
}

/// Medians over repeats of one grant.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantSummary {
    pub grant: Grant,
    pub tokens_per_second: f64,
    /// Lowest and highest tokens/s over the repeats.
    pub range: (f64, f64),
    pub runs: usize,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    /// Requests over all repeats.
    pub requests: u64,
    /// Errors over all repeats, by kind, and in all.
    pub errors: BTreeMap<String, u64>,
    pub error_count: u64,
    /// Tokens per CPU-second of auth-service.
    pub per_cpu_second: Option<f64>,
    /// auth-service CPU time per token: the inverse.
    pub cpu_per_token: Option<Duration>,
    /// Tokens per CPU-second / openssl signs per second, with both.
    pub vs_openssl: Option<f64>,
}

/// The issuance scenario of `runs` (one per repeat).
pub fn summarize(settings: &Settings, runs: &[IssuanceRun]) -> IssuanceSummary {
    let openssl = summarize_openssl(runs);
    IssuanceSummary {
        connections: settings.issuance_connections,
        warmup: settings.warmup,
        duration: settings.duration,
        openssl_seconds: settings.openssl_seconds.as_secs(),
        grants: Grant::ALL
            .into_iter()
            .filter_map(|grant| summarize_grant(runs, grant, &openssl))
            .collect(),
        openssl,
    }
}

/// Medians over the repeats of `runs` that measured `grant`; `None` without any.
pub fn summarize_grant(
    runs: &[IssuanceRun],
    grant: Grant,
    openssl: &Result<RsaSpeed, String>,
) -> Option<GrantSummary> {
    let selected: Vec<_> = runs.iter().filter_map(|r| r.grants.get(&grant)).collect();
    if selected.is_empty() {
        return None;
    }
    let errors = sum_by_kind(selected.iter().map(|r| &r.load.errors));
    let per_cpu_second = median(selected.iter().filter_map(|r| r.tokens_per_cpu_second()));
    let quantile =
        |q: f64| median_duration(selected.iter().filter_map(|r| r.load.latencies.quantile(q)));
    Some(GrantSummary {
        grant,
        tokens_per_second: median(selected.iter().map(|r| r.tokens_per_second())).unwrap_or(0.0),
        range: selected
            .iter()
            .map(|r| r.tokens_per_second())
            .fold((f64::INFINITY, 0.0), |(lo, hi), x| (lo.min(x), hi.max(x))),
        runs: selected.len(),
        p50: quantile(0.5),
        p99: quantile(0.99),
        requests: selected.iter().map(|r| r.load.requests).sum(),
        error_count: errors.values().sum(),
        errors,
        per_cpu_second,
        cpu_per_token: per_cpu_second.map(|rate| Duration::from_secs_f64(1.0 / rate)),
        vs_openssl: match (per_cpu_second, openssl) {
            (Some(rate), Ok(speed)) if speed.sign_per_sec > 0.0 => Some(rate / speed.sign_per_sec),
            _ => None,
        },
    })
}

/// Medians of `openssl speed rsa2048` over the repeats, or why it was not measured.
pub fn summarize_openssl(runs: &[IssuanceRun]) -> Result<RsaSpeed, String> {
    let measured: Vec<_> = runs
        .iter()
        .filter_map(|r| r.openssl.as_ref().ok())
        .collect();
    match (
        median(measured.iter().map(|s| s.sign_per_sec)),
        median(measured.iter().map(|s| s.verify_per_sec)),
    ) {
        (Some(sign_per_sec), Some(verify_per_sec)) => Ok(RsaSpeed {
            sign_per_sec,
            verify_per_sec,
        }),
        _ => Err(runs
            .iter()
            .find_map(|r| r.openssl.as_ref().err().cloned())
            .unwrap_or_else(|| "not run".to_owned())),
    }
}
