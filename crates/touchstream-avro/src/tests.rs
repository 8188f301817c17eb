#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use touchstream_model::{
    AttributedEvent, AttributionModel, ConversionCredits, Credit, EventType, LifecycleStage,
    RawEvent, SessionSource, TouchFields,
};

use super::*;

fn purchase() -> RawEvent {
    RawEvent {
        event_id: "0b8e6c3c-3f3b-4a4e-9c1d-2b7c1e5a9f00".into(),
        event_type: EventType::Purchase,
        anonymous_id: "anon-1".into(),
        user_id: Some("user-9".into()),
        occurred_at: 1_795_600_800_000,
        sent_at: Some(1_795_600_801_000),
        received_at: 1_795_600_801_500,
        event_time: 1_795_600_800_500,
        page_url: "https://shop.example/thanks?utm_source=fb".into(),
        referrer: Some("https://shop.example/cart".into()),
        user_agent: Some("Mozilla/5.0".into()),
        ip: Some("203.0.113.0".into()),
        properties: BTreeMap::from([("plan".into(), "pro".into())]),
        target_url: None,
        element: None,
        signup_kind: None,
        method: None,
        asset_id: None,
        asset_kind: None,
        order_id: Some("o-1".into()),
        revenue: Some(4999),
        currency: Some("EUR".into()),
        site_id: "shop".into(),
        event_name: Some("Order Completed".into()),
        clock_correction_ms: 500,
        received_via: "segment".into(),
    }
}

fn attributed() -> AttributedEvent {
    AttributedEvent {
        event: purchase(),
        touch: TouchFields {
            social_network: Some("facebook".into()),
            ..TouchFields::direct()
        },
        opens_touch: false,
        session_id: "s-1".into(),
        identity_id: "user-9".into(),
        lifecycle_stage: LifecycleStage::Client,
        purchase_count: 2,
        conversion: Some(ConversionCredits {
            touches_to_conversion: 2,
            days_to_conversion: 1.5,
            credits: vec![Credit {
                model: AttributionModel::PositionBased,
                touch_event_id: "t-1".into(),
                touch_time: 1_795_500_000_000,
                channel: "Organic Social".into(),
                source: "facebook".into(),
                social_network: Some("facebook".into()),
                campaign: Some("launch".into()),
                content: None,
                weight: 0.5,
                revenue_credit: 2499.5,
                retracted: false,
            }],
        }),
        revision: 2,
        session: SessionSource {
            channel: "Organic Social".into(),
            source: "facebook".into(),
            medium: "referral".into(),
            campaign: None,
            content: Some("post-1".into()),
            social_network: Some("facebook".into()),
        },
        is_late: true,
    }
}

#[test]
fn round_trips_every_wire_type() {
    let raw = purchase();
    assert_eq!(decode::<RawEvent>(&encode(&raw).unwrap()).unwrap(), raw);
    let att = attributed();
    assert_eq!(
        decode::<AttributedEvent>(&encode(&att).unwrap()).unwrap(),
        att
    );
    let no_conversion = AttributedEvent {
        conversion: None,
        ..attributed()
    };
    assert_eq!(
        decode::<AttributedEvent>(&encode(&no_conversion).unwrap()).unwrap(),
        no_conversion
    );
    let dlq = DlqRecord::from_source(
        crate::Stage::Enricher,
        b"{\"x\":1}\xff",
        "event_type: missing",
        crate::SourcePosition {
            topic: "raw",
            partition: 3,
            offset: 42,
            key: Some(b"visitor"),
        },
        1,
    );
    assert_eq!(decode::<DlqRecord>(&encode(&dlq).unwrap()).unwrap(), dlq);
    let cut = DlqRecord::producer(&vec![7u8; crate::MAX_DLQ_PAYLOAD + 1], "big", 2)
        .with_content_encoding(Some("gzip"));
    assert_eq!(decode::<DlqRecord>(&encode(&cut).unwrap()).unwrap(), cut);
}

#[test]
fn payload_starts_with_marker_and_fingerprint() {
    let bytes = encode(&purchase()).unwrap();
    assert_eq!(bytes[..2], MAGIC);
    assert_eq!(bytes[..10], RawEvent::schema().header);
    assert_ne!(RawEvent::schema().header, AttributedEvent::schema().header);
}

