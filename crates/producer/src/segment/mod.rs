//! The Segment tracking API (HTTP API spec v1), so that analytics.js, Segment's and
//! RudderStack's server SDKs can send to touchstream unchanged.
//!
//! Routes: `POST /v1/batch` (`{"batch": [...], "context": {...}, "sentAt": ...}`), one route
//! per call (`/v1/track`, `/v1/page`, `/v1/screen`, `/v1/identify`, `/v1/alias`,
//! `/v1/group`) and analytics.js' short names for them (`/v1/t`, `/v1/p`, `/v1/s`, `/v1/i`,
//! `/v1/a`, `/v1/g`, and `/v1/b` for its batches).
//!
//! What the SDKs need from a server (see the README): they ignore the answer's body, treat
//! 2xx as delivered, drop a batch on 400 without retrying and retry 5xx (and 429, honouring
//! `Retry-After`). So a readable batch is always answered 200: its bad messages go to the DLQ
//! with their reason, its good ones to Kafka. Only a request that cannot be read at all (not
//! JSON, over the size limit) gets a 400, and a missing or unknown write key a 401.
//!
//! - [`mapping`]: the mapping of calls and track names onto event types (data).
//! - [`translate`]: one message into the collector's own event shape.

pub mod mapping;
pub mod translate;

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::header::{CONTENT_ENCODING, RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use touchstream_avro::DlqRecord;
use touchstream_model::incoming::{ServerContext, ValidationLimits, anonymize_ip, validate};
use touchstream_model::time::now_ms;
use touchstream_model::{FieldError, RawEvent, received_via};

use self::translate::{Call, Inputs, translate};
use crate::delivery::{Delivery, DeliveryError};
use crate::proxy::TrustedProxies;
use crate::sites::{KeyKind, Resolved, Sites};
use crate::{body, metrics};

/// Most message errors one answer lists (the DLQ has them all).
const MAX_LISTED_ERRORS: usize = 100;

/// The namespace of event ids derived from Segment message ids (UUIDv5 of site and
/// messageId): a resend of a message has the id of the first send, on every route.
const MESSAGE_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6f1e_2b7a_0c43_4d55_9a1e_5b3f_2c8d_7e90);

/// The event id of a Segment message of a site.
pub fn event_id(site_id: &str, message_id: &str) -> String {
    let mut name = Vec::with_capacity(site_id.len() + 1 + message_id.len());
    name.extend_from_slice(site_id.as_bytes());
    name.push(b'\n');
    name.extend_from_slice(message_id.as_bytes());
    uuid::Uuid::new_v5(&MESSAGE_ID_NAMESPACE, &name).to_string()
}

pub struct SegmentState {
    pub delivery: Arc<Delivery>,
    pub sites: Arc<Sites>,
    pub proxies: TrustedProxies,
    pub validation: ValidationLimits,
    pub max_body_bytes: usize,
    pub body_read_timeout: std::time::Duration,
    pub max_message_bytes: usize,
    pub max_batch_bytes: usize,
    pub retry_after_secs: u32,
}

/// The routes, on their own state; merged into the collector's router.
pub fn router(state: Arc<SegmentState>) -> Router {
    let batch = |path: &'static str| post(move |s, c, h, b| handle(s, c, h, b, path, None));
    let one = |path: &'static str, call: Call| {
        post(move |s, c, h, b| handle(s, c, h, b, path, Some(call)))
    };
    Router::new()
        .route("/v1/batch", batch("/v1/batch"))
        .route("/v1/b", batch("/v1/b"))
        .route("/v1/track", one("/v1/track", Call::Track))
        .route("/v1/t", one("/v1/t", Call::Track))
        .route("/v1/page", one("/v1/page", Call::Page))
        .route("/v1/p", one("/v1/p", Call::Page))
        .route("/v1/screen", one("/v1/screen", Call::Screen))
        .route("/v1/s", one("/v1/s", Call::Screen))
        .route("/v1/identify", one("/v1/identify", Call::Identify))
        .route("/v1/i", one("/v1/i", Call::Identify))
        .route("/v1/alias", one("/v1/alias", Call::Alias))
        .route("/v1/a", one("/v1/a", Call::Alias))
        .route("/v1/group", one("/v1/group", Call::Group))
        .route("/v1/g", one("/v1/g", Call::Group))
        .method_not_allowed_fallback(crate::api::method_not_allowed)
        .with_state(state)
}

/// One problem of one message.
#[derive(Debug, Serialize)]
pub struct MessageError {
    /// Position in `batch` (0 for the single-call routes).
    pub index: usize,
    /// The Segment field, e.g. `properties.revenue` or `context.page.url`.
    pub field: String,
    pub reason: String,
}

