//! Token issuance per grant, against `openssl speed`.

use std::fmt::Write as _;

use crate::report::summary::{GrantSummary, IssuanceSummary};
use crate::targets::fmt_plain_ratio;

use super::{fmt_duration, fmt_errors, fmt_opt_duration, fmt_rate, fmt_rate_range};

pub fn table(out: &mut String, issuance: &IssuanceSummary) {
    let _ = writeln!(
        out,
        "Token issuance: `POST /oauth/token` straight at auth-service, {} connections (one \
         request in flight each), {} warm-up + {} measured per grant; the issuer's CPU from \
         `/proc`; against `openssl speed -seconds {} rsa2048` (one core) in the same run:\n",
        issuance.connections,
        humantime::format_duration(issuance.warmup),
        humantime::format_duration(issuance.duration),
        issuance.openssl_seconds,
    );
    let _ = writeln!(
        out,
        "| grant | tokens/s | p50 | p99 | errors | auth-service CPU per token | tokens per auth-service CPU-second | that / openssl sign/s |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for grant in &issuance.grants {
        let _ = writeln!(out, "{}", grant_row(grant));
    }
    let _ = writeln!(out);
    match &issuance.openssl {
        Ok(speed) => {
            let _ = writeln!(
                out,
                "- `openssl speed rsa2048`, one core: {} sign/s, {} verify/s",
                fmt_rate(speed.sign_per_sec),
                fmt_rate(speed.verify_per_sec)
            );
        }
        Err(why) => {
            let _ = writeln!(out, "- `openssl speed rsa2048`: not measured ({why})");
        }
    }
    for g in issuance.grants.iter().filter(|g| !g.errors.is_empty()) {
        let _ = writeln!(
            out,
            "- {}: {} errors of {} requests: {}",
            g.grant.label(),
            g.error_count,
            g.requests,
            fmt_errors(&g.errors)
        );
    }
    let _ = writeln!(out);
}

fn grant_row(g: &GrantSummary) -> String {
    let dash = || "–".to_owned();
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        g.grant.label(),
        fmt_rate_range(g.tokens_per_second, g.range, g.runs),
        fmt_opt_duration(g.p50),
        fmt_opt_duration(g.p99),
        g.error_count,
        g.cpu_per_token.map_or_else(dash, fmt_duration),
        g.per_cpu_second.map_or_else(dash, fmt_rate),
        g.vs_openssl.map_or_else(dash, fmt_plain_ratio),
    )
}