#[test]
fn rejects_foreign_and_corrupt_payloads_with_a_reason() {
    let raw_bytes = encode(&purchase()).unwrap();
    // A raw event read as an attributed one: the fingerprint says so.
    let err = decode::<AttributedEvent>(&raw_bytes).unwrap_err();
    assert!(matches!(err, CodecError::UnknownSchema { .. }), "{err}");
    // JSON is not Avro.
    let err = decode::<RawEvent>(br#"{"event_type":"click","anonymous_id":"a"}"#).unwrap_err();
    assert!(matches!(err, CodecError::NotSingleObject { .. }), "{err}");
    assert!(matches!(
        decode::<RawEvent>(&[0xC3]).unwrap_err(),
        CodecError::TooShort { len: 1 }
    ));
    // Truncated anywhere: never decoded into a shorter record.
    for cut in 1..raw_bytes.len() - 10 {
        let err = decode::<RawEvent>(&raw_bytes[..raw_bytes.len() - cut]).unwrap_err();
        assert!(
            matches!(err, CodecError::Corrupt { .. }),
            "cut {cut}: {err}"
        );
    }
    // Extra bytes after the record.
    let mut longer = raw_bytes.clone();
    longer.extend_from_slice(b"junk");
    assert!(matches!(
        decode::<RawEvent>(&longer).unwrap_err(),
        CodecError::TrailingBytes { extra: 4, .. }
    ));
}

#[test]
fn the_attributed_schema_names_every_model_and_stage_like_the_rust_types() {
    let json = serde_json::to_value(attributed()).unwrap();
    let schema = serde_json::to_string(avro_schema::<AttributedEvent>()).unwrap();
    for m in AttributionModel::ALL {
        assert!(
            schema.contains(&format!("\"{}\"", m.as_str())),
            "{m:?} missing from the schema"
        );
    }
    for s in [
        LifecycleStage::Visitor,
        LifecycleStage::Customer,
        LifecycleStage::Client,
    ] {
        assert!(schema.contains(&format!("\"{}\"", s.as_str())));
    }
    assert_eq!(json["lifecycle_stage"], "client");
}

/// The decoder against an independent encoder: apache-avro's generic `Value` writer.
fn generic_encoding<T: WireType>(value: &T) -> Vec<u8> {
    let info = T::schema();
    let generic = apache_avro::to_value(value)
        .unwrap()
        .resolve(info.schema)
        .unwrap();
    let mut bytes = info.header.to_vec();
    bytes.extend(apache_avro::to_avro_datum(info.schema, generic).unwrap());
    bytes
}

#[test]
fn decodes_what_the_generic_writer_writes() {
    let raw = purchase();
    assert_eq!(decode::<RawEvent>(&generic_encoding(&raw)).unwrap(), raw);
    let att = attributed();
    assert_eq!(
        decode::<AttributedEvent>(&generic_encoding(&att)).unwrap(),
        att
    );
}

#[test]
fn a_union_cut_at_its_end_is_corrupt_not_null() {
    // `event_name` is a [null, string] union near the end of a raw event. Cut right after its
    // branch index: apache-avro's reader would return the record with event_name = null.
    let e = RawEvent {
        event_name: Some("Order Completed".into()),
        clock_correction_ms: 0,
        received_via: "events".into(),
        ..purchase()
    };
    let bytes = encode(&e).unwrap();
    // The tail after the branch index: the name (length byte + 15), the correction (one byte
    // for 0) and received_via (length byte + 6).
    let cut = &bytes[..bytes.len() - (1 + 15) - 1 - (1 + 6)];
    let err = decode::<RawEvent>(cut).unwrap_err();
    assert!(
        err.to_string().contains("event_name") && err.to_string().contains("ends early"),
        "{err}"
    );
}

/// Encodes `value` with an earlier version of its schema (the fields that version lacks are
/// dropped first), through apache-avro's generic writer.
fn encode_with_earlier<T: WireType>(value: &T, earlier: &str, drop: &[&str]) -> Vec<u8> {
    fn strip(v: &mut serde_json::Value, drop: &[&str]) {
        match v {
            serde_json::Value::Object(map) => {
                for field in drop {
                    map.remove(*field);
                }
                map.values_mut().for_each(|c| strip(c, drop));
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|c| strip(c, drop)),
            _ => {}
        }
    }
    let mut json = serde_json::to_value(value).unwrap();
    strip(&mut json, drop);
    let mut schema_json: serde_json::Value = serde_json::from_str(earlier).unwrap();
    let raw_v1: serde_json::Value = serde_json::from_str(include_str!(
        "../../../schemas/avro/history/raw_event.1.avsc"
    ))
    .unwrap();
    schemas::inline_named(&mut schema_json, "touchstream.RawEvent", &raw_v1);
    let schema = apache_avro::Schema::parse(&schema_json).unwrap();
    let generic = apache_avro::types::Value::from(json)
        .resolve(&schema)
        .unwrap();
    let fp = schema.fingerprint::<apache_avro::rabin::Rabin>().bytes;
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&fp[..8]);
    bytes.extend(apache_avro::to_avro_datum(&schema, generic).unwrap());
    bytes
}

