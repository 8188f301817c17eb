//! [`DlqRecord`]: what a stage could not process, with why, as one type every stage builds
//! through the same constructors.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Most bytes of an input a DLQ record keeps. The broker's default `message.max.bytes` is
/// about 1 MB for the whole record; this leaves room for the reason and the other fields.
pub const MAX_DLQ_PAYLOAD: usize = 768 * 1024;
/// Most bytes of a reason kept (a rejected batch can have many problems).
pub const MAX_DLQ_REASON: usize = 8 * 1024;

/// Which stage dead-lettered a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Producer,
    Enricher,
    Sink,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Producer, Stage::Enricher, Stage::Sink];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Producer => "producer",
            Stage::Enricher => "enricher",
            Stage::Sink => "sink",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Where a dead-lettered record was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePosition<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
}

/// Something touchstream could not process, with why (schema `schemas/avro/dlq_record.avsc`).
/// Build one with [`DlqRecord::producer`] or [`DlqRecord::from_source`]: they cut an input too
/// large for the topic and record its size and digest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DlqRecord {
    /// `producer`, `enricher` or `sink`.
    pub stage: String,
    pub reason: String,
    /// The input as received (cut to [`MAX_DLQ_PAYLOAD`]; then `original_size` is set).
    #[serde(with = "apache_avro::serde_avro_bytes")]
    pub payload: Vec<u8>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    pub failed_at: i64,
    /// The input's size when `payload` was cut.
    #[serde(default)]
    pub original_size: Option<i64>,
    /// SHA-256 (lowercase hex) of the whole input when `payload` was cut.
    #[serde(default)]
    pub original_sha256: Option<String>,
    /// The source record's key (enricher, sink).
    #[serde(default, with = "apache_avro::serde_avro_bytes_opt")]
    pub source_key: Option<Vec<u8>>,
    /// The Content-Encoding of a request body kept as received (producer).
    #[serde(default)]
    pub content_encoding: Option<String>,
}

impl DlqRecord {
    /// Input the collector refused: a request body or one event, `failed_at` in epoch ms.
    pub fn producer(input: &[u8], reason: &str, failed_at: i64) -> Self {
        Self::new(Stage::Producer, input, reason, None, failed_at)
    }

    /// A record read from a topic that a stage could not process.
    pub fn from_source(
        stage: Stage,
        input: &[u8],
        reason: &str,
        source: SourcePosition<'_>,
        failed_at: i64,
    ) -> Self {
        Self::new(stage, input, reason, Some(source), failed_at)
    }

    /// The payload is a request body in this Content-Encoding (e.g. gzip).
    pub fn with_content_encoding(mut self, encoding: Option<&str>) -> Self {
        self.content_encoding = encoding.map(str::to_string);
        self
    }

    fn new(
        stage: Stage,
        input: &[u8],
        reason: &str,
        source: Option<SourcePosition<'_>>,
        failed_at: i64,
    ) -> Self {
        let cut = input.len() > MAX_DLQ_PAYLOAD;
        let payload = input[..input.len().min(MAX_DLQ_PAYLOAD)].to_vec();
        Self {
            stage: stage.as_str().to_string(),
            reason: shorten(reason, MAX_DLQ_REASON),
            payload,
            source_topic: source.as_ref().map(|s| s.topic.to_string()),
            source_partition: source.as_ref().map(|s| s.partition),
            source_offset: source.as_ref().map(|s| s.offset),
            failed_at,
            original_size: cut.then_some(input.len() as i64),
            original_sha256: cut.then(|| sha256_hex(input)),
            source_key: source.and_then(|s| s.key.map(<[u8]>::to_vec)),
            content_encoding: None,
        }
    }

    /// Cuts the payload to at most `max` bytes, recording the input's size and digest if it
    /// was whole until now (a topic configured for smaller records than [`MAX_DLQ_PAYLOAD`]).
    pub fn cut_to(&mut self, max: usize) {
        if self.payload.len() <= max {
            return;
        }
        if self.original_size.is_none() {
            self.original_size = Some(self.payload.len() as i64);
            self.original_sha256 = Some(sha256_hex(&self.payload));
        }
        self.payload.truncate(max);
    }

    /// Whether `payload` is the whole input (nothing was cut).
    pub fn is_whole(&self) -> bool {
        self.original_size.is_none()
    }

    pub fn stage(&self) -> Option<Stage> {
        Stage::parse(&self.stage)
    }
}

/// SHA-256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keeps_small_inputs_whole_and_cuts_large_ones_with_size_and_digest() {
        let small = DlqRecord::producer(b"{}", "bad", 1);
        assert!(small.is_whole());
        assert_eq!(small.payload, b"{}");
        assert_eq!(small.stage(), Some(Stage::Producer));
        let big = vec![b'x'; MAX_DLQ_PAYLOAD + 10];
        let r = DlqRecord::from_source(
            Stage::Sink,
            &big,
            &"r".repeat(MAX_DLQ_REASON * 2),
            SourcePosition {
                topic: "t",
                partition: 2,
                offset: 7,
                key: Some(b"k"),
            },
            5,
        );
        assert_eq!(r.payload.len(), MAX_DLQ_PAYLOAD);
        assert_eq!(r.original_size, Some(big.len() as i64));
        assert_eq!(r.original_sha256.as_deref().map(str::len), Some(64));
        assert_eq!(r.original_sha256, Some(sha256_hex(&big)));
        assert!(r.reason.len() < MAX_DLQ_REASON + 40);
        assert_eq!(
            (
                r.source_topic.as_deref(),
                r.source_partition,
                r.source_offset
            ),
            (Some("t"), Some(2), Some(7))
        );
        assert_eq!(r.source_key.as_deref(), Some(&b"k"[..]));
        // Cut further, the size and digest stay those of the whole input.
        let mut again = r.clone();
        again.cut_to(1000);
        assert_eq!(again.payload.len(), 1000);
        assert_eq!(
            (again.original_size, &again.original_sha256),
            (r.original_size, &r.original_sha256)
        );
        let mut whole = DlqRecord::producer(b"0123456789", "r", 1);
        whole.cut_to(4);
        assert_eq!(whole.payload, b"0123");
        assert_eq!(whole.original_size, Some(10));
        assert_eq!(whole.original_sha256, Some(sha256_hex(b"0123456789")));
        // The digest of a known input (FIPS 180-2 example "abc").
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
