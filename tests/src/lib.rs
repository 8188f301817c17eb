//! Helpers for touchstream's integration and end-to-end tests. Every test gets its own Kafka
//! topics ([`TestTopics`]) and its own ClickHouse database ([`ScratchDatabase`]), removed when
//! the test ends, so tests run in parallel against the one real broker and server that
//! `deploy/services.sh` started. Nothing here mocks Kafka or ClickHouse.

#![allow(clippy::unwrap_used)]

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
fn run_detached<F: Future<Output = ()> + Send + 'static>(f: F) {
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
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
        let specs: Vec<_> =
            [&topics.raw, &topics.attributed, &topics.dlq, &topics.changelog].iter().map(|t| topics.spec(t)).collect();
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
            (format!("{p}PARTITIONS"), t.partitions.to_string()),
        ]
    }
}

impl Drop for TestTopics {
    fn drop(&mut self) {
        let t = self.topics.clone();
        run_detached(async move {
            let admin: AdminClient<DefaultClientContext> = kafka().admin("touchstream-tests").create().unwrap();
            let names = [t.raw.as_str(), t.attributed.as_str(), t.dlq.as_str(), t.changelog.as_str()];
            let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
        });
    }
}

pub fn kafka() -> KafkaConfig {
    KafkaConfig { brokers: KAFKA_BROKERS.into(), ..KafkaConfig::default() }
}

/// A ClickHouse database of its own, dropped on drop.
pub struct ScratchDatabase {
    pub name: String,
}

impl ScratchDatabase {
    /// Only names it: the sink's migrations create it.
    pub fn new() -> Self {
        Self { name: unique("ts_test_") }
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
    let mut req = reqwest::Client::new().post(CLICKHOUSE_URL).body(sql.to_string());
    if let Some(db) = database {
        req = req.query(&[("database", db)]);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("ClickHouse at {CLICKHOUSE_URL} is not answering: {e}"));
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "ClickHouse refused {sql:?}: {text}");
    text
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Where `cargo build --bins` put the workspace binaries (next to this test's `deps/`).
pub fn binary_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --bins` first (make test does)", path.display());
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
        let log = std::env::temp_dir().join(format!("{}-{}.log", unique(&format!("{name}-")), std::process::id()));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary_path(name))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("TOUCHSTREAM_".to_string() + &name.to_ascii_uppercase() + "__LOG__FORMAT", "text")
            .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Self { name: name.to_string(), child, log }
    }

    /// SIGKILL: no drain, no flush (what a crash looks like).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
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
        assert!(Instant::now() < until, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `GET url` answers 200.
pub async fn wait_ready(url: &str, service: &Service) {
    let client = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < until, "{} not ready at {url} after 60 s; its log:\n{}", service.name, service.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
