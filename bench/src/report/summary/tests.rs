//! The computing part on its own: medians, ranges, ratios, outcomes and verdicts, as numbers.

use std::time::Duration;

use clap::Parser as _;

use super::*;
use crate::cli::Args;
use crate::issuance::{Grant, IssuanceRun};
use crate::openssl::RsaSpeed;
use crate::report::TransportRun;
use crate::report::tests::{
    context, cpu, full_fixture, grant_run, load, mode_run, revocation_fixture, store,
};
use crate::targets::Goal;

/// `got` equals `want` but for floating-point rounding.
fn close(got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
        "{got} vs {want}"
    );
}

/// `got` is `want_ms` milliseconds to the histogram's 3 significant digits.
fn close_ms(got: Option<Duration>, want_ms: f64) {
    let got = got.expect("a duration").as_secs_f64() * 1000.0;
    assert!(
        (got - want_ms).abs() <= want_ms * 0.001,
        "{got} ms vs {want_ms} ms"
    );
}

fn settings(args: &[&str]) -> Settings {
    let mut argv = vec!["loadgen", "--redis-url", ""];
    argv.extend_from_slice(args);
    Settings::resolve(Args::try_parse_from(argv).unwrap()).unwrap()
}

#[test]
fn a_transport_summary_takes_medians_ranges_and_sums() {
    let runs: Vec<TransportRun> = [500_u64, 600, 550]
        .into_iter()
        .enumerate()
        .map(|(i, rps)| TransportRun {
            load: load(
                rps,
                &[3, 3, 4],
                if i == 0 { &[("HTTP 503", 2)] } else { &[] },
            ),
            store: Some(store(2.0 * rps as f64, rps)),
            cpu: Some(cpu(2.0, &[("gateway", 1.0), ("loadgen", 0.1)])),
            memory: None,
        })
        .collect();
    let s = throughput::summarize_transport(&runs.iter().collect::<Vec<_>>(), 2);
    assert_eq!(s.rps, 550.0);
    assert_eq!(s.rps_range, (500.0, 600.0));
    assert_eq!(s.runs, 3);
    close_ms(s.p50, 3.0);
    close_ms(s.p99, 4.0);
    assert_eq!((s.requests, s.error_count), (1650, 2));
    assert_eq!(s.errors, [("HTTP 503".to_owned(), 2)].into_iter().collect());
    assert_eq!(s.lookups, Some(2.0));
    assert_eq!(
        s.lookup_source,
        Some(LookupSource::StandIn("auth_verify_total".into()))
    );
    assert_eq!((s.redis_commands, s.fallback_checks), (None, 0.0));
    // CPU µs per request: medians over the repeats, which here are those of the 550 req/s one.
    let cpu = s.cpu.unwrap();
    close(cpu.per_request["gateway"], 1e6 / 550.0);
    close(cpu.per_request["loadgen"], 0.1e6 / 550.0);
    close(cpu.together, 1.1e6 / 550.0);
    close(cpu.others_per_request, 0.9e6 / 550.0);
    // 2 CPU-seconds busy of 2 CPUs for 1 s; 0.9 of them outside the watched processes.
    close(cpu.busy_percent, 100.0);
    close(cpu.others_percent, 45.0);
}

#[test]
fn lookups_are_counted_from_the_best_source() {
    let (context, settings, results) = full_fixture();
    let throughputs = throughput::by_mode_and_transport(&results.runs, context.machine.cpus);
    let lookups = |mode| {
        let s = throughputs.get(mode, Transport::Http).unwrap();
        (s.lookups.unwrap(), s.lookup_source.clone().unwrap())
    };
    let (per_request, source) = lookups(Mode::Stateful);
    assert_eq!(per_request, 1.0);
    assert_eq!(
        source,
        LookupSource::CheckSession("auth_check_session_total".into())
    );
    assert!(source.exact());
    assert_eq!(
        lookups(Mode::StatefulRedis),
        (1.0, LookupSource::RedisExists)
    );
    let (per_request, source) = lookups(Mode::Hybrid);
    assert_eq!(per_request, 0.25);
    assert!(!source.exact());
    let summary = summarize(&context, &settings, &results);
    assert!(summary.modes.unwrap().inexact_lookups);
    // Redis commands: a median of 1.5 per request; fallback checks: 12 per repeat, summed.
    let details = &summary.details;
    assert!(details.contains(&Detail::RedisCommands {
        mode: Mode::StatefulRedis,
        transport: Transport::Grpc,
        per_request: 1.5,
    }));
    assert!(details.contains(&Detail::FallbackChecks {
        mode: Mode::Hybrid,
        transport: Transport::Http,
        checks: 24.0,
    }));
}

