//! The exactly-once loop: consume a batch of raw events, attribute them, and produce the
//! attributed events, the visitors' new state (changelog) and the consumed offsets in one
//! Kafka transaction. Either all of a batch's effects become visible to `read_committed`
//! readers or none do.
//!
//! On any error the transaction is aborted and the whole session (consumer, producer, state)
//! is rebuilt: the consumer restarts from the committed offsets and the state is restored
//! from the changelog, which was committed together with those offsets, so the two agree.
//!
//! This runs on a dedicated thread: the transactional calls of librdkafka block.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use touchstream_avro::{DlqRecord, SourcePosition, Stage};
use touchstream_model::time::now_ms;
use touchstream_model::{AttributedEvent, RawEvent};
use touchstream_runtime::{Health, Shutdown};

use crate::attribute::Attributor;
use crate::config::EnricherConfig;
use crate::metrics;
use crate::state::{PartitionStates, VisitorState};

const TXN_TIMEOUT: Duration = Duration::from_secs(30);
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// Records rebalances for the loop to act on between transactions, and exports lag.
struct Context {
    changes: Mutex<Vec<Change>>,
    lag: touchstream_kafka::LagContext,
}

enum Change {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        self.lag.stats(stats);
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let change = match rebalance {
            Rebalance::Assign(tpl) => Change::Assigned(partitions(tpl)),
            Rebalance::Revoke(tpl) => Change::Revoked(partitions(tpl)),
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error");
                return;
            }
        };
        if let Ok(mut changes) = self.changes.lock() {
            changes.push(change);
        }
    }
}

/// Runs sessions until shutdown; a failed session is rebuilt after a backoff.
pub fn run(cfg: &EnricherConfig, attributor: &Attributor, health: &Health, shutdown: &Shutdown) {
    let mut backoff = Duration::from_millis(500);
    while !shutdown.is_cancelled() {
        health.not_ready("kafka", "starting session");
        match Session::start(cfg, attributor, health, shutdown).and_then(|mut s| s.run()) {
            Ok(()) => return,
            Err(e) => {
                metrics::restarts();
                health.not_ready("kafka", format!("restarting after: {e}"));
                tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "enricher session failed, restarting");
                let deadline = Instant::now() + backoff;
                while Instant::now() < deadline && !shutdown.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(Duration::from_secs(15));
            }
        }
    }
}

struct Session<'a> {
    cfg: &'a EnricherConfig,
    attributor: &'a Attributor,
    health: &'a Health,
    shutdown: &'a Shutdown,
    consumer: BaseConsumer<Context>,
    producer: BaseProducer,
    state: PartitionStates,
}

impl<'a> Session<'a> {
    fn start(
        cfg: &'a EnricherConfig,
        attributor: &'a Attributor,
        health: &'a Health,
        shutdown: &'a Shutdown,
    ) -> anyhow::Result<Self> {
        let mut ccfg = cfg.kafka.consumer("touchstream-enricher", &cfg.group_id);
        ccfg.set("statistics.interval.ms", "5000");
        let context = Context {
            changes: Mutex::new(Vec::new()),
            lag: touchstream_kafka::LagContext::new("enricher"),
        };
        let consumer: BaseConsumer<Context> = ccfg.create_with_context(context)?;
        consumer.subscribe(&[&cfg.topics.raw])?;
        let producer: BaseProducer = cfg
            .kafka
            .transactional_producer("touchstream-enricher", &cfg.transactional_id())
            .create()?;
        // Fences an earlier incarnation with the same transactional id and aborts what it left open.
        producer.init_transactions(TXN_TIMEOUT)?;
        Ok(Self {
            cfg,
            attributor,
            health,
            shutdown,
            consumer,
            producer,
            state: PartitionStates::default(),
        })
    }

    fn run(&mut self) -> anyhow::Result<()> {
        self.health.ready("kafka");
        while !self.shutdown.is_cancelled() {
            let batch = self.poll_batch()?;
            self.apply_rebalances()?;
            let batch: Vec<OwnedMessage> = batch
                .into_iter()
                .filter(|m| self.state.owns(m.partition()))
                .collect();
            if batch.is_empty() {
                continue;
            }
            if let Err(e) = self.transact(&batch) {
                metrics::aborted();
                if let Err(abort) = self.producer.abort_transaction(TXN_TIMEOUT) {
                    tracing::warn!(error = %abort, "abort_transaction failed");
                }
                return Err(e);
            }
        }
        tracing::info!("enricher drained: last transaction committed");
        self.consumer.unsubscribe();
        Ok(())
    }

