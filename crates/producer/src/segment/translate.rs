//! One Segment message (a call) into the collector's own event shape, which
//! [`touchstream_model::incoming::validate`] then checks like any other event. Problems found
//! here and by the validator are named in Segment's vocabulary (`properties.revenue`, not
//! `revenue`).

use std::borrow::Cow;

use serde_json::{Map, Value};
use touchstream_model::{EventType, FieldError, TrackRule};

use super::mapping::{Mapping, currency_exponent, to_minor_units};

/// A call kind of the tracking API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Track,
    Page,
    Screen,
    Identify,
    Alias,
    Group,
}

impl Call {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "track" => Self::Track,
            "page" => Self::Page,
            "screen" => Self::Screen,
            "identify" => Self::Identify,
            "alias" => Self::Alias,
            "group" => Self::Group,
            _ => return None,
        })
    }
}

/// What the translation needs to know besides the message.
pub struct Inputs<'a> {
    pub mapping: &'a Mapping,
    /// Context of the whole batch (`{"batch": [...], "context": {...}}`); the message's own
    /// context wins key by key.
    pub batch_context: Option<&'a Map<String, Value>>,
    /// `sentAt` of the whole batch, used when the message has none.
    pub batch_sent_at: Option<&'a Value>,
    /// The key is a server-side one: `timestamp` is the event time as sent (the server's clock
    /// is right, and history is sent that way) and `context.ip` is believed.
    pub server_side: bool,
    /// Host for the URL of a screen that names none (apps have no page URL).
    pub app_host: &'a str,
    /// Longest property value kept (longer ones, and nested values whose JSON is longer, are
    /// left out rather than refusing the event).
    pub max_property_len: usize,
    pub max_properties: usize,
}

/// Where a touchstream field came from in the message, to name validator errors.
pub type Origins = Vec<(&'static str, Cow<'static, str>)>;

/// A message translated into an incoming event.
#[derive(Debug)]
pub struct Translated {
    /// The collector's own event shape, to validate.
    pub event: Value,
    /// `sentAt` to store after validation when the event time is `timestamp` as sent (then
    /// the validator is not given `sent_at`, which would correct it).
    pub sent_at_as_is: Option<Value>,
    /// `context.ip`, when believed.
    pub ip: Option<String>,
    /// touchstream field → the Segment field it came from.
    pub origins: Origins,
    /// The Segment `messageId`, if given.
    pub message_id: Option<String>,
}

impl Translated {
    /// A validator error named after the Segment field it came from.
    pub fn rename(&self, mut e: FieldError) -> FieldError {
        if let Some((_, seg)) = self.origins.iter().rev().find(|(ts, _)| *ts == e.field) {
            e.field = seg.to_string();
            return e;
        }
        let segment_name = match e.field.as_str() {
            "anonymous_id" => "anonymousId",
            "user_id" => "userId",
            "user_agent" => "context.userAgent",
            "sent_at" => "sentAt",
            "occurred_at" => "timestamp",
            "event_name" => "event",
            "event_id" => "messageId",
            "page_url" => "context.page.url",
            "referrer" => "context.page.referrer",
            _ => return e,
        };
        e.field = segment_name.into();
        e
    }
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A string field, or a number given where Segment allows one (ids): `None` when absent,
/// null or blank.
fn id_string(v: Option<Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Takes a non-blank string out of an object.
fn take_str(obj: &mut Map<String, Value>, key: &str) -> Option<String> {
    match obj.remove(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s),
        _ => None,
    }
}

/// Translates one message of the kind `call`, moving its values (it is not needed after).
pub fn translate(
    mut msg: Map<String, Value>,
    call: Call,
    inputs: &Inputs<'_>,
) -> Result<Translated, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut out = Map::new();
    let mut origins: Origins = Vec::with_capacity(8);

