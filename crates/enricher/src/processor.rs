//! The exactly-once loops, one per stage, each on a thread of its own (so that the two stages
//! use both cores): consume a batch, attribute it, and produce the attributed events, the
//! records for the next stage, the store's new state (changelog) and the consumed offsets in one
//! Kafka transaction. Either all of a batch's effects become visible to `read_committed` readers
//! or none do.
//!
//! - The device stage reads the raw topic (keyed by device) in the group `group_id` and writes,
//!   besides attributed events, the person topic.
//! - The person stage reads the person topic (keyed by user) in the group `<group_id>.person`.
//!
//! A partition is owned by one instance's stage at a time, with its store restored from the
//! changelog partition of the same number. Each stage has its own transactional id
//! (`<transactional_id>` and `<transactional_id>.person`), so each fences its own zombies.
//!
//! Both groups rebalance eagerly, with dynamic members (see [`Session::start`] for why): every
//! rebalance hands every partition back and out again, and its state is restored each time.
//!
//! On any error the transaction is aborted and the whole session (consumer, producer, state)
//! is rebuilt: the consumer restarts from the committed offsets and the state is restored
//! from the changelogs, which were committed together with those offsets, so the two agree.
//!
//! This runs on a dedicated thread: the transactional calls of librdkafka block.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use touchstream_avro::{DlqRecord, SourcePosition, Stage};
use touchstream_model::RawEvent;
use touchstream_model::forget::{self, ForgetMarker, ForgetRequest, Removed, Subject};
use touchstream_model::time::now_ms;
use touchstream_runtime::{Health, Shutdown};

use crate::attribute::{Attributor, new_conversions};
use crate::config::EnricherConfig;
use crate::device::DeviceState;
use crate::metrics;
use crate::person::{Emitted, PersonState};
use crate::records::{PersonRecord, person_key};
use crate::state::{Store, Stored, restored_key};

const TXN_TIMEOUT: Duration = Duration::from_secs(30);
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// Which stage: its input (and store).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Input {
    Raw,
    Person,
}

impl Input {
    /// The health check and log name of the stage.
    pub fn name(self) -> &'static str {
        match self {
            Input::Raw => "device stage",
            Input::Person => "person stage",
        }
    }

    fn topic(self, cfg: &EnricherConfig) -> &str {
        match self {
            Input::Raw => &cfg.topics.raw,
            Input::Person => &cfg.topics.person,
        }
    }

    fn group_id(self, cfg: &EnricherConfig) -> String {
        match self {
            Input::Raw => cfg.group_id.clone(),
            Input::Person => format!("{}.person", cfg.group_id),
        }
    }

    fn suffixed(self, id: String) -> String {
        match self {
            Input::Raw => id,
            Input::Person => format!("{id}.person"),
        }
    }
}

/// Records rebalances for the loop to act on between transactions, and exports lag.
struct Context {
    changes: Mutex<Vec<Change>>,
    lag: touchstream_kafka::LagContext,
    input: Input,
}

enum Change {
    Assigned(Vec<(Input, i32)>),
    Revoked(Vec<(Input, i32)>),
}

impl Context {
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<(Input, i32)> {
        tpl.elements()
            .iter()
            .map(|e| (self.input, e.partition()))
            .collect()
    }
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        self.lag.stats(stats);
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let change = match rebalance {
            Rebalance::Assign(tpl) => Change::Assigned(self.partitions(tpl)),
            Rebalance::Revoke(tpl) => Change::Revoked(self.partitions(tpl)),
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

/// How long a stage may go without finishing a step of its loop before the process gives up
/// on itself. Longer than any step that waits with a bound (a restore: 120 s; initialising,
/// sending offsets to or committing a transaction: 30 s each), so only a stage blocked for
/// good reaches it.
pub const STALL: Duration = Duration::from_secs(150);

/// When a stage last finished a step of its loop, and which step it is in: what the watchdog
/// of the application reads to tell a stage that works slowly from one that is stuck.
#[derive(Debug)]
pub struct Heartbeat {
    last: Mutex<(Instant, &'static str)>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            last: Mutex::new((Instant::now(), "starting")),
        }
    }
}

impl Heartbeat {
    /// The stage is alive and now in `phase`.
    pub fn beat(&self, phase: &'static str) {
        if let Ok(mut last) = self.last.lock() {
            *last = (Instant::now(), phase);
        }
    }