    /// Up to `batch_max_records` within `batch_max_ms`.
    fn poll_batch(&self) -> anyhow::Result<Vec<OwnedMessage>> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.batch_max_ms);
        let mut batch = Vec::new();
        while batch.len() < self.cfg.batch_max_records && !self.shutdown.is_cancelled() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.consumer.poll(left.min(Duration::from_millis(100))) {
                Some(Ok(m)) => batch.push(m.detach()),
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) if is_transient(&e) => tracing::warn!(error = %e, "consumer error"),
                Some(Err(e)) => return Err(e.into()),
            }
        }
        Ok(batch)
    }

    /// Drops the state of revoked partitions and restores that of assigned ones, before any
    /// record of theirs is processed.
    fn apply_rebalances(&mut self) -> anyhow::Result<()> {
        let changes: Vec<Change> = match self.consumer.context().changes.lock() {
            Ok(mut c) => c.drain(..).collect(),
            Err(_) => anyhow::bail!("rebalance state poisoned"),
        };
        for change in changes {
            match change {
                Change::Revoked(ps) => {
                    for p in ps {
                        self.state.drop_partition(p);
                    }
                }
                Change::Assigned(ps) => {
                    for p in ps {
                        let started = Instant::now();
                        let visitors = restore_partition(self.cfg, p)?;
                        metrics::restored(p, visitors.len(), started.elapsed());
                        self.state.insert_partition(p, visitors);
                    }
                }
            }
        }
        let (visitors, bytes) = self.state.size();
        metrics::state(visitors, bytes);
        Ok(())
    }

    fn transact(&mut self, batch: &[OwnedMessage]) -> anyhow::Result<()> {
        let started = Instant::now();
        let topics = &self.cfg.topics;
        self.producer.begin_transaction()?;
        let mut dirty: HashSet<(i32, String)> = HashSet::new();
        let mut next_offsets: BTreeMap<i32, i64> = BTreeMap::new();
        let mut out = Vec::with_capacity(512);
        for msg in batch {
            let partition = msg.partition();
            next_offsets.insert(partition, msg.offset() + 1);
            let payload = msg.payload().unwrap_or_default();
            let raw: RawEvent = match touchstream_avro::decode(payload) {
                Ok(raw) => raw,
                Err(e) => {
                    metrics::poison();
                    tracing::warn!(error = %e, partition, offset = msg.offset(), "undecodable raw event sent to the DLQ");
                    let record = DlqRecord::from_source(
                        Stage::Enricher,
                        payload,
                        &format!("undecodable raw event: {e}"),
                        SourcePosition {
                            topic: &topics.raw,
                            partition,
                            offset: msg.offset(),
                            key: msg.key(),
                        },
                        now_ms(),
                    );
                    out.clear();
                    touchstream_avro::encode_into(&record, &mut out)?;
                    send(
                        &self.producer,
                        BaseRecord::<[u8], [u8]>::to(&topics.dlq).payload(&out),
                    )?;
                    continue;
                }
            };
            metrics::event_in(raw.event_type.as_str());
            let key = raw.anonymous_id.clone();
            let visitor = self.state.visitor(partition, &key);
            let attributed: AttributedEvent = self.attributor.attribute(visitor, raw);
            if let Some(conv) = &attributed.conversion {
                for c in &conv.credits {
                    if c.weight > 0.0 {
                        metrics::conversion(c.model.as_str(), &c.channel);
                    }
                }
            }
            out.clear();
            touchstream_avro::encode_into(&attributed, &mut out)?;
            send(
                &self.producer,
                BaseRecord::to(&topics.attributed)
                    .key(key.as_bytes())
                    .payload(&out[..]),
            )?;
            metrics::event_out(attributed.event.event_type.as_str());
            dirty.insert((partition, key));
        }
        // One changelog record per visitor touched, on the partition of its input.
        for (partition, key) in &dirty {
            let bytes = self.state.encode(*partition, key)?;
            send(
                &self.producer,
                BaseRecord::to(&topics.changelog)
                    .key(key.as_bytes())
                    .payload(&bytes[..])
                    .partition(*partition),
            )?;
        }
        let mut offsets = TopicPartitionList::new();
        for (p, next) in &next_offsets {
            offsets.add_partition_offset(&topics.raw, *p, Offset::Offset(*next))?;
        }
        let group = self
            .consumer
            .group_metadata()
            .ok_or_else(|| anyhow::anyhow!("consumer has no group metadata"))?;
        self.producer
            .send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT)?;
        self.producer.commit_transaction(TXN_TIMEOUT)?;
        metrics::committed(batch.len(), started.elapsed());
        let (visitors, bytes) = self.state.size();
        metrics::state(visitors, bytes);
        Ok(())
    }
}

