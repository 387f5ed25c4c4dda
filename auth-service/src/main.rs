//! `auth-service`: the token issuer. See the library documentation for the design and
//! `auth-service --help` for the commands and their configuration.

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    shared::telemetry::init("auth-service");
    let cli = auth_service::cli::Cli::parse();
    match auth_service::cli::run(cli, std::io::stdin(), &mut std::io::stdout()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
