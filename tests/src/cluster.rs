//! The local cluster of `deploy/services.sh start cluster` (three Kafka brokers, ZooKeeper, two
//! ClickHouse shards of two replicas each, cluster `touchstream`) and a pipeline on it: topics
//! with three replicas, a database on every server (the sink's migrations create the cluster
//! tables), and services that a test can kill and start again with the same identity
//! (transactional id, group instance id, ports), the way a supervisor restarts a crashed
//! process.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use touchstream_kafka::{KafkaConfig, Topics, ensure_topics};

use crate::{Service, free_port, run_detached, unique, wait_ready};

/// The cluster's brokers.
pub const KAFKA: &str = "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096";
/// The Kafka nodes, in `deploy/services.sh cluster-node` names.
pub const KAFKA_NODES: [&str; 3] = ["kafka-1", "kafka-2", "kafka-3"];
/// The ClickHouse cluster's name in the servers' `remote_servers`.
pub const CLUSTER: &str = "touchstream";
/// (node, HTTP URL, native address), in the order of `system.clusters`: shard 1 replicas 1
/// and 2, then shard 2.
pub const CLICKHOUSE: [(&str, &str, &str); 4] = [
    (
        "clickhouse-1-1",
        "http://127.0.0.1:18123",
        "127.0.0.1:19001",
    ),
    (
        "clickhouse-1-2",
        "http://127.0.0.1:18124",
        "127.0.0.1:19002",
    ),
    (
        "clickhouse-2-1",
        "http://127.0.0.1:18125",
        "127.0.0.1:19003",
    ),
    (
        "clickhouse-2-2",
        "http://127.0.0.1:18126",
        "127.0.0.1:19004",
    ),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `deploy/services.sh ARGS` and returns what it logged; panics when it fails.
pub fn services(args: &[&str]) -> String {
    let out = Command::new("deploy/services.sh")
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "deploy/services.sh {args:?} failed:\n{text}"
    );
    text
}

/// Starts whatever part of the cluster does not answer (about a second when all of it does).
pub fn up() {
    services(&["start", "cluster"]);
}

/// `deploy/services.sh cluster-node ACTION NODE` (start, stop, kill, pause, resume); `start`
/// returns once the node serves again.
pub fn node(action: &str, node: &str) {
    services(&["cluster-node", action, node]);
}

pub fn kafka() -> KafkaConfig {
    KafkaConfig {
        brokers: KAFKA.into(),
        ..KafkaConfig::default()
    }
}

/// The pipeline's topics on the cluster under a prefix of their own (three replicas, two in
/// sync for a write), deleted on drop.
pub struct ClusterTopics {
    pub topics: Topics,
}

impl ClusterTopics {
    pub async fn create(partitions: i32) -> Self {
        let mut topics = Topics::with_prefix(&unique("faults."));
        topics.partitions = partitions;
        topics.replication = 3;
        topics.min_insync_replicas = Some(2);
        let specs: Vec<_> = Self::names(&topics)
            .iter()
            .map(|t| topics.spec(t))
            .collect();
        ensure_topics(&kafka(), &specs).await.unwrap();
        Self { topics }
    }

    fn names(t: &Topics) -> [String; 6] {
        [
            t.raw.clone(),
            t.attributed.clone(),
            t.dlq.clone(),
            t.changelog.clone(),
            t.person.clone(),
            t.person_changelog.clone(),
        ]
    }

    /// Environment that points a binary at these topics on the cluster's brokers.
    pub fn env(&self, binary: &str) -> Vec<(String, String)> {
        let b = binary.to_ascii_uppercase();
        let p = format!("TOUCHSTREAM_{b}__TOPICS__");
        let t = &self.topics;
        vec![
            (format!("TOUCHSTREAM_{b}__KAFKA__BROKERS"), KAFKA.into()),
            (format!("{p}RAW"), t.raw.clone()),
            (format!("{p}ATTRIBUTED"), t.attributed.clone()),
            (format!("{p}DLQ"), t.dlq.clone()),
            (format!("{p}CHANGELOG"), t.changelog.clone()),
            (format!("{p}PERSON"), t.person.clone()),
            (format!("{p}PERSON_CHANGELOG"), t.person_changelog.clone()),
            (format!("{p}PARTITIONS"), t.partitions.to_string()),
            (format!("{p}REPLICATION"), t.replication.to_string()),
            (format!("{p}MIN_INSYNC_REPLICAS"), "2".into()),
        ]
    }
}

impl Drop for ClusterTopics {
    fn drop(&mut self) {
        let names = Self::names(&self.topics);
        run_detached(async move {
            let admin: AdminClient<DefaultClientContext> =
                kafka().admin("touchstream-tests").create().unwrap();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
        });
    }
}

