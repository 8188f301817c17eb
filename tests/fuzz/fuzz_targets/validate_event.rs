//! Incoming-event validation on arbitrary JSON: never panics, and whatever it accepts keeps
//! the collector's promises (no control characters, bounded revenue, an ISO 4217 currency,
//! a canonical non-nil event id) and survives the trip through Avro unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use touchstream_model::incoming::{
    MAX_REVENUE_MINOR, ServerContext, ValidationLimits, first_control, is_iso_4217, validate,
};

const NOW: i64 = 1_795_600_800_000;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    // Both time bases: live (skew corrected) and import (occurred_at kept).
    let ctx = ServerContext {
        received_at: NOW,
        ip: Some("203.0.113.0".into()),
        user_agent: None,
        received_via: if data.len().is_multiple_of(2) {
            touchstream_model::received_via::EVENTS
        } else {
            touchstream_model::received_via::IMPORT
        },
        ..ServerContext::default()
    };
    let events = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    for event in &events {
        let Ok(e) = validate(event, &ctx, &ValidationLimits::default(), || {
            "0b8e6c3c-3f3b-4a4e-9c1d-2b7c1e5a9f00".to_string()
        }) else {
            continue;
        };
        let strings = [
            Some(&e.anonymous_id),
            e.user_id.as_ref(),
            Some(&e.page_url),
            e.referrer.as_ref(),
            e.order_id.as_ref(),
            e.event_name.as_ref(),
        ];
        for s in strings.into_iter().flatten() {
            assert!(
                first_control(s).is_none(),
                "control character accepted: {s:?}"
            );
        }
        for (k, v) in &e.properties {
            assert!(first_control(k).is_none() && first_control(v).is_none());
        }
        if let Some(r) = e.revenue {
            assert!((0..=MAX_REVENUE_MINOR).contains(&r), "revenue {r}");
        }
        if let Some(c) = &e.currency {
            assert!(is_iso_4217(c), "currency {c}");
        }
        let id = uuid::Uuid::parse_str(&e.event_id).expect("event_id is a UUID");
        assert!(!id.is_nil());
        assert_eq!(
            id.hyphenated().to_string(),
            e.event_id,
            "event_id canonical"
        );
        let bytes = touchstream_avro::encode(&e).expect("an accepted event encodes");
        let back: touchstream_model::RawEvent =
            touchstream_avro::decode(&bytes).expect("and decodes");
        assert_eq!(back, e);
    }
});
