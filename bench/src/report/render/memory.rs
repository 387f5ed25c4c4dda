//! Resident memory of each service per mode.

use std::fmt::Write as _;

use crate::memory::fmt_mb;
use crate::report::summary::{MemoryTable, SERVICES};

pub fn table(out: &mut String, table: &MemoryTable) {
    let _ = writeln!(
        out,
        "Resident memory (RSS; MB = 10^6 bytes) of each service: idle after start, seeding and \
         log-ins, before any load; and the peak during the throughput load at {} connections \
         (`VmHWM` of `/proc/<pid>/status`, reset before each load; highest of the transports):\n",
        table.connections
    );
    let header: String = SERVICES
        .iter()
        .map(|s| format!(" {s} idle | {s} peak |"))
        .collect();
    let _ = writeln!(out, "| mode |{header}");
    let _ = writeln!(out, "| --- |{}", " ---: |".repeat(2 * SERVICES.len()));
    let cell = |bytes: Option<&u64>| bytes.map_or_else(|| "–".to_owned(), |b| fmt_mb(*b));
    for (mode, summary) in &table.modes {
        let mark = if summary.since_start { " *" } else { "" };
        let cells: String = SERVICES
            .iter()
            .map(|&name| {
                format!(
                    " {} | {}{mark} |",
                    cell(summary.idle.get(name)),
                    cell(summary.peak.get(name))
                )
            })
            .collect();
        let _ = writeln!(out, "| {} |{cells}", mode.label());
    }
    let _ = writeln!(out);
    if table.since_start {
        let _ = writeln!(
            out,
            "\\* The kernel refused resetting the peak (`/proc/<pid>/clear_refs`): peak since the \
             service started.\n"
        );
    }
}