    /// How long since the last beat, and the phase it announced.
    pub fn since(&self) -> (Duration, &'static str) {
        self.last
            .lock()
            .map_or((Duration::ZERO, "unknown"), |l| (l.0.elapsed(), l.1))
    }
}

/// Runs one stage's sessions until shutdown; a failed session is rebuilt after a backoff.
pub fn run(
    cfg: &EnricherConfig,
    attributor: &Attributor,
    health: &Health,
    shutdown: &Shutdown,
    input: Input,
    heartbeat: &Heartbeat,
) {
    let mut backoff = Duration::from_millis(500);
    while !shutdown.is_cancelled() {
        heartbeat.beat("starting a session (init_transactions)");
        health.not_ready(input.name(), "starting session");
        let started = Instant::now();
        match Session::start(cfg, attributor, health, shutdown, input)
            .and_then(|mut s| s.run(heartbeat))
        {
            Ok(()) => return,
            Err(e) => {
                metrics::restarts();
                // A session that worked for a while failed on its own: start again soon.
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_millis(500);
                }
                health.not_ready(input.name(), format!("restarting after: {e}"));
                tracing::error!(error = %e, stage = input.name(), retry_in_ms = backoff.as_millis() as u64, "enricher session failed, restarting");
                heartbeat.beat("waiting to restart the session");
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
    input: Input,
    /// The device stage's store (empty in the person stage).
    devices: Store<DeviceState>,
    /// The person stage's store (empty in the device stage).
    persons: Store<PersonState>,
    partitions: Partitions,
}

impl<'a> Session<'a> {
    fn start(
        cfg: &'a EnricherConfig,
        attributor: &'a Attributor,
        health: &'a Health,
        shutdown: &'a Shutdown,
        input: Input,
    ) -> anyhow::Result<Self> {
        // Transactions first: init_transactions fences an earlier incarnation with the same
        // transactional id and waits for the broker to abort what it left open, which can take
        // a while; a consumer already in the group meanwhile would hold up every rebalance of
        // the group without polling.
        let producer: BaseProducer = cfg
            .kafka
            .transactional_producer(
                "touchstream-enricher",
                &input.suffixed(cfg.transactional_id()),
            )
            .create()?;
        producer.init_transactions(TXN_TIMEOUT)?;
        // Dynamic group membership: a session that ends (its consumer dropped, which leaves the
        // group) and the next one (a new member) are two members to the coordinator, never one
        // member replaced in place. Static membership (`group.instance.id`) was tried here: a
        // stage that rebuilt its session in-process under the same instance id while the group
        // rebalanced sometimes left partitions owned by nobody, for good.
        let mut ccfg = cfg
            .kafka
            .consumer("touchstream-enricher", &input.group_id(cfg));
        // Eager rebalancing, not the cooperative-sticky default of the other consumers: a
        // member of an eager group must give its partitions up (in a poll, between two
        // transactions) before the group can move to its next generation, so a generation
        // never changes under a transaction in flight. Under cooperative rebalancing it did:
        // the offsets of the transaction were refused (ILLEGAL_GENERATION), the session was
        // rebuilt, which rebalanced the group again and failed the others' transactions in turn.
        // The cost: every rebalance restores every partition's state (in parallel, about a
        // second).
        ccfg.set("statistics.interval.ms", "5000")
            .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
            .set("partition.assignment.strategy", "range");
        let context = Context {
            changes: Mutex::new(Vec::new()),
            lag: touchstream_kafka::LagContext::by_position("enricher"),
            input,
        };
        let consumer: BaseConsumer<Context> = ccfg.create_with_context(context)?;
        consumer.subscribe(&[input.topic(cfg)])?;
        tracing::info!(
            stage = input.name(),
            "session started: transactions initialised, consuming"
        );
        let count = |topic: &str| -> anyhow::Result<i32> {
            let metadata = consumer.fetch_metadata(Some(topic), TXN_TIMEOUT)?;
            let n = metadata
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len() as i32);
            anyhow::ensure!(n > 0, "topic {topic} has no partitions");
            Ok(n)
        };
        let partitions = Partitions {
            raw: count(&cfg.topics.raw)?,
            person: count(&cfg.topics.person)?,
            attributed: count(&cfg.topics.attributed)?,
        };
        Ok(Self {
            cfg,
            attributor,
            health,
            shutdown,
            consumer,
            producer,
            input,
            devices: Store::default(),
            persons: Store::default(),
            partitions,
        })
    }

    fn run(&mut self, heartbeat: &Heartbeat) -> anyhow::Result<()> {
        self.health.ready(self.input.name());
        while !self.shutdown.is_cancelled() {
            heartbeat.beat("polling");
            let batch = self.poll_batch()?;
            heartbeat.beat("applying rebalances (restoring state)");
            self.apply_rebalances()?;
            let batch: Vec<OwnedMessage> = batch
                .into_iter()
                .filter(|m| match self.input {
                    Input::Raw => self.devices.owns(m.partition()),
                    Input::Person => self.persons.owns(m.partition()),
                })
                .collect();
            if batch.is_empty() {
                continue;
            }
            heartbeat.beat("in a transaction: attributing and sending records");
            if let Err(e) = self.transact(&batch, heartbeat) {
                heartbeat.beat("aborting the transaction");
                metrics::aborted();
                abort(&self.producer);
                return Err(e);
            }
        }
        tracing::info!(
            stage = self.input.name(),
            "enricher drained: last transaction committed"
        );
        self.consumer.unsubscribe();
        Ok(())
    }

    /// Up to `batch_max_records` within `batch_max_ms`.
    fn poll_batch(&self) -> anyhow::Result<Vec<OwnedMessage>> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.batch_max_ms);
        let mut batch = Vec::new();
        let mut seen = 0;
        while batch.len() < self.cfg.batch_max_records && !self.shutdown.is_cancelled() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let polled = self.consumer.poll(left.min(Duration::from_millis(100)));
            self.forget_revoked(&mut seen, &mut batch);
            match polled {
                Some(Ok(m)) => batch.push(m.detach()),
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) if is_transient(&e) => tracing::warn!(error = %e, "consumer error"),
                Some(Err(e)) => return Err(e.into()),
            }
        }
        Ok(batch)
    }

    /// Drops from `batch` the records of partitions revoked by the rebalances a poll ran since
    /// the `seen` first changes. A partition revoked and assigned again (every rebalance of an
    /// eager group does that) is read again from its committed offset, so the records polled
    /// before the revocation would otherwise be processed twice; the record a poll returns
    /// after running a rebalance is already read from the new position.
    fn forget_revoked(&self, seen: &mut usize, batch: &mut Vec<OwnedMessage>) {
        let Ok(changes) = self.consumer.context().changes.lock() else {
            return;
        };
        let revoked: HashSet<i32> = changes
            .iter()
            .skip(*seen)
            .filter_map(|c| match c {
                Change::Revoked(ps) => Some(ps.iter().map(|&(_, p)| p)),
                Change::Assigned(_) => None,
            })
            .flatten()
            .collect();
        *seen = changes.len();
        if !revoked.is_empty() {
            batch.retain(|m| !revoked.contains(&m.partition()));
        }
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
                    for (input, p) in ps {
                        match input {
                            Input::Raw => self.devices.drop_partition(p),
                            Input::Person => self.persons.drop_partition(p),
                        }
                    }
                }
                Change::Assigned(ps) => self.restore(ps)?,
            }
        }
        self.reconcile()?;
        self.export_state_size();
        Ok(())
    }

    /// Makes the store hold exactly the partitions the consumer is assigned. The rebalance
    /// callbacks normally do that; should one not be seen (a consumer replaced in a session
    /// restart, a session lost and regained), a partition the consumer reads but the store does
    /// not hold would have its records dropped by the ownership filter of [`Self::run`] with no
    /// trace, and stall until the next rebalance. So each batch checks, and restores or drops
    /// what differs, saying so.
    fn reconcile(&mut self) -> anyhow::Result<()> {
        let topic = self.input.topic(self.cfg);
        let assigned: std::collections::BTreeSet<i32> = self
            .consumer
            .assignment()?
            .elements()
            .iter()
            .filter(|e| e.topic() == topic)
            .map(|e| e.partition())
            .collect();
        let owned = match self.input {
            Input::Raw => self.devices.owned(),
            Input::Person => self.persons.owned(),
        };
        if assigned == owned {
            return Ok(());
        }
        let missing: Vec<(Input, i32)> = assigned
            .difference(&owned)
            .map(|&p| (self.input, p))
            .collect();
        let extra: Vec<i32> = owned.difference(&assigned).copied().collect();
        tracing::warn!(
            stage = self.input.name(),
            ?missing,
            ?extra,
            "the store and the consumer's assignment differ (a rebalance callback was not seen): restoring and dropping to match"
        );
        for p in extra {
            match self.input {
                Input::Raw => self.devices.drop_partition(p),
                Input::Person => self.persons.drop_partition(p),
            }
        }
        if !missing.is_empty() {
            self.restore(missing)?;
        }
        Ok(())
    }

    /// Restores the stores of newly assigned partitions from their changelogs, all partitions
    /// at once (each restore mostly waits on the broker, so a failover that hands over several
    /// partitions takes about as long as one).
    fn restore(&mut self, assigned: Vec<(Input, i32)>) -> anyhow::Result<()> {
        let cfg = self.cfg;
        type Restored = (Input, i32, Duration, anyhow::Result<Restore>);
        enum Restore {
            Devices(Vec<(String, DeviceState, usize)>),
            Persons(Vec<(String, PersonState, usize)>),
        }
        let restored: Vec<Restored> = std::thread::scope(|scope| {
            let handles: Vec<_> = assigned
                .iter()
                .map(|&(input, p)| {
                    scope.spawn(move || {
                        let started = Instant::now();
                        let result = match input {
                            Input::Raw => {
                                restore_partition::<DeviceState>(cfg, &cfg.topics.changelog, p)
                                    .map(Restore::Devices)
                            }
                            Input::Person => restore_partition::<PersonState>(
                                cfg,
                                &cfg.topics.person_changelog,
                                p,
                            )
                            .map(Restore::Persons),
                        };
                        (input, p, started.elapsed(), result)
                    })
                })
                .collect();
            handles
                .into_iter()
                .zip(&assigned)
                .map(|(h, &(input, p))| {
                    h.join().unwrap_or_else(|_| {
                        (
                            input,
                            p,
                            Duration::ZERO,
                            Err(anyhow::anyhow!("restoring partition {p} panicked")),
                        )
                    })
                })
                .collect()
        });
        for (input, p, took, result) in restored {
            let n = match result? {
                Restore::Devices(states) => {
                    let n = states.len();
                    self.devices.insert_partition(p, states);
                    n
                }
                Restore::Persons(states) => {
                    let n = states.len();
                    self.persons.insert_partition(p, states);
                    n
                }
            };
            metrics::restored(input_name(input), p, n, took);
        }
        Ok(())
    }

    fn export_state_size(&self) {
        match self.input {
            Input::Raw => {
                let (devices, bytes) = self.devices.size();
                metrics::state("device", devices, bytes);
            }
            Input::Person => {
                let (persons, bytes) = self.persons.size();
                metrics::state("person", persons, bytes);
            }
        }
    }

    fn transact(&mut self, batch: &[OwnedMessage], heartbeat: &Heartbeat) -> anyhow::Result<()> {
        let started = Instant::now();
        self.producer.begin_transaction()?;
        let mut out = Out {
            producer: &self.producer,
            topics: &self.cfg.topics,
            buf: Vec::with_capacity(512),
            dirty_devices: HashSet::new(),
            dirty_persons: HashSet::new(),
            partitions: self.partitions,
        };
        let mut next_offsets: BTreeMap<(Input, i32), i64> = BTreeMap::new();
        let input = self.input;
        for msg in batch {
            next_offsets.insert((input, msg.partition()), msg.offset() + 1);
            match input {
                Input::Raw => raw_record(self.attributor, &mut self.devices, &mut out, msg)?,
                Input::Person => person_record(self.attributor, &mut self.persons, &mut out, msg)?,
            }
        }
        // One changelog record per state touched, on the partition of its input.
        for (partition, key) in &out.dirty_devices {
            let records = self.devices.changelog(*partition, key)?;
            write_changelog(
                &self.producer,
                &self.cfg.topics.changelog,
                *partition,
                &records,
            )?;
        }
        for (partition, key) in &out.dirty_persons {
            let records = self.persons.changelog(*partition, key)?;
            write_changelog(
                &self.producer,
                &self.cfg.topics.person_changelog,
                *partition,
                &records,
            )?;
        }
        let mut offsets = TopicPartitionList::new();
        for ((input, p), next) in &next_offsets {
            let topic = match input {
                Input::Raw => &self.cfg.topics.raw,
                Input::Person => &self.cfg.topics.person,
            };
            offsets.add_partition_offset(topic, *p, Offset::Offset(*next))?;
        }
        // Every record of the transaction on its broker before the offsets go: then offsets
        // pending in this transaction imply changelog records pending in it, which a restore
        // waits for (`wait_for_open_transactions`). Offsets sent first could sit pending while
        // the changelog records were still in this client's queue: an instance that froze
        // there, and woke up to commit after the next owner restored, left that owner with
        // state before the batch and offsets after it.
        heartbeat.beat("in a transaction: waiting for the brokers to acknowledge its records");
        self.producer.flush(TXN_TIMEOUT)?;
        heartbeat.beat("in a transaction: sending its offsets");
        let group = self
            .consumer
            .group_metadata()
            .ok_or_else(|| anyhow::anyhow!("consumer has no group metadata"))?;
        self.producer
            .send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT)?;
        heartbeat.beat("in a transaction: committing");
        self.producer.commit_transaction(TXN_TIMEOUT)?;
        metrics::committed(batch.len(), started.elapsed());
        self.export_state_size();
        Ok(())
    }
}

