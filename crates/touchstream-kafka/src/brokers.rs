//! Which of the cluster's brokers answer, for `/readyz`: a client keeps working while one
//! broker of a replicated cluster is gone (the other replicas lead its partitions), so the
//! binaries stay ready, but an operator should see what is missing while it is missing.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, Producer};

use crate::{KafkaConfig, KafkaError};

/// Every `every`, asks the cluster for `topic`'s metadata, whose broker list holds only the
/// brokers the controller counts as alive (a killed broker drops out once its session times
/// out), and calls `report` with what is missing: `Some("broker 2 (host:port) …")` while a
/// broker seen earlier is not listed or no broker answers, `None` otherwise. Runs on a thread
/// of its own until `report` returns false.
pub fn watch_brokers(
    cfg: &KafkaConfig,
    client_id: &str,
    topic: &str,
    every: Duration,
    mut report: impl FnMut(Option<String>) -> bool + Send + 'static,
) -> Result<(), KafkaError> {
    let client: BaseProducer =
        cfg.admin(client_id)
            .create()
            .map_err(|source| KafkaError::Create {
                what: "metadata client",
                source,
            })?;
    let topic = topic.to_string();
    let spawned = std::thread::Builder::new()
        .name("kafka-brokers".into())
        .spawn(move || {
            let mut known: BTreeMap<i32, String> = BTreeMap::new();
            loop {
                let missing = match client
                    .client()
                    .fetch_metadata(Some(&topic), Duration::from_secs(2))
                {
                    Ok(metadata) => {
                        let listed: BTreeMap<i32, String> = metadata
                            .brokers()
                            .iter()
                            .map(|b| (b.id(), format!("{}:{}", b.host(), b.port())))
                            .collect();
                        known.extend(listed.clone());
                        let gone: Vec<String> = known
                            .iter()
                            .filter(|(id, _)| !listed.contains_key(id))
                            .map(|(id, addr)| format!("broker {id} ({addr})"))
                            .collect();
                        (!gone.is_empty()).then(|| {
                            format!(
                                "{} of {} brokers answer; missing: {} (their partitions are led by the other replicas)",
                                listed.len(),
                                known.len(),
                                gone.join(", ")
                            )
                        })
                    }
                    Err(e) => Some(format!("no broker answers a metadata request: {e}")),
                };
                if !report(missing) {
                    return;
                }
                std::thread::sleep(every);
            }
        });
    spawned.map(|_| ()).map_err(KafkaError::Watch)
}
