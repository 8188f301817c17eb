//! The compiled-in schema files and their fingerprints: the current version of each type, which
//! is what we write, and the earlier versions in `schemas/avro/history/`, which we still read.
//! An earlier version differs only by fields the current one added with defaults (and enum
//! symbols appended at the end), so a record it wrote decodes into today's type with those
//! defaults.

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use serde_json::Value;

use crate::de::Names;

const RAW: &str = include_str!("../../../schemas/avro/raw_event.avsc");
const ATTRIBUTED: &str = include_str!("../../../schemas/avro/attributed_event.avsc");
const DLQ: &str = include_str!("../../../schemas/avro/dlq_record.avsc");
const RAW_V1: &str = include_str!("../../../schemas/avro/history/raw_event.1.avsc");
const ATTRIBUTED_V1: &str = include_str!("../../../schemas/avro/history/attributed_event.1.avsc");
const DLQ_V1: &str = include_str!("../../../schemas/avro/history/dlq_record.1.avsc");

#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Raw,
    Attributed,
    Dlq,
}

pub struct SchemaInfo {
    pub name: &'static str,
    pub schema: &'static Schema,
    /// The schema's named types, resolved once for the decoder.
    pub(crate) names: Names<'static>,
    /// `C3 01` + the 8-byte Rabin fingerprint: the first ten bytes of every payload.
    pub header: [u8; 10],
    /// Earlier versions of the schema, still readable.
    pub(crate) earlier: Vec<Writer>,
}

/// A schema we read records written with.
pub(crate) struct Writer {
    pub(crate) fingerprint: [u8; 8],
    pub(crate) schema: &'static Schema,
    pub(crate) names: Names<'static>,
}

impl SchemaInfo {
    /// The writer schema a payload's fingerprint names, if we know it.
    pub(crate) fn writer(&self, fingerprint: &[u8]) -> Option<(&'static Schema, &Names<'static>)> {
        if fingerprint == &self.header[2..] {
            return Some((self.schema, &self.names));
        }
        self.earlier
            .iter()
            .find(|w| w.fingerprint == fingerprint)
            .map(|w| (w.schema, &w.names))
    }
}

static SCHEMAS: LazyLock<[SchemaInfo; 3]> = LazyLock::new(|| {
    // The files are part of the build; a broken one is caught by the tests below, not at run time.
    let writer = |name: &'static str, json: Value| {
        let schema =
            Schema::parse(&json).unwrap_or_else(|e| panic!("schemas/avro: {name} is invalid: {e}"));
        let fp = schema.fingerprint::<Rabin>().bytes;
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&fp[..8]);
        // Lives as long as the process, like the static it is part of; `names` borrows it.
        let schema: &'static Schema = Box::leak(Box::new(schema));
        Writer {
            fingerprint,
            schema,
            names: Names::of(schema),
        }
    };
    let parse = |name: &'static str, json: Value, earlier: Vec<Value>| {
        let current = writer(name, json);
        let mut header = [0u8; 10];
        header[..2].copy_from_slice(&crate::MAGIC);
        header[2..].copy_from_slice(&current.fingerprint);
        SchemaInfo {
            name,
            schema: current.schema,
            names: current.names,
            header,
            earlier: earlier.into_iter().map(|j| writer(name, j)).collect(),
        }
    };
    let json = |text: &str| -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("schemas/avro: {e}"))
    };
    // attributed_event.avsc names touchstream.RawEvent; the serde-direct writer cannot follow
    // named references, so the raw record's definition is put in place of the name.
    let attributed = |text: &str, raw: &Value| {
        let mut a = json(text);
        inline_named(&mut a, "touchstream.RawEvent", raw);
        a
    };
    let raw = json(RAW);
    let raw_v1 = json(RAW_V1);
    [
        parse("RawEvent", raw.clone(), vec![raw_v1.clone()]),
        parse(
            "AttributedEvent",
            attributed(ATTRIBUTED, &raw),
            vec![attributed(ATTRIBUTED_V1, &raw_v1)],
        ),
        parse("DlqRecord", json(DLQ), vec![json(DLQ_V1)]),
    ]
});

pub(crate) fn schema_of(kind: Kind) -> &'static SchemaInfo {
    &SCHEMAS[kind as usize]
}

/// Replaces every `"type": "<full_name>"` with the named schema's definition.
pub(crate) fn inline_named(v: &mut Value, full_name: &str, definition: &Value) {
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