/// The answer. The SDKs only read the status; the rest is for people.
#[derive(Debug, Serialize)]
pub struct SegmentResponse {
    pub success: bool,
    pub accepted: usize,
    pub rejected: usize,
    /// Messages not collected because the browser asked not to be tracked.
    #[serde(skip_serializing_if = "is_zero")]
    pub ignored: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<MessageError>,
    #[serde(skip_serializing_if = "is_zero")]
    pub errors_omitted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Why a request as a whole was refused.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error(transparent)]
    Site(#[from] crate::sites::SiteError),
    #[error("{0}")]
    Unreadable(String),
    #[error("{0}")]
    Encoding(String),
    #[error("{0}")]
    TooLarge(String),
    /// Refused while reading (over max_body_bytes as sent, too slow, broken): the
    /// collector's own answer for it.
    #[error(transparent)]
    Body(body::BodyError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

struct Answer(StatusCode, Json<Value>, Option<u32>);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut r = (self.0, self.1).into_response();
        if let Some(secs) = self.2 {
            r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

async fn handle(
    State(state): State<Arc<SegmentState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
    route: &'static str,
    call: Option<Call>,
) -> Response {
    let response = match handle_inner(&state, peer, &headers, body, call).await {
        Ok((status, answer)) => (status, Json(answer)).into_response(),
        Err(refusal) => refuse(&state, refusal).into_response(),
    };
    metrics::request(route, response.status().as_u16());
    response
}

fn refuse(state: &SegmentState, refusal: Refusal) -> Response {
    let text = refusal.to_string();
    let body = |t: &str| Json(serde_json::json!({ "success": false, "error": t }));
    match refusal {
        Refusal::Site(e) => e.into_response(),
        Refusal::Unreadable(_) | Refusal::TooLarge(_) => {
            Answer(StatusCode::BAD_REQUEST, body(&text), None).into_response()
        }
        Refusal::Body(e) => crate::api::ApiError::Body(e).into_response(),
        Refusal::Encoding(_) => {
            Answer(StatusCode::UNSUPPORTED_MEDIA_TYPE, body(&text), None).into_response()
        }
        // The SDKs retry 5xx with backoff; Retry-After is honoured by RudderStack's.
        Refusal::Delivery(DeliveryError::Encode(_)) => {
            Answer(StatusCode::INTERNAL_SERVER_ERROR, body(&text), None).into_response()
        }
        Refusal::Delivery(_) => Answer(
            StatusCode::SERVICE_UNAVAILABLE,
            body(&text),
            Some(state.retry_after_secs),
        )
        .into_response(),
    }
}

/// The top of a request body: a batch, or a single call (then `batch` is absent).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(rename = "sentAt", default)]
    sent_at: Option<Value>,
    #[serde(rename = "writeKey", default)]
    write_key: Option<Value>,
}

async fn handle_inner(
    state: &SegmentState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
    call: Option<Call>,
) -> Result<(StatusCode, SegmentResponse), Refusal> {
    let received_at = now_ms();
    // Any content type: the SDKs send JSON as application/json, text/plain (analytics.js,
    // to avoid a preflight) or application/x-www-form-urlencoded (RudderStack's gzip body).
    let gzip = match headers
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().map(|s| s.trim().to_ascii_lowercase()))
    {
        None => false,
        Some(Ok(e)) if e.is_empty() || e == "identity" => false,
        Some(Ok(e)) if e == "gzip" || e == "x-gzip" => true,
        Some(other) => {
            return Err(Refusal::Encoding(format!(
                "content encoding {:?} is not accepted: send gzip or no encoding",
                other.unwrap_or_default()
            )));
        }
    };
    let raw = body::read(body, state.max_body_bytes, state.body_read_timeout)
        .await
        .map_err(Refusal::Body)?;
    let inflated = match decode_text(&raw, gzip, state.max_batch_bytes) {
        Ok(t) => t,
        Err(refusal) => {
            return Err(dead_letter_unreadable(state, headers, &raw, gzip, refusal).await);
        }
    };
    let text = std::str::from_utf8(&inflated).unwrap_or_default();
    let envelope: Envelope<'_> = match serde_json::from_str(text) {
        Ok(e) => e,
        Err(e) => {
            let refusal = Refusal::Unreadable(format!("body is not a JSON object: {e}"));
            return Err(dead_letter_unreadable(state, headers, &raw, gzip, refusal).await);
        }
    };
    let body_key = envelope.write_key.as_ref().and_then(Value::as_str);
    let resolved = state.sites.require_key(headers, body_key)?;

    // The messages, each with its own raw JSON (kept for the DLQ and its size limit).
    let messages: Vec<&str> = match (call, &envelope.batch) {
        (None, Some(batch)) => batch.iter().map(|m| m.get()).collect(),
        (None, None) => {
            return Err(Refusal::Unreadable(
                "batch: missing; send {\"batch\": [messages]}".into(),
            ));
        }
        (Some(_), _) => vec![text],
    };
    let site = &resolved.site;
    if site.honour_dnt && wants_no_tracking(headers) {
        metrics::dropped_do_not_track(messages.len() as u64);
        return Ok((
            StatusCode::OK,
            SegmentResponse {
                success: true,
                accepted: 0,
                rejected: 0,
                ignored: messages.len(),
                errors: vec![],
                errors_omitted: 0,
            },
        ));
    }

    let server_side = resolved.key == Some(KeyKind::Server);
    let ctx = ServerContext {
        received_at,
        ip: Some(anonymize_ip(state.proxies.client_ip(peer.ip(), headers))),
        // A backend's User-Agent is its HTTP library's, not the visitor's browser.
        user_agent: if server_side {
            None
        } else {
            headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        },
        site_id: site.id.clone(),
        received_via: received_via::SEGMENT,
    };
    let batch_context = envelope.context.as_ref().and_then(Value::as_object);
    let app_host = site
        .config
        .hosts
        .first()
        .and_then(|h| touchstream_model::site::bare_host(h))
        .unwrap_or_else(|| "app.invalid".to_owned());
    let inputs = Inputs {
        mapping: &site.mapping,
        batch_context,
        batch_sent_at: envelope.sent_at.as_ref(),
        server_side,
        app_host: &app_host,
        max_property_len: state.validation.max_string_len,
        max_properties: state.validation.max_properties,
    };
    let single = call.is_some();
    let prefix = |i: usize| {
        if single {
            String::new()
        } else {
            format!("batch[{i}].")
        }
    };

    let mut valid: Vec<RawEvent> = Vec::with_capacity(messages.len());
    let mut dead: Vec<(&str, String)> = Vec::new();
    let mut errors = Vec::new();
    let mut errors_omitted = 0;
    for (index, raw_msg) in messages.iter().enumerate() {
        match accept_one(state, &resolved, &ctx, &inputs, raw_msg, call) {
            Ok(event) => {
                metrics::clock_correction(event.clock_correction_ms);
                valid.push(event);
            }
            Err(field_errors) => {
                let reason = field_errors
                    .iter()
                    .map(|e| format!("{}{}: {}", prefix(index), e.field, e.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                dead.push((raw_msg, reason));
                for fe in field_errors {
                    if errors.len() < MAX_LISTED_ERRORS {
                        errors.push(MessageError {
                            index,
                            field: fe.field,
                            reason: fe.reason,
                        });
                    } else {
                        errors_omitted += 1;
                    }
                }
            }
        }
    }
    let rejected = dead.len();
    if rejected > 0 {
        metrics::rejected("invalid_event", rejected as u64);
    }
    // A resend inside one batch (the same messageId twice) is one event.
    let mut seen = std::collections::HashSet::with_capacity(valid.len());
    valid.retain(|e| seen.insert(e.event_id.clone()));
    let dead_letters: Vec<DlqRecord> = dead
        .iter()
        .map(|(payload, reason)| DlqRecord::producer(payload.as_bytes(), reason, received_at))
        .collect();
    let (sent, ()) = tokio::join!(
        state.delivery.send(&valid),
        state.delivery.dead_letter_all(dead_letters)
    );
    sent?;
    for e in &valid {
        metrics::accepted(e.event_type.as_str(), 1);
    }
    // A single call that was refused says so; a batch is answered 200 whatever some of its
    // messages were, since the SDKs would drop the whole batch on a 400.
    let status = if single && rejected > 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        SegmentResponse {
            success: rejected == 0 || !single,
            accepted: valid.len(),
            rejected,
            ignored: 0,
            errors,
            errors_omitted,
        },
    ))
}