/// Aborts the open transaction. librdkafka's abort waits until the delivery report of every
/// record the transaction sent has been served, and nothing else polls this producer: without
/// a thread serving them here, the abort would wait out its whole timeout (30 s), and this
/// instance, not polling its consumer meanwhile, would hold up every rebalance of its group.
fn abort(producer: &BaseProducer) {
    let aborted = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !aborted.load(std::sync::atomic::Ordering::Relaxed) {
                producer.poll(Duration::from_millis(20));
            }
        });
        if let Err(e) = producer.abort_transaction(TXN_TIMEOUT) {
            tracing::warn!(error = %e, "abort_transaction failed");
        }
        aborted.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

fn input_name(input: Input) -> &'static str {
    match input {
        Input::Raw => "device",
        Input::Person => "person",
    }
}

/// What a transaction writes besides offsets, and which states it touched.
struct Out<'a> {
    producer: &'a BaseProducer,
    topics: &'a touchstream_kafka::Topics,
    buf: Vec<u8>,
    dirty_devices: HashSet<(i32, String)>,
    dirty_persons: HashSet<(i32, String)>,
    partitions: Partitions,
}

/// Partition counts of the topics an erasure is spread over.
#[derive(Clone, Copy, Debug)]
struct Partitions {
    raw: i32,
    person: i32,
    attributed: i32,
}

