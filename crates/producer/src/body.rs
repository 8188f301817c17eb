//! Reading a request body into a batch of JSON events, with a clear error for each way a body
//! can be wrong.

use std::io::Read;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use bytes::Bytes;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body decompresses to more than {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error(
        "content type {0:?} is not accepted: send application/json (or text/plain from sendBeacon)"
    )]
    UnsupportedMediaType(String),
    #[error("content encoding {0:?} is not accepted: send gzip or no encoding")]
    UnsupportedEncoding(String),
    #[error("body is not valid gzip: {0}")]
    BadGzip(String),
    #[error("body is not valid UTF-8 (first invalid byte at offset {0})")]
    InvalidUtf8(usize),
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("body must be one event object or an array of them, got {0}")]
    NotEvents(&'static str),
    #[error("batch is empty")]
    EmptyBatch,
    #[error("batch has {count} events, the limit is {limit}: split it")]
    TooManyEvents { count: usize, limit: usize },
    #[error("cannot read the request body: {0}")]
    Read(String),
}

impl BodyError {
    /// A fixed label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::TooLarge { .. }
            | Self::DecompressedTooLarge { .. }
            | Self::TooManyEvents { .. } => "too_large",
            Self::UnsupportedMediaType(_) | Self::UnsupportedEncoding(_) => {
                "unsupported_media_type"
            }
            Self::BadGzip(_)
            | Self::InvalidUtf8(_)
            | Self::InvalidJson(_)
            | Self::NotEvents(_)
            | Self::EmptyBatch => "malformed_body",
            Self::Read(_) => "read_error",
        }
    }
}

pub struct Limits {
    pub max_body_bytes: usize,
    pub max_decompressed_bytes: usize,
    pub max_batch_events: usize,
}

/// Checks the headers before the body is read, so a wrong client fails fast.
pub fn check_headers(headers: &HeaderMap) -> Result<bool, BodyError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    // sendBeacon with a string sends text/plain; no content type at all is treated the same.
    if !matches!(mime.as_str(), "application/json" | "text/plain" | "") {
        return Err(BodyError::UnsupportedMediaType(content_type.to_string()));
    }
    match headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase())
    {
        None => Ok(false),
        Some(e) if e.is_empty() || e == "identity" => Ok(false),
        Some(e) if e == "gzip" || e == "x-gzip" => Ok(true),
        Some(e) => Err(BodyError::UnsupportedEncoding(e)),
    }
}

/// Reads the whole body within `max_body_bytes`.
pub async fn read(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // axum reports the length limit through the error's source chain.
        let text = format!("{e:?}");
        if text.contains("LengthLimitError") {
            BodyError::TooLarge { limit }
        } else {
            BodyError::Read(e.to_string())
        }
    })
}

/// Decompresses (if gzip) and parses into a batch of event values.
pub fn parse(raw: &[u8], gzip: bool, limits: &Limits) -> Result<Vec<Value>, BodyError> {
    let inflated;
    let bytes = if gzip {
        inflated = gunzip(raw, limits.max_decompressed_bytes)?;
        &inflated[..]
    } else {
        raw
    };
    let text = std::str::from_utf8(bytes).map_err(|e| BodyError::InvalidUtf8(e.valid_up_to()))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| BodyError::InvalidJson(e.to_string()))?;
    let events = match value {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        Value::Null => return Err(BodyError::NotEvents("null")),
        Value::Bool(_) => return Err(BodyError::NotEvents("a boolean")),
        Value::Number(_) => return Err(BodyError::NotEvents("a number")),
        Value::String(_) => return Err(BodyError::NotEvents("a string")),
    };
    if events.is_empty() {
        return Err(BodyError::EmptyBatch);
    }
    if events.len() > limits.max_batch_events {
        return Err(BodyError::TooManyEvents {
            count: events.len(),
            limit: limits.max_batch_events,
        });
    }
    Ok(events)
}

/// Inflates at most `limit` bytes: a gzip bomb stops at the limit instead of filling memory.
fn gunzip(raw: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    let mut reader = flate2::read::GzDecoder::new(raw).take(limit as u64 + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| BodyError::BadGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(BodyError::DecompressedTooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write;

    use axum::http::HeaderValue;

    use super::*;

    fn limits() -> Limits {
        Limits {
            max_body_bytes: 1000,
            max_decompressed_bytes: 10_000,
            max_batch_events: 3,
        }
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn accepts_objects_arrays_and_gzip() {
        assert_eq!(parse(br#"{"a":1}"#, false, &limits()).unwrap().len(), 1);
        assert_eq!(
            parse(br#"[{"a":1},{"b":2}]"#, false, &limits())
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            parse(&gz(br#"[{"a":1}]"#), true, &limits()).unwrap().len(),
            1
        );
    }

    #[test]
    fn names_each_kind_of_bad_body() {
        assert!(matches!(
            parse(b"[]", false, &limits()),
            Err(BodyError::EmptyBatch)
        ));
        assert!(matches!(
            parse(b"[{},{},{},{}]", false, &limits()),
            Err(BodyError::TooManyEvents { count: 4, limit: 3 })
        ));
        assert!(matches!(
            parse(b"{\"a\":", false, &limits()),
            Err(BodyError::InvalidJson(_))
        ));
        assert!(matches!(
            parse(b"\"x\"", false, &limits()),
            Err(BodyError::NotEvents("a string"))
        ));
        assert!(matches!(
            parse(b"{\"a\":\"\xff\"}", false, &limits()),
            Err(BodyError::InvalidUtf8(6))
        ));
        assert!(matches!(
            parse(b"not gzip", true, &limits()),
            Err(BodyError::BadGzip(_))
        ));
        let bomb = gz(&vec![b' '; 1_000_000]);
        assert!(bomb.len() < 2_000);
        assert!(matches!(
            parse(&bomb, true, &limits()),
            Err(BodyError::DecompressedTooLarge { limit: 10_000 })
        ));
    }

    #[test]
    fn checks_content_type_and_encoding() {
        let mut h = HeaderMap::new();
        assert!(!check_headers(&h).unwrap());
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain;charset=UTF-8"),
        );
        assert!(!check_headers(&h).unwrap());
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(check_headers(&h).unwrap());
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert!(matches!(
            check_headers(&h),
            Err(BodyError::UnsupportedEncoding(_))
        ));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        assert!(matches!(
            check_headers(&h),
            Err(BodyError::UnsupportedMediaType(_))
        ));
    }
}
