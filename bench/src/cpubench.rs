//! `cpubench`: the per-token CPU cost of verifying and issuing, side by side with the machine's
//! RSA-2048, ECDSA P-256 and Ed25519 rates (`openssl speed rsa2048|ecdsap256|ed25519`) and
//! with peer JWT libraries (node `jose`, PyJWT) on the same token, in one run: RS256, ES256
//! and EdDSA tokens alike.
//!
//! Every round measures everything once, one after the other on one core each, and each ratio
//! is taken within a round, so drift of the machine between rounds hits both sides of a ratio
//! alike; the report gives the median over the rounds. Criterion (`cargo bench -p shared
//! --bench verify`) gives the careful per-operation statistics of our side; this gives the
//! ratios the targets are stated in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use authn::claims::{AccessClaims, Audience};
use authn::jwk::{Algorithm, JwkSet, KeySet};
use authn::jws::UnverifiedJws;
use authn::sign::Signer;
use authn::verifier::{Keys, Policy, Verifier};
use futures_util::FutureExt as _;

use crate::machine::Machine;
use crate::openssl;
use crate::report::fmt_rate;
use crate::stats::median;
use crate::targets::{Goal, fmt_plain_ratio};

/// What one round measures: operations per second of one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Measure {
    /// `openssl speed rsa2048`, verify.
    OpensslVerify,
    /// `openssl speed rsa2048`, sign.
    OpensslSign,
    /// One RSASSA-PKCS1-v1_5 SHA-256 verification with the parsed key (aws-lc-rs).
    RawVerify,
    /// `Verifier::verify` without the cache: parse, header, key lookup, signature, claims.
    FullVerify,
    /// `Verifier::verify` of a repeated token, through the verified-token cache.
    CacheHit,
    /// Serialising and signing an access token's claims (the issuer's per-token crypto).
    SignAccessToken,
    /// node `jose` `jwtVerify` with an imported key.
    Jose,
    /// PyJWT `jwt.decode` with a parsed key.
    PyJwt,
    /// `openssl speed ecdsap256`, verify.
    OpensslEs256Verify,
    /// `openssl speed ecdsap256`, sign.
    OpensslEs256Sign,
    /// One ECDSA P-256 SHA-256 verification with the parsed key (aws-lc-rs).
    Es256RawVerify,
    /// `Verifier::verify` of an ES256 token without the cache.
    Es256FullVerify,
    /// Serialising and signing an access token with an ES256 key.
    Es256Sign,
    /// `openssl speed ed25519`, verify.
    OpensslEdDsaVerify,
    /// `openssl speed ed25519`, sign.
    OpensslEdDsaSign,
    /// One Ed25519 verification with the parsed key (aws-lc-rs).
    EdDsaRawVerify,
    /// `Verifier::verify` of an EdDSA token without the cache.
    EdDsaFullVerify,
    /// Serialising and signing an access token with an Ed25519 key.
    EdDsaSign,
}

impl Measure {
    pub fn label(self) -> &'static str {
        match self {
            Measure::OpensslVerify => "`openssl speed rsa2048` verify",
            Measure::OpensslSign => "`openssl speed rsa2048` sign",
            Measure::RawVerify => "ours: RSA-2048 verify alone (aws-lc-rs, parsed key)",
            Measure::FullVerify => "ours: full verification, no cache",
            Measure::CacheHit => "ours: verified-token cache hit",
            Measure::SignAccessToken => "ours: sign an access token",
            Measure::Jose => "node `jose` jwtVerify",
            Measure::PyJwt => "PyJWT decode",
            Measure::OpensslEs256Verify => "`openssl speed ecdsap256` verify",
            Measure::OpensslEs256Sign => "`openssl speed ecdsap256` sign",
            Measure::Es256RawVerify => "ours: ES256 (P-256) verify alone (aws-lc-rs, parsed key)",
            Measure::Es256FullVerify => "ours: ES256 full verification, no cache",
            Measure::Es256Sign => "ours: sign an ES256 access token",
            Measure::OpensslEdDsaVerify => "`openssl speed ed25519` verify",
            Measure::OpensslEdDsaSign => "`openssl speed ed25519` sign",
            Measure::EdDsaRawVerify => "ours: EdDSA (Ed25519) verify alone (aws-lc-rs, parsed key)",
            Measure::EdDsaFullVerify => "ours: EdDSA full verification, no cache",
            Measure::EdDsaSign => "ours: sign an EdDSA access token",
        }
    }

    /// The algorithm and the RS256 measure an in-process ES256 or EdDSA measure repeats.
    fn in_process(self) -> Option<(Algorithm, Measure)> {
        Some(match self {
            Measure::RawVerify
            | Measure::FullVerify
            | Measure::CacheHit
            | Measure::SignAccessToken => (Algorithm::Rs256, self),
            Measure::Es256RawVerify => (Algorithm::Es256, Measure::RawVerify),
            Measure::Es256FullVerify => (Algorithm::Es256, Measure::FullVerify),
            Measure::Es256Sign => (Algorithm::Es256, Measure::SignAccessToken),
            Measure::EdDsaRawVerify => (Algorithm::EdDsa, Measure::RawVerify),
            Measure::EdDsaFullVerify => (Algorithm::EdDsa, Measure::FullVerify),
            Measure::EdDsaSign => (Algorithm::EdDsa, Measure::SignAccessToken),
            _ => return None,
        })
    }
}

