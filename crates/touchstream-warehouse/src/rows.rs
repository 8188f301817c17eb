//! Rows of `events` and `conversion_credits` (as migration 0003 defines them), field for column.
//!
//! Field names are the column names (the insert lists them), and the types are those of the
//! RowBinary encoding of the column types: `DateTime` is `u32` seconds, `Enum8` an `i8` code,
//! `Nullable(T)` an `Option<T>`, `UInt8` flags a `u8`, `UUID` goes through
//! `clickhouse::serde::uuid`. Milliseconds live in the `*_ms` columns beside each `DateTime`.

use serde::{Deserialize, Serialize};
use touchstream_model::{AttributedEvent, AttributionModel, EventType, LifecycleStage};
use uuid::Uuid;

/// One row of `events`: one per event.
#[derive(Clone, Debug, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct EventRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    #[serde(with = "enum8::event_type")]
    pub event_type: EventType,
    pub site_id: String,
    pub event_name: Option<String>,
    pub event_time: u32,
    pub event_time_ms: i64,
    pub occurred_at_ms: i64,
    pub sent_at_ms: Option<i64>,
    pub clock_correction_ms: i64,
    pub received_at: u32,
    pub received_at_ms: i64,
    pub received_via: String,
    pub ingested_at: u32,
    pub ingested_at_ms: i64,
    pub revision: u32,
    pub is_late: u8,
    pub anonymous_id: String,
    pub user_id: Option<String>,
    pub identity_id: String,
    pub session_id: String,
    pub page_url: String,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub property_keys: Vec<String>,
    pub property_values: Vec<String>,
    pub target_url: Option<String>,
    pub element: Option<String>,
    pub signup_kind: Option<String>,
    pub method: Option<String>,
    pub asset_id: Option<String>,
    pub asset_kind: Option<String>,
    pub order_id: Option<String>,
    pub revenue: Option<i64>,
    pub currency: Option<String>,
    pub channel: String,
    pub source: String,
    pub medium: String,
    pub campaign: Option<String>,
    pub content: Option<String>,
    pub term: Option<String>,
    pub campaign_id: Option<String>,
    pub click_id_kind: Option<String>,
    pub social_network: Option<String>,
    pub is_internal: u8,
    pub is_bot: u8,
    pub is_spam_referrer: u8,
    pub opens_touch: u8,
    pub session_channel: String,
    pub session_source: String,
    pub session_medium: String,
    pub session_campaign: Option<String>,
    pub session_content: Option<String>,
    pub session_social_network: Option<String>,
    #[serde(with = "enum8::lifecycle_stage")]
    pub lifecycle_stage: LifecycleStage,
    pub purchase_count: i32,
    pub touches_to_conversion: Option<i32>,
    pub days_to_conversion: Option<f64>,
}

/// One row of `conversion_credits`: one per conversion × model × credited touch.
#[derive(Clone, Debug, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct CreditRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub conversion_event_id: Uuid,
    #[serde(with = "enum8::event_type")]
    pub conversion_type: EventType,
    pub site_id: String,
    pub conversion_time: u32,
    pub conversion_time_ms: i64,
    /// The device the conversion happened on.
    pub anonymous_id: String,
    pub identity_id: String,
    #[serde(with = "enum8::model")]
    pub model: AttributionModel,
    #[serde(with = "clickhouse::serde::uuid")]
    pub touch_event_id: Uuid,
    pub touch_time: u32,
    pub touch_time_ms: i64,
    pub channel: String,
    pub source: String,
    pub social_network: Option<String>,
    pub campaign: Option<String>,
    pub content: Option<String>,
    pub weight: f64,
    /// The conversion's revenue in minor units (0 without one).
    pub revenue: i64,
    pub revenue_credit: f64,
    pub currency: Option<String>,
    pub touches_to_conversion: i32,
    pub days_to_conversion: f64,
    pub revision: u32,
    pub retracted: u8,
    pub ingested_at: u32,
    pub ingested_at_ms: i64,
}

