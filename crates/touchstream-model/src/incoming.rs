//! What a web frontend sends, and its validation into a [`RawEvent`].
//!
//! Validation works on the parsed JSON value rather than through a derived `Deserialize`, so
//! that every problem is reported with the exact field and a reason a frontend developer can
//! act on, and so that all problems of one event are reported at once.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::{EventType, RawEvent, received_via};
use crate::time::{DAY_MS, MINUTE_MS, corrected_event_time, parse_rfc3339_ms};

/// An event as received, before validation: a JSON object.
pub type IncomingEvent = Map<String, Value>;

/// One problem with one field of one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    /// A field name longer than [`MAX_QUOTED_FIELD`] is cut (a hostile client can send a 1 MB
    /// key, and the answer must not echo it whole).
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: shorten(&field.into(), MAX_QUOTED_FIELD),
            reason: reason.into(),
        }
    }
}

/// Most bytes of a field name an error repeats.
pub const MAX_QUOTED_FIELD: usize = 64;
/// Most bytes of an offending value an error quotes.
pub const MAX_QUOTED_VALUE: usize = 32;
/// Most problems listed for one event; the rest are counted in one last entry.
pub const MAX_ERRORS_PER_EVENT: usize = 16;
/// Largest purchase revenue, in minor units: 10^11, i.e. one billion in a currency with two
/// decimals (EUR 1 000 000 000.00). Far above any real web order, far below where sums of
/// many orders could overflow an `i64`.
pub const MAX_REVENUE_MINOR: i64 = 100_000_000_000;

/// The ISO 4217 codes a purchase may be priced in (`data/iso4217.txt`).
const ISO_4217: &str = include_str!("../data/iso4217.txt");

/// Whether `code` (upper case) is an ISO 4217 code of a currency in circulation.
pub fn is_iso_4217(code: &str) -> bool {
    code.len() == 3
        && ISO_4217
            .lines()
            .any(|l| !l.starts_with('#') && l.trim() == code)
}

/// `s` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A value quoted in an error: a short prefix in quotes, with the full length when cut.
pub fn quote(s: &str) -> String {
    if s.len() <= MAX_QUOTED_VALUE {
        format!("{s:?}")
    } else {
        format!(
            "{:?}… ({} bytes)",
            shorten(s, MAX_QUOTED_VALUE).trim_end_matches('…'),
            s.len()
        )
    }
}

/// The first control character of `s` (NUL, other C0 and C1 controls, DEL) and its byte offset.
pub fn first_control(s: &str) -> Option<(usize, char)> {
    s.char_indices().find(|(_, c)| c.is_control())
}

/// A UUID in any of its spellings: hyphenated, simple (32 hex digits), braced, or as a URN
/// (`urn:uuid:`, its letters in any case, as URN schemes are), hex digits in any case.
pub fn parse_uuid(s: &str) -> Result<uuid::Uuid, uuid::Error> {
    let s = s.trim();
    let bare = match s.get(..9) {
        Some(prefix) if prefix.eq_ignore_ascii_case("urn:uuid:") => &s[9..],
        _ => s,
    };
    uuid::Uuid::try_parse(bare)
}

