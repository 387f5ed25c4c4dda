//! Resident memory of the services, from `/proc/<pid>/status`: `VmRSS` (now) and `VmHWM` (the
//! peak). The peak is reset before each throughput load (`/proc/<pid>/clear_refs`, "5"), so it
//! is the peak during that load, not of the start-up.

use std::collections::BTreeMap;

/// Bytes in the report's megabyte: the targets say MB, read as 10^6 bytes (the stricter
/// reading of the two).
pub const MB: f64 = 1e6;

/// Resident memory of one process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resident {
    /// `VmRSS`: resident now.
    pub rss: u64,
    /// `VmHWM`: the highest `VmRSS` since start or since the last reset.
    pub peak: u64,
}

/// `VmRSS` and `VmHWM` of a `/proc/<pid>/status` text (`VmRSS:   12345 kB`).
pub fn parse_status(status: &str) -> Option<Resident> {
    let field = |name: &str| -> Option<u64> {
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))?;
        let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kib * 1024)
    };
    Some(Resident {
        rss: field("VmRSS")?,
        peak: field("VmHWM")?,
    })
}

/// The resident memory of `pid` now; `None` off Linux or once the process is gone.
pub fn read(pid: u32) -> Option<Resident> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Resets the peak (`VmHWM`) of `pid` to its current RSS. `false` when the kernel does not
/// allow it (then the peak read later is the peak since start).
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Resident memory of the services during one throughput load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadPeaks {
    /// Per service: the peak RSS during the load, in bytes.
    pub peaks: BTreeMap<String, u64>,
    /// Whether every peak was reset before the load (otherwise some are peaks since start).
    pub reset: bool,
}

/// Resets the peaks of `services` (name, pid) before a load.
pub fn start_load(services: &[(String, u32)]) -> bool {
    services
        .iter()
        .fold(true, |all, (_, pid)| reset_peak(*pid) && all)
}

/// The peaks of `services` after a load; `reset` says whether [`start_load`] succeeded.
pub fn end_load(services: &[(String, u32)], reset: bool) -> LoadPeaks {
    LoadPeaks {
        peaks: services
            .iter()
            .filter_map(|(name, pid)| Some((name.clone(), read(*pid)?.peak)))
            .collect(),
        reset,
    }
}

/// The RSS of `services` now.
pub fn idle(services: &[(String, u32)]) -> BTreeMap<String, u64> {
    services
        .iter()
        .filter_map(|(name, pid)| Some((name.clone(), read(*pid)?.rss)))
        .collect()
}

/// `24.6 MB`.
#[allow(clippy::cast_precision_loss)]
pub fn fmt_mb(bytes: u64) -> String {
    let mb = bytes as f64 / MB;
    if mb < 10.0 {
        format!("{mb:.2} MB")
    } else {
        format!("{mb:.1} MB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_is_read() {
        let status = "Name:\tgateway\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t  812344 kB\n\
                      VmSize:\t  746808 kB\nVmHWM:\t   31204 kB\nVmRSS:\t   24160 kB\n\
                      RssAnon:\t   12000 kB\nThreads:\t3\n";
        assert_eq!(
            parse_status(status),
            Some(Resident {
                rss: 24_160 * 1024,
                peak: 31_204 * 1024,
            })
        );
        // A kernel thread has no VmRSS; garbage is not a number.
        assert_eq!(parse_status("Name:\tkthreadd\nState:\tS\n"), None);
        assert_eq!(parse_status("VmHWM:\t1 kB\nVmRSS:\tmany kB\n"), None);
        // `VmRSSx` is not `VmRSS`.
        assert_eq!(parse_status("VmHWM:\t2 kB\nVmRSSx:\t1 kB\n"), None);
    }

    #[test]
    fn this_process_is_read_and_its_peak_reset() {
        let pid = std::process::id();
        let now = read(pid).expect("Linux /proc");
        assert!(now.rss > 0 && now.peak >= now.rss, "{now:?}");
        let services = [("loadgen".to_owned(), pid)];
        let reset = start_load(&services);
        let peaks = end_load(&services, reset);
        assert_eq!(peaks.reset, reset);
        assert!(peaks.peaks["loadgen"] > 0);
        assert!(idle(&services)["loadgen"] > 0);
        assert!(idle(&[("gone".to_owned(), u32::MAX)]).is_empty());
    }

    #[test]
    fn megabytes() {
        assert_eq!(fmt_mb(24_600_000), "24.6 MB");
        assert_eq!(fmt_mb(9_870_000), "9.87 MB");
        assert_eq!(fmt_mb(149_999_999), "150.0 MB");
    }
}
