//! Where the CPU went during a measured window: each service, Redis, loadgen itself, and every
//! other process of the machine (from `/proc`). On a shared machine the last figure says how much
//! the numbers were disturbed.

use std::time::{Duration, Instant};

/// CPU time counters at one moment, in clock ticks.
#[derive(Debug, Clone)]
pub struct CpuSample {
    at: Instant,
    /// All CPUs: busy ticks (everything but idle and iowait).
    busy: u64,
    /// Per watched process.
    processes: Vec<(String, u64)>,
}

/// CPU seconds spent during a window.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuUsage {
    pub window: Duration,
    /// CPU-seconds the whole machine was busy.
    pub busy: f64,
    /// CPU-seconds per watched process.
    pub processes: Vec<(String, f64)>,
}

impl CpuUsage {
    /// Share of the machine's `cpus` the processes not watched used, in percent.
    #[allow(clippy::cast_precision_loss)]
    pub fn others_percent(&self, cpus: usize) -> f64 {
        let capacity = self.window.as_secs_f64() * cpus.max(1) as f64;
        if capacity > 0.0 {
            self.others() / capacity * 100.0
        } else {
            0.0
        }
    }

    /// CPU-seconds of the processes not watched.
    pub fn others(&self) -> f64 {
        (self.busy - self.processes.iter().map(|(_, s)| s).sum::<f64>()).max(0.0)
    }
}

/// Reads the counters of the machine and of `processes` (name, pid). `None` off Linux.
pub fn sample(processes: &[(String, u32)]) -> Option<CpuSample> {
    let busy = machine_busy(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let processes = processes
        .iter()
        .map(|(name, pid)| {
            let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| process_ticks(&stat))
                .unwrap_or(0);
            (name.clone(), ticks)
        })
        .collect();
    Some(CpuSample {
        at: Instant::now(),
        busy,
        processes,
    })
}

/// The usage between two samples of the same processes.
#[allow(clippy::cast_precision_loss)]
pub fn between(before: &CpuSample, after: &CpuSample) -> CpuUsage {
    let hz = rustix::param::clock_ticks_per_second().max(1) as f64;
    let seconds = |b: u64, a: u64| a.saturating_sub(b) as f64 / hz;
    CpuUsage {
        window: after.at.saturating_duration_since(before.at),
        busy: seconds(before.busy, after.busy),
        processes: before
            .processes
            .iter()
            .zip(&after.processes)
            .map(|((name, b), (_, a))| (name.clone(), seconds(*b, *a)))
            .collect(),
    }
}

/// Seconds in a row the machine must stay idle for [`wait_idle`] to return.
const IDLE_SECONDS: u32 = 3;

/// Waits until processes other than `ours` have used at most `max_percent` of the machine's
/// `cpus` for `IDLE_SECONDS` seconds in a row, for at most `max_wait`. Returns the share they
/// used in the last second (in percent), whether or not it went low enough.
#[allow(clippy::cast_precision_loss)]
pub async fn wait_idle(
    ours: &[(String, u32)],
    cpus: usize,
    max_percent: f64,
    max_wait: Duration,
    mut on_wait: impl FnMut(f64),
) -> Option<f64> {
    let give_up = Instant::now() + max_wait;
    let mut idle_seconds = 0;
    loop {
        let before = sample(ours)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let usage = between(&before, &sample(ours)?);
        let others = usage.others_percent(cpus);
        idle_seconds = if others <= max_percent {
            idle_seconds + 1
        } else {
            on_wait(others);
            0
        };
        if idle_seconds >= IDLE_SECONDS || Instant::now() >= give_up {
            return Some(others);
        }
    }
}

/// Busy ticks of all CPUs from the first line of `/proc/stat`
/// (`cpu user nice system idle iowait irq softirq steal ...`).
fn machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let take = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some(take(0) + take(1) + take(2) + take(5) + take(6) + take(7))
}

/// `utime + stime` of `/proc/<pid>/stat`. The command name may hold spaces and parentheses, so
/// fields are counted after its closing parenthesis.
fn process_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Field 3 (state) is index 0 here, so utime (14) and stime (15) are 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_is_read() {
        let stat = "cpu  315211 7 62045 259443 5037 3 1438 145 0 0\ncpu0 152863 0 30017 137150 1389 0 401 73 0 0\n";
        assert_eq!(
            machine_busy(stat),
            Some(315_211 + 7 + 62_045 + 3 + 1438 + 145)
        );
        assert_eq!(machine_busy("intr 1 2 3"), None);
        let process = "4806 (tokio (worker) x) R 4800 4800 11742 0 -1 4194304 98 0 0 0 250 31 0 0 20 0 1 0 323119";
        assert_eq!(process_ticks(process), Some(281));
        assert_eq!(process_ticks("garbage"), None);
    }

    #[test]
    fn usage_between_samples() {
        let start = Instant::now();
        let hz = rustix::param::clock_ticks_per_second();
        let before = CpuSample {
            at: start,
            busy: 0,
            processes: vec![("gateway".into(), 0), ("loadgen".into(), 0)],
        };
        let after = CpuSample {
            at: start + Duration::from_secs(1),
            busy: 2 * hz,
            processes: vec![("gateway".into(), hz), ("loadgen".into(), hz / 2)],
        };
        let usage = between(&before, &after);
        assert_eq!(usage.window, Duration::from_secs(1));
        assert!((usage.busy - 2.0).abs() < 1e-9);
        assert!((usage.processes[0].1 - 1.0).abs() < 1e-9);
        assert!((usage.others() - 0.5).abs() < 0.02);
        assert!((usage.others_percent(2) - 25.0).abs() < 1.0);
    }
}
