//! Latency histograms and medians.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Longest latency recorded exactly; longer ones are recorded as this.
const MAX_MICROS: u64 = 60_000_000;

/// Latencies in microseconds, 3 significant digits, in an HDR histogram.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self(
            Histogram::new_with_bounds(1, MAX_MICROS, 3)
                .expect("BUG: constant histogram bounds are valid"),
        )
    }
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.clamp(1, MAX_MICROS));
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The latency at `quantile` (0.5 for p50), `None` without samples.
    pub fn quantile(&self, quantile: f64) -> Option<Duration> {
        (self.count() > 0).then(|| Duration::from_micros(self.0.value_at_quantile(quantile)))
    }

    pub fn max(&self) -> Option<Duration> {
        (self.count() > 0).then(|| Duration::from_micros(self.0.max()))
    }
}

/// The median (the mean of the two middle values for an even count); `None` when empty.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        f64::midpoint(values[mid - 1], values[mid])
    })
}

/// [`median`] of durations.
pub fn median_duration(values: impl IntoIterator<Item = Duration>) -> Option<Duration> {
    median(values.into_iter().map(|d| d.as_secs_f64())).map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut latencies = Latencies::default();
        assert_eq!(latencies.quantile(0.5), None);
        for ms in 1..=100 {
            latencies.record(Duration::from_millis(ms));
        }
        let within = |got: Option<Duration>, want_ms: u64| {
            let got = got.unwrap().as_secs_f64() * 1000.0;
            // 3 significant digits.
            assert!(
                (got - want_ms as f64).abs() <= want_ms as f64 * 0.001,
                "{got} vs {want_ms}"
            );
        };
        within(latencies.quantile(0.5), 50);
        within(latencies.quantile(0.99), 99);
        within(latencies.max(), 100);
        assert_eq!(latencies.count(), 100);
    }

    #[test]
    fn merging_and_extremes() {
        let mut a = Latencies::default();
        let mut b = Latencies::default();
        a.record(Duration::ZERO);
        b.record(Duration::from_secs(3600));
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.quantile(0.0), Some(Duration::from_micros(1)));
        assert!(a.max().unwrap() >= Duration::from_secs(59));
    }

    #[test]
    fn medians() {
        assert_eq!(median([]), None);
        assert_eq!(median([3.0]), Some(3.0));
        assert_eq!(median([5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(
            median_duration([Duration::from_millis(10), Duration::from_millis(30)]),
            Some(Duration::from_millis(20))
        );
    }
}
