//! `touchstream`: the command line for people, as opposed to the three services.
//!
//! - `touchstream classify`: how would this hit be attributed? (JSON lines in, JSON lines out)
//! - `touchstream report`: source-of-sale and friends, from ClickHouse, in the terminal.
//! - `touchstream generate`: realistic traffic for the demo and benchmarks.
//! - `touchstream dlq list|show|replay`: the dead-letter queue, and sending it through again.
//! - `touchstream forget`: erasure of a user or a device, through Kafka, waited for.
//! - `touchstream retention apply`: drop the monthly partitions past their retention.
//! - `touchstream serve`: the reports as a web page with charts (the same charts as
//!   `touchstream report <name> --format svg`).

mod chart;
mod classify;
#[cfg(test)]
mod cookieless_days;
mod dlq;
mod figures;
mod forget;
mod generate;
mod report;
mod retention;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "touchstream: which social channel really sells")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify hits: JSON lines {"page_url","referrer","user_agent"} on stdin, or one with flags.
    Classify(classify::ClassifyArgs),
    /// Print a report from ClickHouse (no name: list the reports).
    Report(report::ReportArgs),
    /// Post generated traffic to a collector.
    Generate(generate::GenerateArgs),
    /// List, show and replay what the pipeline dead-lettered.
    Dlq(dlq::DlqArgs),
    /// Serve the reports as a web page with charts (read-only; 127.0.0.1:8090 by default).
    Serve(serve::ServeArgs),
    /// Erase a user or a device everywhere: enricher state, ClickHouse rows, DLQ listings.
    Forget(forget::ForgetArgs),
    /// Drop the monthly partitions older than each table's `retention_months`.
    Retention(retention::RetentionArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let outcome = run(Cli::parse()).await;
    // `touchstream report … | head` closes the pipe early: that is not an error.
    match outcome {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Classify(args) => {
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            classify::run(&args, stdin, stdout)
        }
        Command::Report(args) => report::run(&args, &mut std::io::stdout().lock()).await,
        Command::Generate(args) => generate::run(&args).await.map(|_| ()),
        Command::Dlq(args) => dlq::run(&args, &mut std::io::stdout().lock()).await,
        Command::Serve(args) => serve::run(&args).await,
        Command::Forget(args) => forget::run(&args, &mut std::io::stdout().lock()).await,
        Command::Retention(args) => retention::run(&args, &mut std::io::stdout().lock()).await,
    }
}
