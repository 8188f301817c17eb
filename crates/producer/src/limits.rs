//! Checks on a request's headers before any route runs, for every route: the User-Agent is
//! bounded and must be text, and a declared body larger than the collector takes is refused at
//! once (413), before a byte of it is read.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use touchstream_model::incoming::quote;

use crate::metrics;

/// The bounds [`guard`] applies.
#[derive(Clone, Debug)]
pub struct HeaderLimits {
    pub max_user_agent_bytes: usize,
    pub max_body_bytes: usize,
}

/// A request refused on its headers.
#[derive(Debug, PartialEq, Eq)]
pub struct HeaderError {
    pub status: StatusCode,
    /// Fixed label for metrics.
    pub category: &'static str,
    pub reason: String,
}

impl IntoResponse for HeaderError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(serde_json::json!({ "error": self.reason })),
        )
            .into_response();
        // The body (if any) was not read: the connection cannot carry another request.
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        r
    }
}

/// Middleware: refuses a request whose headers break [`HeaderLimits`].
pub async fn guard(State(limits): State<Arc<HeaderLimits>>, req: Request, next: Next) -> Response {
    match check(req.headers(), &limits) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            metrics::rejected(e.category, 1);
            e.into_response()
        }
    }
}

pub fn check(headers: &HeaderMap, limits: &HeaderLimits) -> Result<(), HeaderError> {
    let uas: Vec<&HeaderValue> = headers.get_all(USER_AGENT).iter().collect();
    if uas.len() > 1 {
        return Err(HeaderError {
            status: StatusCode::BAD_REQUEST,
            category: "bad_header",
            reason: format!("{} User-Agent headers: send one", uas.len()),
        });
    }
    if let Some(ua) = uas.first() {
        if ua.len() > limits.max_user_agent_bytes {
            return Err(HeaderError {
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                category: "too_large",
                reason: format!(
                    "User-Agent header is {} bytes, the limit is {}",
                    ua.len(),
                    limits.max_user_agent_bytes
                ),
            });
        }
        if let Some(at) = ua.as_bytes().iter().position(|b| !(0x20..0x7f).contains(b)) {
            return Err(HeaderError {
                status: StatusCode::BAD_REQUEST,
                category: "bad_header",
                reason: format!(
                    "User-Agent header has a byte that is not printable ASCII (0x{:02x} at offset {at})",
                    ua.as_bytes()[at]
                ),
            });
        }
    }
    if let Some(declared) = headers.get(CONTENT_LENGTH) {
        // hyper already refused a Content-Length that is not a number, or two that differ.
        let n = declared
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        match n {
            Some(n) if n > limits.max_body_bytes as u64 => {
                return Err(HeaderError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    category: "too_large",
                    reason: format!(
                        "request body is larger than {} bytes (Content-Length declares {n})",
                        limits.max_body_bytes
                    ),
                });
            }
            Some(_) => {}
            None => {
                return Err(HeaderError {
                    status: StatusCode::BAD_REQUEST,
                    category: "bad_header",
                    reason: format!(
                        "Content-Length {} is not a number of bytes",
                        quote(&String::from_utf8_lossy(declared.as_bytes()))
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits() -> HeaderLimits {
        HeaderLimits {
            max_user_agent_bytes: 100,
            max_body_bytes: 1000,
        }
    }

    #[test]
    fn bounds_the_user_agent_and_the_declared_length() {
        let mut h = HeaderMap::new();
        assert!(check(&h, &limits()).is_ok());
        h.insert(USER_AGENT, HeaderValue::from_static("Mozilla/5.0"));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("1000"));
        assert!(check(&h, &limits()).is_ok());
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("10737418240"));
        let e = check(&h, &limits()).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.reason.contains("10737418240"), "{}", e.reason);
        h.remove(CONTENT_LENGTH);
        h.insert(USER_AGENT, HeaderValue::from_str(&"a".repeat(101)).unwrap());
        let e = check(&h, &limits()).unwrap_err();
        assert_eq!(e.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(e.reason.contains("101 bytes"), "{}", e.reason);
        h.insert(USER_AGENT, HeaderValue::from_bytes(b"Mozilla\xff").unwrap());
        let e = check(&h, &limits()).unwrap_err();
        assert!(e.reason.contains("0xff at offset 7"), "{}", e.reason);
    }
}
