use std::process::ExitCode;

use clap::Parser as _;
use orders_service::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    platform::telemetry::init("orders-service");
    let cli = Cli::parse();
    match cli::run(cli, platform::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "orders-service failed");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