/// Translates and validates one message.
fn accept_one(
    state: &SegmentState,
    resolved: &Resolved,
    ctx: &ServerContext,
    inputs: &Inputs<'_>,
    raw_msg: &str,
    call: Option<Call>,
) -> Result<RawEvent, Vec<FieldError>> {
    let one = |field: &str, reason: String| {
        vec![FieldError {
            field: field.to_owned(),
            reason,
        }]
    };
    if raw_msg.len() > state.max_message_bytes {
        return Err(one(
            "(message)",
            format!(
                "{} bytes, the limit is {} (Segment's 32 KB per call)",
                raw_msg.len(),
                state.max_message_bytes
            ),
        ));
    }
    let value: Value = serde_json::from_str(raw_msg)
        .map_err(|e| one("(message)", format!("not valid JSON: {e}")))?;
    let Value::Object(msg) = value else {
        return Err(one("(message)", "expected a JSON object".into()));
    };
    let call = match call {
        Some(c) => c,
        None => match msg.get("type").and_then(Value::as_str) {
            Some(t) => Call::parse(t).ok_or_else(|| {
                one(
                    "type",
                    format!("unknown call type {t:?}; one of track, page, screen, identify, alias, group"),
                )
            })?,
            None => {
                return Err(one(
                    "type",
                    "missing; one of track, page, screen, identify, alias, group".into(),
                ));
            }
        },
    };
    let mut translated = translate(msg, call, inputs)?;
    let site_id = &resolved.site.id;
    let id = match &translated.message_id {
        Some(m) => event_id(site_id, m),
        None => uuid::Uuid::now_v7().to_string(),
    };
    let mut event = std::mem::take(&mut translated.event);
    if let Value::Object(o) = &mut event {
        o.insert("event_id".into(), Value::String(id));
    }
    let own_ctx;
    let ctx = match translated
        .ip
        .as_deref()
        .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
    {
        Some(ip) => {
            own_ctx = ServerContext {
                ip: Some(anonymize_ip(ip)),
                ..ctx.clone()
            };
            &own_ctx
        }
        None => ctx,
    };
    let mut raw = validate(&event, ctx, &state.validation, || {
        uuid::Uuid::now_v7().to_string()
    })
    .map_err(|errs| {
        errs.into_iter()
            .map(|e| translated.rename(e))
            .collect::<Vec<_>>()
    })?;
    if let Some(sent) = &translated.sent_at_as_is {
        raw.sent_at = match sent {
            Value::String(s) => touchstream_model::time::parse_rfc3339_ms(s),
            Value::Number(n) => n.as_i64(),
            _ => None,
        };
    }
    Ok(raw)
}

