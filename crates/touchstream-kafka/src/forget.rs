//! Putting an erasure request on Kafka (`touchstream forget` and the collector's
//! `POST /v1/forget` share this): the forgotten-ids topic first, then every partition of the
//! raw topic, with the header that tells the enricher it is not an event.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use touchstream_model::forget::{self, ForgetRequest};

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("topic {0} does not exist or has no partitions")]
    NoPartitions(String),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Writes `request` to the forgotten-ids topic and to each of the `partitions` partitions of
/// the raw topic (see [`partition_count`]); returns once Kafka acknowledged every copy. A
/// failure part-way is safe to retry: the stages handle a request again as a no-op.
pub async fn submit(
    producer: &FutureProducer,
    raw: &str,
    partitions: i32,
    forgotten: &str,
    request: &ForgetRequest,
    timeout: Duration,
) -> Result<(), SubmitError> {
    let payload = request.to_json();
    // The forgotten-ids list first: a DLQ reader hides the id before any state is gone.
    producer
        .send(
            FutureRecord::to(forgotten)
                .key(&request.forgotten_key())
                .payload(&payload),
            timeout,
        )
        .await
        .map_err(|(e, _)| e)?;
    for p in 0..partitions {
        let headers = OwnedHeaders::new().insert(Header {
            key: forget::KIND_HEADER,
            value: Some(forget::KIND_FORGET),
        });
        producer
            .send(
                FutureRecord::to(raw)
                    .key(&request.request_id)
                    .partition(p)
                    .headers(headers)
                    .payload(&payload),
                timeout,
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// The partitions of `topic` (a blocking metadata request: run it off an async runtime).
pub fn partition_count<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<i32, SubmitError> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    let n = metadata
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32);
    if n == 0 {
        return Err(SubmitError::NoPartitions(topic.to_owned()));
    }
    Ok(n)
}