fn control_reason((at, c): (usize, char)) -> String {
    format!(
        "contains the control character U+{:04X} at byte {at}: ids, URLs and values must be printable text",
        c as u32
    )
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// What the collector knows about the request an event came in.
#[derive(Clone, Debug)]
pub struct ServerContext {
    pub received_at: i64,
    /// Already truncated (see [`anonymize_ip`]).
    pub ip: Option<String>,
    /// The request's User-Agent header, used when the event has none.
    pub user_agent: Option<String>,
    /// The site the request was authenticated for (a write key or a configured host).
    pub site_id: String,
    /// Which route: one of [`received_via`]'s names. It decides the time basis: live routes
    /// correct the client's clock skew, imports keep `occurred_at`.
    pub received_via: &'static str,
}

impl Default for ServerContext {
    fn default() -> Self {
        Self {
            received_at: 0,
            ip: None,
            user_agent: None,
            site_id: crate::event::DEFAULT_SITE.to_owned(),
            received_via: received_via::EVENTS,
        }
    }
}

impl ServerContext {
    /// Imports and replays carry history: their `occurred_at` is the event time.
    pub fn is_import(&self) -> bool {
        matches!(
            self.received_via,
            received_via::IMPORT | received_via::REPLAY
        )
    }
}

/// Bounds that keep one event from being absurd.
#[derive(Clone, Debug)]
pub struct ValidationLimits {
    pub max_string_len: usize,
    pub max_url_len: usize,
    pub max_properties: usize,
    /// How far ahead of our clock a (skew-corrected) event time may be.
    pub max_future_ms: i64,
    /// How far back a live event may be (year-1970 clocks are not fine).
    pub max_past_ms: i64,
    /// How far back an imported event may be.
    pub max_import_past_ms: i64,
}

impl Default for ValidationLimits {
    fn default() -> Self {
        Self {
            max_string_len: 512,
            max_url_len: 8_192,
            max_properties: 64,
            max_future_ms: 10 * MINUTE_MS,
            max_past_ms: 400 * DAY_MS,
            max_import_past_ms: 10 * 366 * DAY_MS,
        }
    }
}

const COMMON_FIELDS: &[&str] = &[
    "event_id",
    "event_type",
    "anonymous_id",
    "user_id",
    "occurred_at",
    "sent_at",
    "page_url",
    "referrer",
    "user_agent",
    "properties",
    "event_name",
];

const EVENT_TYPES: &str = "one of click, signup, download, purchase, identify, custom";

/// Fields only one event type may carry.
fn type_fields(t: EventType) -> &'static [&'static str] {
    match t {
        EventType::Click => &["target_url", "element"],
        EventType::Signup => &["signup_kind", "method"],
        EventType::Download => &["asset_id", "asset_kind"],
        EventType::Purchase => &["order_id", "revenue", "currency"],
        EventType::Identify | EventType::Custom => &[],
    }
}

