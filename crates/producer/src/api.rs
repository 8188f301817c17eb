//! HTTP routes. Every error maps to a status in one place ([`ApiError::into_response`]) and
//! says what was wrong in a JSON body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Map, Value};
use touchstream_avro::DlqRecord;
use touchstream_model::incoming::{
    FieldError, ServerContext, ValidationLimits, anonymize_ip, validate,
};
use touchstream_model::received_via;
use touchstream_model::time::now_ms;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::body::{self, BodyError, Limits};
use crate::cookieless::VisitorIds;
use crate::delivery::{Delivery, DeliveryError};
use crate::limits::{self, HeaderLimits};
use crate::proxy::TrustedProxies;
use crate::segment::{self, SegmentState, mapping::Mapping};
use crate::sites::{Site, SiteError, Sites};
use crate::{ProducerConfig, metrics};

/// Most event errors one answer lists; the rest are counted in `errors_omitted` (a batch of
/// 500 events with 16 problems each would otherwise be a megabyte of errors).
pub const MAX_LISTED_ERRORS: usize = 100;

/// The browser tracker's source.
pub const TRACKER_JS: &str = include_str!("../assets/t.js");

/// The tracker as served at `/t.js`: without its full-line comments and indentation, which
/// are a sixth of its weight on the wire (so no string in it may span lines).
pub fn served_tracker() -> &'static str {
    static SERVED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| strip(TRACKER_JS));
    &SERVED
}

fn strip(js: &str) -> String {
    js.lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .fold(String::with_capacity(js.len()), |mut out, l| {
            out.push_str(l);
            out.push('\n');
            out
        })
}

/// A transparent 1×1 GIF.
const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

struct AppState {
    delivery: Arc<Delivery>,
    limits: Limits,
    validation: ValidationLimits,
    retry_after_secs: u32,
    body_read_timeout: Duration,
    sites: Arc<Sites>,
    proxies: TrustedProxies,
    visitor_ids: VisitorIds,
}

/// The collector's routes. `mapping` is the Segment mapping every site starts from.
pub fn router(cfg: &ProducerConfig, delivery: Arc<Delivery>, mapping: Arc<Mapping>) -> Router {
    let sites = Arc::new(Sites::new(cfg, mapping));
    // Checked by `ProducerConfig::validate` at start-up.
    let proxies = TrustedProxies::parse(&cfg.trusted_proxies).unwrap_or_default();
    let segment_state = Arc::new(SegmentState {
        delivery: delivery.clone(),
        sites: sites.clone(),
        proxies: proxies.clone(),
        validation: ValidationLimits::default(),
        max_body_bytes: cfg.max_body_bytes,
        body_read_timeout: Duration::from_millis(cfg.body_read_timeout_ms),
        max_message_bytes: cfg.segment.max_message_bytes,
        max_batch_bytes: cfg.segment.max_batch_bytes,
        retry_after_secs: cfg.retry_after_secs,
    });
    let state = Arc::new(AppState {
        delivery,
        limits: Limits {
            max_body_bytes: cfg.max_body_bytes,
            max_decompressed_bytes: cfg.max_decompressed_bytes,
            max_batch_events: cfg.max_batch_events,
        },
        validation: ValidationLimits::default(),
        retry_after_secs: cfg.retry_after_secs,
        body_read_timeout: Duration::from_millis(cfg.body_read_timeout_ms),
        sites: sites.clone(),
        proxies,
        visitor_ids: VisitorIds::new(&cfg.cookieless),
    });
    let header_limits = Arc::new(HeaderLimits {
        max_user_agent_bytes: cfg.max_user_agent_bytes,
        max_body_bytes: cfg.max_body_bytes,
    });
    Router::new()
        .route("/v1/events", post(collect))
        .route("/v1/import", post(import))
        .route("/v1/forget", post(forget))
        .route("/v1/p.gif", get(pixel))
        .route("/t.js", get(tracker))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .merge(segment::router(segment_state))
        .fallback(unknown_route)
        .layer(axum::middleware::from_fn_with_state(
            header_limits,
            limits::guard,
        ))
        .layer(cors(sites))
}