    // The message's context over the batch's.
    let mut context: Map<String, Value> = match (msg.remove("context"), inputs.batch_context) {
        (Some(Value::Object(own)), Some(batch)) => {
            let mut m = batch.clone();
            m.extend(own);
            m
        }
        (Some(Value::Object(own)), None) => own,
        (None | Some(Value::Null), batch) => batch.cloned().unwrap_or_default(),
        (Some(other), batch) => {
            errors.push(err(
                "context",
                format!("expected an object, got {}", kind(&other)),
            ));
            batch.cloned().unwrap_or_default()
        }
    };
    let mut page = match context.remove("page") {
        Some(Value::Object(p)) => p,
        _ => Map::new(),
    };
    let mut properties = match msg.remove("properties") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            errors.push(err(
                "properties",
                format!("expected an object, got {}", kind(&other)),
            ));
            Map::new()
        }
    };

    // Who.
    let user_id = id_string(msg.remove("userId"));
    let anonymous_id = if call == Call::Alias {
        origins.push(("anonymous_id", Cow::Borrowed("previousId")));
        let previous = id_string(msg.remove("previousId"));
        if previous.is_none() {
            errors.push(err("previousId", "missing: the id to link to userId"));
        }
        if user_id.is_none() {
            errors.push(err("userId", "missing: the user previousId is linked to"));
        }
        previous
    } else {
        match id_string(msg.remove("anonymousId")) {
            Some(a) => Some(a),
            // A backend call about a known user: the user's own device, named by the user id.
            None => {
                origins.push(("anonymous_id", Cow::Borrowed("userId")));
                if user_id.is_none() {
                    errors.push(err(
                        "anonymousId",
                        "missing: a call needs an anonymousId or a userId",
                    ));
                }
                user_id.clone()
            }
        }
    };
    if let Some(a) = anonymous_id {
        out.insert("anonymous_id".into(), Value::String(a));
    }
    if let Some(u) = user_id {
        out.insert("user_id".into(), Value::String(u));
    }

    // When (Segment's rule): the device clock's originalTimestamp is corrected with sentAt;
    // a `timestamp` from a server-side key is the event time as sent; a browser's or app's
    // `timestamp` is its device clock, corrected like originalTimestamp.
    let sent_at = msg
        .remove("sentAt")
        .filter(|v| !v.is_null())
        .or_else(|| inputs.batch_sent_at.filter(|v| !v.is_null()).cloned());
    let original = msg.remove("originalTimestamp").filter(|v| !v.is_null());
    let timestamp = msg.remove("timestamp").filter(|v| !v.is_null());
    let mut sent_at_as_is = None;
    match (original, timestamp) {
        (Some(o), _) => {
            out.insert("occurred_at".into(), o);
            origins.push(("occurred_at", Cow::Borrowed("originalTimestamp")));
            if let Some(s) = sent_at {
                out.insert("sent_at".into(), s);
            }
        }
        (None, Some(t)) => {
            out.insert("occurred_at".into(), t);
            origins.push(("occurred_at", Cow::Borrowed("timestamp")));
            if inputs.server_side {
                sent_at_as_is = sent_at;
            } else if let Some(s) = sent_at {
                out.insert("sent_at".into(), s);
            }
        }
        (None, None) => {
            if let Some(s) = sent_at {
                out.insert("sent_at".into(), s);
            }
        }
    }

    // Where: the page, from the context or (analytics.js page calls) the properties.
    let is_view = matches!(call, Call::Page | Call::Screen);
    let mut page_url = take_str(&mut page, "url").map(|u| (u, "context.page.url"));
    if is_view {
        let from_properties = take_str(&mut properties, "url");
        if page_url.is_none() {
            page_url = from_properties.map(|u| (u, "properties.url"));
        }
    }
    let mut referrer = take_str(&mut page, "referrer").map(|r| (r, "context.page.referrer"));
    if call == Call::Page {
        let from_properties = take_str(&mut properties, "referrer");
        if referrer.is_none() {
            referrer = from_properties.map(|r| (r, "properties.referrer"));
        }
    }
    if let Some((r, from)) = referrer {
        out.insert("referrer".into(), Value::String(r));
        origins.push(("referrer", Cow::Borrowed(from)));
    }
    if let Some(ua) = take_str(&mut context, "userAgent") {
        out.insert("user_agent".into(), Value::String(ua));
    }
    let ip = if inputs.server_side {
        take_str(&mut context, "ip")
    } else {
        None
    };

    // What.
    let event_type = match call {
        Call::Page | Call::Screen => {
            let name = id_string(msg.remove("name"));
            let prop_name = take_str(&mut properties, "name");
            for k in ["path", "search"] {
                properties.remove(k);
            }
            let name = name.or(prop_name);
            if page_url.is_none() && call == Call::Screen {
                let screen = name.as_deref().unwrap_or("screen");
                page_url = Some((
                    format!(
                        "https://{}/screen/{}",
                        inputs.app_host,
                        url::form_urlencoded::byte_serialize(screen.as_bytes()).collect::<String>()
                    ),
                    "name",
                ));
            }
            if let Some(n) = name {
                out.insert("event_name".into(), Value::String(n));
                origins.push(("event_name", Cow::Borrowed("name")));
            }
            if page_url.is_none() {
                errors.push(err(
                    "context.page.url",
                    "missing: a page call needs the page's URL (context.page.url or properties.url)",
                ));
            }
            EventType::Click
        }
        Call::Identify | Call::Alias => {
            properties.clear();
            EventType::Identify
        }
        Call::Group => {
            properties.clear();
            out.insert("event_name".into(), Value::String("group".into()));
            match id_string(msg.remove("groupId")) {
                Some(g) => {
                    properties.insert("group_id".into(), Value::String(g));
                }
                None => errors.push(err("groupId", "missing")),
            }
            EventType::Custom
        }
        Call::Track => match id_string(msg.remove("event")) {
            None => {
                errors.push(err("event", "missing: a track call needs the event's name"));
                EventType::Custom
            }
            Some(event) => {
                let t = match inputs.mapping.rule(&event) {
                    Some(rule) => {
                        track_fields(
                            rule,
                            &mut properties,
                            inputs.mapping,
                            &mut out,
                            &mut origins,
                            &mut errors,
                        );
                        rule.event_type
                    }
                    None => EventType::Custom,
                };
                out.insert("event_name".into(), Value::String(event));
                origins.push(("event_name", Cow::Borrowed("event")));
                t
            }
        },
    };
    out.insert(
        "event_type".into(),
        Value::String(event_type.as_str().into()),
    );

    if let Some((mut url, from)) = page_url {
        if let Some(Value::Object(campaign)) = context.get("campaign") {
            url = with_campaign(url, campaign);
        }
        out.insert("page_url".into(), Value::String(url));
        origins.push(("page_url", Cow::Borrowed(from)));
    }

    let kept = keep_properties(properties, inputs);
    if !kept.is_empty() {
        out.insert("properties".into(), Value::Object(kept));
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Translated {
        event: Value::Object(out),
        sent_at_as_is,
        ip,
        origins,
        message_id: id_string(msg.remove("messageId")),
    })
}

