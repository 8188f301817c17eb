//! `touchstream retention apply`: drops, in every table with a `retention_months` in the
//! `[sink.retention]` table of the config, the monthly partitions older than that (the sink does
//! the same at start-up and then once a day).

use std::io::Write;
use std::path::PathBuf;

use touchstream_model::time::now_ms;
use touchstream_warehouse::privacy;

use crate::forget::SinkSide;

#[derive(clap::Args, Debug)]
pub struct RetentionArgs {
    #[command(subcommand)]
    pub command: RetentionCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum RetentionCommand {
    /// Drop the partitions past their retention now, and say which.
    Apply {
        /// The config file whose `[sink]` table holds `retention` and `clickhouse` (also
        /// $TOUCHSTREAM_CONFIG; TOUCHSTREAM_SINK__* overrides it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The current month as YYYYMM (default: this month, UTC).
        #[arg(long)]
        month: Option<u32>,
    },
}

pub async fn run(args: &RetentionArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let RetentionCommand::Apply { config, month } = &args.command;
    let cfg = SinkSide::load(config.as_deref())?;
    cfg.retention.validate().map_err(anyhow::Error::msg)?;
    if let Some(m) = month {
        anyhow::ensure!(
            (1..=12).contains(&(m % 100)) && *m >= 100,
            "--month {m}: not a YYYYMM month"
        );
    }
    let now = month.unwrap_or_else(|| privacy::month_of(now_ms()));
    if cfg.retention.retention_months.is_empty() {
        writeln!(
            out,
            "retention: no table has a retention_months; nothing dropped"
        )?;
        return Ok(());
    }
    for d in privacy::apply_retention(&cfg.admin(), &cfg.retention, now).await? {
        let parts: Vec<String> = d.partitions.iter().map(u32::to_string).collect();
        writeln!(
            out,
            "{}: kept from {} on; dropped {} partition(s) [{}], {} rows",
            d.table,
            d.first_kept,
            d.partitions.len(),
            parts.join(", "),
            d.rows
        )?;
    }
    Ok(())
}
