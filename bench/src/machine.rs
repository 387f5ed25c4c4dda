//! The machine the numbers come from.

/// What the report says about the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Usable CPUs (what `nproc` prints: affinity and cgroup quota applied).
    pub cpus: usize,
    pub cpu_model: String,
    pub memory: Option<String>,
    pub kernel: Option<String>,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".to_owned()),
            memory: memory_total(&meminfo),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| format!("Linux {}", s.trim())),
        }
    }

    pub fn describe(&self) -> String {
        let mut parts = vec![
            format!("{} CPUs (`nproc`)", self.cpus),
            self.cpu_model.clone(),
        ];
        parts.extend(self.memory.iter().map(|m| format!("{m} RAM")));
        parts.extend(self.kernel.clone());
        parts.join(", ")
    }
}

/// The first `model name` of `/proc/cpuinfo`.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// `MemTotal` of `/proc/meminfo`, in GiB.
fn memory_total(meminfo: &str) -> Option<String> {
    let kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    #[allow(clippy::cast_precision_loss)]
    Some(format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
        let meminfo = "MemTotal:        8388608 kB\nMemFree:         1234 kB\n";
        assert_eq!(memory_total(meminfo).as_deref(), Some("8.0 GiB"));
        assert_eq!(memory_total(""), None);
    }
}