impl Out<'_> {
    /// Writes attributed events (keyed by their device) and counts them.
    fn attributed(&mut self, emitted: &Emitted) -> anyhow::Result<()> {
        for c in new_conversions(emitted) {
            if let Some(conversion) = &c.conversion {
                for k in &conversion.credits {
                    if k.weight > 0.0 {
                        metrics::conversion(
                            k.model.as_str(),
                            &k.channel,
                            k.social_network.as_deref(),
                        );
                    }
                }
            }
        }
        for reason in &emitted.recredits {
            if crate::attribute::is_recredit(*reason) {
                metrics::recredit(reason.as_str());
            }
        }
        for event in &emitted.events {
            self.buf.clear();
            touchstream_avro::encode_into(event, &mut self.buf)?;
            let key = event.event.device_key();
            send(
                self.producer,
                BaseRecord::to(&self.topics.attributed)
                    .key(key.as_bytes())
                    .payload(&self.buf[..]),
            )?;
            metrics::event_out(event.event.event_type.as_str());
        }
        Ok(())
    }

    fn dead_letter(&mut self, msg: &OwnedMessage, stage_reason: String) -> anyhow::Result<()> {
        metrics::poison();
        let record = DlqRecord::from_source(
            Stage::Enricher,
            msg.payload().unwrap_or_default(),
            &stage_reason,
            SourcePosition {
                topic: msg.topic(),
                partition: msg.partition(),
                offset: msg.offset(),
                key: msg.key(),
            },
            now_ms(),
        );
        self.buf.clear();
        touchstream_avro::encode_into(&record, &mut self.buf)?;
        send(
            self.producer,
            BaseRecord::<[u8], [u8]>::to(&self.topics.dlq).payload(&self.buf),
        )
    }
}

