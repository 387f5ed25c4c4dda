//! `loadgen token-size`: what a larger access token costs per request at the gateway.
//!
//! One stack (`stateless` by default, so that nothing but the token differs between requests),
//! one user per size: each user gets padding roles (`pad-NN-xxx…`) until its access token has
//! the requested length, within a few bytes (base64url rounds), or the most the issuer's bound
//! on roles and scopes allows (`scope::MAX_GRANT_BYTES`, about 3.5 KB with RS256, 3.2 KB with
//! ES256): a size past it is measured at the bound and marked so. Then, in the same run, the
//! sizes take turns (`--repeat` rounds, sizes interleaved so that drift of the machine hits all
//! of them alike), each a warm-up and a measured window of authenticated
//! `GET /v1/orders/{id}` through the gateway, which verifies the token and passes it on to
//! orders-service, which verifies it again. The report gives, per size, the median req/s,
//! p50 and p99 of the rounds and the ratio to the smallest token. Timing is never part of the
//! test suite: this is a benchmark, run by hand.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::cli::{Mode, Transport};
use crate::client::Api;
use crate::load::{LoadResult, Running, Target};
use crate::machine::Machine;
use crate::progress::Progress;
use crate::report::{fmt_duration, fmt_rate, fmt_ratio};
use crate::stack::{Binaries, Stack, StackOptions, binaries_dir};
use crate::stats::{median, median_duration};

/// The password of the users of the run.
const PASSWORD: &str = "token-size-benchmark";
/// The bytes the issuer lets roles and scopes take in a token (`scope::MAX_GRANT_BYTES`).
const MAX_GRANT_BYTES: usize = 2048;
/// Role `user` and scopes `orders:read orders:write`, as the bound counts them.
const BASE_GRANT_BYTES: usize =
    ("user".len() + 3) + ("orders:read".len() + 1) + ("orders:write".len() + 1);
/// The longest padding role: 64 bytes in the token's payload with its quotes and comma.
const MAX_PAD_ROLE: usize = 61;

/// `loadgen token-size`'s options.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "loadgen token-size",
    version,
    about = "What a larger access token costs per request at the gateway: the same load with \
             tokens of each size, on one stack (auth-service, orders-service and gateway as \
             child processes)."
)]
pub struct TokenSizeArgs {
    /// Access-token lengths to measure, in bytes, comma separated. A size below the smallest
    /// token the issuer makes is measured at that size; one past the bound on roles and scopes,
    /// at the bound.
    #[arg(long, value_delimiter = ',', default_value = "512,1024,2048,4096")]
    pub sizes: Vec<usize>,

    /// The issuer's signing algorithm (`AUTH_SIGNING_ALG`): `ES256` makes the smallest tokens
    /// (a 64-byte signature), so that 512 bytes is reachable.
    #[arg(long, default_value = "ES256")]
    pub alg: String,

    /// Concurrent connections, one request in flight each.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,

    /// Sessions (tokens) per size, spread over the connections.
    #[arg(long, default_value_t = 8)]
    pub sessions: usize,

    /// Measured window of each size in each round.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Unmeasured load before each window.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// Rounds; the report gives the medians.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,

    /// Verifier mode of the gateway and orders-service.
    #[arg(long, value_enum, default_value = "stateless")]
    pub mode: Mode,

    /// Extra environment of both verifiers, `KEY=VALUE`, repeatable (e.g.
    /// `AUTH_TOKEN_CACHE_SIZE=0`: every request verifies its signature).
    #[arg(long = "verifier-env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub verifier_env: Vec<(String, String)>,

    /// Where auth-service, orders-service and gateway are [default: the directory of loadgen].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,

    /// `RUST_LOG` of the services.
    #[arg(long, default_value = "info")]
    pub service_log: String,
}

