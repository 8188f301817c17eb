//! HTTP routes. Every error maps to a status in one place ([`ApiError::into_response`]) and
//! says what was wrong in a JSON body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Map, Value};
use touchstream_model::incoming::{ServerContext, ValidationLimits, anonymize_ip, validate};
use touchstream_model::received_via;
use touchstream_model::time::now_ms;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::body::{self, BodyError, Limits};
use crate::delivery::{Delivery, DeliveryError};
use crate::proxy::TrustedProxies;
use crate::segment::{self, SegmentState, mapping::Mapping};
use crate::sites::{Site, SiteError, Sites};
use crate::{ProducerConfig, metrics};

/// The browser tracker, served at `/t.js`.
pub const TRACKER_JS: &str = include_str!("../assets/t.js");

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
    sites: Arc<Sites>,
    proxies: TrustedProxies,
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
        sites: sites.clone(),
        proxies,
    });
    Router::new()
        .route("/v1/events", post(collect))
        .route("/v1/import", post(import))
        .route("/v1/p.gif", get(pixel))
        .route("/t.js", get(tracker))
        .with_state(state)
        .merge(segment::router(segment_state))
        .fallback(unknown_route)
        .layer(cors(sites))
}

/// Misdirected traffic (an SDK pointed at the wrong path) is counted, not just refused.
async fn unknown_route() -> Response {
    metrics::request("(unknown)", 404);
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": "no such path: see the collector's openapi.yaml" })),
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
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub enum ApiError {
    Body(BodyError),
    Delivery(DeliveryError, u32),
    Site(SiteError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Site(e) => e.into_response(),
            ApiError::Body(e) => {
                let status = match e {
                    BodyError::TooLarge { .. }
                    | BodyError::DecompressedTooLarge { .. }
                    | BodyError::TooManyEvents { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    BodyError::UnsupportedMediaType(_) | BodyError::UnsupportedEncoding(_) => {
                        StatusCode::UNSUPPORTED_MEDIA_TYPE
                    }
                    _ => StatusCode::BAD_REQUEST,
                };
                (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
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

/// `write_key` of a query string (t.js puts its `data-write-key` there: sendBeacon cannot
/// set headers).
fn query_write_key(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "write_key")
        .map(|(_, v)| v.into_owned())
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
    let response =
        match collect_inner(&state, peer, &headers, key, body, received_via::EVENTS).await {
            Ok((status, body)) => (status, Json(body)).into_response(),
            Err(e) => e.into_response(),
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
    let response =
        match collect_inner(&state, peer, &headers, key, body, received_via::IMPORT).await {
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
    let raw = body::read(body, state.limits.max_body_bytes)
        .await
        .map_err(reject_body)?;
    let events = match body::parse(&raw, gzip, &state.limits) {
        Ok(events) => events,
        Err(e) => {
            // The client is told, and the payload is kept with the reason.
            state.delivery.dead_letter(&raw, &e.to_string()).await;
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
            },
        ));
    }
    let ctx = server_context(state, &site, headers, peer, received_via);
    accept(state, &ctx, events).await
}

/// Validates each event, sends the valid ones, dead-letters the others.
async fn accept(
    state: &AppState,
    ctx: &ServerContext,
    events: Vec<Value>,
) -> Result<(StatusCode, CollectResponse), ApiError> {
    let mut valid = Vec::with_capacity(events.len());
    let mut errors = Vec::new();
    let mut rejected = 0;
    for (index, value) in events.iter().enumerate() {
        match validate(value, ctx, &state.validation, || {
            uuid::Uuid::now_v7().to_string()
        }) {
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
                state
                    .delivery
                    .dead_letter(value.to_string().as_bytes(), &reason)
                    .await;
                errors.extend(field_errors.into_iter().map(|fe| EventError {
                    index,
                    field: fe.field,
                    reason: fe.reason,
                }));
            }
        }
    }
    if rejected > 0 {
        metrics::rejected("invalid_event", rejected as u64);
    }
    state
        .delivery
        .send(&valid)
        .await
        .map_err(|e| ApiError::Delivery(e, state.retry_after_secs))?;
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
    let status = match state.sites.resolve(&headers, write_key.as_deref()) {
        Err(e) => ApiError::Site(e).into_response().status(),
        Ok(r) if r.site.honour_dnt && wants_no_tracking(&headers) => StatusCode::OK,
        Ok(r) => {
            let ctx = server_context(&state, &r.site, &headers, peer, received_via::PIXEL);
            match accept(&state, &ctx, vec![Value::Object(event)]).await {
                Ok((status, _)) => status,
                Err(e) => e.into_response().status(),
            }
        }
    };
    metrics::request("/v1/p.gif", status.as_u16());
    (
        status,
        [(CONTENT_TYPE, "image/gif"), (CACHE_CONTROL, "no-store")],
        PIXEL_GIF,
    )
        .into_response()
}

async fn tracker() -> Response {
    metrics::request("/t.js", 200);
    (
        [
            (CONTENT_TYPE, "application/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        TRACKER_JS,
    )
        .into_response()
}
