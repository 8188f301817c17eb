//! `touchstream dlq list|show|replay`: what the pipeline could not process, and sending it
//! through again once the cause is fixed.
//!
//! Every DLQ record keeps the input as its stage received it, so a replay goes through the same
//! checks as the first time:
//! - a `producer` record (a request body or one event, as sent) is POSTed to a collector's
//!   `/v1/events`: it lands if the collector now takes it, and if not the collector dead-letters
//!   it again with the new reason;
//! - an `enricher` or `sink` record (the Avro bytes read from a topic) is decoded the way that
//!   stage decodes it and, if that works now, produced again to the topic it was read from, with
//!   its key; one that still does not decode is left where it is, with its reason.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde_json::{Value, json};
use touchstream_avro::{DlqRecord, Stage};
use touchstream_kafka::KafkaConfig;
use touchstream_model::time::{format_rfc3339_ms, parse_rfc3339_ms};
use touchstream_model::{AttributedEvent, RawEvent};

#[derive(clap::Args, Debug)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// One line per DLQ record: position, time, stage, size, reason.
    List {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        filter: Filter,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One record in full, its payload decoded where it can be.
    Show {
        #[command(flatten)]
        source: Source,
        /// The record's position in the DLQ topic, PARTITION:OFFSET (as `list` prints it).
        position: String,
        /// Write the payload's bytes alone to stdout (e.g. to save or edit it).
        #[arg(long)]
        payload: bool,
    },
    /// Send the selected records through again (see the module doc), and say what became of each.
    Replay {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        filter: Filter,
        /// The collector that producer-stage records are POSTed to.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        collector: String,
        /// Say what would be sent, send nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Where the DLQ is.
#[derive(clap::Args, Debug, Clone)]
pub struct Source {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "TOUCHSTREAM_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// The DLQ topic.
    #[arg(long, default_value = "touchstream.events.dlq")]
    pub topic: String,
    /// The erasure requests (`touchstream forget`): records that name a forgotten id are left
    /// out of every listing, show and replay (a record cannot be deleted from the DLQ topic;
    /// its retention is what removes it).
    #[arg(long, default_value = "touchstream.forgotten")]
    pub forgotten_topic: String,
}

/// Which records.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Filter {
    /// Only records of this stage: producer, enricher or sink.
    #[arg(long)]
    pub stage: Option<String>,
    /// Only records whose reason contains this text (case-insensitive).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only records that failed at or after this time (RFC 3339, or epoch milliseconds).
    #[arg(long)]
    pub since: Option<String>,
    /// Only records that failed before this time (RFC 3339, or epoch milliseconds).
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many records (the oldest first).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// A record read from the DLQ, with where it is.
struct Entry {
    partition: i32,
    offset: i64,
    record: DlqRecord,
}

impl Entry {
    fn position(&self) -> String {
        format!("{}:{}", self.partition, self.offset)
    }
}

struct Selection {
    stage: Option<Stage>,
    reason: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: usize,
}

fn parse_time(s: &str) -> anyhow::Result<i64> {
    s.trim()
        .parse::<i64>()
        .ok()
        .or_else(|| parse_rfc3339_ms(s))
        .with_context(|| format!("{s:?} is neither an RFC 3339 time nor epoch milliseconds"))
}

impl Filter {
    fn selection(&self) -> anyhow::Result<Selection> {
        let stage = match &self.stage {
            None => None,
            Some(s) => Some(Stage::parse(s).with_context(|| {
                format!("unknown stage {s:?}: one of producer, enricher, sink")
            })?),
        };
        Ok(Selection {
            stage,
            reason: self.reason.as_ref().map(|r| r.to_lowercase()),
            since: self.since.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
            limit: self.limit.unwrap_or(usize::MAX),
        })
    }
}

impl Selection {
    fn matches(&self, r: &DlqRecord) -> bool {
        self.stage.is_none_or(|s| r.stage() == Some(s))
            && self
                .reason
                .as_ref()
                .is_none_or(|needle| r.reason.to_lowercase().contains(needle))
            && self.since.is_none_or(|t| r.failed_at >= t)
            && self.until.is_none_or(|t| r.failed_at < t)
    }
}

pub async fn run(args: &DlqArgs, out: &mut impl Write) -> anyhow::Result<()> {
    match &args.command {
        DlqCommand::List {
            source,
            filter,
            json,
        } => {
            let selection = filter.selection()?;
            let (entries, unreadable) = read(source, Some(&selection))?;
            for e in &entries {
                if *json {
                    writeln!(out, "{}", summary_json(e))?;
                } else {
                    writeln!(out, "{}", summary_line(e))?;
                }
            }
            if !*json {
                writeln!(
                    out,
                    "{} record(s){}",
                    entries.len(),
                    unreadable_note(unreadable)
                )?;
            }
            Ok(())
        }
        DlqCommand::Show {
            source,
            position,
            payload,
        } => {
            let (partition, offset) = parse_position(position)?;
            let (entries, _) = read(source, None)?;
            let entry = entries
                .into_iter()
                .find(|e| e.partition == partition && e.offset == offset)
                .with_context(|| {
                    format!("no readable DLQ record at {position} in {}", source.topic)
                })?;
            if *payload {
                out.write_all(&entry.record.payload)?;
            } else {
                writeln!(out, "{}", detail(&entry))?;
            }
            Ok(())
        }
        DlqCommand::Replay {
            source,
            filter,
            collector,
            dry_run,
        } => {
            let selection = filter.selection()?;
            let (entries, _) = read(source, Some(&selection))?;
            let summary = replay(source, &entries, collector, *dry_run, out).await?;
            writeln!(out, "{summary}")?;
            anyhow::ensure!(
                summary.failed == 0,
                "{} record(s) could not be sent; run the replay again",
                summary.failed
            );
            Ok(())
        }
    }
}

fn unreadable_note(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} record(s) of the topic are not DlqRecords and were skipped)")
    }
}

