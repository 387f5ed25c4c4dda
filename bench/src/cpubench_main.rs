//! `cpubench`: see `cpubench --help` and the `bench::cpubench` documentation.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;

/// CPU cost of verifying and issuing one token, against `openssl speed rsa2048` and peer
/// libraries on the same token, in one run.
#[derive(Debug, clap::Parser)]
#[command(
    name = "cpubench",
    long_about = "CPU cost of verifying and issuing one token.\n\n\
                  Each round runs `openssl speed rsa2048`, our verification (RSA alone, the full \
                  path, a cache hit), signing an access token, node `jose` and PyJWT on the same \
                  token, one after the other on one core each, and prints the medians and the \
                  ratios against OpenSSL as Markdown. Build with `cargo build --release -p bench`."
)]
struct Args {
    /// Rounds; figures are medians over them.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Measured time of each measure in each round.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Where the peer scripts and their `node_modules` are (`npm ci --prefix bench/peers`,
    /// `pip install 'pyjwt[crypto]'`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))]
    peers: PathBuf,
    /// Skip node `jose` and PyJWT.
    #[arg(long)]
    no_peers: bool,
    /// Run only these measures, comma separated (to profile one, e.g. under
    /// `valgrind --tool=callgrind`). Default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<bench::cpubench::Measure>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = bench::cpubench::Settings {
        rounds: args.rounds,
        duration: args.duration,
        peers: (!args.no_peers).then_some(args.peers),
        only: args.only,
    };
    if cfg!(debug_assertions) {
        eprintln!(
            "cpubench: warning: a debug build; measure with `cargo build --release -p bench`"
        );
    }
    let rounds = bench::cpubench::run(&settings, |round, measure| {
        eprintln!(
            "cpubench: round {round}/{}: {}",
            settings.rounds,
            measure.label()
        );
    });
    match rounds {
        Ok(rounds) => {
            let command = bench::cli::command_line(std::env::args());
            let machine = bench::machine::Machine::detect();
            print!(
                "{}",
                bench::cpubench::render(&rounds, &settings, &machine, &command)
            );
            if let Ok(sizes) = bench::cpubench::token_sizes() {
                println!("\n{sizes}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cpubench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
