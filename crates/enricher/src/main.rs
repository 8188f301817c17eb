use std::path::PathBuf;

use clap::Parser;
use enricher::{Application, EnricherConfig};
use touchstream_runtime::{SHARED_KEYS, load_config_shared, shutdown, telemetry};

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
    let config: EnricherConfig =
        load_config_shared("enricher", cli.config.as_deref(), SHARED_KEYS)?;
    telemetry::init(&config.log);
    Application::build(config)
        .await?
        .run(shutdown::on_signals())
        .await
}