#[test]
fn ratios_against_stateless_and_a_disturbed_cpu() {
    let (context, settings, results) = full_fixture();
    let summary = summarize(&context, &settings, &results);
    let modes: Vec<Mode> = summary.ratios.iter().map(|r| r.mode).collect();
    assert_eq!(
        modes,
        [
            Mode::Off,
            Mode::StatelessNocache,
            Mode::Stateful,
            Mode::StatefulRedis,
            Mode::Hybrid
        ]
    );
    let hybrid = &summary.ratios[4].transports[0];
    assert_eq!(hybrid.transport, Transport::Http);
    // Medians of 5,000 and 5,100 req/s against 9,000 and 9,100.
    close(hybrid.throughput, 5_050.0 / 9_050.0);
    // CPU-seconds per window: 0.9 in hybrid, 0.66 in stateless; per request, medians.
    let per_request = |seconds: f64, a: f64, b: f64| seconds * 1e6 * (1.0 / a + 1.0 / b) / 2.0;
    let cpu = hybrid.cpu.unwrap();
    close(
        cpu.per_request,
        per_request(0.9, 5_000.0, 5_100.0) / per_request(0.66, 9_000.0, 9_100.0),
    );
    close(cpu.per_request * cpu.equal_cpu_throughput, 1.0);
    // Others took 10% and 1% of the 2 CPUs in the two repeats of `stateless, no cache`.
    let table = summary.cpu.unwrap();
    assert_eq!((table.cpus, table.rows.len()), (2, 12));
    close(table.disturbed.unwrap(), 5.5);
}

#[test]
fn revocation_outcomes_of_each_verifier() {
    let (settings, results) = revocation_fixture();
    let summary = summarize(&context(), &settings, &results);
    let table = summary.modes.unwrap();
    let outcome = |mode: Mode, transport: Transport| {
        let rows = &table.modes.iter().find(|m| m.mode == mode).unwrap();
        let row = rows.transports.iter().find(|r| r.transport == transport);
        row.unwrap().revocation.clone()
    };
    assert_eq!(
        outcome(Mode::Off, Transport::Http),
        RevocationOutcome::NotInMode
    );
    assert_eq!(
        outcome(Mode::Stateless, Transport::Grpc),
        RevocationOutcome::LogoutFailed("POST /v1/logout answered 404 Not Found".into())
    );
    assert_eq!(
        outcome(Mode::Stateful, Transport::Http),
        RevocationOutcome::NeverWithin(Duration::from_secs(5))
    );
    assert_eq!(
        outcome(Mode::StatefulRedis, Transport::Grpc),
        RevocationOutcome::NotRun
    );
    let RevocationOutcome::Delays { p50, p99, missed } = outcome(Mode::Hybrid, Transport::Http)
    else {
        panic!("hybrid refused revocations");
    };
    close_ms(p50, 3.0);
    close_ms(p99, 4.0);
    assert_eq!(missed, 1);
    let (context, settings, results) = full_fixture();
    let summary = summarize(&context, &settings, &results);
    let outcome = &summary.modes.unwrap().modes[1].transports[0].revocation;
    assert_eq!(*outcome, RevocationOutcome::UntilExpiry);
    let nothing = RevocationSummary {
        attempted: 0,
        gateway: VerifierSummary::default(),
        orders: VerifierSummary::default(),
        endings: vec![crate::revocation::Ending::Completed],
    };
    assert_eq!(
        revocation_outcome(
            Mode::Hybrid,
            Some(&nothing),
            Transport::Http,
            Duration::ZERO
        ),
        RevocationOutcome::NotMeasured
    );
}