/// Takes the first of `keys` present (not null) out of the properties, with its name.
fn take_first(properties: &mut Map<String, Value>, keys: &[String]) -> Option<(String, Value)> {
    let key = keys
        .iter()
        .find(|k| properties.get(k.as_str()).is_some_and(|v| !v.is_null()))?;
    properties.remove(key.as_str()).map(|v| (key.clone(), v))
}

fn track_fields(
    rule: &TrackRule,
    properties: &mut Map<String, Value>,
    mapping: &Mapping,
    out: &mut Map<String, Value>,
    origins: &mut Origins,
    errors: &mut Vec<FieldError>,
) {
    let f = &mapping.fields;
    let mut text = |field: &'static str,
                    keys: &[String],
                    default: Option<&String>,
                    properties: &mut Map<String, Value>,
                    out: &mut Map<String, Value>| {
        match take_first(properties, keys) {
            Some((k, v)) => {
                origins.push((field, Cow::Owned(format!("properties.{k}"))));
                let s = match v {
                    Value::Number(n) => Value::String(n.to_string()),
                    other => other,
                };
                out.insert(field.into(), s);
            }
            None => {
                if let Some(d) = default {
                    out.insert(field.into(), Value::String(d.clone()));
                }
                origins.push((
                    field,
                    Cow::Owned(format!(
                        "properties.{}",
                        keys.first().map_or(field, String::as_str)
                    )),
                ));
            }
        }
    };
    match rule.event_type {
        EventType::Signup => {
            text(
                "signup_kind",
                &f.signup_kind,
                rule.signup_kind.as_ref(),
                properties,
                out,
            );
            text("method", &f.method, rule.method.as_ref(), properties, out);
        }
        EventType::Download => {
            text("asset_id", &f.asset_id, None, properties, out);
            text(
                "asset_kind",
                &f.asset_kind,
                rule.asset_kind.as_ref(),
                properties,
                out,
            );
        }
        EventType::Purchase => {
            text("order_id", &f.order_id, None, properties, out);
            let currency = match take_first(properties, &f.currency) {
                Some((k, Value::String(c))) => {
                    origins.push(("currency", Cow::Owned(format!("properties.{k}"))));
                    c.trim().to_ascii_uppercase()
                }
                Some((k, other)) => {
                    errors.push(err(
                        format!("properties.{k}"),
                        format!("expected an ISO 4217 code like EUR, got {}", kind(&other)),
                    ));
                    String::new()
                }
                None => mapping.default_currency.clone(),
            };
            match take_first(properties, &f.revenue) {
                Some((k, v)) => {
                    origins.push(("revenue", Cow::Owned(format!("properties.{k}"))));
                    match to_minor_units(&v, currency_exponent(&currency)) {
                        Ok(minor) => {
                            out.insert("revenue".into(), Value::from(minor));
                        }
                        Err(reason) => errors.push(err(format!("properties.{k}"), reason)),
                    }
                }
                None => errors.push(err(
                    format!("properties.{}", f.revenue.join("|properties.")),
                    "missing: the order's amount in major units (like 19.99)",
                )),
            }
            out.insert("currency".into(), Value::String(currency));
        }
        EventType::Click | EventType::Identify | EventType::Custom => {}
    }
}