/// The rows of one attributed event: its `events` row and, for a conversion, one
/// `conversion_credits` row per model and credited touch. `ingested_at_ms` is the sink's clock.
pub fn rows_of(event: &AttributedEvent, ingested_at_ms: i64) -> (EventRow, Vec<CreditRow>) {
    let raw = &event.event;
    let touch = &event.touch;
    let session = &event.session;
    let event_id = event_uuid(&raw.event_id);
    let revision = u32::try_from(event.revision).unwrap_or(0);
    let row = EventRow {
        event_id,
        event_type: raw.event_type,
        site_id: raw.site_id.clone(),
        event_name: raw.event_name.clone(),
        event_time: seconds(raw.event_time),
        event_time_ms: raw.event_time,
        occurred_at_ms: raw.occurred_at,
        sent_at_ms: raw.sent_at,
        clock_correction_ms: raw.clock_correction_ms,
        received_at: seconds(raw.received_at),
        received_at_ms: raw.received_at,
        received_via: raw.received_via.clone(),
        ingested_at: seconds(ingested_at_ms),
        ingested_at_ms,
        revision,
        is_late: event.is_late.into(),
        anonymous_id: raw.anonymous_id.clone(),
        user_id: raw.user_id.clone(),
        identity_id: event.identity_id.clone(),
        session_id: event.session_id.clone(),
        page_url: raw.page_url.clone(),
        referrer: raw.referrer.clone(),
        user_agent: raw.user_agent.clone(),
        ip: raw.ip.clone(),
        property_keys: raw.properties.keys().cloned().collect(),
        property_values: raw.properties.values().cloned().collect(),
        target_url: raw.target_url.clone(),
        element: raw.element.clone(),
        signup_kind: raw.signup_kind.clone(),
        method: raw.method.clone(),
        asset_id: raw.asset_id.clone(),
        asset_kind: raw.asset_kind.clone(),
        order_id: raw.order_id.clone(),
        revenue: raw.revenue,
        currency: raw.currency.clone(),
        channel: touch.channel.clone(),
        source: touch.source.clone(),
        medium: touch.medium.clone(),
        campaign: touch.campaign.clone(),
        content: touch.content.clone(),
        term: touch.term.clone(),
        campaign_id: touch.campaign_id.clone(),
        click_id_kind: touch.click_id_kind.clone(),
        social_network: touch.social_network.clone(),
        is_internal: touch.is_internal.into(),
        is_bot: touch.is_bot.into(),
        is_spam_referrer: touch.is_spam_referrer.into(),
        opens_touch: event.opens_touch.into(),
        session_channel: session.channel.clone(),
        session_source: session.source.clone(),
        session_medium: session.medium.clone(),
        session_campaign: session.campaign.clone(),
        session_content: session.content.clone(),
        session_social_network: session.social_network.clone(),
        lifecycle_stage: event.lifecycle_stage,
        purchase_count: event.purchase_count,
        touches_to_conversion: event.conversion.as_ref().map(|c| c.touches_to_conversion),
        days_to_conversion: event.conversion.as_ref().map(|c| c.days_to_conversion),
    };
    let credits = event
        .conversion
        .iter()
        .flat_map(|conversion| {
            conversion.credits.iter().map(move |credit| CreditRow {
                conversion_event_id: event_id,
                conversion_type: raw.event_type,
                site_id: raw.site_id.clone(),
                conversion_time: seconds(raw.event_time),
                conversion_time_ms: raw.event_time,
                anonymous_id: raw.anonymous_id.clone(),
                identity_id: event.identity_id.clone(),
                model: credit.model,
                touch_event_id: event_uuid(&credit.touch_event_id),
                touch_time: seconds(credit.touch_time),
                touch_time_ms: credit.touch_time,
                channel: credit.channel.clone(),
                source: credit.source.clone(),
                social_network: credit.social_network.clone(),
                campaign: credit.campaign.clone(),
                content: credit.content.clone(),
                weight: credit.weight,
                revenue: raw.revenue.unwrap_or(0),
                revenue_credit: credit.revenue_credit,
                currency: raw.currency.clone(),
                touches_to_conversion: conversion.touches_to_conversion,
                days_to_conversion: conversion.days_to_conversion,
                revision,
                retracted: credit.retracted.into(),
                ingested_at: seconds(ingested_at_ms),
                ingested_at_ms,
            })
        })
        .collect();
    (row, credits)
}