/// Sends, waiting for queue space instead of failing when the local queue is full.
fn send<K, P>(producer: &BaseProducer, record: BaseRecord<'_, K, P>) -> anyhow::Result<()>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    let mut record = record;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

fn is_transient(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageConsumption(code) if matches!(code,
        RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown
        | RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::OperationTimedOut))
}

/// Reads one changelog partition from the beginning to its end (read_committed), once no
/// transaction is open on it.
fn restore_partition(
    cfg: &EnricherConfig,
    partition: i32,
) -> anyhow::Result<HashMap<String, VisitorState>> {
    let mut ccfg = cfg.kafka.consumer(
        "touchstream-enricher-restore",
        &format!("{}-restore", cfg.group_id),
    );
    ccfg.set("enable.partition.eof", "true");
    let consumer: BaseConsumer<RestoreContext> = ccfg.create_with_context(RestoreContext)?;
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    wait_for_open_transactions(cfg, &consumer, partition, deadline)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&cfg.topics.changelog, partition, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut visitors = HashMap::new();
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "restoring changelog partition {partition} took longer than {RESTORE_TIMEOUT:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let Some(key) = m.key().map(|k| String::from_utf8_lossy(k).into_owned()) else {
                    continue;
                };
                match m.payload() {
                    None => {
                        visitors.remove(&key);
                    }
                    Some(bytes) => match VisitorState::decode(bytes) {
                        Ok(state) => {
                            visitors.insert(key, state);
                        }
                        // A state this build cannot read: start that visitor afresh rather than stop.
                        Err(e) => {
                            tracing::error!(error = %e, %key, partition, "unreadable visitor state skipped")
                        }
                    },
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(visitors),
            Some(Err(e)) if is_transient(&e) => {
                tracing::warn!(error = %e, "restore consumer error")
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
}

/// The restore consumer's context. A restore reads each changelog partition to its end and
/// knows it is done by the end-of-partition event; librdkafka also reports that event as a
/// client error, which the default context logs at ERROR on every restore. Here it is what it
/// is, the expected end, and only other errors are logged.
struct RestoreContext;

impl ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end_of_partition = matches!(
            error,
            KafkaError::Global(RDKafkaErrorCode::PartitionEOF) | KafkaError::PartitionEOF(_)
        );
        if end_of_partition {
            tracing::debug!(reason, "changelog partition read to its end");
        } else {
            tracing::error!(error = %error, reason, "kafka restore consumer error");
        }
    }
}

impl ConsumerContext for RestoreContext {}

/// Waits until the changelog partition has no open transaction (its last stable offset has
/// reached its high watermark).
///
/// A read_committed restore stops at the last stable offset. If the partition's previous owner
/// froze inside a transaction after adding its consumed offsets to it, and wakes up and commits
/// after this restore, the group hands us offsets past that batch (offset fetches wait for
/// pending transactional commits) while our state lacks its changelog records: every later
/// event of those visitors would be attributed from stale state. Waiting here for the
/// transaction to end (commit, or abort by its timeout) keeps state and offsets in step.
fn wait_for_open_transactions<C: ConsumerContext>(
    cfg: &EnricherConfig,
    committed: &BaseConsumer<C>,
    partition: i32,
    deadline: Instant,
) -> anyhow::Result<()> {
    let topic = &cfg.topics.changelog;
    let mut ucfg = cfg.kafka.consumer(
        "touchstream-enricher-restore",
        &format!("{}-restore", cfg.group_id),
    );
    ucfg.set("isolation.level", "read_uncommitted");
    let uncommitted: BaseConsumer = ucfg.create()?;
    let mut waited = false;
    loop {
        // Watermarks follow the client's isolation level: `latest` is the last stable offset
        // for a read_committed client and the high watermark otherwise.
        let (_, stable) = committed.fetch_watermarks(topic, partition, TXN_TIMEOUT)?;
        let (_, high) = uncommitted.fetch_watermarks(topic, partition, TXN_TIMEOUT)?;
        if stable >= high {
            if waited {
                tracing::info!(partition, "open changelog transaction ended, restoring");
            }
            return Ok(());
        }
        if !waited {
            tracing::info!(
                partition,
                stable,
                high,
                "changelog partition has an open transaction (a previous owner's); waiting for it to end"
            );
            waited = true;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "changelog partition {partition} still has an open transaction after {RESTORE_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