/// A database of its own on every server of the cluster (created by the sink's migrations),
/// dropped on drop.
pub struct ClusterDatabase {
    pub name: String,
    /// Where the sink's config file was written.
    config: PathBuf,
}

impl ClusterDatabase {
    pub fn new() -> Self {
        let name = unique("ts_faults_");
        let replica_urls: String = CLICKHOUSE
            .iter()
            .map(|(_, http, native)| format!("\"{native}\" = \"{http}\"\n"))
            .collect();
        let config = std::env::temp_dir().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[sink.clickhouse]\nurl = \"{}\"\ndatabase = \"{name}\"\ncluster = \"{CLUSTER}\"\n\
                 [sink.clickhouse.replica_urls]\n{replica_urls}",
                CLICKHOUSE[0].1
            ),
        )
        .unwrap();
        Self { name, config }
    }

    /// The sink's config file (`TOUCHSTREAM_CONFIG`): the cluster and its replicas' URLs.
    pub fn sink_config(&self) -> String {
        self.config.display().to_string()
    }

    /// A query as `default` on the first server that answers; panics with ClickHouse's message
    /// when a server refuses it.
    pub async fn query(&self, sql: &str) -> String {
        let mut last = String::new();
        for (node, url, _) in CLICKHOUSE {
            match query_on(url, Some(&self.name), sql).await {
                Ok(text) => return text,
                Err(e) if e.starts_with("unreachable") => last = format!("{node}: {e}"),
                Err(e) => panic!("{node} refused {sql:?}: {e}"),
            }
        }
        panic!("no ClickHouse server of the cluster answers: {last}")
    }

    /// A query on one server (an index into [`CLICKHOUSE`]).
    pub async fn query_node(&self, node: usize, sql: &str) -> String {
        let (name, url, _) = CLICKHOUSE[node];
        query_on(url, Some(&self.name), sql)
            .await
            .unwrap_or_else(|e| panic!("{name}: {sql:?}: {e}"))
    }
}

impl Default for ClusterDatabase {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ClusterDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::fs::remove_file(&self.config);
        run_detached(async move {
            // All at once: dropping replicated tables that are still merging and fetching
            // takes each server a while.
            let sql = format!("DROP DATABASE IF EXISTS {name}");
            futures::future::join_all(
                CLICKHOUSE
                    .iter()
                    .map(|(_, url, _)| query_on(url, None, &sql)),
            )
            .await;
        });
    }
}

/// A query over one server's HTTP interface as `default`: the answer, or why not
/// ("unreachable: …" when the server did not answer at all).
pub async fn query_on(url: &str, database: Option<&str>, sql: &str) -> Result<String, String> {
    let mut request = reqwest::Client::new()
        .post(url)
        .timeout(Duration::from_secs(120))
        .body(sql.to_string());
    if let Some(db) = database {
        request = request.query(&[("database", db)]);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("unreachable: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// A service that can be killed (SIGKILL) and started again with the same environment, so the
/// same transactional id, group instance id and ops port: what a supervisor does with a
/// crashed process.
pub struct Restartable {
    /// e.g. `enricher-2`.
    pub label: String,
    binary: &'static str,
    env: Vec<(String, String)>,
    /// The base URL of its ops endpoints (the collector's API too).
    pub url: String,
    service: Option<Service>,
    /// Log files of every incarnation, oldest first.
    pub logs: Vec<PathBuf>,
    /// Its group instance id (static membership), when it has one.
    pub instance_id: Option<String>,
}

impl Restartable {
    /// Not started yet; `ops_key` is the environment key of its listen address.
    pub fn new(binary: &'static str, label: &str, ops_key: &str, env: &[(String, String)]) -> Self {
        let port = free_port();
        let mut env = env.to_vec();
        env.push((ops_key.to_string(), format!("127.0.0.1:{port}")));
        Self {
            label: label.to_string(),
            binary,
            env,
            url: format!("http://127.0.0.1:{port}"),
            service: None,
            logs: Vec::new(),
            instance_id: None,
        }
    }

    /// Starts it and waits until `/readyz` answers 200.
    pub async fn start(&mut self) {
        self.spawn();
        let service = self.service.as_ref().unwrap();
        wait_ready(&format!("{}/readyz", self.url), service).await;
    }

    /// Starts it without waiting.
    pub fn spawn(&mut self) {
        assert!(self.service.is_none(), "{} is running", self.label);
        let service = Service::spawn(self.binary, &[], &self.env);
        self.logs.push(service.log.clone());
        self.service = Some(service);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut s) = self.service.take() {
            s.kill();
        }
    }

    /// SIGTERM and wait; whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        self.service.take().is_some_and(|mut s| s.terminate())
    }

    pub fn is_running(&self) -> bool {
        self.service.is_some()
    }

    /// Every incarnation's log, concatenated.
    pub fn log_text(&self) -> String {
        self.logs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                format!(
                    "--- {} incarnation {} ({})\n{}",
                    self.label,
                    i + 1,
                    l.display(),
                    std::fs::read_to_string(l).unwrap_or_default()
                )
            })
            .collect()
    }
}