/// One raw event: the device stage.
fn raw_record(
    attributor: &Attributor,
    devices: &mut Store<DeviceState>,
    out: &mut Out<'_>,
    msg: &OwnedMessage,
) -> anyhow::Result<()> {
    let partition = msg.partition();
    let payload = msg.payload().unwrap_or_default();
    if is_forget(msg) {
        return match ForgetRequest::from_json(payload) {
            Ok(request) => forget_devices(devices, out, partition, request),
            Err(e) => {
                tracing::warn!(error = %e, partition, offset = msg.offset(), "malformed forget request sent to the DLQ");
                out.dead_letter(msg, format!("malformed forget request: {e}"))
            }
        };
    }
    let raw: RawEvent = match touchstream_avro::decode(payload) {
        Ok(raw) => raw,
        Err(e) => {
            tracing::warn!(error = %e, partition, offset = msg.offset(), "undecodable raw event sent to the DLQ");
            return out.dead_letter(msg, format!("undecodable raw event: {e}"));
        }
    };
    metrics::event_in(raw.event_type.as_str());
    let key = raw.device_key();
    let site = raw.site_id.clone();
    let device = devices.get_mut(partition, &key);
    let result = attributor.device_event(device, raw);
    if result.duplicate {
        metrics::duplicate();
        return Ok(());
    }
    if result.late {
        metrics::late_event();
    }
    metrics::session_changes_kept(result.session_changes_kept);
    out.attributed(&result.emitted)?;
    for (user, record) in &result.to_persons {
        let person = person_key(&site, user);
        out.buf.clear();
        record.encode_into(&mut out.buf)?;
        send(
            out.producer,
            BaseRecord::to(&out.topics.person)
                .key(person.as_bytes())
                .payload(&out.buf[..]),
        )?;
        metrics::person_record(record_kind(record));
    }
    out.dirty_devices.insert((partition, key));
    Ok(())
}

