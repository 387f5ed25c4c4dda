//! Configuration helpers every service's clap `Config` uses.

use std::time::Duration;

/// Parses a human duration such as `30s`, `5m` or `24h`.
pub fn parse_duration(value: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(value)
}

/// A service's default duration (a `DEFAULT_*` constant, also its clap `default_value`), for
/// its `Default` configuration. Panics only on a constant that is not a duration: a bug that
/// every service's config tests catch.
pub fn default_duration(text: &'static str) -> Duration {
    humantime::parse_duration(text)
        .unwrap_or_else(|_| panic!("BUG: the default {text:?} is not a duration"))
}
