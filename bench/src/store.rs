//! Store load, measured: the issuer's `CheckSession` count from its `/metrics`, Redis
//! `EXISTS` calls from `INFO commandstats`, and the verifiers' fallback checks, read before and
//! after a load run.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use http::StatusCode;

use crate::client::{HttpConnection, get};

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format; comments and malformed lines are skipped.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",k2="v2"}` (after the opening brace); returns the labels and the rest.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        let mut chars = s[eq + 1..].trim_start().strip_prefix('"')?.char_indices();
        let start = s.len() - chars.as_str().len();
        let mut value = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = &s[start + end + 1..];
    }
}

/// How the issuer's session lookups were counted.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupCount {
    pub calls: f64,
    /// The metric used, for the report.
    pub source: String,
    /// Whether `source` counts `CheckSession` calls themselves (rather than a proxy).
    pub exact: bool,
}

fn mentions_check_session(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("checksession") || lower.contains("check_session")
}

/// The number of `CheckSession` calls the issuer has served, from its metrics: a counter named
/// after it (`*check_session*_total`), or a request counter labelled with it
/// (`{method="CheckSession"}`), or a histogram `_count` of either. Without any, the issuer's
/// bearer verifications (`auth_verify_total`), one per `CheckSession` call since each carries the
/// verifier's service token, stand in, and the report says so.
pub fn check_session_calls(samples: &[Sample]) -> LookupCount {
    fn by_name(s: &Sample) -> bool {
        mentions_check_session(&s.name)
    }
    fn by_label(s: &Sample) -> bool {
        s.labels.iter().any(|(_, v)| mentions_check_session(v))
    }
    type Matcher = fn(&Sample) -> bool;
    let rules: [(&str, Matcher); 4] = [
        ("_total", by_name),
        ("_total", by_label),
        ("_count", by_name),
        ("_count", by_label),
    ];
    for (suffix, matches) in rules {
        let mut names: Vec<&str> = samples
            .iter()
            .filter(|s| s.name.ends_with(suffix) && matches(s))
            .map(|s| s.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        // One metric only: two metrics counting the same calls must not add up.
        if let Some(name) = names.first() {
            let calls = samples
                .iter()
                .filter(|s| s.name == *name && matches(s))
                .map(|s| s.value)
                .sum();
            return LookupCount {
                calls,
                source: (*name).to_owned(),
                exact: true,
            };
        }
    }
    LookupCount {
        calls: sum(samples, "auth_verify_total"),
        source: "auth_verify_total".to_owned(),
        exact: false,
    }
}

/// The sum of every sample of the metric `name`, 0 when absent (counters appear on first use).
pub fn sum(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// Calls per command (lower case) from Redis `INFO commandstats`.
pub fn parse_commandstats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (command, stats) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((command.to_ascii_lowercase(), calls))
        })
        .collect()
}

/// A `field:value` line of a Redis `INFO` section.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (key, value) = line.trim().split_once(':')?;
        (key == field).then_some(value)
    })
}

/// Metrics read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub issuer: Vec<Sample>,
    /// The gateway's and orders-service's samples, together.
    pub verifiers: Vec<Sample>,
    pub redis: Option<BTreeMap<String, u64>>,
}

/// Where the snapshot comes from.
pub struct Sources {
    pub issuer: SocketAddr,
    pub verifiers: Vec<SocketAddr>,
    pub redis: Option<redis::aio::MultiplexedConnection>,
}

impl Sources {
    pub async fn new(
        issuer: SocketAddr,
        verifiers: Vec<SocketAddr>,
        redis_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        let redis = match redis_url {
            Some(url) => Some(
                redis::Client::open(url)?
                    .get_multiplexed_async_connection()
                    .await
                    .with_context(|| format!("cannot connect to Redis at {url}"))?,
            ),
            None => None,
        };
        Ok(Self {
            issuer,
            verifiers,
            redis,
        })
    }

    /// The process id of a Redis server running on this machine, for the CPU accounting.
    pub async fn local_redis_pid(&mut self) -> Option<u32> {
        let connection = self.redis.as_mut()?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(connection)
            .await
            .ok()?;
        let pid = info_field(&info, "process_id")?.parse().ok()?;
        // Only if that process is a Redis here (the server could be on another machine).
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        comm.contains("redis").then_some(pid)
    }

    pub async fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        let issuer = parse_prometheus(&scrape(self.issuer).await?);
        let mut verifiers = Vec::new();
        for addr in &self.verifiers {
            verifiers.extend(parse_prometheus(&scrape(*addr).await?));
        }
        let redis = match &mut self.redis {
            Some(connection) => {
                let info: String = redis::cmd("INFO")
                    .arg("commandstats")
                    .query_async(connection)
                    .await
                    .context("Redis INFO commandstats")?;
                Some(parse_commandstats(&info))
            }
            None => None,
        };
        Ok(Snapshot {
            issuer,
            verifiers,
            redis,
        })
    }
}

async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let response = HttpConnection::new(addr)
        .send(get("/metrics", None))
        .await
        .with_context(|| format!("GET http://{addr}/metrics"))?;
    if response.status != StatusCode::OK {
        bail!("GET http://{addr}/metrics answered {}", response.status);
    }
    Ok(String::from_utf8_lossy(&response.body).into_owned())
}

/// Session lookups during a run, per request.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreLoad {
    /// Requests completed between the two snapshots.
    pub requests: u64,
    /// `CheckSession` calls at the issuer (or the stand-in, see [`LookupCount`]).
    pub issuer_lookups: LookupCount,
    /// Redis `EXISTS` calls, when Redis is in play.
    pub redis_exists: Option<u64>,
    /// All Redis commands, when Redis is in play.
    pub redis_commands: Option<u64>,
    /// `hybrid` requests that went to the fallback because the feed was stale.
    pub fallback_checks: f64,
}