#[test]
fn records_written_with_the_first_schemas_still_decode_with_defaults() {
    let new_raw = [
        "site_id",
        "event_name",
        "clock_correction_ms",
        "received_via",
    ];
    let old = encode_with_earlier(
        &purchase(),
        include_str!("../../../schemas/avro/history/raw_event.1.avsc"),
        &new_raw,
    );
    assert_ne!(
        old[..10],
        RawEvent::schema().header,
        "a different fingerprint"
    );
    let back = decode::<RawEvent>(&old).unwrap();
    assert_eq!(
        back,
        RawEvent {
            site_id: "default".into(),
            event_name: None,
            clock_correction_ms: 0,
            received_via: "events".into(),
            ..purchase()
        }
    );

    let mut drop = new_raw.to_vec();
    drop.extend(["revision", "session", "is_late", "retracted"]);
    let old = encode_with_earlier(
        &attributed(),
        include_str!("../../../schemas/avro/history/attributed_event.1.avsc"),
        &drop,
    );
    let back = decode::<AttributedEvent>(&old).unwrap();
    assert_eq!((back.revision, back.is_late), (0, false));
    assert_eq!(back.session, SessionSource::default());
    assert_eq!(back.event.site_id, "default");
    let credits = &back.conversion.as_ref().unwrap().credits;
    assert!(!credits[0].retracted);
    assert_eq!(credits[0].weight, 0.5);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode::<RawEvent>(&bytes);
        let _ = decode::<AttributedEvent>(&bytes);
    }

    #[test]
    fn flipped_bytes_after_a_valid_header_never_panic(pos in 10usize..200, byte in any::<u8>()) {
        let mut bytes = encode(&purchase()).unwrap();
        let pos = pos % bytes.len();
        bytes[pos] = byte;
        let _ = decode::<RawEvent>(&bytes);
    }

    #[test]
    fn raw_events_round_trip(id in "[a-z0-9-]{1,40}", url in "https://[a-z]{1,10}\\.example/[a-z?=&]{0,30}",
                              revenue in proptest::option::of(0i64..1_000_000), props in proptest::collection::btree_map("[a-z]{1,5}", ".{0,10}", 0..4)) {
        let e = RawEvent { event_id: id, page_url: url, revenue, properties: props, ..purchase() };
        prop_assert_eq!(decode::<RawEvent>(&encode(&e).unwrap()).unwrap(), e.clone());
        prop_assert_eq!(decode::<RawEvent>(&generic_encoding(&e)).unwrap(), e);
    }
}

/// A DLQ record written with the first version of the schema (before fields were added with
/// defaults) still decodes, the added fields at their defaults.
#[test]
fn dlq_records_of_the_first_schema_version_still_decode() {
    #[derive(serde::Serialize)]
    struct V1 {
        stage: String,
        reason: String,
        #[serde(with = "apache_avro::serde_avro_bytes")]
        payload: Vec<u8>,
        source_topic: Option<String>,
        source_partition: Option<i32>,
        source_offset: Option<i64>,
        failed_at: i64,
    }
    let v1 = &DlqRecord::schema().earlier[0];
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&v1.fingerprint);
    let old = V1 {
        stage: "sink".into(),
        reason: "r".into(),
        payload: vec![1, 2, 3],
        source_topic: Some("t".into()),
        source_partition: Some(1),
        source_offset: Some(9),
        failed_at: 5,
    };
    apache_avro::write_avro_datum_ref(v1.schema, &old, &mut bytes).unwrap();
    assert_ne!(bytes[..10], DlqRecord::schema().header);
    let decoded: DlqRecord = decode(&bytes).unwrap();
    assert_eq!(
        (
            decoded.stage.as_str(),
            decoded.payload.as_slice(),
            decoded.source_offset
        ),
        ("sink", &[1u8, 2, 3][..], Some(9))
    );
    assert_eq!((decoded.original_size, decoded.source_key), (None, None));
}