/// Validates one incoming event. `make_event_id` is called only when the client sent none.
pub fn validate(
    value: &Value,
    ctx: &ServerContext,
    limits: &ValidationLimits,
    make_event_id: impl FnOnce() -> String,
) -> Result<RawEvent, Vec<FieldError>> {
    let Some(obj) = value.as_object() else {
        return Err(vec![FieldError::new(
            "(event)",
            format!("expected a JSON object, got {}", kind(value)),
        )]);
    };
    let mut v = Validator {
        obj,
        limits,
        errors: Vec::new(),
        omitted: 0,
    };

    let event_type = match obj.get("event_type") {
        None | Some(Value::Null) => {
            v.err("event_type", format!("missing; {EVENT_TYPES}"));
            None
        }
        Some(Value::String(s)) => {
            let t = EventType::parse(s);
            if t.is_none() {
                v.err(
                    "event_type",
                    format!("unknown event type {}; {EVENT_TYPES}", quote(s)),
                );
            }
            t
        }
        Some(other) => {
            v.err(
                "event_type",
                format!("expected a string, got {}", kind(other)),
            );
            None
        }
    };

    for key in obj.keys() {
        let known = COMMON_FIELDS.contains(&key.as_str())
            || EventType::ALL
                .iter()
                .any(|t| type_fields(*t).contains(&key.as_str()));
        if !known {
            v.err(key, "unknown field");
        } else if let Some(t) = event_type
            && !COMMON_FIELDS.contains(&key.as_str())
            && !type_fields(t).contains(&key.as_str())
        {
            let owner = EventType::ALL
                .into_iter()
                .find(|o| type_fields(*o).contains(&key.as_str()));
            let owner = owner.map_or("another event type", EventType::as_str);
            v.err(
                key,
                format!(
                    "only allowed on {owner} events, this is a {} event",
                    t.as_str()
                ),
            );
        }
    }

    let event_id = v.event_id();
    let anonymous_id = v.required_id("anonymous_id", 128);
    let user_id = if event_type == Some(EventType::Identify) {
        v.required_string("user_id", limits.max_string_len)
    } else {
        v.opt_string("user_id", limits.max_string_len)
    };
    let event_name = v.opt_string("event_name", limits.max_string_len);
    let occurred_at = if ctx.is_import() {
        v.required_time("occurred_at")
    } else {
        v.opt_time("occurred_at")
    };
    let sent_at = v.opt_time("sent_at");
    // A click is a page view and needs its page; a server-side conversion or identify may have
    // none (stored as an empty string).
    let page_url = match event_type {
        Some(EventType::Click) | None => v.required_url("page_url"),
        Some(_) => v.opt_url("page_url").or(Some(String::new())),
    };
    let referrer = v.opt_string("referrer", limits.max_url_len);
    let user_agent = v
        .opt_string("user_agent", limits.max_string_len * 4)
        .or_else(|| ctx.user_agent.clone());
    let properties = v.properties();
    let target_url = v.opt_string("target_url", limits.max_url_len);
    let element = v.opt_string("element", limits.max_string_len);
    let signup_kind = v.opt_string("signup_kind", limits.max_string_len);
    let method = v.opt_string("method", limits.max_string_len);
    let asset_id = v.opt_string("asset_id", limits.max_string_len);
    let asset_kind = v.opt_string("asset_kind", limits.max_string_len);
    let (order_id, revenue, currency) = if event_type == Some(EventType::Purchase) {
        (
            v.required_string("order_id", limits.max_string_len),
            v.revenue(),
            v.currency(),
        )
    } else {
        (None, None, None)
    };

    let occurred = occurred_at.unwrap_or(ctx.received_at);
    if !ctx.is_import()
        && let (Some(o), Some(s)) = (occurred_at, sent_at)
        && o > s + MINUTE_MS
    {
        v.err(
            "occurred_at",
            "later than sent_at: an event cannot happen after it was sent",
        );
    }
    let event_time = if ctx.is_import() {
        occurred
    } else {
        corrected_event_time(occurred, sent_at, ctx.received_at)
    };
    let max_past_ms = if ctx.is_import() {
        limits.max_import_past_ms
    } else {
        limits.max_past_ms
    };
    if event_time > ctx.received_at + limits.max_future_ms {
        v.err(
            if sent_at.is_some() { "sent_at" } else { "occurred_at" },
            format!(
                "{} minutes in the future (limit {}): check the client clock, or send sent_at so the collector can correct it",
                (event_time - ctx.received_at) / MINUTE_MS,
                limits.max_future_ms / MINUTE_MS
            ),
        );
    }
    if event_time < ctx.received_at - max_past_ms {
        v.err(
            "occurred_at",
            format!("more than {} days in the past", max_past_ms / DAY_MS),
        );
    }

    let errors = v.finish();
    match (errors.is_empty(), event_type, anonymous_id, page_url) {
        (true, Some(event_type), Some(anonymous_id), Some(page_url)) => Ok(RawEvent {
            event_id: event_id.unwrap_or_else(make_event_id),
            event_type,
            anonymous_id,
            user_id,
            occurred_at: occurred,
            sent_at,
            received_at: ctx.received_at,
            event_time,
            page_url,
            referrer,
            user_agent,
            ip: ctx.ip.clone(),
            properties,
            target_url,
            element,
            signup_kind,
            method,
            asset_id,
            asset_kind,
            order_id,
            revenue,
            currency,
            site_id: ctx.site_id.clone(),
            event_name,
            clock_correction_ms: event_time - occurred,
            received_via: ctx.received_via.to_owned(),
        }),
        _ => Err(errors),
    }
}

struct Validator<'a> {
    obj: &'a Map<String, Value>,
    limits: &'a ValidationLimits,
    errors: Vec<FieldError>,
    /// Problems past [`MAX_ERRORS_PER_EVENT`], counted but not listed.
    omitted: usize,
}