impl StoreLoad {
    pub fn between(before: &Snapshot, after: &Snapshot, requests: u64) -> Self {
        let b = check_session_calls(&before.issuer);
        let a = check_session_calls(&after.issuer);
        let delta_redis =
            |pick: &dyn Fn(&BTreeMap<String, u64>) -> u64| match (&before.redis, &after.redis) {
                (Some(b), Some(a)) => Some(pick(a).saturating_sub(pick(b))),
                _ => None,
            };
        let stale = "auth_revocation_feed_stale_checks_total";
        Self {
            requests,
            issuer_lookups: LookupCount {
                calls: (a.calls - b.calls).max(0.0),
                source: a.source,
                exact: a.exact,
            },
            redis_exists: delta_redis(&|m| m.get("exists").copied().unwrap_or(0)),
            redis_commands: delta_redis(&|m| m.values().sum()),
            fallback_checks: (sum(&after.verifiers, stale) - sum(&before.verifiers, stale))
                .max(0.0),
        }
    }

    /// Session lookups (issuer `CheckSession` plus Redis `EXISTS`) per request.
    #[allow(clippy::cast_precision_loss)]
    pub fn per_request(&self) -> Option<f64> {
        (self.requests > 0).then(|| {
            (self.issuer_lookups.calls + self.redis_exists.unwrap_or(0) as f64)
                / self.requests as f64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = r#"# HELP auth_tokens_issued_total Access tokens issued
# TYPE auth_tokens_issued_total counter
auth_tokens_issued_total{grant="password"} 8
auth_tokens_issued_total{grant="client_credentials"} 2
auth_verify_total{outcome="ok"} 120
auth_verify_total{outcome="expired"} 3
odd_label{path="a \"quoted\", comma\\ and }brace"} 1.5e3
no_labels 42 1700000000000
# a comment
garbage line
"#;

    #[test]
    fn prometheus_text_is_parsed() {
        let samples = parse_prometheus(ISSUER);
        assert_eq!(samples.len(), 6);
        assert_eq!(
            samples[0],
            Sample {
                name: "auth_tokens_issued_total".into(),
                labels: vec![("grant".into(), "password".into())],
                value: 8.0
            }
        );
        assert_eq!(samples[4].labels[0].1, r#"a "quoted", comma\ and }brace"#);
        assert_eq!(samples[4].value, 1500.0);
        assert_eq!(samples[5].value, 42.0);
        assert_eq!(sum(&samples, "auth_verify_total"), 123.0);
        assert_eq!(sum(&samples, "absent_total"), 0.0);
    }

    #[test]
    fn check_session_counter_is_preferred_to_the_stand_in() {
        let fallback = check_session_calls(&parse_prometheus(ISSUER));
        assert_eq!(fallback.calls, 123.0);
        assert!(!fallback.exact);

        let by_name = format!(
            "{ISSUER}auth_check_session_total{{active=\"true\"}} 10\nauth_check_session_total{{active=\"false\"}} 5\n"
        );
        let count = check_session_calls(&parse_prometheus(&by_name));
        assert_eq!((count.calls, count.exact), (15.0, true));
        assert_eq!(count.source, "auth_check_session_total");

        let by_label = format!(
            "{ISSUER}grpc_server_requests_total{{method=\"CheckSession\",code=\"OK\"}} 7\n\
             grpc_server_requests_total{{method=\"WatchRevocations\",code=\"OK\"}} 2\n\
             grpc_server_duration_seconds_count{{method=\"CheckSession\"}} 7\n"
        );
        let count = check_session_calls(&parse_prometheus(&by_label));
        assert_eq!((count.calls, count.exact), (7.0, true));
        assert_eq!(count.source, "grpc_server_requests_total");
    }

    #[test]
    fn redis_commandstats_are_parsed() {
        let info = "# Commandstats\r\n\
            cmdstat_exists:calls=1200,usec=900,usec_per_call=0.75,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_SET:calls=8,usec=20,usec_per_call=2.50\r\n\
            cmdstat_info:calls=3,usec=100,usec_per_call=33.33\r\n";
        let stats = parse_commandstats(info);
        assert_eq!(stats.get("exists"), Some(&1200));
        assert_eq!(stats.get("set"), Some(&8));
        assert_eq!(stats.len(), 3);
        let server = "# Server\r\nredis_version:7.0.15\r\nprocess_id:2224\r\n";
        assert_eq!(info_field(server, "process_id"), Some("2224"));
        assert_eq!(info_field(server, "tcp_port"), None);
    }

    #[test]
    fn store_load_between_snapshots() {
        let snapshot = |verify: u64, exists: u64, stale: u64| Snapshot {
            issuer: parse_prometheus(&format!("auth_verify_total{{outcome=\"ok\"}} {verify}")),
            verifiers: parse_prometheus(&format!(
                "auth_revocation_feed_stale_checks_total {stale}"
            )),
            redis: Some(BTreeMap::from([
                ("exists".to_owned(), exists),
                ("info".to_owned(), 1),
            ])),
        };
        let load = StoreLoad::between(&snapshot(10, 100, 0), &snapshot(30, 2100, 4), 1000);
        assert_eq!(load.issuer_lookups.calls, 20.0);
        assert_eq!(load.redis_exists, Some(2000));
        assert_eq!(load.redis_commands, Some(2000));
        assert_eq!(load.fallback_checks, 4.0);
        assert_eq!(load.per_request(), Some(2.02));
        assert_eq!(
            StoreLoad {
                requests: 0,
                ..load
            }
            .per_request(),
            None
        );
    }
}
