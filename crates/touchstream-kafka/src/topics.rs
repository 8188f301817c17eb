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
        }
    }

    pub fn spec(&self, name: &str) -> TopicSpec {
        TopicSpec {
            name: name.to_string(),
            partitions: self.partitions,
            replication: self.replication,
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
    let new: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| {
            let t = NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(s.replication),
            );
            if s.compacted {
                t.set("cleanup.policy", "compact")
            } else {
                t
            }
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
