use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};

use crate::{KafkaConfig, KafkaError};

/// The pipeline's topic names (overridable, e.g. one set per test or per environment).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    /// Accepted events, Avro `RawEvent`, key = `site_id/anonymous_id`.
    pub raw: String,
    /// Enriched events, Avro `AttributedEvent`, key = `site_id/anonymous_id`.
    pub attributed: String,
    /// Everything that could not be processed, Avro `DlqRecord`, with the reason.
    pub dlq: String,
    /// The enricher's device state (compacted), one partition per raw partition.
    pub changelog: String,
    /// The enricher's own repartition topic: records for a user, key = `site_id/user_id`.
    pub person: String,
    /// The enricher's user state (compacted), one partition per person partition.
    pub person_changelog: String,
    /// Erasure requests (compacted, JSON `ForgetRequest`, key = `site/kind/id`): the ids the
    /// DLQ tools hide, since a record cannot be deleted from the DLQ topic.
    pub forgotten: String,
    /// Partitions for topics created at start-up.
    pub partitions: i32,
    /// Replication factor for topics created at start-up.
    pub replication: i32,
    /// `min.insync.replicas` of topics created at start-up: how many replicas must have an
    /// `acks=all` write before it is acknowledged. Default: a majority of `replication` (2 of
    /// 3), so one broker may be lost without losing an acknowledged record or refusing writes;
    /// with one replica, the broker's own default.
    pub min_insync_replicas: Option<i32>,
}

impl Default for Topics {
    fn default() -> Self {
        Self::with_prefix("touchstream")
    }
}

impl Topics {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            raw: format!("{prefix}.events.raw"),
            attributed: format!("{prefix}.events.attributed"),
            dlq: format!("{prefix}.events.dlq"),
            changelog: format!("{prefix}.enricher.state"),
            person: format!("{prefix}.enricher.person"),
            person_changelog: format!("{prefix}.enricher.person-state"),
            forgotten: format!("{prefix}.forgotten"),
            partitions: 4,
            replication: 1,
            min_insync_replicas: None,
        }
    }

    /// The `min.insync.replicas` topics are created with (none: the broker's default).
    pub fn min_insync(&self) -> Option<i32> {
        match self.min_insync_replicas {
            Some(n) => Some(n),
            None if self.replication > 1 => Some(self.replication / 2 + 1),
            None => None,
        }
    }

    pub fn spec(&self, name: &str) -> TopicSpec {
        TopicSpec {
            name: name.to_string(),
            partitions: self.partitions,
            replication: self.replication,
            min_insync_replicas: self.min_insync(),
            compacted: name == self.changelog
                || name == self.person_changelog
                || name == self.forgotten,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    pub min_insync_replicas: Option<i32>,
    pub compacted: bool,
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn ensure_topics(cfg: &KafkaConfig, specs: &[TopicSpec]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = cfg
        .admin("touchstream-admin")
        .create()
        .map_err(|source| KafkaError::Create {
            what: "admin client",
            source,
        })?;
    let min_insync: Vec<Option<String>> = specs
        .iter()
        .map(|s| s.min_insync_replicas.map(|n| n.to_string()))
        .collect();
    let new: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&min_insync)
        .map(|(s, min_insync)| {
            let mut t = NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(s.replication),
            );
            if s.compacted {
                t = t.set("cleanup.policy", "compact");
            }
            if let Some(n) = min_insync {
                t = t.set("min.insync.replicas", n);
            }
            t
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let results = admin
        .create_topics(&new, &opts)
        .await
        .map_err(KafkaError::Admin)?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}