fn parse_key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{arg}`")),
    }
}

/// Padding roles that take `bytes` bytes in a token's payload (each role `"name",`), to within
/// 5: full roles of `MAX_PAD_ROLE` (61) characters and one shorter (names `p0xxx…`, `p1xxx…`).
pub fn padding_roles(bytes: usize) -> Vec<String> {
    /// The shortest padding role in the payload: `"pNN",`.
    const MIN: usize = 6;
    let mut roles = Vec::new();
    let mut left = bytes;
    while left >= MIN {
        let mut take = left.min(MAX_PAD_ROLE + 3);
        // Leave nothing that cannot make a role of its own.
        if left > take && left - take < MIN {
            take -= MIN;
        }
        let prefix = format!("p{}", roles.len());
        let name = format!(
            "{prefix}{}",
            "x".repeat((take - 3).saturating_sub(prefix.len()))
        );
        left -= name.len() + 3;
        roles.push(name);
    }
    roles
}

/// One size: its user, tokens and order.
struct Sized {
    requested: usize,
    bytes: usize,
    at_bound: bool,
    tokens: Vec<String>,
    order_id: String,
}

/// What one size measured, round after round.
struct SizeRun {
    requested: usize,
    bytes: usize,
    at_bound: bool,
    rounds: Vec<LoadResult>,
}

/// Runs the benchmark and returns its Markdown report.
pub async fn run(args: TokenSizeArgs, command: String) -> anyhow::Result<String> {
    anyhow::ensure!(
        !args.sizes.is_empty()
            && args.connections > 0
            && args.sessions > 0
            && args.repeat > 0
            && !args.duration.is_zero(),
        "--sizes, --connections, --sessions, --repeat and --duration must not be empty or zero"
    );
    let bin_dir = binaries_dir(args.bin_dir.as_deref())?;
    let binaries = Binaries::in_dir(&bin_dir)?;
    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let progress = Progress::start();
    progress.note(&format!(
        "token-size: starting auth-service (AUTH_SIGNING_ALG={}), orders-service and gateway (AUTH_MODE={})",
        args.alg,
        args.mode.auth_mode()
    ));
    let mut stack = Stack::start(
        &binaries,
        &StackOptions {
            mode: args.mode,
            redis_url: None,
            log_level: args.service_log.clone(),
            verifier_env: args.verifier_env.clone(),
            auth_env: vec![("AUTH_SIGNING_ALG".into(), args.alg.clone())],
            route_level: None,
        },
    )
    .await?;
    let result = measure(&args, &binaries, &stack, &progress).await;
    let runs = match result {
        Ok(runs) => runs,
        Err(error) => {
            return Err(error.context(format!(
                "the end of the services' logs:\n{}",
                stack.log_tails(20)
            )));
        }
    };
    let notes = stack.stop();
    Ok(render(
        &Header {
            command,
            machine: Machine::detect().describe(),
            started,
            bin_dir: bin_dir.display().to_string(),
        },
        &args,
        &runs,
        &notes,
    ))
}

async fn measure(
    args: &TokenSizeArgs,
    binaries: &Binaries,
    stack: &Stack,
    progress: &Progress,
) -> anyhow::Result<Vec<SizeRun>> {
    let mut sizes = Vec::new();
    for (i, &requested) in args.sizes.iter().enumerate() {
        let sized = prepare(args, binaries, stack, &format!("tokensize{i}"), requested).await?;
        progress.note(&format!(
            "token-size: {requested} bytes requested: {} bytes{}",
            sized.bytes,
            if sized.at_bound { " (the bound)" } else { "" }
        ));
        sizes.push(sized);
    }
    let mut runs: Vec<SizeRun> = sizes
        .iter()
        .map(|s| SizeRun {
            requested: s.requested,
            bytes: s.bytes,
            at_bound: s.at_bound,
            rounds: Vec::new(),
        })
        .collect();
    for round in 1..=args.repeat {
        for (sized, run) in sizes.iter().zip(&mut runs) {
            progress.note(&format!(
                "token-size: round {round}/{}: {} bytes",
                args.repeat, sized.bytes
            ));
            let target = Target {
                transport: Transport::Http,
                addr: stack.addrs.gateway,
                order_id: sized.order_id.clone(),
                tokens: sized.tokens.clone(),
            };
            let mut running = Running::start(&target, args.connections).await?;
            tokio::time::sleep(args.warmup).await;
            running.measure();
            tokio::time::sleep(args.duration).await;
            run.rounds.push(running.finish().await?);
        }
    }
    Ok(runs)
}

/// Creates the user of one size, pads its roles until its token has `requested` bytes (or the
/// bound stops it), logs in its sessions and creates the order the load reads.
async fn prepare(
    args: &TokenSizeArgs,
    binaries: &Binaries,
    stack: &Stack,
    username: &str,
    requested: usize,
) -> anyhow::Result<Sized> {
    stack.add_user(binaries, username, PASSWORD).await?;
    let mut api = Api::new(stack.addrs.gateway);
    let mut token = api.login(username, PASSWORD).await?;
    let budget = MAX_GRANT_BYTES - BASE_GRANT_BYTES;
    let mut padding = 0usize;
    let mut at_bound = false;
    // base64url turns 3 bytes of payload into 4: aim, look, correct; converges in two or three.
    for _ in 0..4 {
        if token.len().abs_diff(requested) <= 3 || (token.len() > requested && padding == 0) {
            break;
        }
        let wanted = if requested > token.len() {
            padding + (requested - token.len()) * 3 / 4
        } else {
            padding.saturating_sub((token.len() - requested) * 3 / 4)
        };
        at_bound = wanted > budget;
        let next = wanted.min(budget);
        if next == padding {
            break;
        }
        padding = next;
        let mut roles = vec!["user".to_owned()];
        roles.extend(padding_roles(padding));
        stack
            .operator(
                binaries,
                &[
                    "user",
                    "update",
                    "--username",
                    username,
                    "--roles",
                    &roles.join(","),
                ],
                None,
            )
            .await?;
        token = api.login(username, PASSWORD).await?;
    }
    let mut tokens = vec![token];
    while tokens.len() < args.sessions {
        tokens.push(api.login(username, PASSWORD).await?);
    }
    let bytes = tokens[0].len();
    anyhow::ensure!(
        tokens.iter().all(|t| t.len() == bytes),
        "the tokens of one user differ in length"
    );
    let order_id = api.create_order(&tokens[0]).await?;
    Ok(Sized {
        requested,
        bytes,
        at_bound,
        tokens,
        order_id,
    })
}

struct Header {
    command: String,
    machine: String,
    started: String,
    bin_dir: String,
}

fn render(header: &Header, args: &TokenSizeArgs, runs: &[SizeRun], notes: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Token size at the gateway\n");
    let _ = writeln!(out, "- Command: `{}`", header.command);
    let _ = writeln!(out, "- Machine: {}", header.machine);
    let _ = writeln!(out, "- Started: {}", header.started);
    let _ = writeln!(
        out,
        "- Load: {} connections (one request in flight each), {} warm-up + {} measured per size \
         and round, {} round(s) with the sizes interleaved, {} sessions per size; \
         `GET /v1/orders/{{id}}` through the gateway",
        args.connections,
        humantime::format_duration(args.warmup),
        humantime::format_duration(args.duration),
        args.repeat,
        args.sessions
    );
    let env = if args.verifier_env.is_empty() {
        String::new()
    } else {
        let vars: Vec<String> = args
            .verifier_env
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect();
        format!(", verifiers with {}", vars.join(" "))
    };
    let _ = writeln!(
        out,
        "- Services: `AUTH_MODE={}`, `AUTH_SIGNING_ALG={}`{env}, otherwise their defaults; \
         binaries from `{}`\n",
        args.mode.auth_mode(),
        args.alg,
        header.bin_dir
    );
    let _ = writeln!(
        out,
        "| token (requested) | bytes | req/s (lowest–highest) | p50 | p99 | errors | req/s vs the smallest |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let medians: Vec<Option<f64>> = runs
        .iter()
        .map(|run| median(run.rounds.iter().map(LoadResult::requests_per_second)))
        .collect();
    let baseline = medians.first().copied().flatten();
    for (run, rate) in runs.iter().zip(&medians) {
        let rates: Vec<f64> = run
            .rounds
            .iter()
            .map(LoadResult::requests_per_second)
            .collect();
        let low = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let high = rates.iter().copied().fold(0.0, f64::max);
        let p50 = median_duration(run.rounds.iter().filter_map(|r| r.latencies.quantile(0.5)));
        let p99 = median_duration(run.rounds.iter().filter_map(|r| r.latencies.quantile(0.99)));
        let errors: u64 = run.rounds.iter().map(LoadResult::error_count).sum();
        let requested = if run.at_bound {
            format!("{} (the bound)", run.requested)
        } else {
            run.requested.to_string()
        };
        let _ = writeln!(
            out,
            "| {requested} | {} | {} ({}–{}) | {} | {} | {errors} | {} |",
            fmt_rate(run.bytes as f64),
            rate.map_or_else(|| "–".to_owned(), fmt_rate),
            fmt_rate(low),
            fmt_rate(high),
            p50.map_or_else(|| "–".to_owned(), fmt_duration),
            p99.map_or_else(|| "–".to_owned(), fmt_duration),
            match (rate, baseline) {
                (Some(rate), Some(base)) if base > 0.0 => fmt_ratio(rate / base),
                _ => "–".to_owned(),
            }
        );
    }
    for note in notes {
        let _ = writeln!(out, "\n- {note}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload_bytes(roles: &[String]) -> usize {
        roles.iter().map(|r| r.len() + 3).sum()
    }

    #[test]
    fn padding_takes_the_bytes_asked_for() {
        for bytes in [0, 5, 6, 7, 63, 64, 65, 69, 70, 71, 127, 128, 500, 2016] {
            let roles = padding_roles(bytes);
            let got = payload_bytes(&roles);
            assert!(got <= bytes && bytes - got < 6, "{bytes}: {got}");
            assert!(roles.iter().all(|r| r.len() <= MAX_PAD_ROLE), "{roles:?}");
            let mut unique = roles.clone();
            unique.dedup();
            assert_eq!(unique.len(), roles.len());
        }
        assert_eq!(BASE_GRANT_BYTES, 32);
    }
}
