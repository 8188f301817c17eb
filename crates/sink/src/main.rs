use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sink::{Application, SinkConfig};
use touchstream_runtime::{load_config, shutdown, telemetry};

/// touchstream's ClickHouse loader.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// TOML config file (also $TOUCHSTREAM_CONFIG); env TOUCHSTREAM_SINK__* overrides it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Load attributed events into ClickHouse (the default).
    Run,
    /// Apply the ClickHouse migrations in schemas/clickhouse/ and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: SinkConfig = load_config("sink", cli.config.as_deref())?;
    telemetry::init(&config.log);
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            Application::build(config)
                .await?
                .run(shutdown::on_signals())
                .await
        }
        Command::Migrate => {
            let applied = touchstream_warehouse::migrate(&config.clickhouse_admin()).await?;
            if applied.is_empty() {
                println!(
                    "migrations: database {} is up to date",
                    config.clickhouse.database
                );
            }
            for name in applied {
                println!("migrations: applied {name}");
            }
            Ok(())
        }
    }
}
