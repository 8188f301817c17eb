//! Kafka IO: the client settings that carry touchstream's guarantees, in one place.
//!
//! - producers are idempotent with `acks=all` (an acknowledged record is on every in-sync replica);
//! - consumers never auto-commit and read only committed transactional data
//!   (`isolation.level=read_committed`), so offsets move only after the work is durable;
//! - topics are created explicitly ([`ensure_topics`]): the broker has auto-creation off.

mod brokers;
mod dlq;
pub mod forget;
mod lag;
mod topics;

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

pub use brokers::watch_brokers;
pub use dlq::{DlqError, DlqWriter};
pub use lag::LagContext;
pub use topics::{TopicSpec, Topics, ensure_topics};

/// Connection settings shared by every client of one binary.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Extra librdkafka properties, applied last (e.g. `security.protocol`, `sasl.*`).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            properties: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot create the Kafka {what}: {source}")]
    Create {
        what: &'static str,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("Kafka admin request failed: {0}")]
    Admin(rdkafka::error::KafkaError),
    #[error("cannot start the thread that watches the brokers: {0}")]
    Watch(std::io::Error),
}

impl KafkaConfig {
    fn base(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id);
        c
    }

    fn finish(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// Settings for the admin client.
    pub fn admin(&self, client_id: &str) -> ClientConfig {
        self.finish(self.base(client_id))
    }

    /// An idempotent, `acks=all` producer: no duplicates from retries, no loss on leader change.
    pub fn producer(&self, client_id: &str) -> ClientConfig {
        let mut c = self.base(client_id);
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        self.finish(c)
    }

    /// A transactional producer for consume-transform-produce (the enricher).
    ///
    /// `transaction.timeout.ms` is how long a transaction left open by a process that died
    /// (and is not started again, which would abort it at once) holds back every
    /// `read_committed` reader of the partitions it wrote to, and the restore of its
    /// partitions by the other instances: 20 s, several times what a transaction takes even
    /// while its coordinator moves to another broker.
    pub fn transactional_producer(&self, client_id: &str, transactional_id: &str) -> ClientConfig {
        let mut c = self.producer(client_id);
        // librdkafka wants a record's delivery timeout within the transaction's.
        c.set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", "20000")
            .set("message.timeout.ms", "20000");
        self.finish(c)
    }

    /// A consumer in `group` that commits only what the caller says is done, and never sees
    /// records of aborted transactions.
    pub fn consumer(&self, client_id: &str, group: &str) -> ClientConfig {
        let mut c = self.base(client_id);
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000");
        self.finish(c)
    }
}
