use anyhow::Context as _;
use orders_service::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init("orders-service");
    let config = Config::from_env().unwrap_or_else(|error| error.exit());
    let app = App::build(config)
        .await
        .context("starting orders-service")?;
    tracing::info!(grpc = %app.grpc_addr(), http = %app.http_addr(), "orders-service listening");
    app.run(shared::shutdown::signal()).await?;
    tracing::info!("orders-service stopped");
    Ok(())
}
