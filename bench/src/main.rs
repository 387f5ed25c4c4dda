//! `loadgen`: see `loadgen --help`, `loadgen flood --help` and the `bench` library
//! documentation.

use std::process::ExitCode;

use bench::cli::{Args, Settings, command_line};
use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("flood") {
        return flood().await;
    }
    let args = Args::parse();
    let settings = match Settings::resolve(args) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            return ExitCode::from(2);
        }
    };
    let command = command_line(std::env::args());
    // Dropping the run (on a signal) drops its stack, which stops the services.
    tokio::select! {
        result = bench::run(settings, command) => match result {
            Ok(outcome) => {
                print!("{}", outcome.report);
                if outcome.failed {
                    eprintln!("loadgen: some modes failed; see the report");
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(error) => {
                eprintln!("loadgen: error: {error:#}");
                ExitCode::FAILURE
            }
        },
        () = interrupted() => {
            eprintln!("\nloadgen: interrupted; stopping the services");
            ExitCode::from(130)
        }
    }
}

/// `loadgen flood ...`: its own options and report (see `bench::flood`).
async fn flood() -> ExitCode {
    // `flood` stands where clap expects the program's name.
    let args = bench::flood::FloodArgs::parse_from(std::env::args().skip(1));
    let command = command_line(std::env::args());
    tokio::select! {
        result = bench::flood::run(args, command) => match result {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("loadgen flood: error: {error:#}");
                ExitCode::FAILURE
            }
        },
        () = interrupted() => {
            eprintln!("\nloadgen flood: interrupted; stopping the services");
            ExitCode::from(130)
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
