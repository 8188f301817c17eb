//! Helpers for touchstream's integration and end-to-end tests. Every test gets its own Kafka
//! topics ([`TestTopics`]) and its own ClickHouse database ([`ScratchDatabase`]), removed when
//! the test ends, so tests run in parallel against the one real broker and server that
//! `deploy/services.sh` started. Nothing here mocks Kafka or ClickHouse.

#![allow(clippy::unwrap_used)]

pub mod cluster;
pub mod traffic;
pub mod watch;

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use touchstream_kafka::{KafkaConfig, Topics, ensure_topics};

pub const CLICKHOUSE_URL: &str = "http://127.0.0.1:8123";
pub const KAFKA_BROKERS: &str = "127.0.0.1:9092";

/// A short random lowercase id for names.
pub fn unique(prefix: &str) -> String {
    let n: u64 = rand::rng().random();
    format!("{prefix}{:012x}", n & 0xffff_ffff_ffff)
}

/// Runs a blocking cleanup on its own thread and runtime (usable from `Drop` inside tokio).
pub(crate) fn run_detached<F: Future<Output = ()> + Send + 'static>(f: F) {
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(f);
        }
    })
    .join();
}

/// The pipeline's topics under a prefix of their own, deleted on drop.
pub struct TestTopics {
    pub topics: Topics,
}

impl TestTopics {
    pub async fn create(partitions: i32) -> Self {
        let mut topics = Topics::with_prefix(&unique("test."));
        topics.partitions = partitions;
        let specs: Vec<_> = [
            &topics.raw,
            &topics.attributed,
            &topics.dlq,
            &topics.changelog,
            &topics.person,
            &topics.person_changelog,
            &topics.forgotten,
        ]
        .iter()
        .map(|t| topics.spec(t))
        .collect();
        ensure_topics(&kafka(), &specs).await.unwrap();
        Self { topics }
    }

    /// Environment that points a binary at these topics.
    pub fn env(&self, binary: &str) -> Vec<(String, String)> {
        let p = format!("TOUCHSTREAM_{}__TOPICS__", binary.to_ascii_uppercase());
        let t = &self.topics;
        vec![
            (format!("{p}RAW"), t.raw.clone()),
            (format!("{p}ATTRIBUTED"), t.attributed.clone()),
            (format!("{p}DLQ"), t.dlq.clone()),
            (format!("{p}CHANGELOG"), t.changelog.clone()),
            (format!("{p}PERSON"), t.person.clone()),
            (format!("{p}PERSON_CHANGELOG"), t.person_changelog.clone()),
            (format!("{p}FORGOTTEN"), t.forgotten.clone()),
            (format!("{p}PARTITIONS"), t.partitions.to_string()),
        ]
    }
}

impl Drop for TestTopics {
    fn drop(&mut self) {
        let t = self.topics.clone();
        run_detached(async move {
            let admin: AdminClient<DefaultClientContext> =
                kafka().admin("touchstream-tests").create().unwrap();
            let names = [
                t.raw.as_str(),
                t.attributed.as_str(),
                t.dlq.as_str(),
                t.changelog.as_str(),
                t.person.as_str(),
                t.person_changelog.as_str(),
                t.forgotten.as_str(),
            ];
            let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
        });
    }
}

pub fn kafka() -> KafkaConfig {
    KafkaConfig {
        brokers: KAFKA_BROKERS.into(),
        ..KafkaConfig::default()
    }
}

/// A ClickHouse database of its own, dropped on drop.
pub struct ScratchDatabase {
    pub name: String,
}

impl ScratchDatabase {
    /// Only names it: the sink's migrations create it.
    pub fn new() -> Self {
        Self {
            name: unique("ts_test_"),
        }
    }

    /// Runs a query (as the `default` user) in this database and returns the text answer.
    pub async fn query(&self, sql: &str) -> String {
        clickhouse_query(Some(&self.name), sql).await
    }
}

impl Default for ScratchDatabase {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        run_detached(async move {
            clickhouse_query(None, &format!("DROP DATABASE IF EXISTS {name}")).await;
        });
    }
}

