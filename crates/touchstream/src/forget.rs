//! `touchstream forget --user-id U | --anonymous-id A [--site S]`: erasure, through Kafka.
//!
//! The request goes to every partition of the raw topic (and to the forgotten-ids topic the DLQ
//! tools read); the enricher deletes the state and leaves markers on the attributed topic; the
//! sink, reading a marker, deletes the rows it names once every row before it is inserted.
//! This command waits for each step: the markers of every raw × person partition pair on
//! attributed partition 0, the sink's committed offsets past the markers on every partition,
//! then every ClickHouse mutation done; and prints what was removed.
//!
//! It reads the `[sink]` table of the config file (Kafka, topics, the sink's group, ClickHouse),
//! with the same `TOUCHSTREAM_SINK__*` overrides as the sink.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::producer::FutureProducer;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::json;
use touchstream_kafka::{KafkaConfig, Topics, ensure_topics};
use touchstream_model::forget::{self, ForgetMarker, ForgetRequest, Removed, Scope, Subject};
use touchstream_model::time::now_ms;
use touchstream_warehouse::WarehouseConfig;
use touchstream_warehouse::privacy::{self, RetentionConfig};

#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    /// Forget this user: every device linked to it, its person, its rows.
    #[arg(
        long,
        conflicts_with = "anonymous_id",
        required_unless_present = "anonymous_id"
    )]
    pub user_id: Option<String>,
    /// Forget this device (anonymous id): its state, its rows, its part of the persons it was
    /// linked to.
    #[arg(long)]
    pub anonymous_id: Option<String>,
    /// Only on this site (default: every site).
    #[arg(long)]
    pub site: Option<String>,
    /// The config file whose `[sink]` table says where Kafka and ClickHouse are (also
    /// $TOUCHSTREAM_CONFIG; TOUCHSTREAM_SINK__* overrides it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The parts of the sink's configuration the privacy commands need (the `[sink]` table; other
/// keys are the sink's business and ignored here).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SinkSide {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub group_id: String,
    pub clickhouse: WarehouseConfig,
    pub migrations_user: String,
    pub migrations_password: String,
    pub retention: RetentionConfig,
}

impl Default for SinkSide {
    fn default() -> Self {
        Self {
            kafka: KafkaConfig::default(),
            topics: Topics::default(),
            group_id: "touchstream-sink".into(),
            clickhouse: WarehouseConfig::default(),
            migrations_user: "default".into(),
            migrations_password: String::new(),
            retention: RetentionConfig::default(),
        }
    }
}

impl SinkSide {
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        Ok(touchstream_runtime::load_config("sink", file)?)
    }

    /// ClickHouse as the user allowed to delete and drop (the migrations user).
    pub fn admin(&self) -> WarehouseConfig {
        WarehouseConfig {
            user: self.migrations_user.clone(),
            password: self.migrations_password.clone(),
            ..self.clickhouse.clone()
        }
    }
}

/// Puts `request` on Kafka (see [`touchstream_kafka::forget::submit`]).
async fn submit(
    kafka: &KafkaConfig,
    topics: &Topics,
    request: &ForgetRequest,
) -> anyhow::Result<()> {
    ensure_topics(kafka, &[topics.spec(&topics.forgotten)]).await?;
    let producer: FutureProducer = kafka.producer("touchstream-forget").create()?;
    let partitions = partition_count(kafka, &topics.raw)?;
    touchstream_kafka::forget::submit(
        &producer,
        &topics.raw,
        partitions,
        &topics.forgotten,
        request,
        Duration::from_secs(30),
    )
    .await
    .context("writing the erasure request to Kafka")
}

fn partition_count(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<i32> {
    let consumer: BaseConsumer = kafka
        .consumer("touchstream-forget", "touchstream-forget-cli")
        .create()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("cannot reach Kafka at {}", kafka.brokers))?;
    let n = metadata
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32);
    anyhow::ensure!(n > 0, "topic {topic} does not exist");
    Ok(n)
}

/// What an erasure removed.
#[derive(Debug, Default)]
struct Outcome {
    removed: Removed,
    rows_deleted: BTreeMap<String, u64>,
    rows_left: BTreeMap<String, u64>,
}

