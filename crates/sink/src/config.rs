use serde::{Deserialize, Serialize};
use touchstream_kafka::{KafkaConfig, Topics};
use touchstream_runtime::{LogConfig, OpsConfig};
use touchstream_warehouse::WarehouseConfig;
use touchstream_warehouse::privacy::RetentionConfig;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub group_id: String,
    /// Static group membership: a sink that restarts within the session timeout gets its
    /// partitions back at once, without a rebalance (which waits for the dead member's session
    /// to expire). Stable per instance and distinct between instances. Default:
    /// `touchstream-sink-<hostname>-<ops port>`; an empty string turns static membership off.
    pub group_instance_id: Option<String>,
    /// How long the group waits for a silent sink before handing its partitions to the others.
    /// It must outlast a move of the group coordinator (the brokers' `broker.session.timeout.ms`,
    /// 9 s by default, plus an election), or every broker loss that takes the coordinator makes
    /// the sinks drop and rejoin; a restarted sink is back at once whatever it is (static
    /// membership).
    pub session_timeout_ms: u32,
    /// The inserting user (in production one that may only INSERT into the touchstream tables).
    pub clickhouse: WarehouseConfig,
    /// Who applies migrations (DDL rights); defaults to the local `default` user.
    pub migrations_user: String,
    pub migrations_password: String,
    /// Apply migrations at start-up before consuming.
    pub migrate_on_start: bool,
    pub batch: BatchPolicy,
    pub retry: RetryPolicy,
    /// Months of rows kept per table, applied once a day (`[sink.retention]`).
    pub retention: RetentionConfig,
    pub ops: OpsConfig,
    pub log: LogConfig,
}

/// A batch is inserted when any bound is reached.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchPolicy {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_wait_ms: u64,
}

/// Exponential backoff with full jitter for a ClickHouse that is down or slow.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            kafka: KafkaConfig::default(),
            topics: Topics::default(),
            group_id: "touchstream-sink".into(),
            group_instance_id: None,
            session_timeout_ms: 15_000,
            clickhouse: WarehouseConfig {
                user: "touchstream_sink".into(),
                password: "touchstream_sink".into(),
                ..WarehouseConfig::default()
            },
            migrations_user: "default".into(),
            migrations_password: String::new(),
            migrate_on_start: true,
            batch: BatchPolicy::default(),
            retry: RetryPolicy::default(),
            retention: RetentionConfig::default(),
            ops: OpsConfig::on_port(9102),
            log: LogConfig::default(),
        }
    }
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            max_rows: 50_000,
            max_bytes: 16 << 20,
            max_wait_ms: 1_000,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_ms: 200,
            max_ms: 30_000,
        }
    }
}

impl SinkConfig {
    pub fn clickhouse_admin(&self) -> WarehouseConfig {
        WarehouseConfig {
            user: self.migrations_user.clone(),
            password: self.migrations_password.clone(),
            ..self.clickhouse.clone()
        }
    }

    /// The static membership id, if static membership is on.
    pub fn group_instance_id(&self) -> Option<String> {
        match &self.group_instance_id {
            Some(id) if id.is_empty() => None,
            Some(id) => Some(id.clone()),
            // Port 0 (any free port) is no identity: two sinks on one host would share it.
            None if self.ops.listen.port() == 0 => None,
            None => {
                let host =
                    std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
                Some(format!(
                    "touchstream-sink-{}-{}",
                    host.trim(),
                    self.ops.listen.port()
                ))
            }
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.batch.max_rows > 0, "batch.max_rows must be positive");
        anyhow::ensure!(self.batch.max_bytes > 0, "batch.max_bytes must be positive");
        anyhow::ensure!(
            self.retry.initial_ms > 0 && self.retry.max_ms >= self.retry.initial_ms,
            "retry: need 0 < initial_ms <= max_ms"
        );
        anyhow::ensure!(
            self.session_timeout_ms >= 3_000,
            "session_timeout_ms must be at least 3000 (three heartbeats)"
        );
        self.retention.validate().map_err(anyhow::Error::msg)?;
        Ok(())
    }
}