/// One ratio the report states, with its target when the issue sets one.
#[derive(Debug, Clone, Copy)]
pub struct Ratio {
    pub name: &'static str,
    pub numerator: Measure,
    pub denominator: Measure,
    /// What the ratio must reach.
    pub target: Option<Goal>,
}

pub const RATIOS: [Ratio; 12] = [
    Ratio {
        name: "full verification / openssl verify",
        numerator: Measure::FullVerify,
        denominator: Measure::OpensslVerify,
        target: Some(Goal::AtLeast(0.90)),
    },
    Ratio {
        name: "RSA verify alone (aws-lc-rs) / openssl verify",
        numerator: Measure::RawVerify,
        denominator: Measure::OpensslVerify,
        target: None,
    },
    Ratio {
        name: "cache hit / openssl verify",
        numerator: Measure::CacheHit,
        denominator: Measure::OpensslVerify,
        target: Some(Goal::AtLeast(10.0)),
    },
    Ratio {
        name: "sign an access token / openssl sign",
        numerator: Measure::SignAccessToken,
        denominator: Measure::OpensslSign,
        target: None,
    },
    Ratio {
        name: "full verification / node jose",
        numerator: Measure::FullVerify,
        denominator: Measure::Jose,
        target: None,
    },
    Ratio {
        name: "full verification / PyJWT",
        numerator: Measure::FullVerify,
        denominator: Measure::PyJwt,
        target: None,
    },
    Ratio {
        name: "ES256 full verification / openssl ecdsap256 verify",
        numerator: Measure::Es256FullVerify,
        denominator: Measure::OpensslEs256Verify,
        target: None,
    },
    Ratio {
        name: "ES256 verify alone (aws-lc-rs) / openssl ecdsap256 verify",
        numerator: Measure::Es256RawVerify,
        denominator: Measure::OpensslEs256Verify,
        target: None,
    },
    Ratio {
        name: "sign an ES256 access token / openssl ecdsap256 sign",
        numerator: Measure::Es256Sign,
        denominator: Measure::OpensslEs256Sign,
        target: None,
    },
    Ratio {
        name: "EdDSA full verification / openssl ed25519 verify",
        numerator: Measure::EdDsaFullVerify,
        denominator: Measure::OpensslEdDsaVerify,
        target: None,
    },
    Ratio {
        name: "EdDSA verify alone (aws-lc-rs) / openssl ed25519 verify",
        numerator: Measure::EdDsaRawVerify,
        denominator: Measure::OpensslEdDsaVerify,
        target: None,
    },
    Ratio {
        name: "sign an EdDSA access token / openssl ed25519 sign",
        numerator: Measure::EdDsaSign,
        denominator: Measure::OpensslEdDsaSign,
        target: None,
    },
];

/// How a run is done.
#[derive(Debug, Clone)]
pub struct Settings {
    pub rounds: u32,
    /// Measured time of each measure in each round.
    pub duration: Duration,
    /// Where `jose_verify.mjs`, `pyjwt_verify.py` and `node_modules/jose` are; `None` skips
    /// the peers.
    pub peers: Option<PathBuf>,
    /// Only these measures (for profiling one of them, e.g. under `valgrind --tool=callgrind`);
    /// empty: all.
    pub only: Vec<Measure>,
}

