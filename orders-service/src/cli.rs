//! The command line: `serve` (the default) and `migrate`, which applies the database migrations
//! and exits, whatever `DATABASE_MIGRATE` says (for a Kubernetes Job run before a rollout). The
//! server also applies them at start unless `DATABASE_MIGRATE=false`, under sqlx's migration
//! lock, so running both is safe; with `false` it only checks that they are applied.

use std::future::Future;

use clap::{Parser, Subcommand};

use crate::app::{self, App, BuildError, RunError};
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "orders-service",
    version,
    about = "Orders over gRPC, authorized from access tokens"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Serve gRPC and the operations endpoints (the default when no command is given).
    Serve,
    /// Apply the database migrations to `DATABASE_URL` and exit.
    Migrate,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Runs the command until it is done or, for `serve`, until `shutdown` resolves.
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()> + Send) -> Result<(), CliError> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = App::build(cli.config).await?;
            tracing::info!(grpc = %app.grpc_addr(), http = %app.http_addr(), "orders-service listening");
            app.run(shutdown).await?;
            tracing::info!("orders-service stopped");
        }
        Command::Migrate => {
            let pool = app::migrate(&cli.config).await?;
            pool.close().await;
            tracing::info!(
                migrations = app::MIGRATOR.iter().count(),
                "database schema is up to date"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_is_the_default_and_migrate_a_command() {
        let cli = Cli::try_parse_from(["orders-service"]).unwrap();
        assert_eq!(cli.command, None);
        let cli = Cli::try_parse_from([
            "orders-service",
            "--database-url",
            "sqlite://x.db",
            "migrate",
        ])
        .unwrap();
        assert_eq!(cli.command, Some(Command::Migrate));
        assert_eq!(cli.config.database_url, "sqlite://x.db");
    }
}
