//! The main table (throughput, latency, revocation and lookups per mode and transport), the
//! ratios against `stateless`, and where the CPU went.

use std::fmt::Write as _;

use crate::report::summary::{
    CpuTable, LookupSource, ModeRatios, ModeTable, TransportRatio, TransportRow, TransportSummary,
};

use super::{fmt_opt_duration, fmt_rate_range, fmt_ratio, revocation_cell};

pub fn mode_table(out: &mut String, table: &ModeTable) {
    let _ = writeln!(
        out,
        "| mode | transport | req/s | p50 | p99 | errors | revocation p50 / p99 (gateway, orders) | lookups/request |"
    );
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |");
    for mode in &table.modes {
        for row in &mode.transports {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                mode.mode.label(),
                row.transport.label(),
                throughput_cells(row),
                lookups_cell(row.throughput.as_ref()),
            );
        }
    }
    if !table.modes.is_empty() {
        let _ = writeln!(out);
    }
    if table.inexact_lookups {
        let _ = writeln!(
            out,
            "† No `CheckSession` series at the issuer (a request counter labelled with it appears \
             with the first call): counted with `auth_verify_total`, the \
             issuer's bearer verifications (one per `CheckSession` call, each carrying the \
             verifier's service token; also counts logins' and logouts' bearer checks, none of \
             which happen during the throughput run).\n"
        );
    }
}

/// `req/s | p50 | p99 | errors | revocation` of one row.
fn throughput_cells(row: &TransportRow) -> String {
    let revocation = revocation_cell(&row.revocation);
    match &row.throughput {
        Some(s) => format!(
            "{} | {} | {} | {} | {revocation}",
            fmt_rate_range(s.rps, s.rps_range, s.runs),
            fmt_opt_duration(s.p50),
            fmt_opt_duration(s.p99),
            s.error_count,
        ),
        None => format!("– | – | – | – | {revocation}"),
    }
}

/// `2.00 (CheckSession: `…`)`; a stand-in for `CheckSession` is marked `†`, and a figure that
/// shows as zero goes without its source.
fn lookups_cell(summary: Option<&TransportSummary>) -> String {
    let Some(summary) = summary else {
        return "–".to_owned();
    };
    match (&summary.lookups, &summary.lookup_source) {
        (Some(per_request), Some(source)) => {
            let mark = if source.exact() { "" } else { " †" };
            if *per_request < 0.005 {
                format!("{per_request:.2}{mark}")
            } else {
                format!("{per_request:.2} ({}){mark}", lookup_source(source))
            }
        }
        _ => "–".to_owned(),
    }
}

fn lookup_source(source: &LookupSource) -> String {
    match source {
        LookupSource::RedisExists => "Redis EXISTS".to_owned(),
        LookupSource::CheckSession(metric) => format!("CheckSession: `{metric}`"),
        LookupSource::StandIn(metric) => format!("`{metric}`"),
    }
}

/// Throughput relative to stateless.
pub fn ratios(out: &mut String, ratios: &[ModeRatios]) {
    if ratios.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Throughput relative to stateless (req/s ratio; and from the CPU per request of \
         the services, Redis and loadgen together, which other processes on the machine \
         disturb less):\n"
    );
    for ratio in ratios {
        let parts: Vec<String> = ratio.transports.iter().map(transport_ratio).collect();
        let _ = writeln!(
            out,
            "- {} / stateless: {}",
            ratio.mode.label(),
            parts.join("; ")
        );
    }
    let _ = writeln!(out);
}

/// `HTTP → gateway 0.93 (−7.0%), CPU per request 1.08× (throughput at equal CPU 0.93 (−7.0%))`.
fn transport_ratio(ratio: &TransportRatio) -> String {
    let mut part = format!(
        "{} {}",
        ratio.transport.label(),
        fmt_ratio(ratio.throughput)
    );
    if let Some(cpu) = &ratio.cpu {
        let _ = write!(
            part,
            ", CPU per request {:.2}× (throughput at equal CPU {})",
            cpu.per_request,
            fmt_ratio(cpu.equal_cpu_throughput)
        );
    }
    part
}

/// Where the CPU went.
pub fn cpu_table(out: &mut String, table: &CpuTable) {
    let _ = writeln!(
        out,
        "CPU time per request in the measured window, µs (from `/proc`; everything shares the \
         machine's {} CPUs):\n",
        table.cpus
    );
    let _ = writeln!(
        out,
        "| mode | transport | gateway | orders-service | auth-service | redis-server | loadgen | together | other processes (share of CPUs) | all CPUs busy |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for row in &table.rows {
        let cpu = &row.cpu;
        let cell = |name: &str| {
            cpu.per_request
                .get(name)
                .map_or_else(|| "–".to_owned(), |us| format!("{us:.0}"))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | **{:.0}** | {:.0} ({:.0}%) | {:.0}% |",
            row.mode.label(),
            row.transport.label(),
            cell("gateway"),
            cell("orders-service"),
            cell("auth-service"),
            cell("redis-server"),
            cell("loadgen"),
            cpu.together,
            cpu.others_per_request,
            cpu.others_percent,
            cpu.busy_percent,
        );
    }
    let _ = writeln!(out);
    if let Some(worst_others) = table.disturbed {
        let _ = writeln!(
            out,
            "**Disturbed:** processes outside the benchmark used up to {worst_others:.0}% of \
             the CPUs during a measured window; rerun on an idle machine.\n"
        );
    }
}