fn parse_position(s: &str) -> anyhow::Result<(i32, i64)> {
    let (p, o) = s
        .split_once(':')
        .with_context(|| format!("{s:?} is not PARTITION:OFFSET"))?;
    Ok((
        p.trim()
            .parse()
            .with_context(|| format!("bad partition in {s:?}"))?,
        o.trim()
            .parse()
            .with_context(|| format!("bad offset in {s:?}"))?,
    ))
}

/// Whether a record names one of the forgotten ids: its payload (the input as received, JSON or
/// Avro, where ids appear as their bytes) or its key contains it. Coarse on purpose: a record
/// that merely contains the id is hidden too, rather than a forgotten person shown.
fn names_any(record: &DlqRecord, ids: &[String]) -> bool {
    ids.iter().any(|id| {
        let needle = id.as_bytes();
        let contains =
            |hay: &[u8]| !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle);
        contains(&record.payload)
            || contains(record.reason.as_bytes())
            || record.source_key.as_deref().is_some_and(contains)
    })
}

/// The consumer's context: the end of a partition is how reading knows it is done, not an
/// error worth a log line.
struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            eprintln!("kafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for Quiet {}

/// Reads the DLQ topic from its start to its current end; returns the records `selection`
/// takes (all with `None`) and how many records were not DlqRecords.
fn read(source: &Source, selection: Option<&Selection>) -> anyhow::Result<(Vec<Entry>, usize)> {
    let kafka = KafkaConfig {
        brokers: source.brokers.clone(),
        ..KafkaConfig::default()
    };
    let mut cfg = kafka.consumer("touchstream-dlq", "touchstream-dlq-cli");
    cfg.set("enable.partition.eof", "true");
    let consumer: BaseConsumer<Quiet> = cfg.create_with_context(Quiet)?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(&source.topic), timeout)
        .with_context(|| format!("cannot reach Kafka at {}", source.brokers))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    anyhow::ensure!(
        !partitions.is_empty(),
        "topic {} does not exist (or has no partitions)",
        source.topic
    );
    // Where each partition ends now; records added while reading are left for the next run.
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(&source.topic, p, timeout)?;
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(&source.topic, p, Offset::Beginning)?;
        }
    }
    let mut entries = Vec::new();
    let mut unreadable = 0;
    if ends.is_empty() {
        return Ok((entries, unreadable));
    }
    let forgotten = crate::forget::forgotten_ids(&kafka, &source.forgotten_topic)?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "reading {} took more than a minute",
            source.topic
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ends.remove(&p);
            }
            Some(Err(e)) => return Err(e).context("reading the DLQ"),
            Some(Ok(m)) => {
                let (p, offset) = (m.partition(), m.offset());
                if ends.get(&p).is_some_and(|end| offset + 1 >= *end) {
                    ends.remove(&p);
                }
                match touchstream_avro::decode::<DlqRecord>(m.payload().unwrap_or_default()) {
                    Ok(record) => {
                        if names_any(&record, &forgotten) {
                            continue;
                        }
                        if selection.is_none_or(|s| s.matches(&record)) {
                            entries.push(Entry {
                                partition: p,
                                offset,
                                record,
                            });
                        }
                    }
                    Err(_) => unreadable += 1,
                }
            }
        }
    }
    // Oldest first across partitions.
    entries.sort_by_key(|e| (e.record.failed_at, e.partition, e.offset));
    if let Some(s) = selection {
        entries.truncate(s.limit);
    }
    Ok((entries, unreadable))
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}

