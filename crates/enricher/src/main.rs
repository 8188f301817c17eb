use std::path::PathBuf;

use clap::Parser;
use enricher::{Application, EnricherConfig};
use touchstream_runtime::{load_config, shutdown, telemetry};

/// touchstream's attribution stage.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// TOML config file (also $TOUCHSTREAM_CONFIG); env TOUCHSTREAM_ENRICHER__* overrides it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: EnricherConfig = load_config("enricher", cli.config.as_deref())?;
    telemetry::init(&config.log);
    Application::build(config)
        .await?
        .run(shutdown::on_signals())
        .await
}
