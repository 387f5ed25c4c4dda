use anyhow::Context as _;
use gateway::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init("gateway");
    let config = Config::from_env().unwrap_or_else(|error| error.exit());
    let app = App::build(config).await.context("starting gateway")?;
    tracing::info!(
        addr = %app.gateway_addr(),
        metrics = %app.metrics_addr(),
        "gateway listening"
    );
    app.run(platform::shutdown::signal()).await?;
    tracing::info!("gateway stopped");
    Ok(())
}