impl Settings {
    fn selects(&self, measure: Measure) -> bool {
        self.only.is_empty() || self.only.contains(&measure)
    }
}

/// Rates of one round; a measure that could not run holds the reason.
pub type Round = BTreeMap<Measure, Result<f64, String>>;

/// Measures `settings.rounds` rounds, calling `progress` before each measure.
pub fn run(
    settings: &Settings,
    mut progress: impl FnMut(u32, Measure),
) -> anyhow::Result<Vec<Round>> {
    if settings.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let subjects = [
        Subject::new(Algorithm::Rs256)?,
        Subject::new(Algorithm::Es256)?,
        Subject::new(Algorithm::EdDsa)?,
    ];
    let subject_of = |alg: Algorithm| {
        subjects
            .iter()
            .find(|s| s.signer.algorithm() == alg)
            .expect("BUG: a subject per algorithm")
    };
    let subject = subject_of(Algorithm::Rs256);
    let mut rounds = Vec::new();
    for round in 1..=settings.rounds {
        let mut rates = Round::new();
        if settings.selects(Measure::OpensslVerify) || settings.selects(Measure::OpensslSign) {
            progress(round, Measure::OpensslVerify);
            match openssl::measure(settings.duration) {
                Ok(speed) => {
                    rates.insert(Measure::OpensslVerify, Ok(speed.verify_per_sec));
                    rates.insert(Measure::OpensslSign, Ok(speed.sign_per_sec));
                }
                Err(error) => {
                    let reason = format!("{error:#}");
                    rates.insert(Measure::OpensslVerify, Err(reason.clone()));
                    rates.insert(Measure::OpensslSign, Err(reason));
                }
            }
        }
        for measure in [
            Measure::RawVerify,
            Measure::FullVerify,
            Measure::CacheHit,
            Measure::SignAccessToken,
        ] {
            if !settings.selects(measure) {
                continue;
            }
            progress(round, measure);
            rates.insert(measure, Ok(subject.rate(measure, settings.duration)));
        }
        for (curve, verify, sign, ours) in [
            (
                openssl::Curve::EcdsaP256,
                Measure::OpensslEs256Verify,
                Measure::OpensslEs256Sign,
                [
                    Measure::Es256RawVerify,
                    Measure::Es256FullVerify,
                    Measure::Es256Sign,
                ],
            ),
            (
                openssl::Curve::Ed25519,
                Measure::OpensslEdDsaVerify,
                Measure::OpensslEdDsaSign,
                [
                    Measure::EdDsaRawVerify,
                    Measure::EdDsaFullVerify,
                    Measure::EdDsaSign,
                ],
            ),
        ] {
            if settings.selects(verify) || settings.selects(sign) {
                progress(round, verify);
                match openssl::measure_curve(curve, settings.duration) {
                    Ok(speed) => {
                        rates.insert(verify, Ok(speed.verify_per_sec));
                        rates.insert(sign, Ok(speed.sign_per_sec));
                    }
                    Err(error) => {
                        let reason = format!("{error:#}");
                        rates.insert(verify, Err(reason.clone()));
                        rates.insert(sign, Err(reason));
                    }
                }
            }
            for measure in ours {
                if !settings.selects(measure) {
                    continue;
                }
                let (alg, base) = measure.in_process().expect("BUG: an in-process measure");
                progress(round, measure);
                rates.insert(measure, Ok(subject_of(alg).rate(base, settings.duration)));
            }
        }
        for measure in [Measure::Jose, Measure::PyJwt] {
            if !settings.selects(measure) {
                continue;
            }
            progress(round, measure);
            let rate = match &settings.peers {
                Some(dir) => subject.peer(measure, dir, settings.duration),
                None => Err("peers not selected (--no-peers)".to_owned()),
            };
            rates.insert(measure, rate);
        }
        rounds.push(rates);
    }
    Ok(rounds)
}

/// The token and verifiers the measures of one algorithm work on: one key (RSA-2048, P-256 or
/// Ed25519) and an access token like the ones auth-service issues to a user. (`testkit::TestIssuer` would do, but its
/// feature would then be unified into the service binaries built next to this one.)
struct Subject {
    signer: Signer,
    claims: AccessClaims,
    token: String,
}

