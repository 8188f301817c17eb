//! The compiled-in schema files and their fingerprints.

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use serde_json::Value;

use crate::de::Names;

const RAW: &str = include_str!("../../../schemas/avro/raw_event.avsc");
const ATTRIBUTED: &str = include_str!("../../../schemas/avro/attributed_event.avsc");
const DLQ: &str = include_str!("../../../schemas/avro/dlq_record.avsc");
/// The first DlqRecord schema, before the fields with defaults were added: records written
/// with it still decode (the added fields take their defaults).
const DLQ_V1: &str = include_str!("../../../schemas/avro/history/dlq_record.v1.avsc");

#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Raw,
    Attributed,
    Dlq,
    DlqV1,
}

pub struct SchemaInfo {
    pub name: &'static str,
    pub schema: &'static Schema,
    /// The schema's named types, resolved once for the decoder.
    pub(crate) names: Names<'static>,
    /// `C3 01` + the 8-byte Rabin fingerprint: the first ten bytes of every payload.
    pub header: [u8; 10],
}

static SCHEMAS: LazyLock<[SchemaInfo; 4]> = LazyLock::new(|| {
    // The files are part of the build; a broken one is caught by the tests below, not at run time.
    let parse = |name: &'static str, json: Value| {
        let schema =
            Schema::parse(&json).unwrap_or_else(|e| panic!("schemas/avro: {name} is invalid: {e}"));
        let fp = schema.fingerprint::<Rabin>().bytes;
        let mut header = [0u8; 10];
        header[..2].copy_from_slice(&crate::MAGIC);
        header[2..].copy_from_slice(&fp[..8]);
        // Lives as long as the process, like the static it is part of; `names` borrows it.
        let schema: &'static Schema = Box::leak(Box::new(schema));
        SchemaInfo {
            name,
            schema,
            names: Names::of(schema),
            header,
        }
    };
    let json = |text: &str| -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("schemas/avro: {e}"))
    };
    let raw = json(RAW);
    let mut attributed = json(ATTRIBUTED);
    // attributed_event.avsc names touchstream.RawEvent; the serde-direct writer cannot follow
    // named references, so the raw record's definition is put in place of the name.
    inline_named(&mut attributed, "touchstream.RawEvent", &raw);
    [
        parse("RawEvent", raw),
        parse("AttributedEvent", attributed),
        parse("DlqRecord", json(DLQ)),
        parse("DlqRecord", json(DLQ_V1)),
    ]
});

pub(crate) fn schema_of(kind: Kind) -> &'static SchemaInfo {
    &SCHEMAS[kind as usize]
}

/// Replaces every `"type": "<full_name>"` with the named schema's definition.
fn inline_named(v: &mut Value, full_name: &str, definition: &Value) {
    match v {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some(full_name) {
                map.insert("type".into(), definition.clone());
            }
            for child in map.values_mut() {
                inline_named(child, full_name, definition);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| inline_named(i, full_name, definition)),
        _ => {}
    }
}