/// One person record: the person stage.
fn person_record(
    attributor: &Attributor,
    persons: &mut Store<PersonState>,
    out: &mut Out<'_>,
    msg: &OwnedMessage,
) -> anyhow::Result<()> {
    let partition = msg.partition();
    let key = msg
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    let record = match PersonRecord::decode(msg.payload().unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, partition, offset = msg.offset(), "undecodable person record sent to the DLQ");
            return out.dead_letter(msg, format!("undecodable person record: {e}"));
        }
    };
    if let PersonRecord::Forget {
        request,
        raw_partition,
        raw_partitions,
        devices,
        removed,
    } = record
    {
        let forward = Forward {
            request,
            raw_partition,
            raw_partitions,
            devices,
            removed,
        };
        return forget_persons(persons, out, partition, forward);
    }
    let user = key
        .split_once('/')
        .map_or(key.as_str(), |(_, u)| u)
        .to_owned();
    let person = persons.get_mut(partition, &key);
    let (emitted, kept) = attributor.person_record(person, &user, record);
    metrics::session_changes_kept(kept);
    out.attributed(&emitted)?;
    out.dirty_persons.insert((partition, key));
    Ok(())
}

/// Whether a record is an erasure request rather than an event.
fn is_forget(msg: &OwnedMessage) -> bool {
    use rdkafka::message::Headers;
    msg.headers().is_some_and(|headers| {
        headers.iter().any(|h| {
            h.key == forget::KIND_HEADER && h.value == Some(forget::KIND_FORGET.as_bytes())
        })
    })
}

fn forget_headers() -> OwnedHeaders {
    OwnedHeaders::new().insert(Header {
        key: forget::KIND_HEADER,
        value: Some(forget::KIND_FORGET),
    })
}

/// The changelog side of an erasure: the tombstones of each state taken out of a store (and
/// of its side records), and the state taken off this transaction's dirty set, so that no
/// record of it is written after them.
fn erase_from_changelog<S: Stored>(
    producer: &BaseProducer,
    topic: &str,
    partition: i32,
    gone: &[(String, S)],
    dirty: &mut HashSet<(i32, String)>,
) -> anyhow::Result<()> {
    for (key, state) in gone {
        write_changelog(producer, topic, partition, &state.tombstones(key))?;
        dirty.remove(&(partition, key.clone()));
    }
    Ok(())
}