/// Every answer of the collector names its problem in JSON, unknown paths too; misdirected
/// traffic (an SDK pointed at the wrong path) is counted, not just refused.
async fn unknown_route() -> Response {
    metrics::request("(unknown)", 404);
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": "no such path: the API is POST /v1/events, GET /v1/p.gif and GET /t.js, POST /v1/forget (erasure), and Segment's tracking API (POST /v1/batch, /v1/track, /v1/page, /v1/screen, /v1/identify, /v1/alias, /v1/group)" })),
    )
        .into_response()
}

pub(crate) async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(serde_json::json!({ "error": "method not allowed on this path: POST /v1/events, GET /v1/p.gif, GET /t.js, POST /v1/forget, POST for the Segment routes" })),
    )
        .into_response()
}

/// Preflights are answered for any origin some site accepts; each route then checks the
/// origin against the site the request names.
fn cors(sites: Arc<Sites>) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            CONTENT_TYPE,
            axum::http::header::CONTENT_ENCODING,
            // analytics.js sends its write key as HTTP Basic, and its retry count.
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderName::from_static("x-retry-count"),
        ])
        .max_age(Duration::from_secs(86_400));
    if sites.any_allows_every_origin() {
        layer.allow_origin(Any)
    } else {
        layer.allow_origin(AllowOrigin::predicate(move |origin, _| {
            sites.any_allows_origin(origin)
        }))
    }
}

/// One rejected event of a batch.
#[derive(Debug, Serialize)]
pub struct EventError {
    pub index: usize,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct CollectResponse {
    pub accepted: usize,
    pub rejected: usize,
    /// Events not collected because the browser asked not to be tracked (DNT / Sec-GPC).
    #[serde(skip_serializing_if = "is_zero")]
    pub ignored: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<EventError>,
    /// Errors not listed, past [`MAX_LISTED_ERRORS`].
    #[serde(skip_serializing_if = "is_zero")]
    pub errors_omitted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub enum ApiError {
    Body(BodyError),
    /// A query parameter with a value the route does not take: its name and why.
    Query(&'static str, String),
    Delivery(DeliveryError, u32),
    Site(SiteError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Site(e) => e.into_response(),
            ApiError::Query(name, reason) => (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": format!("{name}: {reason}"), "field": name })),
            )
                .into_response(),
            ApiError::Body(e) => {
                let status = match e {
                    BodyError::TooLarge { .. }
                    | BodyError::DecompressedTooLarge { .. }
                    | BodyError::TooManyEvents { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    BodyError::UnsupportedMediaType(_)
                    | BodyError::UnsupportedEncoding(_)
                    | BodyError::RepeatedHeader { .. }
                    | BodyError::NonAsciiHeader { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    BodyError::ReadTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
                    _ => StatusCode::BAD_REQUEST,
                };
                // Refused before the body was read whole: the connection cannot carry more.
                let unread = matches!(
                    e,
                    BodyError::TooLarge { .. } | BodyError::ReadTimeout { .. } | BodyError::Read(_)
                );
                let mut r =
                    (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response();
                if unread {
                    r.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                r
            }
            ApiError::Delivery(e, retry_after) => {
                let status = match e {
                    DeliveryError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                let mut r =
                    (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response();
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    r.headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from(retry_after));
                }
                r
            }
        }
    }
}

fn wants_no_tracking(headers: &HeaderMap) -> bool {
    ["dnt", "sec-gpc"]
        .iter()
        .any(|h| headers.get(*h).is_some_and(|v| v.as_bytes() == b"1"))
}

fn server_context(
    state: &AppState,
    site: &Site,
    headers: &HeaderMap,
    peer: SocketAddr,
    received_via: &'static str,
) -> ServerContext {
    ServerContext {
        received_at: now_ms(),
        ip: Some(anonymize_ip(state.proxies.client_ip(peer.ip(), headers))),
        user_agent: headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        site_id: site.id.clone(),
        received_via,
    }
}

/// The body of `POST /v1/forget`: exactly one of the ids; the site is the secret key's.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ForgetBody {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    anonymous_id: Option<String>,
    /// The caller's id for the request (a UUID), to find it in the logs; one is made up if
    /// absent.
    #[serde(default)]
    request_id: Option<String>,
}

fn bad_forget(field: &str, reason: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({
            "success": false,
            "error": format!("{field}: {reason}"),
            "field": field,
            "reason": reason,
        })),
    )
        .into_response()
}

/// `POST /v1/forget`: an erasure request, with one of the site's secret keys. Answered `202`
/// once the request is on Kafka (every raw partition): the enricher and the sink carry it out
/// (`touchstream forget` waits for that and counts what was removed).
async fn forget(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let site = match state.sites.secret_site(&headers) {
        Ok(site) => site,
        Err(e) => return e.into_response(),
    };
    let parsed: ForgetBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return bad_forget(
                "body",
                &format!("not a JSON object with user_id or anonymous_id: {e}"),
            );
        }
    };
    let mut request = touchstream_model::forget::ForgetRequest::new(
        Some(site.id.clone()),
        parsed.user_id,
        parsed.anonymous_id,
        now_ms(),
    );
    if let Some(id) = parsed.request_id {
        request.request_id = id;
    }
    if let Err(e) = request.validate() {
        return bad_forget(e.field, &e.reason);
    }
    match state.delivery.forget(&request).await {
        Ok(partitions) => {
            tracing::info!(request_id = %request.request_id, site = %site.id, partitions, "erasure request accepted");
            (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({
                    "success": true,
                    "request_id": request.request_id,
                    "site_id": site.id,
                    "user_id": request.user_id,
                    "anonymous_id": request.anonymous_id,
                    "status": "accepted: the enricher and the sink erase it",
                })),
            )
                .into_response()
        }
        Err(e) => ApiError::Delivery(e, state.retry_after_secs).into_response(),
    }
}

