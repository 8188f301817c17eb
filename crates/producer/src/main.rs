use std::path::PathBuf;

use clap::{Parser, Subcommand};
use producer::{Application, ProducerConfig, replay};
use touchstream_runtime::{SHARED_KEYS, load_config_shared, shutdown, telemetry};

/// touchstream's HTTP collector.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// TOML config file (also $TOUCHSTREAM_CONFIG); env TOUCHSTREAM_PRODUCER__* overrides it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the collector (the default).
    Serve,
    /// Backfill events from an NDJSON file (or - for stdin) through the same validation and topic.
    Replay(replay::ReplayArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: ProducerConfig =
        load_config_shared("producer", cli.config.as_deref(), SHARED_KEYS)?;
    telemetry::init(&config.log);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            Application::build(config)
                .await?
                .run(shutdown::on_signals())
                .await
        }
        Command::Replay(args) => replay::run(&config, &args).await,
    }
}