/// The call's properties touchstream can store: scalars as they are, nested values (like
/// `products`) as compact JSON; those too long, and any past the limit, are left out.
fn keep_properties(p: Map<String, Value>, inputs: &Inputs<'_>) -> Map<String, Value> {
    let mut kept = Map::new();
    for (k, v) in p {
        if kept.len() >= inputs.max_properties {
            break;
        }
        if k.len() > 128 || k.trim().is_empty() {
            continue;
        }
        let value = match v {
            Value::Null => continue,
            Value::String(s) if s.len() > inputs.max_property_len => continue,
            v @ (Value::String(_) | Value::Number(_) | Value::Bool(_)) => v,
            nested => {
                let json = nested.to_string();
                if json.len() > inputs.max_property_len {
                    continue;
                }
                Value::String(json)
            }
        };
        kept.insert(k, value);
    }
    kept
}

/// Adds the campaign the SDK parsed (`context.campaign`) to a page URL that carries none, so
/// that the classifier sees it as it would on the landing URL.
fn with_campaign(url: String, campaign: &Map<String, Value>) -> String {
    let Ok(mut parsed) = url::Url::parse(&url) else {
        return url;
    };
    if parsed.query_pairs().any(|(k, _)| k.starts_with("utm_")) {
        return url;
    }
    let pairs: Vec<(&str, &str)> = [
        ("source", "utm_source"),
        ("medium", "utm_medium"),
        ("name", "utm_campaign"),
        ("term", "utm_term"),
        ("content", "utm_content"),
        ("id", "utm_id"),
    ]
    .iter()
    .filter_map(|(k, utm)| {
        campaign
            .get(*k)
            .and_then(Value::as_str)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (*utm, v))
    })
    .collect();
    if pairs.is_empty() {
        return url;
    }
    parsed.query_pairs_mut().extend_pairs(pairs);
    parsed.to_string()
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn inputs(server_side: bool) -> Inputs<'static> {
        Inputs {
            mapping: Mapping::builtin(),
            batch_context: None,
            batch_sent_at: None,
            server_side,
            app_host: "app.invalid",
            max_property_len: 512,
            max_properties: 64,
        }
    }

    fn run(call: Call, msg: Value, server_side: bool) -> Result<Translated, Vec<FieldError>> {
        translate(msg.as_object().unwrap().clone(), call, &inputs(server_side))
    }

    fn fields(r: Result<Translated, Vec<FieldError>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_page_call_is_a_click_with_its_campaign() {
        let t = run(
            Call::Page,
            json!({"anonymousId": "a1", "name": "Home", "messageId": "m-1",
                "properties": {"url": "https://shop.example/?x=1", "title": "Shop", "path": "/"},
                "context": {"campaign": {"source": "linkedin", "medium": "social", "content": "post-42"},
                    "page": {"referrer": "https://www.linkedin.com/"}, "userAgent": "UA", "ip": "203.0.113.5"},
                "originalTimestamp": "2026-11-25T10:00:00.000Z", "sentAt": "2026-11-25T10:00:01.000Z",
                "integrations": {"All": true}}),
            false,
        )
        .unwrap();
        let e = t.event.as_object().unwrap();
        assert_eq!(e["event_type"], "click");
        assert_eq!(
            e["page_url"],
            "https://shop.example/?x=1&utm_source=linkedin&utm_medium=social&utm_content=post-42"
        );
        assert_eq!(e["referrer"], "https://www.linkedin.com/");
        assert_eq!(e["event_name"], "Home");
        assert_eq!(e["user_agent"], "UA");
        assert_eq!(e["occurred_at"], "2026-11-25T10:00:00.000Z");
        assert_eq!(e["sent_at"], "2026-11-25T10:00:01.000Z");
        assert_eq!(e["properties"], json!({"title": "Shop"}));
        assert_eq!(t.message_id.as_deref(), Some("m-1"));
        // A browser's context.ip is not believed; a backend's is.
        assert_eq!(t.ip, None);
    }

    #[test]
    fn order_completed_is_a_purchase_in_minor_units() {
        let t = run(
            Call::Track,
            json!({"userId": "u1", "event": "Order Completed", "timestamp": "2026-11-25T10:00:00Z",
                "properties": {"order_id": 77, "total": 19.99, "currency": "eur",
                    "products": [{"sku": "a", "price": 9.99}, {"sku": "b", "price": 10}]},
                "context": {"ip": "203.0.113.5"}}),
            true,
        )
        .unwrap();
        let e = t.event.as_object().unwrap();
        assert_eq!(e["event_type"], "purchase");
        assert_eq!(e["revenue"], 1999);
        assert_eq!(e["currency"], "EUR");
        assert_eq!(e["order_id"], "77");
        assert_eq!(e["event_name"], "Order Completed");
        // A backend's call about a known user: no page, the user as its own device.
        assert_eq!(e["anonymous_id"], "u1");
        assert!(!e.contains_key("page_url"));
        assert_eq!(
            e["properties"]["products"],
            r#"[{"price":9.99,"sku":"a"},{"price":10,"sku":"b"}]"#
        );
        // Server-side timestamp: as sent, no correction.
        assert!(!e.contains_key("sent_at"));
        assert_eq!(t.ip.as_deref(), Some("203.0.113.5"));
        // The default currency, and JPY without minor units.
        let t = run(
            Call::Track,
            json!({"anonymousId": "a", "event": "Order Completed", "properties": {"order_id": "o", "revenue": "12.5"}}),
            true,
        )
        .unwrap();
        assert_eq!(
            (t.event["revenue"].clone(), t.event["currency"].clone()),
            (json!(1250), json!("USD"))
        );
        let t = run(
            Call::Track,
            json!({"anonymousId": "a", "event": "Order Completed", "properties": {"order_id": "o", "revenue": 1500, "currency": "JPY"}}),
            true,
        )
        .unwrap();
        assert_eq!(t.event["revenue"], 1500);
    }

    #[test]
    fn track_names_map_to_conversions_or_stay_custom() {
        let t = run(
            Call::Track,
            json!({"anonymousId": "a", "event": "Newsletter Subscribed", "properties": {"method": "footer", "list": "weekly"}}),
            false,
        )
        .unwrap();
        assert_eq!(t.event["event_type"], "signup");
        assert_eq!(t.event["signup_kind"], "newsletter");
        assert_eq!(t.event["method"], "footer");
        assert_eq!(t.event["properties"], json!({"list": "weekly"}));
        let t = run(
            Call::Track,
            json!({"anonymousId": "a", "event": "Whitepaper Downloaded", "properties": {"file_name": "wp.pdf"}}),
            false,
        )
        .unwrap();
        assert_eq!(
            (
                t.event["event_type"].as_str(),
                t.event["asset_id"].as_str(),
                t.event["asset_kind"].as_str()
            ),
            (Some("download"), Some("wp.pdf"), Some("whitepaper"))
        );
        let t = run(
            Call::Track,
            json!({"anonymousId": "a", "event": "Product Viewed", "properties": {"sku": "x"}}),
            false,
        )
        .unwrap();
        assert_eq!(t.event["event_type"], "custom");
        assert_eq!(t.event["event_name"], "Product Viewed");
    }

    #[test]
    fn identify_alias_and_group() {
        let t = run(
            Call::Identify,
            json!({"anonymousId": "a", "userId": "u", "traits": {"email": "x@y"}}),
            false,
        )
        .unwrap();
        assert_eq!(
            t.event,
            json!({"event_type": "identify", "anonymous_id": "a", "user_id": "u"})
        );
        let t = run(
            Call::Alias,
            json!({"previousId": "a", "userId": "u"}),
            false,
        )
        .unwrap();
        assert_eq!(
            t.event,
            json!({"event_type": "identify", "anonymous_id": "a", "user_id": "u"})
        );
        assert_eq!(
            fields(run(Call::Alias, json!({"userId": "u"}), false)),
            ["previousId"]
        );
        let t = run(
            Call::Group,
            json!({"userId": "u", "groupId": 42, "traits": {"plan": "pro"}}),
            false,
        )
        .unwrap();
        assert_eq!(t.event["event_type"], "custom");
        assert_eq!(t.event["properties"], json!({"group_id": "42"}));
    }

    #[test]
    fn problems_are_named_in_segments_vocabulary() {
        assert_eq!(
            fields(run(Call::Track, json!({"event": "x"}), false)),
            ["anonymousId"]
        );
        assert_eq!(
            fields(run(Call::Track, json!({"anonymousId": "a"}), false)),
            ["event"]
        );
        assert_eq!(
            fields(run(Call::Page, json!({"anonymousId": "a"}), false)),
            ["context.page.url"]
        );
        assert_eq!(
            fields(run(
                Call::Track,
                json!({"anonymousId": "a", "event": "Order Completed", "properties": {"order_id": "o", "revenue": "lots"}}),
                false
            )),
            ["properties.revenue"]
        );
        assert_eq!(
            fields(run(
                Call::Track,
                json!({"anonymousId": "a", "event": "Order Completed", "properties": {"order_id": "o"}}),
                false
            )),
            ["properties.revenue|properties.total|properties.value"]
        );
        let t = run(
            Call::Track,
            json!({"anonymousId": "a", "event": "Order Completed", "properties": {"revenue": 1}}),
            false,
        )
        .unwrap();
        let renamed = t.rename(FieldError {
            field: "order_id".into(),
            reason: "missing".into(),
        });
        assert_eq!(renamed.field, "properties.order_id");
        let renamed = t.rename(FieldError {
            field: "anonymous_id".into(),
            reason: "x".into(),
        });
        assert_eq!(renamed.field, "anonymousId");
    }

    #[test]
    fn a_screen_without_url_gets_one_and_batch_context_fills_in() {
        let t = run(
            Call::Screen,
            json!({"anonymousId": "a", "name": "Cart & Pay"}),
            false,
        )
        .unwrap();
        assert_eq!(
            t.event["page_url"],
            "https://app.invalid/screen/Cart+%26+Pay"
        );
        let batch_context =
            json!({"userAgent": "batch-UA", "page": {"url": "https://shop.example/p"}});
        let sent = json!("2026-11-25T10:00:05Z");
        let i = Inputs {
            batch_context: batch_context.as_object(),
            batch_sent_at: Some(&sent),
            ..inputs(false)
        };
        let msg = json!({"anonymousId": "a", "event": "Signed Up", "timestamp": "2026-11-25T10:00:00Z", "context": {"userAgent": "own-UA"}});
        let t = translate(msg.as_object().unwrap().clone(), Call::Track, &i).unwrap();
        assert_eq!(t.event["user_agent"], "own-UA");
        assert_eq!(t.event["page_url"], "https://shop.example/p");
        // A client's timestamp is its device clock: corrected with the batch's sentAt.
        assert_eq!(t.event["sent_at"], "2026-11-25T10:00:05Z");
        assert!(t.sent_at_as_is.is_none());
    }
}
