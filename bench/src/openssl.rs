//! `openssl speed rsa2048`: the RSA-2048 rate of this machine as OpenSSL reaches it, the
//! reference the benchmarks' ratios are taken against.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// RSA-2048 operations per second on one core, as `openssl speed` measured them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RsaSpeed {
    pub sign_per_sec: f64,
    pub verify_per_sec: f64,
}

/// Runs `openssl speed -mr rsa2048` (one process: one core), `duration` per operation.
pub fn measure(duration: Duration) -> anyhow::Result<RsaSpeed> {
    let seconds = duration.as_secs().max(1).to_string();
    let output = Command::new("openssl")
        .args(["speed", "-seconds", &seconds, "-mr", "rsa2048"])
        .output()
        .context("cannot run `openssl speed` (is openssl installed?)")?;
    if !output.status.success() {
        bail!(
            "`openssl speed` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse(&stdout).with_context(|| format!("unexpected `openssl speed -mr` output:\n{stdout}"))
}

/// Reads the machine-readable summary line, `+F2:<index>:<bits>:<sign/s>:<verify/s>`.
pub fn parse(output: &str) -> Option<RsaSpeed> {
    output.lines().find_map(|line| {
        let mut fields = line.trim().strip_prefix("+F2:")?.split(':');
        let (_index, bits) = (fields.next()?, fields.next()?);
        if bits != "2048" {
            return None;
        }
        let sign_per_sec = fields.next()?.parse().ok()?;
        let verify_per_sec = fields.next()?.parse().ok()?;
        Some(RsaSpeed {
            sign_per_sec,
            verify_per_sec,
        })
    })
}

/// `openssl speed ecdsap256` or `openssl speed ed25519`: the curve the new JWS algorithms use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// ECDSA P-256 (ES256).
    EcdsaP256,
    /// Ed25519 (EdDSA).
    Ed25519,
}

impl Curve {
    pub const fn speed_name(self) -> &'static str {
        match self {
            Curve::EcdsaP256 => "ecdsap256",
            Curve::Ed25519 => "ed25519",
        }
    }
}

/// Runs `openssl speed -mr ecdsap256|ed25519` (one process: one core), `duration` per operation.
pub fn measure_curve(curve: Curve, duration: Duration) -> anyhow::Result<RsaSpeed> {
    let seconds = duration.as_secs().max(1).to_string();
    let output = Command::new("openssl")
        .args(["speed", "-seconds", &seconds, "-mr", curve.speed_name()])
        .output()
        .context("cannot run `openssl speed` (is openssl installed?)")?;
    if !output.status.success() {
        bail!(
            "`openssl speed` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_curve(curve, &stdout)
        .with_context(|| format!("unexpected `openssl speed -mr` output:\n{stdout}"))
}

/// Reads the summary line: ECDSA `+F4:<index>:<bits>:<sign/s>:<verify/s>`, EdDSA
/// `+F6:<index>:<bits>:<name>:<sign/s>:<verify/s>` (OpenSSL 3).
pub fn parse_curve(curve: Curve, output: &str) -> Option<RsaSpeed> {
    output.lines().find_map(|line| {
        let line = line.trim();
        let mut fields = match curve {
            Curve::EcdsaP256 => {
                let mut fields = line.strip_prefix("+F4:")?.split(':');
                let (_index, bits) = (fields.next()?, fields.next()?);
                (bits == "256").then_some(fields)?
            }
            Curve::Ed25519 => {
                let mut fields = line.strip_prefix("+F6:")?.split(':');
                let (_index, _bits, name) = (fields.next()?, fields.next()?, fields.next()?);
                (name == "Ed25519").then_some(fields)?
            }
        };
        let sign_per_sec = fields.next()?.parse().ok()?;
        let verify_per_sec = fields.next()?.parse().ok()?;
        Some(RsaSpeed {
            sign_per_sec,
            verify_per_sec,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_lines_of_ecdsap256_and_ed25519() {
        assert_eq!(
            parse_curve(Curve::EcdsaP256, "+F4:3:256:46041.414141:15409.000000\n"),
            Some(RsaSpeed {
                sign_per_sec: 46_041.414_141,
                verify_per_sec: 15_409.0,
            })
        );
        assert_eq!(
            parse_curve(
                Curve::Ed25519,
                "+F6:0:253:Ed25519:27618.000000:10185.858586\n"
            ),
            Some(RsaSpeed {
                sign_per_sec: 27_618.0,
                verify_per_sec: 10_185.858_586,
            })
        );
        assert_eq!(
            parse_curve(Curve::Ed25519, "+F6:1:456:Ed448:1.0:1.0\n"),
            None
        );
        assert_eq!(parse_curve(Curve::EcdsaP256, "+F4:4:384:1.0:1.0\n"), None);
    }

    #[test]
    fn reads_the_summary_line_of_openssl_3() {
        let output = "+DTP:2048:private:rsa:1\n+R1:4614:2048:1.00\n\
                      +DTP:2048:public:rsa:1\n+R2:75882:2048:0.99\n\
                      +F2:2:2048:4614.000000:76648.484848\n";
        assert_eq!(
            parse(output),
            Some(RsaSpeed {
                sign_per_sec: 4614.0,
                verify_per_sec: 76_648.484_848,
            })
        );
    }

    #[test]
    fn other_key_sizes_and_garbage_are_not_taken() {
        assert_eq!(parse("+F2:3:3072:1500.0:30000.0\n"), None);
        assert_eq!(parse("+F2:2:2048:fast:slow\n"), None);
        assert_eq!(parse(""), None);
    }
}