impl Subject {
    const ISSUER: &'static str = "https://issuer.bench";
    const AUDIENCE: &'static str = "orders";

    fn new(alg: Algorithm) -> anyhow::Result<Self> {
        let signer =
            Signer::generate_for(alg).with_context(|| format!("cannot generate a {alg} key"))?;
        let now = authn::unix_now();
        let claims = AccessClaims {
            iss: Self::ISSUER.to_owned(),
            sub: uuid::Uuid::new_v4().to_string(),
            aud: Audience::One(Self::AUDIENCE.to_owned()),
            // Long enough for any run.
            exp: now + 3600,
            iat: now,
            nbf: Some(now),
            jti: random_id(),
            scope: Some("orders:read orders:write".to_owned()),
            roles: vec!["user".to_owned()],
            sid: Some(random_id()),
            client_id: None,
        };
        let token = signer.sign(&claims).context("cannot sign")?;
        let subject = Self {
            signer,
            claims,
            token,
        };
        // Never measure a path that refuses the token.
        subject
            .verifier()
            .verify(&subject.token)
            .now_or_never()
            .context("a fixed-key verification awaited")?
            .context("the benchmark token does not verify")?;
        Ok(subject)
    }

    fn key_set(&self) -> KeySet {
        KeySet::from_jwks(&JwkSet::from_keys([self.signer.public_jwk()])).0
    }

    /// A `stateless` verifier with this key, configured as the services' (no cache).
    fn verifier(&self) -> Verifier {
        Verifier::new(
            Keys::fixed(self.key_set()),
            Policy::new(Self::ISSUER, Self::AUDIENCE),
        )
    }

    fn rate(&self, measure: Measure, duration: Duration) -> f64 {
        let token = self.token.as_str();
        match measure {
            Measure::RawVerify => {
                let jws = UnverifiedJws::parse(token).expect("BUG: the token parses");
                let key = self
                    .key_set()
                    .get(self.signer.kid())
                    .expect("BUG: the issuer's key is in its set")
                    .clone();
                rate_of(duration, || {
                    assert!(key.verify(
                        std::hint::black_box(jws.signing_input.as_bytes()),
                        &jws.signature
                    ));
                })
            }
            Measure::FullVerify => {
                let verifier = self.verifier();
                rate_of(duration, || verify_now(&verifier, token))
            }
            Measure::CacheHit => {
                let verifier = self.verifier().with_token_cache(10_000);
                verify_now(&verifier, token);
                rate_of(duration, || verify_now(&verifier, token))
            }
            Measure::SignAccessToken => rate_of(duration, || {
                self.signer
                    .sign(std::hint::black_box(&self.claims))
                    .expect("BUG: signing works");
            }),
            _ => unreachable!("BUG: {measure:?} is not an RS256-named in-process measure"),
        }
    }

    /// Runs a peer's script on the same token and key; `Err` says why it could not run.
    fn peer(&self, measure: Measure, dir: &Path, duration: Duration) -> Result<f64, String> {
        let (program, script) = match measure {
            Measure::Jose => {
                if !dir.join("node_modules/jose").is_dir() {
                    return Err(format!(
                        "jose is not installed: `npm ci --prefix {}`",
                        dir.display()
                    ));
                }
                ("node", "jose_verify.mjs")
            }
            Measure::PyJwt => ("python3", "pyjwt_verify.py"),
            _ => unreachable!("BUG: {measure:?} is not a peer"),
        };
        let input = serde_json::json!({
            "token": self.token,
            "jwk": self.signer.public_jwk(),
            "issuer": Self::ISSUER,
            "audience": Self::AUDIENCE,
            "seconds": duration.as_secs_f64(),
        });
        let file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        std::fs::write(file.path(), input.to_string()).map_err(|e| e.to_string())?;
        let output = Command::new(program)
            .arg(dir.join(script))
            .arg(file.path())
            .current_dir(dir)
            .output()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().last().unwrap_or("no output").trim();
            return Err(format!("{program} {script} failed: {last}"));
        }
        parse_peer_output(&String::from_utf8_lossy(&output.stdout))
            .ok_or_else(|| format!("{program} {script} printed no {{\"ops\", \"seconds\"}} line"))
    }
}

