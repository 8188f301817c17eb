//! `producer replay FILE.ndjson`: backfills events through the same validation and topic as
//! the HTTP API, with a progress bar and a summary.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use touchstream_avro::DlqRecord;
use touchstream_model::incoming::{ServerContext, ValidationLimits, validate};
use touchstream_model::time::now_ms;

use crate::ProducerConfig;
use crate::delivery::{Delivery, DeliveryError};

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// NDJSON file, one event object per line; `-` reads standard input.
    pub file: PathBuf,
    /// Events sent per Kafka batch.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub sent: u64,
    pub rejected: u64,
    pub to_dlq: u64,
}

pub async fn run(config: &ProducerConfig, args: &ReplayArgs) -> anyhow::Result<()> {
    let t = &config.topics;
    touchstream_kafka::ensure_topics(&config.kafka, &[t.spec(&t.raw), t.spec(&t.dlq)]).await?;
    let delivery = Delivery::new(config)?;
    let reader: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.file)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", args.file.display()))?;
        Box::new(BufReader::new(file))
    };
    let summary = replay(&delivery, reader, args.batch.max(1)).await?;
    delivery.flush().await;
    println!(
        "replay done: sent {}, rejected {}, to DLQ {}",
        summary.sent, summary.rejected, summary.to_dlq
    );
    Ok(())
}

/// Reads every line, validates it and sends the valid events in batches.
pub async fn replay(
    delivery: &Delivery,
    reader: impl BufRead,
    batch: usize,
) -> anyhow::Result<ReplaySummary> {
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {pos} lines ({per_sec}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let limits = ValidationLimits {
        max_import_past_ms: i64::MAX / 4,
        ..ValidationLimits::default()
    };
    let mut summary = ReplaySummary::default();
    let mut pending = Vec::with_capacity(batch);
    let mut rejects = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| anyhow::anyhow!("cannot read line {}: {e}", n + 1))?;
        progress.inc(1);
        if line.trim().is_empty() {
            continue;
        }
        // A replay is history: each event keeps its own occurred_at (rules, section 2).
        let ctx = ServerContext {
            received_at: now_ms(),
            received_via: touchstream_model::received_via::REPLAY,
            ..ServerContext::default()
        };
        let outcome = serde_json::from_str::<Value>(&line)
            .map_err(|e| format!("line {}: not JSON: {e}", n + 1))
            .and_then(|v| {
                validate(&v, &ctx, &limits, || uuid::Uuid::now_v7().to_string()).map_err(|errs| {
                    let reasons: Vec<String> = errs.iter().map(ToString::to_string).collect();
                    format!("line {}: {}", n + 1, reasons.join("; "))
                })
            });
        match outcome {
            Ok(event) => pending.push(event),
            Err(reason) => {
                summary.rejected += 1;
                rejects.push(DlqRecord::producer(line.as_bytes(), &reason, now_ms()));
                summary.to_dlq += 1;
                progress.set_message(format!("{} rejected", summary.rejected));
            }
        }
        if pending.len() >= batch || rejects.len() >= batch {
            // The rejects of a batch are written to the DLQ together, while the batch is sent.
            let (sent, ()) = tokio::join!(
                send_with_retry(delivery, &pending),
                delivery.dead_letter_all(std::mem::take(&mut rejects))
            );
            sent?;
            summary.sent += pending.len() as u64;
            pending.clear();
        }
    }
    let (sent, ()) = tokio::join!(
        send_with_retry(delivery, &pending),
        delivery.dead_letter_all(rejects)
    );
    sent?;
    summary.sent += pending.len() as u64;
    progress.finish_and_clear();
    Ok(summary)
}

/// A backfill should ride out a short broker hiccup rather than stop half-way.
async fn send_with_retry(
    delivery: &Delivery,
    events: &[touchstream_model::RawEvent],
) -> anyhow::Result<()> {
    let mut wait = std::time::Duration::from_millis(200);
    for attempt in 1..=6 {
        match delivery.send(events).await {
            Ok(()) => return Ok(()),
            Err(DeliveryError::Encode(e)) => return Err(e.into()),
            Err(e) if attempt == 6 => {
                return Err(anyhow::anyhow!("giving up after {attempt} attempts: {e}"));
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "retrying batch");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
    Ok(())
}