#[test]
fn revocations_are_summed_over_repeats() {
    use crate::revocation::Ending;
    let (context, settings, results) = full_fixture();
    let table = summarize(&context, &settings, &results).revocation.unwrap();
    let modes: Vec<Mode> = table.modes.iter().map(|(mode, _)| *mode).collect();
    let measured = [
        Mode::Stateless,
        Mode::Stateful,
        Mode::StatefulRedis,
        Mode::Hybrid,
    ];
    assert_eq!(modes, measured);
    let (_, stateless) = &table.modes[0];
    assert_eq!(
        stateless.endings,
        [Ending::NeverRefused],
        "one of each kind in a row"
    );
    let (_, redis) = &table.modes[2];
    assert_eq!(
        (redis.attempted, redis.gateway.refused, redis.gateway.missed),
        (10, 4, 6)
    );
    assert_eq!(redis.endings, [Ending::Completed, Ending::TooManyMisses]);
    let (_, hybrid) = &table.modes[3];
    assert_eq!((hybrid.attempted, hybrid.orders.refused), (6, 6));
    // The longest delay of either repeat: 30 ms and 31 ms.
    close_ms(hybrid.gateway.max, 31.0);
    assert_eq!(
        hybrid.orders.unexpected,
        [("HTTP 503".to_owned(), 4)].into_iter().collect()
    );
}

#[test]
fn memory_medians_and_peaks() {
    let (context, settings, results) = full_fixture();
    let memory = summarize(&context, &settings, &results).memory.unwrap();
    assert_eq!(memory.connections, 32);
    assert_eq!(memory.modes.len(), 6);
    let of = |mode| &memory.modes.iter().find(|(m, _)| *m == mode).unwrap().1;
    let hybrid = of(Mode::Hybrid);
    // Idle: 11.0 and 11.25 MB over the repeats.
    assert_eq!(hybrid.idle["orders-service"], 11_125_000);
    assert_eq!(hybrid.idle["auth-service"], 31_000_000);
    // The highest peak of the transports of each repeat: 35 and 36 MB.
    assert_eq!(hybrid.peak["orders-service"], 35_500_000);
    assert!(of(Mode::StatefulRedis).since_start && !hybrid.since_start);
    assert!(memory.since_start);
    // The highest peak of the two transports (42 MB over HTTP, 1 MB over gRPC).
    let run = mode_run(Mode::Stateless, 1, 1, 10, 42);
    let summary = memory::summarize_memory(&[&run]);
    assert_eq!(summary.peak["gateway"], 42_000_000);
}

#[test]
fn issuance_medians_against_openssl() {
    let (context, settings, results) = full_fixture();
    let issuance = summarize(&context, &settings, &results).issuance.unwrap();
    assert_eq!(
        issuance.openssl,
        Ok(RsaSpeed {
            sign_per_sec: 3_250.0,
            verify_per_sec: 60_000.0
        })
    );
    assert_eq!((issuance.connections, issuance.openssl_seconds), (8, 3));
    let [cc, rt] = &issuance.grants[..] else {
        panic!("both grants");
    };
    assert_eq!(cc.grant, Grant::ClientCredentials);
    assert_eq!(
        (cc.tokens_per_second, cc.range),
        (3_050.0, (3_000.0, 3_100.0))
    );
    assert_eq!(cc.per_cpu_second, Some(3_050.0));
    assert_eq!(
        cc.cpu_per_token,
        Some(Duration::from_secs_f64(1.0 / 3_050.0))
    );
    close(cc.vs_openssl.unwrap(), 3_050.0 / 3_250.0);
    // 5 of the second repeat's 1,000 requests failed: 1,000 and 995 tokens.
    assert_eq!(rt.tokens_per_second, 997.5);
    assert_eq!((rt.error_count, rt.requests), (5, 2_000));
    close(rt.per_cpu_second.unwrap(), (1_000.0 + 995.0) / 0.4 / 2.0);
    assert_eq!(issuance::summarize_openssl(&[]), Err("not run".to_owned()));
    let failed = IssuanceRun {
        grants: [(Grant::ClientCredentials, grant_run(100, 1.0))]
            .into_iter()
            .collect(),
        openssl: Err("cannot run `openssl speed`".into()),
        notes: vec![],
    };
    let openssl = issuance::summarize_openssl(std::slice::from_ref(&failed));
    assert_eq!(openssl, Err("cannot run `openssl speed`".to_owned()));
    let grant = issuance::summarize_grant(&[failed], Grant::ClientCredentials, &openssl);
    assert_eq!(grant.unwrap().vs_openssl, None);
}