fn verify_now(verifier: &Verifier, token: &str) {
    verifier
        .verify(std::hint::black_box(token))
        .now_or_never()
        .expect("BUG: a fixed-key verification does not await")
        .expect("BUG: the benchmark token verifies");
}

/// Operations per second of `op`, run back to back for `duration` after a tenth of it unmeasured
/// (caches, branch predictors and the allocator warm).
fn rate_of(duration: Duration, mut op: impl FnMut()) -> f64 {
    const BATCH: u32 = 64;
    let warm_up = Instant::now();
    while warm_up.elapsed() < duration / 10 {
        op();
    }
    let start = Instant::now();
    let mut ops = 0_u64;
    loop {
        for _ in 0..BATCH {
            op();
        }
        ops += u64::from(BATCH);
        let elapsed = start.elapsed();
        if elapsed >= duration {
            #[allow(clippy::cast_precision_loss)]
            return ops as f64 / elapsed.as_secs_f64();
        }
    }
}

/// `{"ops": N, "seconds": S}` → N / S.
fn parse_peer_output(stdout: &str) -> Option<f64> {
    let line: serde_json::Value = serde_json::from_str(stdout.lines().last()?).ok()?;
    let ops = line.get("ops")?.as_f64()?;
    let seconds = line.get("seconds")?.as_f64()?;
    (seconds > 0.0).then(|| ops / seconds)
}

/// The median of a ratio over the rounds where both sides were measured, with its range.
fn ratio_over(rounds: &[Round], ratio: &Ratio) -> Option<(f64, f64, f64)> {
    let values: Vec<f64> = rounds
        .iter()
        .filter_map(|round| {
            let n = round.get(&ratio.numerator)?.as_ref().ok()?;
            let d = round.get(&ratio.denominator)?.as_ref().ok()?;
            (*d > 0.0).then(|| n / d)
        })
        .collect();
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((median(values.iter().copied())?, low, high))
}

/// The bytes of the benchmark's access token (the claims of a user token of auth-service)
/// signed with each algorithm, as a Markdown line.
pub fn token_sizes() -> anyhow::Result<String> {
    let mut parts = Vec::new();
    for alg in Algorithm::ALL {
        let subject = Subject::new(alg)?;
        parts.push(format!("{alg} {} bytes", subject.token.len()));
    }
    Ok(format!(
        "- Access token of the benchmark (same claims): {}",
        parts.join(", ")
    ))
}

/// The Markdown report of a run.
pub fn render(rounds: &[Round], settings: &Settings, machine: &Machine, command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "- Command: `{command}`");
    let _ = writeln!(out, "- Machine: {}", machine.describe());
    let _ = writeln!(
        out,
        "- {} rounds; in each, every measure ran for {} on one core, one after the other; \
         figures are medians over the rounds (lowest–highest in parentheses)",
        rounds.len(),
        humantime::format_duration(settings.duration)
    );
    out.push('\n');
    out.push_str("| measure | operations/s | µs per operation |\n| --- | ---: | ---: |\n");
    let measures: Vec<Measure> = rounds
        .first()
        .map(|round| round.keys().copied().collect())
        .unwrap_or_default();
    let mut skipped = Vec::new();
    for measure in measures {
        let rates: Vec<f64> = rounds
            .iter()
            .filter_map(|round| round.get(&measure)?.as_ref().ok().copied())
            .collect();
        match median(rates.iter().copied()) {
            Some(rate) => {
                let low = rates.iter().copied().fold(f64::INFINITY, f64::min);
                let high = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let _ = writeln!(
                    out,
                    "| {} | {} ({}–{}) | {:.2} |",
                    measure.label(),
                    fmt_rate(rate),
                    fmt_rate(low),
                    fmt_rate(high),
                    1e6 / rate
                );
            }
            None => {
                let reason = rounds
                    .iter()
                    .find_map(|round| round.get(&measure)?.as_ref().err().cloned())
                    .unwrap_or_default();
                skipped.push(format!("- {}: not measured: {reason}", measure.label()));
            }
        }
    }
    out.push('\n');
    for line in &skipped {
        let _ = writeln!(out, "{line}");
    }
    if !skipped.is_empty() {
        out.push('\n');
    }
    out.push_str(
        "| ratio (median of the rounds' ratios) | value | target |\n| --- | ---: | --- |\n",
    );
    for ratio in &RATIOS {
        let Some((value, low, high)) = ratio_over(rounds, ratio) else {
            continue;
        };
        let target = ratio.target.map_or_else(
            || "–".to_owned(),
            |goal| {
                let verdict = goal.judge(value);
                let goal = goal.describe(fmt_plain_ratio);
                if verdict.pass {
                    format!("{goal}: met")
                } else {
                    format!("{goal}: missed by {:.1}%", -verdict.margin * 100.0)
                }
            },
        );
        let _ = writeln!(
            out,
            "| {} | {value:.2} ({low:.2}–{high:.2}) | {target} |",
            ratio.name
        );
    }
    out
}