/// `write_key` of a query string (t.js puts its `data-write-key` there: sendBeacon cannot
/// set headers).
fn query_write_key(query: Option<&str>) -> Option<String> {
    query_param(query, "write_key")
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `cookieless=1` (t.js's `data-consent="cookieless"`): the events carry no `anonymous_id`
/// and the collector computes one (see [`crate::cookieless`]).
fn query_cookieless(query: Option<&str>) -> Result<bool, ApiError> {
    match query_param(query, "cookieless").as_deref() {
        None | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(ApiError::Query(
            "cookieless",
            format!(
                "expected 1 (the collector computes each event's anonymous_id) or 0, got {}",
                touchstream_model::incoming::quote(other)
            ),
        )),
    }
}

/// `POST /v1/events`: live events; clock skew is corrected against `sent_at`.
async fn collect(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let key = query_write_key(query.as_deref());
    let response = match query_cookieless(query.as_deref()) {
        Err(e) => e.into_response(),
        Ok(cookieless) => match collect_inner(
            &state,
            peer,
            &headers,
            key,
            body,
            received_via::EVENTS,
            cookieless,
        )
        .await
        {
            Ok((status, body)) => (status, Json(body)).into_response(),
            Err(e) => e.into_response(),
        },
    };
    metrics::request("/v1/events", response.status().as_u16());
    response
}

/// `POST /v1/import`: the same body as `/v1/events`, for history: each event's `occurred_at`
/// (required) is its event time, as sent.
async fn import(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let key = query_write_key(query.as_deref());
    let response = match collect_inner(
        &state,
        peer,
        &headers,
        key,
        body,
        received_via::IMPORT,
        false,
    )
    .await
    {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(e) => e.into_response(),
    };
    metrics::request("/v1/import", response.status().as_u16());
    response
}

async fn collect_inner(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    write_key: Option<String>,
    body: Body,
    received_via: &'static str,
    cookieless: bool,
) -> Result<(StatusCode, CollectResponse), ApiError> {
    let site = state
        .sites
        .resolve(headers, write_key.as_deref())
        .map_err(ApiError::Site)?
        .site;
    let reject_body = |e: BodyError| {
        metrics::rejected(e.category(), 1);
        ApiError::Body(e)
    };
    let gzip = body::check_headers(headers).map_err(reject_body)?;
    let raw = body::read(body, state.limits.max_body_bytes, state.body_read_timeout)
        .await
        .map_err(reject_body)?;
    let events = match body::parse(&raw, gzip, &state.limits) {
        Ok(events) => events,
        Err(e) => {
            // The client is told, and the payload is kept as received with the reason.
            let record = DlqRecord::producer(&raw, &e.to_string(), now_ms())
                .with_content_encoding(gzip.then_some("gzip"));
            state.delivery.dead_letter_all(vec![record]).await;
            return Err(reject_body(e));
        }
    };
    if site.honour_dnt && wants_no_tracking(headers) {
        metrics::dropped_do_not_track(events.len() as u64);
        return Ok((
            StatusCode::OK,
            CollectResponse {
                accepted: 0,
                rejected: 0,
                ignored: events.len(),
                errors: vec![],
                errors_omitted: 0,
            },
        ));
    }
    let ctx = server_context(state, &site, headers, peer, received_via);
    let cookieless_id = cookieless.then(|| {
        state.visitor_ids.id(
            &site.id,
            ctx.ip.as_deref().unwrap_or_default(),
            ctx.user_agent.as_deref().unwrap_or_default(),
        )
    });
    accept(state, &ctx, events, cookieless_id.as_deref()).await
}

/// Gives a cookieless event its computed `anonymous_id`; one that brings its own is refused
/// (a stored id is what the mode promises not to have).
fn set_cookieless_id(value: &mut Value, id: &str) -> Option<FieldError> {
    let obj = value.as_object_mut()?;
    match obj.get("anonymous_id") {
        None | Some(Value::Null) => {
            obj.insert("anonymous_id".into(), Value::String(id.to_owned()));
            None
        }
        Some(_) => Some(FieldError {
            field: "anonymous_id".into(),
            reason:
                "must be left out of a cookieless request (cookieless=1): the collector computes it"
                    .into(),
        }),
    }
}

/// Validates each event, sends the valid ones and dead-letters the others, both at once.
async fn accept(
    state: &AppState,
    ctx: &ServerContext,
    mut events: Vec<Value>,
    cookieless_id: Option<&str>,
) -> Result<(StatusCode, CollectResponse), ApiError> {
    let mut valid = Vec::with_capacity(events.len());
    let mut errors = Vec::new();
    let mut errors_omitted = 0;
    let mut rejected = 0;
    let mut dead = Vec::new();
    for (index, value) in events.iter_mut().enumerate() {
        let refused = cookieless_id.and_then(|id| set_cookieless_id(value, id));
        let checked = validate(value, ctx, &state.validation, || {
            uuid::Uuid::now_v7().to_string()
        });
        let checked = match (checked, refused) {
            (ok, None) => ok,
            (Ok(_), Some(e)) => Err(vec![e]),
            (Err(mut errors), Some(e)) => {
                errors.insert(0, e);
                Err(errors)
            }
        };
        match checked {
            Ok(e) => {
                if !ctx.is_import() {
                    metrics::clock_correction(e.clock_correction_ms);
                }
                valid.push(e)
            }
            Err(field_errors) => {
                rejected += 1;
                let reason = field_errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                dead.push(DlqRecord::producer(
                    value.to_string().as_bytes(),
                    &reason,
                    ctx.received_at,
                ));
                for fe in field_errors {
                    if errors.len() < MAX_LISTED_ERRORS {
                        errors.push(EventError {
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
    if rejected > 0 {
        metrics::rejected("invalid_event", rejected as u64);
    }
    let (sent, ()) = tokio::join!(
        state.delivery.send(&valid),
        state.delivery.dead_letter_all(dead)
    );
    sent.map_err(|e| ApiError::Delivery(e, state.retry_after_secs))?;
    for e in &valid {
        metrics::accepted(e.event_type.as_str(), 1);
    }
    let status = if rejected == 0 {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok((
        status,
        CollectResponse {
            accepted: valid.len(),
            rejected,
            ignored: 0,
            errors,
            errors_omitted,
        },
    ))
}

/// `GET /v1/p.gif?event_type=…&anonymous_id=…&page_url=…[&referrer=…][&p.<key>=<value>]`:
/// the same event as JSON would carry, for e-mails and pages without JavaScript. Always
/// answers a GIF (so an `<img>` never shows broken); the status says what happened.
async fn pixel(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let mut event = Map::new();
    let mut properties = Map::new();
    let mut write_key = None;
    for (k, v) in params {
        if k == "write_key" {
            write_key = Some(v);
            continue;
        }
        match k.strip_prefix("p.") {
            Some(prop) => properties.insert(prop.to_string(), Value::String(v)),
            // The pixel is the only place numbers arrive as text.
            None if k == "revenue" => event.insert(
                k,
                v.parse::<i64>()
                    .map(Value::from)
                    .unwrap_or(Value::String(v)),
            ),
            None => event.insert(k, Value::String(v)),
        };
    }
    if !properties.is_empty() {
        event.insert("properties".into(), Value::Object(properties));
    }
    let (status, problem) = match state.sites.resolve(&headers, write_key.as_deref()) {
        Err(e) => {
            let problem = e.to_string();
            (ApiError::Site(e).into_response().status(), Some(problem))
        }
        Ok(r) if r.site.honour_dnt && wants_no_tracking(&headers) => (StatusCode::OK, None),
        Ok(r) => {
            let ctx = server_context(&state, &r.site, &headers, peer, received_via::PIXEL);
            match accept(&state, &ctx, vec![Value::Object(event)], None).await {
                Ok((status, answer)) => (
                    status,
                    answer
                        .errors
                        .first()
                        .map(|e| format!("{}: {}", e.field, e.reason)),
                ),
                Err(e) => (e.into_response().status(), None),
            }
        }
    };
    metrics::request("/v1/p.gif", status.as_u16());
    let mut response = (
        status,
        [(CONTENT_TYPE, "image/gif"), (CACHE_CONTROL, "no-store")],
        PIXEL_GIF,
    )
        .into_response();
    if let Some(problem) = problem.and_then(|p| problem_header(&p)) {
        response.headers_mut().insert(PROBLEM_HEADER, problem);
    }
    response
}

/// The pixel answers a GIF whatever happened; this header names the first problem of a
/// refused pixel event, for whoever debugs it.
pub const PROBLEM_HEADER: &str = "x-touchstream-error";

fn problem_header(problem: &str) -> Option<HeaderValue> {
    let ascii: String = problem
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&ascii).ok()
}

async fn tracker() -> Response {
    metrics::request("/t.js", 200);
    (
        [
            (CONTENT_TYPE, "application/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        served_tracker(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_served_tracker_keeps_the_code_and_drops_comment_lines() {
        let served = served_tracker();
        assert!(served.len() < TRACKER_JS.len());
        assert!(served.starts_with("/*!"));
        assert!(
            !served
                .lines()
                .any(|l| l.starts_with("//") || l.starts_with(' '))
        );
        // Every line of code is still there, in order.
        let code: Vec<&str> = TRACKER_JS
            .lines()
            .map(str::trim_start)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .collect();
        assert_eq!(served.lines().collect::<Vec<_>>(), code);
        assert_eq!(strip("  a\n  // b\n\n c // d\n"), "a\nc // d\n");
    }

    #[test]
    fn cookieless_takes_1_or_0_and_names_itself_otherwise() {
        assert!(
            query_cookieless(Some("write_key=k&cookieless=1"))
                .ok()
                .unwrap()
        );
        assert!(!query_cookieless(Some("cookieless=0")).ok().unwrap());
        assert!(!query_cookieless(None).ok().unwrap());
        let Err(ApiError::Query(name, reason)) = query_cookieless(Some("cookieless=yes")) else {
            panic!("cookieless=yes accepted");
        };
        assert_eq!(name, "cookieless");
        assert!(reason.contains("\"yes\""), "{reason}");
    }

    #[test]
    fn a_cookieless_event_gets_the_computed_id_and_may_not_bring_one() {
        let mut e = serde_json::json!({"event_type": "click"});
        assert!(set_cookieless_id(&mut e, "id-1").is_none());
        assert_eq!(e["anonymous_id"], "id-1");
        let mut e = serde_json::json!({"event_type": "click", "anonymous_id": null});
        assert!(set_cookieless_id(&mut e, "id-1").is_none());
        assert_eq!(e["anonymous_id"], "id-1");
        let mut e = serde_json::json!({"event_type": "click", "anonymous_id": "mine"});
        let err = set_cookieless_id(&mut e, "id-1").unwrap();
        assert_eq!(err.field, "anonymous_id");
        assert_eq!(e["anonymous_id"], "mine");
    }
}
