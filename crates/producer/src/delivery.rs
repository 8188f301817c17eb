//! Kafka delivery with back-pressure: a semaphore bounds the events accepted but not yet
//! acknowledged, so a slow or absent broker turns into quick 503s instead of unbounded memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::Semaphore;
use touchstream_avro::DlqRecord;
use touchstream_kafka::DlqWriter;
use touchstream_model::RawEvent;

use crate::ProducerConfig;
use crate::metrics;

pub struct Delivery {
    producer: FutureProducer,
    topic: String,
    /// The erasure requests' forgotten-ids topic.
    forgotten: String,
    dlq: DlqWriter,
    permits: Arc<Semaphore>,
    capacity: usize,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the collector has too many events waiting for Kafka; retry later")]
    Overloaded,
    #[error("Kafka did not acknowledge the events: {0}; retry later")]
    Unavailable(String),
    #[error("cannot encode an event: {0}")]
    Encode(#[from] touchstream_avro::CodecError),
}

impl Delivery {
    pub fn new(cfg: &ProducerConfig) -> anyhow::Result<Self> {
        let mut client = cfg.kafka.producer("touchstream-producer");
        client
            .set("message.timeout.ms", cfg.produce_timeout_ms.to_string())
            .set(
                "queue.buffering.max.messages",
                cfg.max_in_flight_events.to_string(),
            );
        let producer: FutureProducer = client.create()?;
        let dlq = DlqWriter::new(producer.clone(), cfg.topics.dlq.clone());
        Ok(Self {
            producer,
            topic: cfg.topics.raw.clone(),
            forgotten: cfg.topics.forgotten.clone(),
            dlq,
            permits: Arc::new(Semaphore::new(cfg.max_in_flight_events)),
            capacity: cfg.max_in_flight_events,
            timeout: Duration::from_millis(cfg.produce_timeout_ms),
        })
    }

    /// Puts every event on the raw topic and returns once Kafka acknowledged all of them.
    pub async fn send(&self, events: &[RawEvent]) -> Result<(), DeliveryError> {
        if events.is_empty() {
            return Ok(());
        }
        let n = u32::try_from(events.len()).map_err(|_| DeliveryError::Overloaded)?;
        let permit = self
            .permits
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| DeliveryError::Overloaded)?;
        metrics::in_flight(self.in_flight());
        let started = Instant::now();
        let payloads = events
            .iter()
            .map(touchstream_avro::encode)
            .collect::<Result<Vec<_>, _>>()?;
        let sends = events.iter().zip(&payloads).map(|(e, payload)| {
            let record = FutureRecord::to(&self.topic)
                .key(e.anonymous_id.as_bytes())
                .payload(payload.as_slice());
            // No waiting for queue space: a full local queue is an overload, answered with 503.
            self.producer.send(record, Duration::ZERO)
        });
        let results =
            tokio::time::timeout(self.timeout + Duration::from_secs(1), join_all(sends)).await;
        let outcome = match results {
            Err(_) => Err(DeliveryError::Unavailable(format!(
                "no acknowledgement within {:?}",
                self.timeout
            ))),
            Ok(results) => match results.into_iter().find_map(Result::err) {
                None => Ok(()),
                Some((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    Err(DeliveryError::Overloaded)
                }
                Some((e, _)) => Err(DeliveryError::Unavailable(e.to_string())),
            },
        };
        metrics::produce_latency(started.elapsed());
        drop(permit);
        metrics::in_flight(self.in_flight());
        if outcome.is_err() {
            metrics::delivery_error();
        }
        outcome
    }

    fn in_flight(&self) -> usize {
        self.capacity
            .saturating_sub(self.permits.available_permits())
    }

    /// Writes records to the DLQ all at once, waiting at most the produce timeout for all of
    /// them together (not one after the other): with the broker down, a batch of rejects costs
    /// one timeout, not one per event. The records cut an input too large for the topic (see
    /// [`DlqRecord::producer`]), so none is refused for its size. A failure is logged and
    /// counted: the client was already told what was refused, so nothing is lost unseen.
    pub async fn dead_letter_all(&self, records: Vec<DlqRecord>) {
        if records.is_empty() {
            return;
        }
        let sends = records.iter().map(|r| self.dlq.send(None, r));
        let outcome = tokio::time::timeout(self.timeout, join_all(sends)).await;
        match outcome {
            Ok(results) => {
                for (r, result) in records.iter().zip(results) {
                    match result {
                        Ok(()) => metrics::dlq_written(),
                        Err(e) => {
                            metrics::dlq_failed();
                            tracing::error!(error = %e, reason = %r.reason, "could not write refused input to the DLQ");
                        }
                    }
                }
            }
            Err(_) => {
                for _ in &records {
                    metrics::dlq_failed();
                }
                tracing::error!(
                    records = records.len(),
                    "the DLQ did not acknowledge refused input within {:?}",
                    self.timeout
                );
            }
        }
    }

    /// Asks the broker for the raw topic's metadata: `Err` with why when it does not answer
    /// within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let probed = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map_err(|e| e.to_string())
                .and_then(|m| match m.topics().first() {
                    Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
                    Some(t) => Err(format!("topic {topic} is not available: {:?}", t.error())),
                    None => Err(format!("the broker knows no topic {topic}")),
                })
        })
        .await;
        probed.unwrap_or_else(|e| Err(e.to_string()))
    }

    /// Puts an erasure request on Kafka (every raw partition, and the forgotten-ids topic);
    /// returns the number of raw partitions once every copy is acknowledged.
    pub async fn forget(
        &self,
        request: &touchstream_model::forget::ForgetRequest,
    ) -> Result<i32, DeliveryError> {
        let producer = self.producer.clone();
        let (topic, timeout) = (self.topic.clone(), self.timeout);
        let partitions = tokio::task::spawn_blocking(move || {
            touchstream_kafka::forget::partition_count(producer.client(), &topic, timeout)
        })
        .await
        .map_err(|e| DeliveryError::Unavailable(e.to_string()))?
        .map_err(|e| DeliveryError::Unavailable(e.to_string()))?;
        touchstream_kafka::forget::submit(
            &self.producer,
            &self.topic,
            partitions,
            &self.forgotten,
            request,
            self.timeout,
        )
        .await
        .map_err(|e| DeliveryError::Unavailable(e.to_string()))?;
        Ok(partitions)
    }

    /// Waits until everything queued has been acknowledged (shutdown).
    pub async fn flush(&self) {
        let producer = self.producer.clone();
        let timeout = self.timeout;
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        match flushed {
            Ok(Ok(())) => tracing::info!("kafka producer flushed"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "kafka producer flush failed: some events may be unacknowledged")
            }
            Err(e) => tracing::error!(error = %e, "kafka producer flush task failed"),
        }
    }
}