fn size_note(r: &DlqRecord) -> String {
    match r.original_size {
        None => format!("{} B", r.payload.len()),
        Some(n) => format!("{} of {n} B", r.payload.len()),
    }
}

fn summary_line(e: &Entry) -> String {
    let r = &e.record;
    format!(
        "{:<10} {}  {:<8} {:>14}  {}",
        e.position(),
        format_rfc3339_ms(r.failed_at),
        r.stage,
        size_note(r),
        one_line(&r.reason, 120)
    )
}

fn summary_json(e: &Entry) -> Value {
    let r = &e.record;
    json!({
        "position": e.position(),
        "failed_at": format_rfc3339_ms(r.failed_at),
        "stage": r.stage,
        "reason": r.reason,
        "source_topic": r.source_topic,
        "source_partition": r.source_partition,
        "source_offset": r.source_offset,
        "payload_bytes": r.payload.len(),
        "original_size": r.original_size,
        "original_sha256": r.original_sha256,
    })
}

/// The payload, made readable: JSON text as it is, Avro records decoded to JSON, other bytes
/// in hex.
fn payload_text(r: &DlqRecord) -> String {
    let decoded = match r.stage() {
        Some(Stage::Enricher) => touchstream_avro::decode::<RawEvent>(&r.payload)
            .ok()
            .and_then(|e| serde_json::to_string_pretty(&e).ok())
            .map(|j| format!("(Avro RawEvent)\n{j}")),
        Some(Stage::Sink) => touchstream_avro::decode::<AttributedEvent>(&r.payload)
            .ok()
            .and_then(|e| serde_json::to_string_pretty(&e).ok())
            .map(|j| format!("(Avro AttributedEvent)\n{j}")),
        _ => None,
    };
    if let Some(d) = decoded {
        return d;
    }
    if r.content_encoding.is_none()
        && let Ok(text) = std::str::from_utf8(&r.payload)
    {
        return text.to_string();
    }
    let shown = &r.payload[..r.payload.len().min(512)];
    let hex: Vec<String> = shown.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "({} bytes, not text; first {} in hex)\n{}",
        r.payload.len(),
        shown.len(),
        hex.join(" ")
    )
}

fn detail(e: &Entry) -> String {
    let r = &e.record;
    let mut lines = vec![
        format!("position:      {}", e.position()),
        format!("stage:         {}", r.stage),
        format!("failed_at:     {}", format_rfc3339_ms(r.failed_at)),
        format!("reason:        {}", r.reason),
    ];
    if let (Some(t), Some(p), Some(o)) = (&r.source_topic, r.source_partition, r.source_offset) {
        lines.push(format!("source:        {t} partition {p} offset {o}"));
    }
    if let Some(k) = &r.source_key {
        lines.push(format!("source key:    {}", String::from_utf8_lossy(k)));
    }
    if let Some(enc) = &r.content_encoding {
        lines.push(format!("encoding:      {enc}"));
    }
    lines.push(format!("payload:       {}", size_note(r)));
    if let Some(d) = &r.original_sha256 {
        lines.push(format!(
            "input sha256:  {d} (the payload was cut to fit the topic)"
        ));
    }
    lines.push(String::new());
    lines.push(payload_text(r));
    lines.join("\n")
}

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
struct ReplaySummary {
    landed: usize,
    still_refused: usize,
    skipped: usize,
    failed: usize,
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "replay: {} landed, {} still refused, {} skipped, {} failed",
            self.landed, self.still_refused, self.skipped, self.failed
        )
    }
}

enum Outcome {
    Landed(String),
    StillRefused(String),
    Skipped(String),
    Failed(String),
}