/// The collector only lets UUIDs through as event ids. Should anything else arrive, it gets a
/// name-based UUID: deterministic, so a replay still collapses onto the same row, and distinct
/// ids stay distinct.
fn event_uuid(event_id: &str) -> Uuid {
    Uuid::parse_str(event_id)
        .unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_OID, event_id.as_bytes()))
}

/// Epoch milliseconds → `DateTime` seconds. `DateTime` is an unsigned 32-bit count on 18.16, so
/// times outside 1970–2106 are clamped; the `*_ms` column keeps the exact value.
fn seconds(ms: i64) -> u32 {
    u32::try_from(ms.div_euclid(1000).max(0)).unwrap_or(u32::MAX)
}

/// `Enum8` columns travel as their `i8` code. The codes are the ones in the migrations'
/// `Enum8(...)` definitions and must never be renumbered.
mod enum8 {
    macro_rules! enum8 {
        ($module:ident, $type:ty, { $($variant:path => $code:literal),+ $(,)? }) => {
            pub mod $module {
                use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
                #[allow(unused_imports)]
                use touchstream_model::{AttributionModel, EventType, LifecycleStage};

                pub fn code(value: $type) -> i8 {
                    match value { $($variant => $code),+ }
                }

                pub fn serialize<S: Serializer>(value: &$type, s: S) -> Result<S::Ok, S::Error> {
                    s.serialize_i8(code(*value))
                }

                pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<$type, D::Error> {
                    let raw = i8::deserialize(d)?;
                    $(if raw == $code { return Ok($variant); })+
                    Err(D::Error::custom(format!(
                        concat!("unknown ", stringify!($module), " code {}"), raw
                    )))
                }
            }
        };
    }