#[test]
fn targets_carry_their_verdicts() {
    let (context, settings, results) = full_fixture();
    let targets = summarize(&context, &settings, &results).targets.unwrap();
    assert_eq!((targets.repeat, targets.rows.len()), (2, 11));
    let row = |target| targets.rows.iter().find(|r| r.target == target).unwrap();
    let auth = row(Target::AuthenticatedVsOff);
    assert_eq!(auth.goal, Goal::AtLeast(0.80));
    let Ok(Measured::Throughput(ratio)) = auth.measured else {
        panic!("measured");
    };
    assert_eq!((ratio.rps, ratio.base_rps), (9_050.0, 10_050.0));
    let verdict = auth.verdict.unwrap();
    assert!(verdict.pass);
    close(verdict.margin, 9_050.0 / 10_050.0 / 0.80 - 1.0);
    let hybrid = row(Target::HybridVsStateless(Transport::Grpc))
        .verdict
        .unwrap();
    assert!(!hybrid.pass);
    close(hybrid.margin, 9_850.0 / 17_850.0 / 0.90 - 1.0);
    let idle = row(Target::MemoryIdle("auth-service"));
    let bytes = 31_000_000;
    let measured = Measured::Memory {
        bytes,
        mode: Mode::Hybrid,
    };
    assert_eq!(idle.measured, Ok(measured));
    let verdict = idle.verdict.unwrap();
    assert!(!verdict.pass && verdict.ceiling);
    close(verdict.margin, 1.0 - 31.0 / 30.0);
    let peak = row(Target::MemoryPeak {
        service: "gateway",
        connections: 32,
    });
    assert_eq!(peak.remark, Some(Remark::OtherConnections(32)));
    assert!(peak.verdict.unwrap().pass);
    let per_core = row(Target::IssuancePerCore(Grant::RefreshToken));
    let verdict = per_core.verdict.unwrap();
    assert!(!verdict.pass);
    close(verdict.margin, 2_493.75 / 3_250.0 / 0.80 - 1.0);
    let first = targets.reference[0];
    assert_eq!(targets.reference.len(), 5);
    assert_eq!(
        (first.comparison, first.transport),
        (Comparison::CacheVsNoCache, Transport::Http)
    );
    close(first.ratio.ratio, 9_050.0 / 8_050.0);
}

#[test]
fn a_target_not_measured_says_why() {
    let measured = |args: &[&str], results: &Results| {
        let summary = summarize(&context(), &settings(args), results);
        let rows = summary.targets.unwrap().rows;
        assert!(rows.iter().all(|r| r.verdict.is_none()));
        rows.into_iter().map(|r| r.measured).collect::<Vec<_>>()
    };
    let results = Results {
        runs: vec![mode_run(Mode::Stateless, 8_500, 17_000, 10, 42)],
        skipped: [(Mode::Off, "built without bench-auth-off".to_owned())]
            .into_iter()
            .collect(),
        ..Results::default()
    };
    let args = [
        "--modes",
        "off,stateless",
        "--scenarios",
        "throughput",
        "--transports",
        "http",
    ];
    assert_eq!(
        measured(&args, &results),
        [
            Err(Missing::Skipped(Mode::Off)),
            Err(Missing::NotSelected(Mode::Hybrid))
        ]
    );
    let results = Results {
        runs: vec![
            mode_run(Mode::Off, 0, 0, 9, 40),
            mode_run(Mode::Stateless, 8_500, 17_000, 10, 42),
        ],
        issuance: vec![IssuanceRun {
            grants: [(Grant::ClientCredentials, grant_run(3_000, 1.0))]
                .into_iter()
                .collect(),
            openssl: Err("cannot run `openssl speed`".into()),
            notes: vec![],
        }],
        ..Results::default()
    };
    let args = [
        "--modes",
        "off,stateless,hybrid",
        "--scenarios",
        "throughput,issuance",
        "--transports",
        "http",
    ];
    let openssl = || Err(Missing::Openssl("cannot run `openssl speed`".into()));
    assert_eq!(
        measured(&args, &results),
        [
            Err(Missing::NoThroughput(Mode::Off)),
            Err(Missing::NoResult(Mode::Hybrid)),
            openssl(),
            openssl(),
        ]
    );
}