async fn replay(
    source: &Source,
    entries: &[Entry],
    collector: &str,
    dry_run: bool,
    out: &mut impl Write,
) -> anyhow::Result<ReplaySummary> {
    let kafka = KafkaConfig {
        brokers: source.brokers.clone(),
        ..KafkaConfig::default()
    };
    let producer: FutureProducer = kafka.producer("touchstream-dlq-replay").create()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}/v1/events", collector.trim_end_matches('/'));
    let mut summary = ReplaySummary::default();
    for e in entries {
        let r = &e.record;
        let outcome = if !r.is_whole() {
            Outcome::Skipped(format!(
                "the payload was cut to {} of {} bytes; only the client has it whole",
                r.payload.len(),
                r.original_size.unwrap_or_default()
            ))
        } else {
            match r.stage() {
                Some(Stage::Producer) => post(&http, &url, r, dry_run).await,
                Some(stage) => reproduce(&producer, stage, r, dry_run).await,
                None => Outcome::Skipped(format!("unknown stage {:?}", r.stage)),
            }
        };
        let (word, why) = match &outcome {
            Outcome::Landed(w) => {
                summary.landed += 1;
                ("landed", w)
            }
            Outcome::StillRefused(w) => {
                summary.still_refused += 1;
                ("still refused", w)
            }
            Outcome::Skipped(w) => {
                summary.skipped += 1;
                ("skipped", w)
            }
            Outcome::Failed(w) => {
                summary.failed += 1;
                ("failed", w)
            }
        };
        writeln!(
            out,
            "{:<10} {:<8} {word}: {}",
            e.position(),
            r.stage,
            one_line(why, 160)
        )?;
    }
    Ok(summary)
}

/// POSTs a producer-stage payload as it was received.
async fn post(http: &reqwest::Client, url: &str, r: &DlqRecord, dry_run: bool) -> Outcome {
    if dry_run {
        return Outcome::Landed(format!("would POST {} bytes to {url}", r.payload.len()));
    }
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .body(r.payload.clone());
    if let Some(enc) = &r.content_encoding {
        req = req.header("content-encoding", enc.as_str());
    }
    let resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) => return Outcome::Failed(format!("cannot POST to {url}: {e}")),
    };
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Outcome::Landed(format!(
            "{status}, {} event(s) accepted",
            body["accepted"].as_u64().unwrap_or(0)
        ))
    } else if status.is_client_error() {
        // A batch can be partly accepted: the valid events of it land, the others are
        // dead-lettered again by the collector.
        let why = body["error"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                body["errors"][0]["field"].as_str().map(|f| {
                    format!(
                        "{f}: {}",
                        body["errors"][0]["reason"].as_str().unwrap_or("")
                    )
                })
            })
            .unwrap_or_default();
        let accepted = body["accepted"].as_u64().unwrap_or(0);
        Outcome::StillRefused(format!(
            "{status} {why} ({accepted} event(s) of it accepted; the collector dead-lettered the rest again)"
        ))
    } else {
        Outcome::Failed(format!("{status} from the collector: {body}"))
    }
}

/// Re-produces an enricher- or sink-stage record to its source topic, if it now decodes the
/// way that stage decodes it.
async fn reproduce(
    producer: &FutureProducer,
    stage: Stage,
    r: &DlqRecord,
    dry_run: bool,
) -> Outcome {
    let Some(topic) = &r.source_topic else {
        return Outcome::Skipped("the record has no source topic".into());
    };
    let check = match stage {
        Stage::Enricher => touchstream_avro::decode::<RawEvent>(&r.payload).map(|_| ()),
        _ => touchstream_avro::decode::<AttributedEvent>(&r.payload).map(|_| ()),
    };
    if let Err(e) = check {
        return Outcome::StillRefused(format!("still does not decode: {e}"));
    }
    if dry_run {
        return Outcome::Landed(format!(
            "would produce {} bytes to {topic}",
            r.payload.len()
        ));
    }
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(&r.payload);
    if let Some(k) = &r.source_key {
        record = record.key(k);
    }
    match producer.send(record, Duration::from_secs(10)).await {
        Ok(delivery) => Outcome::Landed(format!(
            "produced to {topic} partition {} offset {}",
            delivery.partition, delivery.offset
        )),
        Err((e, _)) => Outcome::Failed(format!("cannot produce to {topic}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn filters_by_stage_reason_and_time() {
        let f = Filter {
            stage: Some("producer".into()),
            reason: Some("CURRENCY".into()),
            since: Some("1000".into()),
            until: Some("2026-01-01T00:00:00Z".into()),
            limit: None,
        };
        let s = f.selection().unwrap();
        let r = DlqRecord::producer(b"{}", "currency: \"QQQ\" is not", 1_500);
        assert!(s.matches(&r));
        assert!(!s.matches(&DlqRecord::producer(b"{}", "revenue", 1_500)));
        assert!(!s.matches(&DlqRecord::producer(b"{}", "currency", 999)));
        assert!(
            Filter {
                stage: Some("nope".into()),
                ..Filter::default()
            }
            .selection()
            .is_err()
        );
        assert_eq!(parse_position("3:42").unwrap(), (3, 42));
        assert!(parse_position("3").is_err());
    }
}