impl Validator<'_> {
    fn err(&mut self, field: &str, reason: impl Into<String>) {
        if self.errors.len() < MAX_ERRORS_PER_EVENT {
            self.errors.push(FieldError::new(field, reason));
        } else {
            self.omitted += 1;
        }
    }

    /// The problems found, at most [`MAX_ERRORS_PER_EVENT`] of them plus a count of the rest.
    fn finish(mut self) -> Vec<FieldError> {
        if self.omitted > 0 {
            self.errors.push(FieldError::new(
                "(event)",
                format!("{} more problems not listed", self.omitted),
            ));
        }
        self.errors
    }

    /// `event_id`: any spelling the uuid crate accepts (hyphenated, simple, braced, urn), stored
    /// once in the canonical lowercase hyphenated form, so every later stage (the enricher's
    /// deduplication on the text, ClickHouse's on the UUID) sees one spelling. The nil UUID is
    /// refused: every client that sends it would collide.
    fn event_id(&mut self) -> Option<String> {
        let id = self.opt_string("event_id", 64)?;
        match parse_uuid(&id) {
            Ok(u) if u.is_nil() => {
                self.err(
                    "event_id",
                    "the nil UUID is not an event id (send a random UUID, or leave it out and the collector makes one)",
                );
                None
            }
            Ok(u) => Some(u.hyphenated().to_string()),
            Err(_) => {
                self.err(
                    "event_id",
                    format!(
                        "{} is not a UUID (send a UUID, or leave it out and the collector makes one)",
                        quote(&id)
                    ),
                );
                None
            }
        }
    }

    /// A required id (`anonymous_id`). Ids that are UUIDs (the tracker makes them) are stored in
    /// the canonical lowercase hyphenated form, so one visitor is one key whatever the
    /// spelling; the nil UUID is refused, as it would make every such client one visitor.
    fn required_id(&mut self, field: &str, max_len: usize) -> Option<String> {
        let id = self.required_string(field, max_len)?;
        match parse_uuid(&id) {
            Ok(u) if u.is_nil() => {
                self.err(field, "the nil UUID is not an id");
                None
            }
            Ok(u) => Some(u.hyphenated().to_string()),
            Err(_) => Some(id),
        }
    }

    /// A string field; null and absent are the same; blank strings count as absent.
    fn opt_string(&mut self, field: &str, max_len: usize) -> Option<String> {
        match self.obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() > max_len => {
                self.err(
                    field,
                    format!("too long: {} bytes, limit {max_len}", s.len()),
                );
                None
            }
            Some(Value::String(s)) if first_control(s).is_some() => {
                let found = first_control(s).unwrap_or((0, '\0'));
                self.err(field, control_reason(found));
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.err(field, format!("expected a string, got {}", kind(other)));
                None
            }
        }
    }

    fn required_string(&mut self, field: &str, max_len: usize) -> Option<String> {
        let present = matches!(self.obj.get(field), Some(Value::String(s)) if !s.trim().is_empty());
        let value = self.opt_string(field, max_len);
        if !present && !self.errors.iter().any(|e| e.field == field) {
            self.err(field, "missing or empty");
        }
        value
    }

    fn required_url(&mut self, field: &str) -> Option<String> {
        let s = self.required_string(field, self.limits.max_url_len)?;
        self.check_url(field, s)
    }

    fn opt_url(&mut self, field: &str) -> Option<String> {
        let s = self.opt_string(field, self.limits.max_url_len)?;
        self.check_url(field, s)
    }

    fn check_url(&mut self, field: &str, s: String) -> Option<String> {
        match url::Url::parse(s.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(s),
            Ok(u) => {
                self.err(
                    field,
                    format!("scheme {:?} is not http or https", u.scheme()),
                );
                None
            }
            Err(e) => {
                self.err(field, format!("not an absolute URL ({e})"));
                None
            }
        }
    }

    fn required_time(&mut self, field: &str) -> Option<i64> {
        let t = self.opt_time(field);
        if t.is_none() && !self.errors.iter().any(|e| e.field == field) {
            self.err(
                field,
                "missing: an import keeps each event's own time, so every event needs one",
            );
        }
        t
    }

    /// RFC 3339 string or integer epoch milliseconds.
    fn opt_time(&mut self, field: &str) -> Option<i64> {
        match self.obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let t = parse_rfc3339_ms(s);
                if t.is_none() {
                    self.err(
                        field,
                        format!(
                            "{} is not an RFC 3339 timestamp (like 2026-11-25T10:00:00.000Z)",
                            quote(s)
                        ),
                    );
                }
                t
            }
            Some(Value::Number(n)) => match n.as_i64() {
                Some(ms) if ms > 0 => Some(ms),
                _ => {
                    self.err(field, "expected positive integer epoch milliseconds");
                    None
                }
            },
            Some(other) => {
                self.err(
                    field,
                    format!(
                        "expected an RFC 3339 string or epoch milliseconds, got {}",
                        kind(other)
                    ),
                );
                None
            }
        }
    }

    fn properties(&mut self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match self.obj.get("properties") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                if map.len() > self.limits.max_properties {
                    self.err(
                        "properties",
                        format!(
                            "{} entries, limit {}",
                            map.len(),
                            self.limits.max_properties
                        ),
                    );
                    return out;
                }
                for (k, val) in map {
                    let field = format!("properties.{k}");
                    let s = match val {
                        Value::String(s) => s.clone(),
                        // Numbers and booleans are unambiguous as text; nested values are not.
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => {
                            self.err(
                                &field,
                                format!(
                                    "expected a string, number or boolean, got {}",
                                    kind(other)
                                ),
                            );
                            continue;
                        }
                    };
                    if k.len() > 128 || s.len() > self.limits.max_string_len {
                        self.err(
                            &field,
                            format!(
                                "key ({} bytes, limit 128) or value ({} bytes, limit {}) too long",
                                k.len(),
                                s.len(),
                                self.limits.max_string_len
                            ),
                        );
                        continue;
                    }
                    if let Some(found) = first_control(k).or_else(|| first_control(&s)) {
                        let what = if first_control(k).is_some() {
                            "key"
                        } else {
                            "value"
                        };
                        self.err(&field, format!("{what} {}", control_reason(found)));
                        continue;
                    }
                    out.insert(k.clone(), s);
                }
            }
            Some(other) => self.err(
                "properties",
                format!("expected an object of strings, got {}", kind(other)),
            ),
        }
        out
    }

    fn revenue(&mut self) -> Option<i64> {
        match self.obj.get("revenue") {
            None | Some(Value::Null) => {
                self.err(
                    "revenue",
                    "missing: purchase revenue in minor units (cents), e.g. 4999",
                );
                None
            }
            Some(Value::Number(n)) => match n.as_i64() {
                Some(r) if r > MAX_REVENUE_MINOR => {
                    self.err(
                        "revenue",
                        format!(
                            "{r} minor units is more than the limit of {MAX_REVENUE_MINOR} (one billion in a two-decimal currency): send minor units (cents), not a bigger scale"
                        ),
                    );
                    None
                }
                Some(r) if r >= 0 => Some(r),
                _ => {
                    self.err(
                        "revenue",
                        format!("{n} is not a non-negative integer amount in minor units (cents)"),
                    );
                    None
                }
            },
            Some(other) => {
                self.err(
                    "revenue",
                    format!("expected an integer in minor units, got {}", kind(other)),
                );
                None
            }
        }
    }

    fn currency(&mut self) -> Option<String> {
        let c = self.required_string("currency", 3)?;
        let upper = c.to_ascii_uppercase();
        if is_iso_4217(&upper) {
            Some(upper)
        } else {
            self.err(
                "currency",
                format!(
                    "{} is not the ISO 4217 code of a currency in circulation, like EUR or USD",
                    quote(&c)
                ),
            );
            None
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Truncates an IP address before it leaves the collector: IPv4 to /24, IPv6 to /48.
pub fn anonymize_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0")
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return anonymize_ip(IpAddr::V4(v4));
            }
            let s = v6.segments();
            std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_795_600_800_000;

    fn ctx() -> ServerContext {
        ServerContext {
            received_at: NOW,
            ip: Some("10.1.2.0".into()),
            user_agent: Some("UA-header".into()),
            ..ServerContext::default()
        }
    }

    fn check(v: Value) -> Result<RawEvent, Vec<FieldError>> {
        validate(&v, &ctx(), &ValidationLimits::default(), || {
            "generated".into()
        })
    }

    fn fields(v: Value) -> Vec<String> {
        check(v).unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn accepts_a_minimal_click_and_fills_server_context() {
        let e = check(json!({"event_type": "click", "anonymous_id": "a1", "page_url": "https://shop.example/"})).unwrap();
        assert_eq!(e.event_id, "generated");
        assert_eq!(e.event_type, EventType::Click);
        assert_eq!(e.occurred_at, NOW);
        assert_eq!(e.event_time, NOW);
        assert_eq!(e.user_agent.as_deref(), Some("UA-header"));
        assert_eq!(e.ip.as_deref(), Some("10.1.2.0"));
    }

    #[test]
    fn keeps_client_ids_and_corrects_skew() {
        let e = check(json!({
            "event_id": "0B8E6C3C-3F3B-4A4E-9C1D-2B7C1E5A9F00", "event_type": "purchase", "anonymous_id": "a1",
            "page_url": "https://shop.example/thanks", "order_id": "o-1", "revenue": 4999, "currency": "eur",
            "occurred_at": NOW + 3_600_000 - 2_000, "sent_at": NOW + 3_600_000
        }))
        .unwrap();
        assert_eq!(e.event_id, "0b8e6c3c-3f3b-4a4e-9c1d-2b7c1e5a9f00");
        assert_eq!(e.event_time, NOW - 2_000);
        assert_eq!(e.currency.as_deref(), Some("EUR"));
        assert_eq!(e.revenue, Some(4999));
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        assert_eq!(
            fields(json!({"anonymous_id": "a", "page_url": "https://x.example/"})),
            ["event_type"]
        );
        assert_eq!(
            fields(
                json!({"event_type": "like", "anonymous_id": "a", "page_url": "https://x.example/"})
            ),
            ["event_type"]
        );
        assert_eq!(
            fields(json!({"event_type": "click", "page_url": "https://x.example/"})),
            ["anonymous_id"]
        );
        assert_eq!(
            fields(json!({"event_type": "click", "anonymous_id": "a", "page_url": "/relative"})),
            ["page_url"]
        );
        assert_eq!(
            fields(
                json!({"event_type": "click", "anonymous_id": "a", "page_url": "ftp://x.example/"})
            ),
            ["page_url"]
        );
        assert_eq!(
            fields(
                json!({"event_type": "purchase", "anonymous_id": "a", "page_url": "https://x.example/", "revenue": -1, "currency": "euro"})
            ),
            ["order_id", "revenue", "currency"]
        );
        assert_eq!(
            fields(
                json!({"event_type": "click", "anonymous_id": "a", "page_url": "https://x.example/", "revenue": 1, "colour": "red"})
            ),
            ["colour", "revenue"]
        );
        assert_eq!(
            fields(
                json!({"event_type": "click", "anonymous_id": 7, "page_url": "https://x.example/"})
            ),
            ["anonymous_id"]
        );
        assert_eq!(
            fields(
                json!({"event_type": "click", "anonymous_id": "a", "page_url": "https://x.example/", "event_id": "nope"})
            ),
            ["event_id"]
        );
        assert_eq!(
            fields(
                json!({"event_type": "click", "anonymous_id": "a", "page_url": "https://x.example/", "properties": {"n": [1]}})
            ),
            ["properties.n"]
        );
        assert_eq!(check(json!([1])).unwrap_err()[0].field, "(event)");
    }

    #[test]
    fn rejects_absurd_timestamps() {
        let future = check(
            json!({"event_type": "click", "anonymous_id": "a", "page_url": "https://x.example/", "occurred_at": NOW + DAY_MS}),
        );
        let err = future.unwrap_err();
        assert_eq!(err[0].field, "occurred_at");
        assert!(err[0].reason.contains("future"), "{}", err[0].reason);
        assert_eq!(
            fields(
                json!({"event_type": "click", "anonymous_id": "a", "page_url": "https://x.example/", "occurred_at": "1970-01-02T00:00:00Z"})
            ),
            ["occurred_at"]
        );
        assert_eq!(
            fields(
                json!({"event_type": "click", "anonymous_id": "a", "page_url": "https://x.example/", "occurred_at": "soon"})
            ),
            ["occurred_at"]
        );
        // A fast client clock is corrected, not rejected, when sent_at comes along.
        assert!(check(json!({"event_type": "click", "anonymous_id": "a", "page_url": "https://x.example/", "occurred_at": NOW + DAY_MS, "sent_at": NOW + DAY_MS})).is_ok());
    }

    fn click_with(extra: Value) -> Value {
        let mut v =
            json!({"event_type": "click", "anonymous_id": "a", "page_url": "https://x.example/"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    }

    fn purchase(revenue: Value, currency: &str) -> Value {
        json!({"event_type": "purchase", "anonymous_id": "a", "page_url": "https://x.example/",
               "order_id": "o-1", "revenue": revenue, "currency": currency})
    }

    #[test]
    fn refuses_control_characters_with_the_field_named() {
        for (field, value) in [
            ("anonymous_id", json!("a\u{0}b")),
            ("user_id", json!("u\u{1}")),
            ("page_url", json!("https://x.example/\u{0}")),
            ("referrer", json!("https://r.example/\u{7f}")),
            ("element", json!("\u{9b}button")),
        ] {
            let err = check(click_with(json!({ field: value }))).unwrap_err();
            assert_eq!(err[0].field, field, "{err:?}");
            assert!(err[0].reason.contains("control character"), "{err:?}");
        }
        let err = check(click_with(json!({"properties": {"k": "v\u{0}"}}))).unwrap_err();
        assert_eq!(err[0].field, "properties.k");
        let err = check(click_with(json!({"properties": {"k\u{0}": "v"}}))).unwrap_err();
        assert!(err[0].reason.starts_with("key contains"), "{err:?}");
    }

    #[test]
    fn bounds_revenue_and_checks_currency_against_iso_4217() {
        assert_eq!(
            check(purchase(json!(MAX_REVENUE_MINOR), "EUR"))
                .unwrap()
                .revenue,
            Some(MAX_REVENUE_MINOR)
        );
        for r in [
            json!(MAX_REVENUE_MINOR + 1),
            json!(i64::MAX),
            json!(1_000_000_000_000_000_i64),
            json!(1.5),
            json!(-3),
        ] {
            let err = check(purchase(r.clone(), "EUR")).unwrap_err();
            assert_eq!(err[0].field, "revenue", "{r}: {err:?}");
        }
        assert_eq!(
            check(purchase(json!(100), "jpy"))
                .unwrap()
                .currency
                .as_deref(),
            Some("JPY")
        );
        for c in ["QQQ", "XAU", "XXX", "HRK", "EU", "EURO"] {
            let err = check(purchase(json!(100), c)).unwrap_err();
            assert_eq!(err[0].field, "currency", "{c}: {err:?}");
        }
        assert!(is_iso_4217("USD") && is_iso_4217("XOF") && !is_iso_4217("# I"));
    }

    #[test]
    fn canonicalises_every_uuid_spelling_and_refuses_the_nil_uuid() {
        let canonical = "0b8e6c3c-3f3b-4a4e-9c1d-2b7c1e5a9f00";
        for spelling in [
            canonical,
            "0B8E6C3C-3F3B-4A4E-9C1D-2B7C1E5A9F00",
            "0b8e6c3c3f3b4a4e9c1d2b7c1e5a9f00",
            "{0b8e6c3c-3f3b-4a4e-9c1d-2b7c1e5a9f00}",
            "urn:uuid:0B8E6C3C-3F3B-4A4E-9C1D-2B7C1E5A9F00",
            "URN:UUID:0B8E6C3C-3F3B-4A4E-9C1D-2B7C1E5A9F00",
        ] {
            let e = check(click_with(
                json!({"event_id": spelling, "anonymous_id": spelling}),
            ))
            .unwrap();
            assert_eq!(e.event_id, canonical, "{spelling}");
            assert_eq!(e.anonymous_id, canonical, "{spelling}");
        }
        let nil = "00000000-0000-0000-0000-000000000000";
        assert_eq!(fields(click_with(json!({"event_id": nil}))), ["event_id"]);
        assert_eq!(
            fields(click_with(json!({"anonymous_id": nil}))),
            ["anonymous_id"]
        );
        // Ids that are not UUIDs are kept as sent.
        assert_eq!(
            check(click_with(json!({"anonymous_id": "Visitor-7"})))
                .unwrap()
                .anonymous_id,
            "Visitor-7"
        );
    }

    #[test]
    fn errors_quote_only_a_short_prefix_and_list_a_bounded_number() {
        let long = "k".repeat(1_000_000);
        let err = check(click_with(json!({ long.clone(): 1 }))).unwrap_err();
        assert!(
            err[0].field.len() <= MAX_QUOTED_FIELD + 3,
            "{}",
            err[0].field.len()
        );
        let err = check(click_with(json!({"event_type": long.clone()}))).unwrap_err();
        assert!(
            err[0].reason.len() < 200 && err[0].reason.contains("1000000 bytes"),
            "{}",
            err[0].reason
        );
        let mut many = click_with(json!({}));
        for i in 0..50_000 {
            many[format!("unknown_{i}")] = json!(1);
        }
        let err = check(many).unwrap_err();
        assert_eq!(err.len(), MAX_ERRORS_PER_EVENT + 1);
        assert_eq!(
            err.last().unwrap().reason,
            format!("{} more problems not listed", 50_000 - MAX_ERRORS_PER_EVENT)
        );
    }

    #[test]
    fn imports_keep_occurred_at_and_live_events_record_their_correction() {
        let import = ServerContext {
            received_via: received_via::IMPORT,
            site_id: "shop".into(),
            ..ctx()
        };
        let old = NOW - 45 * DAY_MS;
        let body = json!({"event_type": "click", "anonymous_id": "a", "page_url": "https://x.example/",
            "occurred_at": old, "sent_at": old + 5_000});
        let e = validate(&body, &import, &ValidationLimits::default(), || "g".into()).unwrap();
        assert_eq!((e.event_time, e.clock_correction_ms), (old, 0));
        assert_eq!(
            (e.site_id.as_str(), e.received_via.as_str()),
            ("shop", "import")
        );
        // The same body live: the client sent it 5 s after it happened, so it happened 5 s
        // before it arrived.
        let live = check(body).unwrap();
        assert_eq!(live.event_time, NOW - 5_000);
        assert_eq!(live.clock_correction_ms, NOW - 5_000 - old);
        assert_eq!(live.received_via, "events");
        // An import without its own time is refused; older than a live event may be is fine.
        let untimed =
            json!({"event_type": "click", "anonymous_id": "a", "page_url": "https://x.example/"});
        let err = validate(&untimed, &import, &ValidationLimits::default(), || {
            "g".into()
        })
        .unwrap_err();
        assert_eq!(err[0].field, "occurred_at");
        let ancient = json!({"event_type": "click", "anonymous_id": "a", "page_url": "https://x.example/", "occurred_at": NOW - 900 * DAY_MS});
        assert!(
            validate(&ancient, &import, &ValidationLimits::default(), || "g"
                .into())
            .is_ok()
        );
        assert_eq!(fields(ancient), ["occurred_at"]);
    }

    #[test]
    fn identify_needs_a_user_and_server_side_conversions_need_no_page() {
        assert_eq!(
            fields(json!({"event_type": "identify", "anonymous_id": "a"})),
            ["user_id"]
        );
        let e =
            check(json!({"event_type": "identify", "anonymous_id": "a", "user_id": "u"})).unwrap();
        assert_eq!(
            (e.event_type, e.page_url.as_str()),
            (EventType::Identify, "")
        );
        let e = check(json!({"event_type": "purchase", "anonymous_id": "a", "order_id": "o", "revenue": 100, "currency": "EUR"})).unwrap();
        assert_eq!(e.page_url, "");
        let e = check(
            json!({"event_type": "custom", "event_name": "Video Played", "anonymous_id": "a"}),
        )
        .unwrap();
        assert_eq!(e.event_name.as_deref(), Some("Video Played"));
        assert_eq!(
            fields(json!({"event_type": "click", "anonymous_id": "a"})),
            ["page_url"]
        );
        assert_eq!(
            fields(json!({"event_type": "signup", "anonymous_id": "a", "page_url": "nope"})),
            ["page_url"]
        );
    }

    #[test]
    fn anonymizes_ips() {
        assert_eq!(anonymize_ip("203.0.113.77".parse().unwrap()), "203.0.113.0");
        assert_eq!(
            anonymize_ip("2001:db8:abcd:12::1".parse().unwrap()),
            "2001:db8:abcd::"
        );
        assert_eq!(
            anonymize_ip("::ffff:198.51.100.9".parse().unwrap()),
            "198.51.100.0"
        );
    }
}