    enum8!(event_type, EventType, {
        EventType::Click => 1,
        EventType::Signup => 2,
        EventType::Download => 3,
        EventType::Purchase => 4,
        EventType::Identify => 5,
        EventType::Custom => 6,
    });
    enum8!(lifecycle_stage, LifecycleStage, {
        LifecycleStage::Visitor => 1,
        LifecycleStage::Customer => 2,
        LifecycleStage::Client => 3,
    });
    enum8!(model, AttributionModel, {
        AttributionModel::FirstTouch => 1,
        AttributionModel::LastTouch => 2,
        AttributionModel::LastNonDirect => 3,
        AttributionModel::Linear => 4,
        AttributionModel::PositionBased => 5,
        AttributionModel::TimeDecay => 6,
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use touchstream_model::{ConversionCredits, Credit, RawEvent, SessionSource, TouchFields};

    use super::*;

    fn purchase() -> AttributedEvent {
        AttributedEvent {
            event: RawEvent {
                user_id: Some("u1".into()),
                occurred_at: 1_767_225_600_100,
                received_at: 1_767_225_600_900,
                ip: Some("203.0.113.0".into()),
                properties: BTreeMap::from([
                    ("plan".into(), "pro".into()),
                    ("a".into(), "b".into()),
                ]),
                order_id: Some("o1".into()),
                revenue: Some(10_000),
                currency: Some("EUR".into()),
                site_id: "shop".into(),
                ..RawEvent::new(
                    "0b8e6c3c-3f3b-4a4e-9c1d-2b7c1e5a9f00",
                    EventType::Purchase,
                    "a1",
                    1_767_225_600_250,
                    "https://shop.example/checkout",
                )
            },
            touch: TouchFields::direct(),
            opens_touch: false,
            session_id: "s1".into(),
            identity_id: "u1".into(),
            lifecycle_stage: LifecycleStage::Client,
            purchase_count: 1,
            conversion: Some(ConversionCredits {
                touches_to_conversion: 2,
                days_to_conversion: 1.5,
                credits: vec![Credit {
                    model: AttributionModel::Linear,
                    touch_event_id: "not-a-uuid".into(),
                    touch_time: 1_767_096_000_000,
                    channel: "Organic Social".into(),
                    source: "instagram".into(),
                    social_network: Some("instagram".into()),
                    campaign: None,
                    content: Some("reel-1".into()),
                    weight: 0.5,
                    revenue_credit: 5_000.0,
                    retracted: false,
                }],
            }),
            revision: 3,
            session: SessionSource::default(),
            is_late: false,
        }
    }

    #[test]
    fn a_conversion_gives_one_event_row_and_one_credit_row_per_credit() {
        let (row, credits) = rows_of(&purchase(), 1_767_225_700_000);
        assert_eq!(
            row.event_id.to_string(),
            "0b8e6c3c-3f3b-4a4e-9c1d-2b7c1e5a9f00"
        );
        assert_eq!(row.event_time, 1_767_225_600);
        assert_eq!(row.event_time_ms, 1_767_225_600_250);
        assert_eq!(row.ingested_at, 1_767_225_700);
        assert_eq!(row.property_keys, ["a", "plan"]);
        assert_eq!(row.property_values, ["b", "pro"]);
        assert_eq!(row.touches_to_conversion, Some(2));
        assert_eq!(
            (row.channel.as_str(), row.source.as_str()),
            ("Direct", "(direct)")
        );
        assert_eq!(credits.len(), 1);
        let credit = &credits[0];
        assert_eq!(credit.conversion_event_id, row.event_id);
        assert_eq!(credit.model, AttributionModel::Linear);
        assert_eq!(credit.revenue, 10_000);
        assert_eq!(credit.currency.as_deref(), Some("EUR"));
        assert_eq!(credit.touch_time, 1_767_096_000);
        assert_eq!((row.revision, credit.revision), (3, 3));
        assert_eq!(
            (row.site_id.as_str(), credit.site_id.as_str()),
            ("shop", "shop")
        );
        assert_eq!(credit.anonymous_id, "a1");
        assert_eq!(row.session_source, "(direct)");
    }

    #[test]
    fn a_non_uuid_id_maps_to_the_same_uuid_every_time() {
        let (_, first) = rows_of(&purchase(), 0);
        let (_, again) = rows_of(&purchase(), 1);
        assert_eq!(first[0].touch_event_id, again[0].touch_event_id);
        assert_ne!(first[0].touch_event_id, event_uuid("not-a-uuid-either"));
    }

    #[test]
    fn times_outside_the_datetime_range_are_clamped() {
        assert_eq!(seconds(-1), 0);
        assert_eq!(seconds(1_999), 1);
        assert_eq!(seconds(i64::MAX), u32::MAX);
    }

    #[test]
    fn enum_codes_match_the_migrations() {
        let ddl = include_str!("../../../schemas/clickhouse/0003_sites_and_revisions.sql");
        for t in EventType::ALL {
            let code = enum8::event_type::code(t);
            assert!(ddl.contains(&format!("'{}' = {code}", t.as_str())), "{t:?}");
        }
        let credits = ddl;
        for m in AttributionModel::ALL {
            let code = enum8::model::code(m);
            assert!(
                credits.contains(&format!("'{}' = {code}", m.as_str())),
                "{m:?}"
            );
        }
        for s in [
            LifecycleStage::Visitor,
            LifecycleStage::Customer,
            LifecycleStage::Client,
        ] {
            let code = enum8::lifecycle_stage::code(s);
            assert!(ddl.contains(&format!("'{}' = {code}", s.as_str())), "{s:?}");
        }
    }
}
