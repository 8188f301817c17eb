use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use touchstream_avro::DlqRecord;

/// Writes [`DlqRecord`]s: whatever could not be processed, with why, so nothing is silently gone.
#[derive(Clone)]
pub struct DlqWriter {
    producer: FutureProducer,
    topic: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("cannot encode the DLQ record: {0}")]
    Encode(#[from] touchstream_avro::CodecError),
    #[error("cannot write to the DLQ topic {topic}: {source}")]
    Send {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
}

impl DlqWriter {
    pub fn new(producer: FutureProducer, topic: impl Into<String>) -> Self {
        Self {
            producer,
            topic: topic.into(),
        }
    }

    /// Sends and waits for the broker's acknowledgement.
    pub async fn send(&self, key: Option<&[u8]>, record: &DlqRecord) -> Result<(), DlqError> {
        let payload = touchstream_avro::encode(record)?;
        let mut r = FutureRecord::<[u8], [u8]>::to(&self.topic).payload(&payload);
        if let Some(k) = key {
            r = r.key(k);
        }
        self.producer
            .send(r, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(source, _)| DlqError::Send {
                topic: self.topic.clone(),
                source,
            })
    }
}
