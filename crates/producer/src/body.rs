//! Reading a request body into a batch of JSON events, with a clear error for each way a body
//! can be wrong.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use serde_json::Value;
use touchstream_model::incoming::quote;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body decompresses to more than {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error(
        "content type {0} is not accepted: send application/json (or text/plain from sendBeacon)"
    )]
    UnsupportedMediaType(String),
    #[error("content encoding {0} is not accepted: send gzip or no encoding")]
    UnsupportedEncoding(String),
    #[error("{count} {name} headers ({values}): send one")]
    RepeatedHeader {
        name: &'static str,
        count: usize,
        values: String,
    },
    #[error(
        "the {name} header has a byte that is not printable ASCII (0x{byte:02x} at offset {at})"
    )]
    NonAsciiHeader {
        name: &'static str,
        byte: u8,
        at: usize,
    },
    #[error("the request body did not arrive within {ms} ms")]
    ReadTimeout { ms: u128 },
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
            Self::UnsupportedMediaType(_)
            | Self::UnsupportedEncoding(_)
            | Self::RepeatedHeader { .. }
            | Self::NonAsciiHeader { .. } => "unsupported_media_type",
            Self::ReadTimeout { .. } => "read_timeout",
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

/// The one value of header `name`, which must be printable ASCII; `None` when absent.
fn single_ascii<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
    label: &'static str,
) -> Result<Option<&'h str>, BodyError> {
    let values: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
    if values.len() > 1 {
        return Err(BodyError::RepeatedHeader {
            name: label,
            count: values.len(),
            values: quote(
                &values
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        });
    }
    let Some(value) = values.first() else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if let Some(at) = bytes
        .iter()
        .position(|b| !(0x20..0x7f).contains(b) && *b != b'\t')
    {
        return Err(BodyError::NonAsciiHeader {
            name: label,
            byte: bytes[at],
            at,
        });
    }
    Ok(value.to_str().ok())
}

/// Checks the headers before the body is read, so a wrong client fails fast. Each of
/// Content-Type and Content-Encoding may come once, in printable ASCII; the encoding is one
/// of gzip or none (a list such as `gzip, br` is refused).
pub fn check_headers(headers: &HeaderMap) -> Result<bool, BodyError> {
    let content_type = single_ascii(headers, &CONTENT_TYPE, "Content-Type")?.unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    // sendBeacon with a string sends text/plain; no content type at all is treated the same.
    if !matches!(mime.as_str(), "application/json" | "text/plain" | "") {
        return Err(BodyError::UnsupportedMediaType(quote(content_type)));
    }
    match single_ascii(headers, &CONTENT_ENCODING, "Content-Encoding")?
        .map(|s| s.trim().to_ascii_lowercase())
    {
        None => Ok(false),
        Some(e) if e.is_empty() || e == "identity" => Ok(false),
        Some(e) if e == "gzip" || e == "x-gzip" => Ok(true),
        Some(e) => Err(BodyError::UnsupportedEncoding(quote(&e))),
    }
}

/// Reads the whole body within `limit` bytes and `timeout` (a client trickling its body is
/// cut off).
pub async fn read(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(BodyError::ReadTimeout {
            ms: timeout.as_millis(),
        }),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_length_limit(&e) => Err(BodyError::TooLarge { limit }),
        Ok(Err(e)) => Err(BodyError::Read(error_chain(&e))),
    }
}

/// An error and its sources, outermost first (`error reading a body from connection: invalid
/// chunk size line`): the inner errors say what was wrong.
fn error_chain(e: &axum::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for err in std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source()) {
        let text = err.to_string();
        // Wrappers often repeat their source's text.
        if parts.last().is_none_or(|last| last != &text) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Whether the length limit is somewhere in the error's source chain (axum wraps it).
fn is_length_limit(e: &axum::Error) -> bool {
    std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source())
        .any(|e| e.is::<http_body_util::LengthLimitError>())
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
/// Every member of a multi-member body is inflated (RFC 1952 allows several, concatenated);
/// anything after the last member that is not another member is refused.
pub fn gunzip(raw: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    let mut reader = flate2::read::MultiGzDecoder::new(raw).take(limit as u64 + 1);
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

    #[test]
    fn refuses_repeated_and_non_ascii_body_headers() {
        let mut h = HeaderMap::new();
        h.append(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        h.append(CONTENT_ENCODING, HeaderValue::from_static("br"));
        let e = check_headers(&h).unwrap_err();
        assert_eq!(
            e.to_string(),
            "2 Content-Encoding headers (\"gzip, br\"): send one"
        );
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_ENCODING,
            HeaderValue::from_bytes(b"gz\xe9ip").unwrap(),
        );
        assert!(matches!(
            check_headers(&h),
            Err(BodyError::NonAsciiHeader {
                name: "Content-Encoding",
                byte: 0xe9,
                at: 2
            })
        ));
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_bytes(b"application/json\xff").unwrap(),
        );
        assert!(matches!(
            check_headers(&h),
            Err(BodyError::NonAsciiHeader {
                name: "Content-Type",
                ..
            })
        ));
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip, br"));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(matches!(
            check_headers(&h),
            Err(BodyError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn inflates_every_gzip_member_and_refuses_trailing_garbage() {
        let mut two = gz(br#"[{"a":1},"#);
        two.extend(gz(br#"{"b":2}]"#));
        assert_eq!(parse(&two, true, &limits()).unwrap().len(), 2);
        let mut garbage = gz(br#"[{"a":1}]"#);
        garbage.extend_from_slice(b"trailing garbage");
        assert!(matches!(
            parse(&garbage, true, &limits()),
            Err(BodyError::BadGzip(_))
        ));
        let mut zeros = gz(br#"[{"a":1}]"#);
        zeros.extend_from_slice(&[0; 8]);
        assert!(matches!(
            parse(&zeros, true, &limits()),
            Err(BodyError::BadGzip(_))
        ));
    }

    #[tokio::test]
    async fn names_the_length_limit_through_the_error_chain() {
        let body = Body::from(vec![b'x'; 2000]);
        assert!(matches!(
            read(body, 1000, Duration::from_secs(5)).await,
            Err(BodyError::TooLarge { limit: 1000 })
        ));
        let body = Body::from(vec![b'x'; 10]);
        assert_eq!(
            read(body, 1000, Duration::from_secs(5))
                .await
                .unwrap()
                .len(),
            10
        );
    }
}
