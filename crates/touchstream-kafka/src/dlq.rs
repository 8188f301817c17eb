use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
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

    /// Sends and waits for the broker's acknowledgement. A record the broker or the client
    /// finds too large (a topic configured for smaller records than the constructors assume)
    /// is sent again with its payload cut to a quarter, down to 4 KiB: kept cut, never dropped.
    pub async fn send(&self, key: Option<&[u8]>, record: &DlqRecord) -> Result<(), DlqError> {
        let mut cut: Option<DlqRecord> = None;
        loop {
            let current = cut.as_ref().unwrap_or(record);
            match self.send_once(key, current).await {
                Err(DlqError::Send { source, .. })
                    if is_too_large(&source) && current.payload.len() > 4096 =>
                {
                    let mut smaller = current.clone();
                    smaller.cut_to((current.payload.len() / 4).max(4096));
                    tracing::warn!(
                        bytes = smaller.payload.len(),
                        "DLQ record too large for the topic; sending it cut further"
                    );
                    cut = Some(smaller);
                }
                other => return other,
            }
        }
    }

    async fn send_once(&self, key: Option<&[u8]>, record: &DlqRecord) -> Result<(), DlqError> {
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

fn is_too_large(e: &rdkafka::error::KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge)
    )
}
