//! The targets of issue 7, and the verdict on a measured value: pass or miss, and by how much.

/// What a measured value must satisfy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// At least this (ratios: throughput, tokens per core).
    AtLeast(f64),
    /// Below this (memory).
    Below(f64),
}

impl Goal {
    /// `≥ 0.80`, `< 30.0 MB`, with `unit` formatting the threshold.
    pub fn describe(self, unit: impl Fn(f64) -> String) -> String {
        match self {
            Goal::AtLeast(threshold) => format!("≥ {}", unit(threshold)),
            Goal::Below(threshold) => format!("< {}", unit(threshold)),
        }
    }

    /// Whether `measured` meets the goal, and the margin relative to the threshold: positive
    /// to spare, negative short of it.
    pub fn judge(self, measured: f64) -> Verdict {
        match self {
            Goal::AtLeast(threshold) => Verdict {
                pass: measured >= threshold,
                margin: measured / threshold - 1.0,
                ceiling: false,
            },
            Goal::Below(threshold) => Verdict {
                pass: measured < threshold,
                margin: 1.0 - measured / threshold,
                ceiling: true,
            },
        }
    }
}

/// The outcome of one target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub pass: bool,
    /// Relative to the threshold: 0.063 is 6.3% to spare, −0.081 is 8.1% short (or over).
    pub margin: f64,
    /// Whether the threshold is a ceiling ([`Goal::Below`]): a miss is then "over", not "short".
    pub ceiling: bool,
}

impl Verdict {
    /// `pass (6.3% to spare)`, `**miss** (8.1% short)`, `**miss** (10.0% over)`.
    pub fn describe(self) -> String {
        let percent = self.margin.abs() * 100.0;
        if self.pass {
            format!("pass ({percent:.1}% to spare)")
        } else if self.ceiling {
            format!("**miss** ({percent:.1}% over)")
        } else {
            format!("**miss** ({percent:.1}% short)")
        }
    }
}

/// A ratio as the targets state them: `0.85`.
pub fn fmt_plain_ratio(ratio: f64) -> String {
    format!("{ratio:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least() {
        let goal = Goal::AtLeast(0.80);
        assert_eq!(goal.describe(fmt_plain_ratio), "≥ 0.80");
        let pass = goal.judge(0.86);
        assert!(pass.pass);
        assert!((pass.margin - 0.075).abs() < 1e-9);
        assert_eq!(pass.describe(), "pass (7.5% to spare)");
        let miss = goal.judge(0.74);
        assert!(!miss.pass);
        assert_eq!(miss.describe(), "**miss** (7.5% short)");
        assert!(goal.judge(0.80).pass, "the threshold itself passes");
    }

    #[test]
    fn below() {
        let goal = Goal::Below(30e6);
        assert_eq!(goal.describe(|b| format!("{:.0} MB", b / 1e6)), "< 30 MB");
        assert_eq!(goal.judge(24e6).describe(), "pass (20.0% to spare)");
        assert_eq!(goal.judge(33e6).describe(), "**miss** (10.0% over)");
        assert!(!goal.judge(30e6).pass, "the threshold itself misses");
    }
}
