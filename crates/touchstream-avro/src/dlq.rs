use serde::{Deserialize, Serialize};

/// Something touchstream could not process, with why (schema `schemas/avro/dlq_record.avsc`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DlqRecord {
    /// `producer`, `enricher` or `sink`.
    pub stage: String,
    pub reason: String,
    /// The input as received: JSON text, or the bytes of a record that would not decode.
    #[serde(with = "apache_avro::serde_avro_bytes")]
    pub payload: Vec<u8>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub failed_at: i64,
}