pub async fn run(args: &ForgetArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let cfg = SinkSide::load(args.config.as_deref())?;
    let request = ForgetRequest::new(
        args.site.clone(),
        args.user_id.clone(),
        args.anonymous_id.clone(),
        now_ms(),
    );
    request.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let admin = cfg.admin();
    let scope = Scope::of_request(&request);
    let before = privacy::with_devices_of_users(&admin, &scope).await?;
    let rows_deleted = privacy::count(&admin, &before).await?;

    let marker_start = end_offsets(&cfg.kafka, &cfg.topics.attributed)?;
    submit(&cfg.kafka, &cfg.topics, &request).await?;
    let kafka = cfg.kafka.clone();
    let topic = cfg.topics.attributed.clone();
    let id = request.request_id.clone();
    let markers = tokio::task::spawn_blocking(move || {
        wait_for_markers(&kafka, &topic, &marker_start, &id, deadline)
    })
    .await??;
    let mut outcome = Outcome {
        rows_deleted,
        ..Outcome::default()
    };
    let mut after = before.clone();
    for m in &markers.steps {
        outcome.removed.add(m.removed);
        after.add_marker(m);
    }
    let ends = markers.after;
    let (kafka, topic, group) = (
        cfg.kafka.clone(),
        cfg.topics.attributed.clone(),
        cfg.group_id.clone(),
    );
    tokio::task::spawn_blocking(move || wait_for_sink(&kafka, &topic, &group, &ends, deadline))
        .await??;
    loop {
        if privacy::unfinished_mutations(&admin).await? == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the ClickHouse mutations of the erasure are not done after {} s (system.mutations)",
            args.timeout_secs
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    outcome.rows_left = privacy::count(&admin, &after).await?;
    tracing::info!(request_id = %request.request_id, ?outcome.rows_deleted, "forget done");
    print(out, &request, &outcome, args.json)?;
    let left: u64 = outcome.rows_left.values().sum();
    anyhow::ensure!(
        left == 0,
        "{left} row(s) of the forgotten ids are still in ClickHouse after the mutations finished"
    );
    Ok(())
}

fn print(
    out: &mut impl Write,
    request: &ForgetRequest,
    o: &Outcome,
    as_json: bool,
) -> anyhow::Result<()> {
    if as_json {
        let v = json!({
            "request_id": request.request_id,
            "site_id": request.site_id,
            "user_id": request.user_id,
            "anonymous_id": request.anonymous_id,
            "state_removed": {
                "devices": o.removed.devices,
                "persons": o.removed.persons,
                "conversions": o.removed.conversions,
            },
            "rows_deleted": o.rows_deleted,
            "rows_left": o.rows_left,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let who = match request.subject() {
        Some(Subject::User(u)) => format!("user_id {u:?}"),
        Some(Subject::Device(a)) => format!("anonymous_id {a:?}"),
        None => String::new(),
    };
    let site = request
        .site_id
        .as_deref()
        .map_or("every site".to_owned(), |s| format!("site {s:?}"));
    writeln!(
        out,
        "forgot {who} on {site} (request {})",
        request.request_id
    )?;
    writeln!(
        out,
        "  enricher state: {} device(s), {} person(s), {} kept conversion(s) removed",
        o.removed.devices, o.removed.persons, o.removed.conversions
    )?;
    for (table, n) in &o.rows_deleted {
        writeln!(out, "  {table}: {n} rows deleted")?;
    }
    Ok(())
}

/// Each partition's end (the last stable offset: read_committed).
fn end_offsets(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<BTreeMap<i32, i64>> {
    let consumer: BaseConsumer = kafka
        .consumer("touchstream-forget", "touchstream-forget-cli")
        .create()?;
    let n = partition_count(kafka, topic)?;
    let mut ends = BTreeMap::new();
    for p in 0..n {
        let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        ends.insert(p, high);
    }
    Ok(ends)
}

/// The markers of one request, and where the last one is on each attributed partition.
struct Markers {
    /// Those of attributed partition 0: one per raw × person partition pair.
    steps: Vec<ForgetMarker>,
    /// Per attributed partition, the offset after its last marker of the request.
    after: BTreeMap<i32, i64>,
}

/// One attributed partition's markers of a request: (raw, person partition) → (offset, marker).
type Steps = BTreeMap<(i32, i32), (i64, ForgetMarker)>;

/// Reads every attributed partition from `start` until each holds a marker of request `id` for
/// every raw × person partition pair.
fn wait_for_markers(
    kafka: &KafkaConfig,
    topic: &str,
    start: &BTreeMap<i32, i64>,
    id: &str,
    deadline: Instant,
) -> anyhow::Result<Markers> {
    let consumer: BaseConsumer = kafka
        .consumer("touchstream-forget", "touchstream-forget-cli")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for (p, offset) in start {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*offset))?;
    }
    consumer.assign(&tpl)?;
    let mut seen: BTreeMap<i32, Steps> = BTreeMap::new();
    loop {
        let expected = seen
            .values()
            .flat_map(|m| m.values())
            .next()
            .map(|(_, m)| (m.raw_partitions * m.person_partitions) as usize);
        if let Some(expected) = expected
            && start
                .keys()
                .all(|p| seen.get(p).is_some_and(|m| m.len() >= expected))
        {
            let after = seen
                .iter()
                .map(|(p, m)| (*p, m.values().map(|(o, _)| o + 1).max().unwrap_or(0)))
                .collect();
            let steps = seen
                .remove(&0)
                .unwrap_or_default()
                .into_values()
                .map(|(_, m)| m)
                .collect();
            return Ok(Markers { steps, after });
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the enricher has not handled the request yet: is it running?"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => tracing::warn!(error = %e, "reading the attributed topic"),
            Some(Ok(m)) => {
                let is_marker = m.headers().is_some_and(|h| {
                    h.iter().any(|h| {
                        h.key == forget::KIND_HEADER
                            && h.value == Some(forget::KIND_FORGET.as_bytes())
                    })
                });
                if !is_marker {
                    continue;
                }
                if let Ok(marker) = ForgetMarker::from_json(m.payload().unwrap_or_default())
                    && marker.request.request_id == id
                {
                    seen.entry(m.partition()).or_default().insert(
                        (marker.raw_partition, marker.person_partition),
                        (m.offset(), marker),
                    );
                }
            }
        }
    }
}

/// Waits until the sink's group has committed, on every partition, at least `ends` (the offset
/// after the request's last marker there): every row before the markers is in ClickHouse and
/// the deletions they ask for started.
fn wait_for_sink(
    kafka: &KafkaConfig,
    topic: &str,
    group: &str,
    ends: &BTreeMap<i32, i64>,
    deadline: Instant,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = kafka.consumer("touchstream-forget", group).create()?;
    loop {
        let mut tpl = TopicPartitionList::new();
        for p in ends.keys() {
            tpl.add_partition(topic, *p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
        let behind = ends
            .iter()
            .filter(|(p, end)| {
                let at = committed
                    .find_partition(topic, **p)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                    .unwrap_or(0);
                at < **end
            })
            .count();
        if behind == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the sink (group {group}) has not reached the erasure on {behind} partition(s): is it running?"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every id named in the forgotten-ids topic (empty when the topic does not exist).
pub fn forgotten_ids(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Vec<String>> {
    let mut cfg = kafka.consumer("touchstream-forget", "touchstream-forget-cli");
    cfg.set("enable.partition.eof", "true");
    let consumer: BaseConsumer = cfg.create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut open = std::collections::BTreeSet::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
            open.insert(p);
        }
    }
    let mut ids = Vec::new();
    if open.is_empty() {
        return Ok(ids);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !open.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "reading {topic} took more than a minute"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => return Err(e).context("reading the forgotten ids"),
            Some(Ok(m)) => {
                if let Ok(r) = ForgetRequest::from_json(m.payload().unwrap_or_default()) {
                    match r.subject() {
                        Some(Subject::User(u)) => ids.push(u.to_owned()),
                        Some(Subject::Device(a)) => ids.push(a.to_owned()),
                        None => {}
                    }
                }
            }
        }
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}