/// `site_id/id` → (site, id).
fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// An erasure request in the device stage: deletes the devices of this partition it names (a
/// user: every device linked to it; a device: that one), with tombstones on the device
/// changelog, and forwards the request to every person partition (after this partition's
/// earlier records for those users, so the person stage sees them first).
fn forget_devices(
    devices: &mut Store<DeviceState>,
    out: &mut Out<'_>,
    partition: i32,
    request: ForgetRequest,
) -> anyhow::Result<()> {
    let gone = match request.subject() {
        Some(Subject::User(user)) => devices.remove_where(partition, |key, d| {
            request.on_site(split_key(key).0) && d.links.iter().any(|l| l.user_id == user)
        }),
        Some(Subject::Device(anonymous_id)) => devices.remove_where(partition, |key, _| {
            let (site, id) = split_key(key);
            id == anonymous_id && request.on_site(site)
        }),
        None => Vec::new(),
    };
    erase_from_changelog(
        out.producer,
        &out.topics.changelog,
        partition,
        &gone,
        &mut out.dirty_devices,
    )?;
    let forgotten: Vec<(String, String)> = gone
        .iter()
        .map(|(key, _)| {
            let (site, id) = split_key(key);
            (site.to_owned(), id.to_owned())
        })
        .collect();
    let removed = Removed {
        devices: gone.len() as u64,
        ..Removed::default()
    };
    metrics::forgotten("device", removed.devices);
    tracing::info!(request_id = %request.request_id, partition, devices = removed.devices, "forget: device states removed");
    let record = PersonRecord::Forget {
        request,
        raw_partition: partition,
        raw_partitions: out.partitions.raw,
        devices: forgotten,
        removed,
    };
    out.buf.clear();
    record.encode_into(&mut out.buf)?;
    let PersonRecord::Forget { request, .. } = &record else {
        unreachable!("built above")
    };
    for p in 0..out.partitions.person {
        send(
            out.producer,
            BaseRecord::to(&out.topics.person)
                .key(request.request_id.as_bytes())
                .partition(p)
                .payload(&out.buf[..]),
        )?;
    }
    metrics::person_record("forget");
    Ok(())
}

/// One device-stage partition's forward of an erasure request.
struct Forward {
    request: ForgetRequest,
    raw_partition: i32,
    raw_partitions: i32,
    devices: Vec<(String, String)>,
    removed: Removed,
}

/// An erasure request in the person stage: deletes the users of this partition it names
/// (tombstones for the state and each kept conversion), or a device's part of every person it
/// was linked to, then writes a [`ForgetMarker`] to every attributed partition: each of the
/// people's earlier rows is ahead of it.
fn forget_persons(
    persons: &mut Store<PersonState>,
    out: &mut Out<'_>,
    partition: i32,
    forward: Forward,
) -> anyhow::Result<()> {
    let Forward {
        request,
        raw_partition,
        raw_partitions,
        mut devices,
        removed: by_devices,
    } = forward;
    let mut removed = Removed::default();
    if partition == 0 {
        removed.devices = by_devices.devices;
    }
    match request.subject() {
        Some(Subject::User(user)) => {
            let gone = persons.remove_where(partition, |key, _| {
                let (site, id) = split_key(key);
                id == user && request.on_site(site)
            });
            erase_from_changelog(
                out.producer,
                &out.topics.person_changelog,
                partition,
                &gone,
                &mut out.dirty_persons,
            )?;
            for (key, state) in &gone {
                removed.persons += 1;
                removed.conversions += state.conversions.len() as u64;
                let site = split_key(key).0;
                for d in &state.devices {
                    let device = (site.to_owned(), d.anonymous_id.clone());
                    if !devices.contains(&device) {
                        devices.push(device);
                    }
                }
            }
        }
        Some(Subject::Device(anonymous_id)) => {
            let mut conversions = 0;
            let changed = persons.change_where(partition, |key, state| {
                if !request.on_site(split_key(key).0) {
                    return false;
                }
                match state.forget_device(anonymous_id) {
                    Some(n) => {
                        conversions += n;
                        true
                    }
                    None => false,
                }
            });
            removed.conversions += conversions;
            for key in changed {
                out.dirty_persons.insert((partition, key));
            }
        }
        None => {}
    }
    metrics::forgotten("person", removed.persons);
    metrics::forgotten("conversion", removed.conversions);
    tracing::info!(
        request_id = %request.request_id,
        raw_partition,
        partition,
        persons = removed.persons,
        conversions = removed.conversions,
        "forget: person states removed"
    );
    // The devices go on the forgotten-ids list too (the DLQ tools hide records naming them):
    // a request names a user, its records name its devices.
    for (site, device) in &devices {
        let entry = ForgetRequest {
            request_id: request.request_id.clone(),
            site_id: Some(site.clone()),
            user_id: None,
            anonymous_id: Some(device.clone()),
            requested_at: request.requested_at,
        };
        send(
            out.producer,
            BaseRecord::to(&out.topics.forgotten)
                .key(entry.forgotten_key().as_bytes())
                .payload(&entry.to_json()[..]),
        )?;
    }
    let marker = ForgetMarker {
        request,
        raw_partition,
        person_partition: partition,
        raw_partitions,
        person_partitions: out.partitions.person,
        devices,
        removed,
    };
    let payload = marker.to_json();
    for p in 0..out.partitions.attributed {
        send(
            out.producer,
            BaseRecord::to(&out.topics.attributed)
                .key(marker.request.request_id.as_bytes())
                .partition(p)
                .headers(forget_headers())
                .payload(&payload[..]),
        )?;
    }
    Ok(())
}