/// How many instances of each stage.
#[derive(Clone, Copy, Debug)]
pub struct Instances {
    pub producers: usize,
    pub enrichers: usize,
    pub sinks: usize,
}

/// Producers, enrichers and sinks on [`ClusterTopics`] and a [`ClusterDatabase`], each instance
/// with an identity of its own that survives a restart.
pub struct ClusterPipeline {
    pub producers: Vec<Restartable>,
    pub enrichers: Vec<Restartable>,
    pub sinks: Vec<Restartable>,
    /// The enricher group and the sink group.
    pub enricher_group: String,
    pub sink_group: String,
}

impl ClusterPipeline {
    /// Starts the sinks (the first one migrates the cluster database), then the enrichers one
    /// by one, then the producers. `overrides` are added to every binary's environment whose
    /// prefix they carry (`TOUCHSTREAM_SINK__…`).
    pub async fn start(
        topics: &ClusterTopics,
        db: &ClusterDatabase,
        n: Instances,
        overrides: &[(&str, &str)],
    ) -> Self {
        let run = unique("");
        let extra = |binary: &str| -> Vec<(String, String)> {
            let prefix = format!("TOUCHSTREAM_{}__", binary.to_ascii_uppercase());
            overrides
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let enricher_group = format!("enricher-{run}");
        let sink_group = format!("sink-{run}");

        let mut sinks = Vec::new();
        for i in 1..=n.sinks {
            let mut env = topics.env("sink");
            let instance = format!("sink-{run}-{i}");
            env.extend([
                ("TOUCHSTREAM_CONFIG".into(), db.sink_config()),
                ("TOUCHSTREAM_SINK__GROUP_ID".into(), sink_group.clone()),
                (
                    "TOUCHSTREAM_SINK__GROUP_INSTANCE_ID".into(),
                    instance.clone(),
                ),
            ]);
            env.extend(extra("sink"));
            let mut sink = Restartable::new(
                "sink",
                &format!("sink-{i}"),
                "TOUCHSTREAM_SINK__OPS__LISTEN",
                &env,
            );
            sink.instance_id = Some(instance);
            sink.start().await;
            sinks.push(sink);
        }
        let mut enrichers = Vec::new();
        for i in 1..=n.enrichers {
            let mut env = topics.env("enricher");
            let instance = format!("enricher-{run}-{i}");
            env.extend([
                (
                    "TOUCHSTREAM_ENRICHER__GROUP_ID".into(),
                    enricher_group.clone(),
                ),
                (
                    "TOUCHSTREAM_ENRICHER__TRANSACTIONAL_ID".into(),
                    instance.clone(),
                ),
                (
                    "TOUCHSTREAM_ENRICHER__SITE_HOSTS".into(),
                    "[shop.example]".into(),
                ),
            ]);
            env.extend(extra("enricher"));
            let mut enricher = Restartable::new(
                "enricher",
                &format!("enricher-{i}"),
                "TOUCHSTREAM_ENRICHER__OPS__LISTEN",
                &env,
            );
            // The group instance id defaults to the transactional id.
            enricher.instance_id = Some(instance);
            enricher.start().await;
            enrichers.push(enricher);
        }
        let mut producers = Vec::new();
        for i in 1..=n.producers {
            let mut env = topics.env("producer");
            env.extend(extra("producer"));
            let mut producer = Restartable::new(
                "producer",
                &format!("producer-{i}"),
                "TOUCHSTREAM_PRODUCER__LISTEN",
                &env,
            );
            producer.start().await;
            producers.push(producer);
        }
        Self {
            producers,
            enrichers,
            sinks,
            enricher_group,
            sink_group,
        }
    }

    /// The collectors' base URLs.
    pub fn collectors(&self) -> Vec<String> {
        self.producers.iter().map(|p| p.url.clone()).collect()
    }

    /// Every instance, for readiness polling: (label, ops base URL).
    pub fn ops(&self) -> Vec<(String, String)> {
        self.producers
            .iter()
            .chain(&self.enrichers)
            .chain(&self.sinks)
            .map(|s| (s.label.clone(), s.url.clone()))
            .collect()
    }

    /// Every instance's logs, for a failing assertion.
    pub fn logs(&self) -> String {
        self.producers
            .iter()
            .chain(&self.enrichers)
            .chain(&self.sinks)
            .map(|s| {
                format!(
                    "{}: {}\n",
                    s.label,
                    s.logs
                        .iter()
                        .map(|l| l.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect()
    }
}
