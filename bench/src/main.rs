//! `loadgen`: see `loadgen --help`, `loadgen flood --help`, `loadgen token-size --help` and the
//! `bench` library documentation.

use std::process::ExitCode;

use bench::cli::{Args, Settings, command_line};
use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("flood") {
        return flood().await;
    }
    if std::env::args().nth(1).as_deref() == Some("token-size") {
        return token_size().await;
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

/// `loadgen token-size ...`: its own options and report (see `bench::token_size`).
async fn token_size() -> ExitCode {
    let args = bench::token_size::TokenSizeArgs::parse_from(std::env::args().skip(1));
    let command = command_line(std::env::args());
    tokio::select! {
        result = bench::token_size::run(args, command) => match result {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("loadgen token-size: error: {error:#}");
                ExitCode::FAILURE
            }
        },
        () = interrupted() => {
            eprintln!("\nloadgen token-size: interrupted; stopping the services");
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