fn record_kind(record: &PersonRecord) -> &'static str {
    match record {
        PersonRecord::Link { .. } => "link",
        PersonRecord::Event { .. } => "event",
        PersonRecord::Touch { .. } => "touch",
        PersonRecord::Moved { .. } => "moved",
        PersonRecord::Sessions { .. } => "sessions",
        PersonRecord::Forget { .. } => "forget",
    }
}

/// A state's changelog records, on the partition of its input (`None`: a tombstone).
fn write_changelog(
    producer: &BaseProducer,
    topic: &str,
    partition: i32,
    records: &[(String, Option<Vec<u8>>)],
) -> anyhow::Result<()> {
    for (key, payload) in records {
        let record = BaseRecord::<[u8], [u8]>::to(topic)
            .key(key.as_bytes())
            .partition(partition);
        let record = match payload {
            Some(bytes) => record.payload(&bytes[..]),
            None => record,
        };
        send(producer, record)?;
    }
    Ok(())
}

/// Sends, waiting for queue space instead of failing when the local queue is full.
fn send<K, P>(producer: &BaseProducer, record: BaseRecord<'_, K, P>) -> anyhow::Result<()>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    let mut record = record;
    let mut full_since: Option<Instant> = None;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                // The queue drains as the brokers acknowledge; one that stays full means they
                // do not, and the transaction is given up (aborted, the session rebuilt) rather
                // than waited on without end.
                let since = *full_since.get_or_insert_with(Instant::now);
                anyhow::ensure!(
                    since.elapsed() < TXN_TIMEOUT,
                    "the producer's queue stayed full for {TXN_TIMEOUT:?}: the brokers do not acknowledge this transaction's records"
                );
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
/// transaction is open on it: `(key, state, encoded length)` per key still present.
fn restore_partition<S: Stored>(
    cfg: &EnricherConfig,
    topic: &str,
    partition: i32,
) -> anyhow::Result<Vec<(String, S, usize)>> {
    let mut ccfg = cfg.kafka.consumer(
        "touchstream-enricher-restore",
        &format!("{}-restore", cfg.group_id),
    );
    // The end of the partition is known from a fetch that comes back empty: don't let the
    // broker hold that fetch for the default half second.
    ccfg.set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "20");
    let consumer: BaseConsumer<RestoreContext> = ccfg.create_with_context(RestoreContext)?;
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    wait_for_open_transactions(cfg, &consumer, topic, partition, deadline)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    // The latest record per key; a tombstone deletes it.
    let mut records: std::collections::HashMap<String, Vec<u8>> = Default::default();
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "restoring {topic} partition {partition} took longer than {RESTORE_TIMEOUT:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let Some(key) = m.key().map(|k| String::from_utf8_lossy(k).into_owned()) else {
                    continue;
                };
                let key = restored_key(key);
                match m.payload() {
                    None => {
                        records.remove(&key);
                    }
                    Some(bytes) => {
                        records.insert(key, bytes.to_vec());
                    }
                }
            }
            // A state this build cannot read is skipped (that key starts afresh) rather than
            // stopping the partition.
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(S::restore(records)),
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
    topic: &str,
    partition: i32,
    deadline: Instant,
) -> anyhow::Result<()> {
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