/// A random 128-bit id, base64url, as the issuer makes `jti` and `sid`.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator");
    authn::base64url::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_output_is_ops_over_seconds() {
        assert_eq!(
            parse_peer_output("{\"ops\": 2000, \"seconds\": 0.5}\n"),
            Some(4000.0)
        );
        assert_eq!(
            parse_peer_output("warming up\n{\"ops\": 10, \"seconds\": 1}"),
            Some(10.0)
        );
        assert_eq!(parse_peer_output("{\"ops\": 10, \"seconds\": 0}"), None);
        assert_eq!(parse_peer_output(""), None);
    }

    fn round(pairs: &[(Measure, Result<f64, &str>)]) -> Round {
        pairs
            .iter()
            .map(|(m, r)| (*m, r.map_err(str::to_owned)))
            .collect()
    }

    #[test]
    fn ratios_are_taken_within_each_round_then_the_median() {
        let rounds = [
            round(&[
                (Measure::FullVerify, Ok(90.0)),
                (Measure::OpensslVerify, Ok(100.0)),
            ]),
            round(&[
                (Measure::FullVerify, Ok(45.0)),
                (Measure::OpensslVerify, Ok(50.0)),
            ]),
            round(&[
                (Measure::FullVerify, Ok(80.0)),
                (Measure::OpensslVerify, Ok(100.0)),
            ]),
        ];
        let (value, low, high) = ratio_over(&rounds, &RATIOS[0]).expect("measured");
        assert!((value - 0.9).abs() < 1e-9, "{value}");
        assert!((low - 0.8).abs() < 1e-9 && (high - 0.9).abs() < 1e-9);
    }

    #[test]
    fn the_report_states_targets_met_and_missed_and_why_a_peer_is_missing() {
        let rounds = vec![round(&[
            (Measure::OpensslVerify, Ok(70_000.0)),
            (Measure::FullVerify, Ok(56_000.0)),
            (Measure::CacheHit, Ok(2_000_000.0)),
            (Measure::Jose, Err("jose is not installed")),
        ])];
        let settings = Settings {
            rounds: 1,
            duration: Duration::from_secs(1),
            peers: None,
            only: Vec::new(),
        };
        let machine = Machine {
            cpus: 2,
            cpu_model: "Test CPU".into(),
            memory: None,
            kernel: None,
        };
        let report = render(&rounds, &settings, &machine, "cpubench");
        assert!(report.contains("| full verification / openssl verify | 0.80 (0.80–0.80) | ≥ 0.90: missed by 11.1% |"), "{report}");
        assert!(
            report.contains("| cache hit / openssl verify | 28.57 (28.57–28.57) | ≥ 10.00: met |"),
            "{report}"
        );
        assert!(
            report.contains("node `jose` jwtVerify: not measured: jose is not installed"),
            "{report}"
        );
        assert!(
            !report.contains("/ node jose |"),
            "a ratio without its peer is left out: {report}"
        );
    }

    #[test]
    fn the_in_process_measures_run() {
        for alg in Algorithm::ALL {
            let subject = Subject::new(alg).expect("subject");
            for measure in [
                Measure::RawVerify,
                Measure::FullVerify,
                Measure::CacheHit,
                Measure::SignAccessToken,
            ] {
                assert!(
                    subject.rate(measure, Duration::from_millis(20)) > 0.0,
                    "{alg} {measure:?}"
                );
            }
        }
    }
}
