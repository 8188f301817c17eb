//! Avro on the wire, as the Avro spec's *single-object encoding*: the marker `C3 01`, the
//! 8-byte CRC-64-AVRO (Rabin) fingerprint of the writer schema, then the binary datum.
//!
//! The fingerprint is what makes a payload self-identifying: a consumer that is handed bytes
//! written with a schema it does not know (another producer, a corrupt record, plain JSON)
//! says so with [`CodecError`] instead of decoding garbage. The schemas are the files in
//! `schemas/avro/`, compiled in. Both directions skip apache-avro's `Value` tree: encoding goes
//! straight from serde to Avro (the `Value` path measured 7× slower), decoding goes
//! straight from the bytes into the Rust type through our own schema-directed deserializer
//! (`de`; 4× apache-avro's `Value` path on an attributed event, and strict about truncation).

mod de;
mod dlq;
mod schemas;

use apache_avro::Schema;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use de::DecodeError;
pub use dlq::{DlqRecord, MAX_DLQ_PAYLOAD, MAX_DLQ_REASON, SourcePosition, Stage, sha256_hex};
pub use schemas::SchemaInfo;
use schemas::schema_of;
use touchstream_model::{AttributedEvent, RawEvent};

/// The two marker bytes of single-object encoding.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// A type that travels as Avro, with the schema file it is written with.
pub trait WireType: Serialize + DeserializeOwned {
    fn schema() -> &'static SchemaInfo;
}

impl WireType for RawEvent {
    fn schema() -> &'static SchemaInfo {
        schema_of(schemas::Kind::Raw)
    }
}

impl WireType for AttributedEvent {
    fn schema() -> &'static SchemaInfo {
        schema_of(schemas::Kind::Attributed)
    }
}

impl WireType for DlqRecord {
    fn schema() -> &'static SchemaInfo {
        schema_of(schemas::Kind::Dlq)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(
        "payload of {len} bytes is too short for Avro single-object encoding (needs at least {HEADER_LEN})"
    )]
    TooShort { len: usize },
    #[error(
        "payload is not Avro single-object encoded: starts with {found:02x?}, expected c3 01 (was it written by a touchstream producer?)"
    )]
    NotSingleObject { found: [u8; 2] },
    #[error(
        "payload was written with schema fingerprint {found}, but {expected_name} has fingerprint {expected} (and no earlier version it reads has {found}): an unknown or incompatible schema"
    )]
    UnknownSchema {
        found: String,
        expected: String,
        expected_name: &'static str,
    },
    #[error("corrupt {name} datum: {source}")]
    Corrupt {
        name: &'static str,
        source: DecodeError,
    },
    #[error("corrupt {name} datum: {extra} bytes left over after the record")]
    TrailingBytes { name: &'static str, extra: usize },
    #[error("cannot encode {name}: {source}")]
    Encode {
        name: &'static str,
        source: Box<apache_avro::Error>,
    },
}

/// Appends the single-object encoding of `value` to `buf`.
pub fn encode_into<T: WireType>(value: &T, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    let info = T::schema();
    let start = buf.len();
    buf.extend_from_slice(&info.header);
    apache_avro::write_avro_datum_ref(info.schema, value, buf).map_err(|e| {
        buf.truncate(start);
        CodecError::Encode {
            name: info.name,
            source: Box::new(e),
        }
    })?;
    Ok(())
}

pub fn encode<T: WireType>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut buf = Vec::with_capacity(512);
    encode_into(value, &mut buf)?;
    Ok(buf)
}

/// Decodes a payload written with the current schema of `T` or one of its earlier versions.
pub fn decode<T: WireType>(bytes: &[u8]) -> Result<T, CodecError> {
    let info = T::schema();
    let (mut body, writer, names) = check_header(bytes, info)?;
    // Straight from the bytes into `T`, strictly: a datum that ends early is an error (see
    // `de`), so a truncated payload never decodes into a record with fields missing. Fields
    // an earlier writer did not have take their serde defaults.
    let decoded =
        de::from_slice::<T>(&mut body, writer, names).map_err(|e| CodecError::Corrupt {
            name: info.name,
            source: e,
        })?;
    if !body.is_empty() {
        return Err(CodecError::TrailingBytes {
            name: info.name,
            extra: body.len(),
        });
    }
    Ok(decoded)
}

type Checked<'a> = (&'a [u8], &'static Schema, &'static de::Names<'static>);

fn check_header<'a>(bytes: &'a [u8], info: &'static SchemaInfo) -> Result<Checked<'a>, CodecError> {
    if bytes.len() < HEADER_LEN {
        return Err(CodecError::TooShort { len: bytes.len() });
    }
    let (header, body) = bytes.split_at(HEADER_LEN);
    if header[..2] != MAGIC {
        return Err(CodecError::NotSingleObject {
            found: [header[0], header[1]],
        });
    }
    match info.writer(&header[2..]) {
        Some((schema, names)) => Ok((body, schema, names)),
        None => Err(CodecError::UnknownSchema {
            found: hex(&header[2..]),
            expected: hex(&info.header[2..]),
            expected_name: info.name,
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The parsed schema, for tools that want it (e.g. to register it in a schema registry).
pub fn avro_schema<T: WireType>() -> &'static Schema {
    T::schema().schema
}

#[cfg(test)]
mod tests;