/// A query over ClickHouse's HTTP interface; panics with ClickHouse's message on error.
pub async fn clickhouse_query(database: Option<&str>, sql: &str) -> String {
    let mut req = reqwest::Client::new()
        .post(CLICKHOUSE_URL)
        .body(sql.to_string());
    if let Some(db) = database {
        req = req.query(&[("database", db)]);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("ClickHouse at {CLICKHOUSE_URL} is not answering: {e}"));
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "ClickHouse refused {sql:?}: {text}");
    text
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where `cargo build --bins` put the workspace binaries (next to this test's `deps/`).
pub fn binary_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

/// A running binary, killed on drop; its stderr goes to a log file a failing test can point at.
pub struct Service {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Service {
    pub fn spawn(name: &str, args: &[&str], env: &[(String, String)]) -> Self {
        let log = std::env::temp_dir().join(format!(
            "{}-{}.log",
            unique(&format!("{name}-")),
            std::process::id()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary_path(name))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "TOUCHSTREAM_".to_string() + &name.to_ascii_uppercase() + "__LOG__FORMAT",
                "text",
            )
            .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Self {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// SIGKILL: no drain, no flush (what a crash looks like).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Polls `check` until it returns `Some` or `deadline` passes (then panics with `what`).
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `GET url` answers 200.
pub async fn wait_ready(url: &str, service: &Service) {
    let client = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < until,
            "{} not ready at {url} after 60 s; its log:\n{}",
            service.name,
            service.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The three real binaries on one test's topics and database: sink (which migrates the
/// database), enricher, producer, each started and ready.
pub struct Pipeline {
    /// The collector's base URL.
    pub producer_url: String,
    /// Base URLs of the producer's, enricher's and sink's ops endpoints.
    pub ops: Vec<String>,
    /// producer, enricher, sink.
    pub services: Vec<Service>,
    /// The enricher's group and environment, to start more instances in it.
    enricher_env: Vec<(String, String)>,
    /// The config file given to the producer and the enricher, removed on drop.
    config_file: Option<PathBuf>,
    /// The sink's environment (topics, group, database), for a command that acts as the sink's
    /// side (`touchstream forget`, `touchstream retention apply`).
    pub sink_env: Vec<(String, String)>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(f) = &self.config_file {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Pipeline {
    /// With the sink flushing every 200 ms, so tests do not wait for the 1 s default.
    pub async fn start(topics: &TestTopics, db: &ScratchDatabase) -> Pipeline {
        Self::start_with(
            topics,
            db,
            &[("TOUCHSTREAM_SINK__BATCH__MAX_WAIT_MS", "200")],
        )
        .await
    }

    /// With `config` (TOML: the shared `[[sites]]`, `[producer]`, `[enricher]` tables) as the
    /// config file of the producer and the enricher; the test's topics, ports and database
    /// still come from the environment, which wins over the file.
    pub async fn start_with_config(
        topics: &TestTopics,
        db: &ScratchDatabase,
        config: &str,
    ) -> Pipeline {
        let file = std::env::temp_dir().join(format!("{}.toml", unique("ts-config-")));
        std::fs::write(&file, config).unwrap();
        Self::start_full(
            topics,
            db,
            &[("TOUCHSTREAM_SINK__BATCH__MAX_WAIT_MS", "200")],
            Some(file),
        )
        .await
    }

    /// `sink_overrides` are added to the sink's environment.
    pub async fn start_with(
        topics: &TestTopics,
        db: &ScratchDatabase,
        sink_overrides: &[(&str, &str)],
    ) -> Pipeline {
        Self::start_full(topics, db, sink_overrides, None).await
    }

    async fn start_full(
        topics: &TestTopics,
        db: &ScratchDatabase,
        sink_overrides: &[(&str, &str)],
        config_file: Option<PathBuf>,
    ) -> Pipeline {
        let config_env: Vec<(String, String)> = config_file
            .iter()
            .map(|f| ("TOUCHSTREAM_CONFIG".to_string(), f.display().to_string()))
            .collect();
        let (sink_ops, enricher_ops, producer_port) = (free_port(), free_port(), free_port());
        let mut sink_env = topics.env("sink");
        sink_env.extend([
            (
                "TOUCHSTREAM_SINK__CLICKHOUSE__DATABASE".into(),
                db.name.clone(),
            ),
            ("TOUCHSTREAM_SINK__GROUP_ID".into(), unique("sink-")),
            (
                "TOUCHSTREAM_SINK__OPS__LISTEN".into(),
                format!("127.0.0.1:{sink_ops}"),
            ),
        ]);
        sink_env.extend(
            sink_overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let sink = Service::spawn("sink", &[], &sink_env);
        let sink_env_kept = sink_env.clone();
        wait_ready(&format!("http://127.0.0.1:{sink_ops}/readyz"), &sink).await;

        let mut enricher_env = topics.env("enricher");
        enricher_env.extend([
            ("TOUCHSTREAM_ENRICHER__GROUP_ID".into(), unique("enricher-")),
            (
                "TOUCHSTREAM_ENRICHER__TRANSACTIONAL_ID".into(),
                unique("enricher-tx-"),
            ),
            (
                "TOUCHSTREAM_ENRICHER__OPS__LISTEN".into(),
                format!("127.0.0.1:{enricher_ops}"),
            ),
            (
                "TOUCHSTREAM_ENRICHER__SITE_HOSTS".into(),
                "[shop.example]".into(),
            ),
        ]);
        enricher_env.extend(config_env.iter().cloned());
        let enricher = Service::spawn("enricher", &[], &enricher_env);
        wait_ready(
            &format!("http://127.0.0.1:{enricher_ops}/readyz"),
            &enricher,
        )
        .await;
        let enricher_env: Vec<(String, String)> = enricher_env
            .into_iter()
            .filter(|(k, _)| !k.ends_with("__OPS__LISTEN") && !k.ends_with("__TRANSACTIONAL_ID"))
            .collect();

        let mut producer_env = topics.env("producer");
        producer_env.extend(config_env);
        producer_env.push((
            "TOUCHSTREAM_PRODUCER__LISTEN".into(),
            format!("127.0.0.1:{producer_port}"),
        ));
        let producer = Service::spawn("producer", &[], &producer_env);
        let producer_url = format!("http://127.0.0.1:{producer_port}");
        wait_ready(&format!("{producer_url}/readyz"), &producer).await;
        Pipeline {
            ops: vec![
                producer_url.clone(),
                format!("http://127.0.0.1:{enricher_ops}"),
                format!("http://127.0.0.1:{sink_ops}"),
            ],
            producer_url,
            services: vec![producer, enricher, sink],
            enricher_env,
            config_file,
            sink_env: sink_env_kept,
        }
    }

    /// Stops the first enricher (gracefully: its last transaction committed) and starts a new
    /// instance in the same group, which restores its state from the changelogs.
    pub async fn restart_enricher(&mut self) {
        let mut old = self.services.remove(1);
        assert!(
            old.terminate(),
            "the enricher did not exit cleanly:\n{}",
            old.log_text()
        );
        self.ops.remove(1);
        self.add_enricher().await;
    }

    /// Starts one more enricher instance in the same group (its own transactional id and ops
    /// port), and waits until it is ready.
    pub async fn add_enricher(&mut self) {
        let ops = free_port();
        let mut env = self.enricher_env.clone();
        env.extend([
            (
                "TOUCHSTREAM_ENRICHER__TRANSACTIONAL_ID".into(),
                unique("enricher-tx-"),
            ),
            (
                "TOUCHSTREAM_ENRICHER__OPS__LISTEN".into(),
                format!("127.0.0.1:{ops}"),
            ),
        ]);
        let enricher = Service::spawn("enricher", &[], &env);
        wait_ready(&format!("http://127.0.0.1:{ops}/readyz"), &enricher).await;
        self.ops.push(format!("http://127.0.0.1:{ops}"));
        self.services.push(enricher);
    }
}

/// Reads `topic` from the beginning (read_committed) until `enough` says the records so far
/// suffice, or `deadline` passes (then panics with what was read).
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    deadline: Duration,
    enough: impl Fn(&[rdkafka::message::OwnedMessage]) -> bool,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let mut cfg = KafkaConfig {
        brokers: brokers.into(),
        ..KafkaConfig::default()
    }
    .consumer("touchstream-tests", &unique("reader-"));
    cfg.set("enable.partition.eof", "false");
    let consumer: StreamConsumer = cfg.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let until = Instant::now() + deadline;
    let mut out = Vec::new();
    while !enough(&out) {
        let left = until.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "read {} records from {topic} within {deadline:?}, not enough",
            out.len()
        );
        if let Ok(Ok(m)) =
            tokio::time::timeout(left.min(Duration::from_millis(500)), consumer.recv()).await
        {
            let _ = m.offset();
            out.push(m.detach());
        }
    }
    out
}

/// Where `deploy/services.sh` keeps its state (the Kafka jars among it): like the script,
/// `$TOUCHSTREAM_SERVICES_DIR`, else `.services/` in the repo.
pub fn services_dir() -> PathBuf {
    std::env::var_os("TOUCHSTREAM_SERVICES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.services"))
}

/// A Kafka broker of a test's own (same jars as `deploy/services.sh`, its own ports and data
/// directory), for tests that stop and restart the broker without disturbing the shared one.
pub struct PrivateBroker {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateBroker {
    pub fn start() -> Self {
        let lib = services_dir().join("kafka/lib");
        assert!(
            lib.exists(),
            "{} is missing: run deploy/services.sh start kafka",
            lib.display()
        );
        let (port, controller) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(unique("ts-broker-"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let template = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kafka/server.properties"),
        )
        .unwrap();
        let props = template
            .replace("@DATA@", &dir.join("data").display().to_string())
            .replace("@PORT@", &port.to_string())
            .replace("@CONTROLLER_PORT@", &controller.to_string());
        std::fs::write(dir.join("server.properties"), props).unwrap();
        let java = |args: &[&str]| {
            let mut c = Command::new("java");
            c.arg("-Xmx512m")
                .arg("-cp")
                .arg(format!("{}/*", lib.display()))
                .args(args);
            c
        };
        let status = java(&[
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            "q1Sh-9_ISia_zwGINzRvyQ",
            "-c",
        ])
        .arg(dir.join("server.properties"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
        assert!(
            status.success(),
            "formatting the private broker's storage failed"
        );
        let mut broker = Self {
            port,
            dir,
            child: None,
        };
        broker.resume();
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same data and waits until it accepts connections.
    pub fn resume(&mut self) {
        let lib = services_dir().join("kafka/lib");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("kafka.log"))
            .unwrap();
        let child = Command::new("java")
            .arg("-Xmx512m")
            .arg(format!(
                "-Dlog4j2.configurationFile={}/../deploy/kafka/log4j2.properties",
                env!("CARGO_MANIFEST_DIR")
            ))
            .arg("-cp")
            .arg(format!("{}/*", lib.display()))
            .arg("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < until,
                "private broker did not start; see {}",
                self.dir.join("kafka.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL: the broker vanishes mid-stream.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A raw event as the collector would have put it on the raw topic (times in epoch ms).
pub fn raw_event(
    event_type: touchstream_model::EventType,
    anonymous_id: &str,
    event_time: i64,
    page_url: &str,
    referrer: Option<&str>,
) -> touchstream_model::RawEvent {
    touchstream_model::RawEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        event_type,
        anonymous_id: anonymous_id.to_string(),
        user_id: None,
        occurred_at: event_time,
        sent_at: Some(event_time),
        received_at: event_time,
        event_time,
        page_url: page_url.to_string(),
        referrer: referrer.map(str::to_string),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0".into()),
        ip: Some("192.0.2.0".into()),
        properties: Default::default(),
        target_url: None,
        element: None,
        signup_kind: None,
        method: None,
        asset_id: None,
        asset_kind: None,
        order_id: None,
        revenue: None,
        currency: None,
        site_id: touchstream_model::DEFAULT_SITE.into(),
        event_name: None,
        clock_correction_ms: 0,
        received_via: touchstream_model::received_via::EVENTS.into(),
    }
}

/// Writes payloads to `topic` with the given keys, in order, and returns each one's
/// (partition, offset) once the broker acknowledged it.
pub async fn produce_payloads(topic: &str, records: &[(String, Vec<u8>)]) -> Vec<(i32, i64)> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = kafka().producer("touchstream-tests").create().unwrap();
    // Sent concurrently (the idempotent producer keeps per-partition order), awaited in order.
    let deliveries: Vec<_> = records
        .iter()
        .map(|(key, payload)| {
            producer.send(
                FutureRecord::to(topic).key(key.as_bytes()).payload(payload),
                Duration::from_secs(30),
            )
        })
        .collect();
    let mut out = Vec::with_capacity(records.len());
    for d in deliveries {
        let delivery = d.await.map_err(|(e, _)| e).unwrap();
        out.push((delivery.partition, delivery.offset));
    }
    out
}

/// Writes raw events (Avro, key = anonymous_id) to `topic`, in order.
pub async fn produce_raw(topic: &str, events: &[touchstream_model::RawEvent]) -> Vec<(i32, i64)> {
    let records: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| (e.device_key(), touchstream_avro::encode(e).unwrap()))
        .collect();
    produce_payloads(topic, &records).await
}

/// Every committed record of `topic` (all partitions, read_committed, from the beginning up to
/// the last stable offset), in per-partition order.
pub async fn read_committed_all(topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    read_to_end(topic, "read_committed").await
}

/// Every record of `topic`, those of open and aborted transactions included.
pub async fn read_uncommitted_all(topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    read_to_end(topic, "read_uncommitted").await
}

async fn read_to_end(topic: &str, isolation: &str) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::{Message, Offset, TopicPartitionList};
    let topic = topic.to_string();
    let isolation = isolation.to_string();
    tokio::task::spawn_blocking(move || {
        let mut cfg = kafka().consumer("touchstream-tests", &unique("reader-"));
        cfg.set("enable.partition.eof", "true")
            .set("isolation.level", &isolation);
        let consumer: BaseConsumer = cfg.create().unwrap();
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .unwrap();
        let partitions: Vec<i32> = metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect();
        assert!(!partitions.is_empty(), "{topic} has no partitions");
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(&topic, *p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut at_end = std::collections::HashSet::new();
        let mut out = Vec::new();
        let until = Instant::now() + Duration::from_secs(60);
        while at_end.len() < partitions.len() {
            assert!(
                Instant::now() < until,
                "reading {topic} to its end took over 60 s ({} records so far)",
                out.len()
            );
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    at_end.remove(&m.partition());
                    out.push(m.detach());
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                // librdkafka reports a dropped connection (an idle one closed by the broker,
                // a busy machine) and reconnects by itself: keep reading.
                Some(Err(KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::AllBrokersDown
                    | rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure,
                ))) => {}
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        out
    })
    .await
    .unwrap()
}

/// Decodes every record of the attributed topic read so far.
pub fn decode_attributed(
    records: &[rdkafka::message::OwnedMessage],
) -> Vec<touchstream_model::AttributedEvent> {
    use rdkafka::Message;
    records
        .iter()
        .map(|m| touchstream_avro::decode(m.payload().unwrap_or_default()).unwrap())
        .collect()
}

/// A TCP proxy on 127.0.0.1 that a test can cut and restore, to make a real server vanish for
/// one client without stopping it for every other test.
pub struct FlakyProxy {
    pub port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FlakyProxy {
    pub async fn start(upstream: &'static str) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(AtomicBool::new(true));
        let gate = open.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !gate.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let gate = gate.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    // Copy until either side closes, or the proxy is cut.
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = async { while gate.load(Ordering::SeqCst) { tokio::time::sleep(Duration::from_millis(50)).await } } => {}
                    }
                });
            }
        });
        Self { port, open, task }
    }

    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Service {
    /// SIGSTOP: the process hangs where it is (a GC pause, a stalled VM), holding whatever
    /// transaction it had open, until [`Service::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Service::pause`]: the zombie wakes up and carries on.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {} failed", self.child.id());
    }
}

/// The sum of the samples of `name` on a binary's `/metrics` page (`url` is its ops base URL)
/// whose line also contains `labels` ("" for every label set); 0 when there is none. `name` may
/// carry a label prefix, e.g. `touchstream_sink_rows_inserted_total{table="events"}`.
pub async fn metric_sum(url: &str, name: &str, labels: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
                && l.contains(labels)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