/// The body inflated (if gzip), checked to be UTF-8 within `limit` bytes.
fn decode_text(
    raw: &Bytes,
    gzip: bool,
    limit: usize,
) -> Result<std::borrow::Cow<'_, [u8]>, Refusal> {
    let text = inflate(raw, gzip, limit)?;
    if let Err(e) = std::str::from_utf8(&text) {
        return Err(Refusal::Unreadable(format!(
            "body is not valid UTF-8 (first invalid byte at offset {})",
            e.valid_up_to()
        )));
    }
    if text.len() > limit {
        return Err(Refusal::TooLarge(format!(
            "request is {} bytes of JSON, the limit is {limit} (Segment's 500 KB per batch): send smaller batches",
            text.len()
        )));
    }
    Ok(text)
}

/// An unreadable request of a known site (its key in the Authorization header: a body that
/// cannot be read cannot name one) is kept in the DLQ, as received, with the reason.
async fn dead_letter_unreadable(
    state: &SegmentState,
    headers: &HeaderMap,
    raw: &Bytes,
    gzip: bool,
    refusal: Refusal,
) -> Refusal {
    if state.sites.require_key(headers, None).is_ok() {
        let record = DlqRecord::producer(raw, &refusal.to_string(), now_ms())
            .with_content_encoding(gzip.then_some("gzip"));
        state.delivery.dead_letter_all(vec![record]).await;
    }
    refusal
}

/// The body as JSON text, inflated if gzip; at most `limit` bytes (+1 to tell it is over).
fn inflate(raw: &Bytes, gzip: bool, limit: usize) -> Result<std::borrow::Cow<'_, [u8]>, Refusal> {
    if !gzip {
        return Ok(std::borrow::Cow::Borrowed(&raw[..]));
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    flate2::read::MultiGzDecoder::new(&raw[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Refusal::Unreadable(format!("body is not valid gzip: {e}")))?;
    if out.len() > limit {
        return Err(Refusal::TooLarge(format!(
            "request decompresses to more than {limit} bytes (Segment's 500 KB per batch): send smaller batches"
        )));
    }
    Ok(std::borrow::Cow::Owned(out))
}

fn wants_no_tracking(headers: &HeaderMap) -> bool {
    ["dnt", "sec-gpc"]
        .iter()
        .any(|h| headers.get(*h).is_some_and(|v| v.as_bytes() == b"1"))
}
