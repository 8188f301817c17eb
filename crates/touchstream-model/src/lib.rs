//! The touchstream event model: what travels between the binaries.
//!
//! - [`event`]: the wire types. [`RawEvent`] is what the producer puts on the raw topic,
//!   [`AttributedEvent`] what the enricher puts on the attributed topic and the sink loads.
//!   Their Avro schemas live in `schemas/avro/` (the codec crate checks the two agree).
//! - [`incoming`]: what a web frontend sends (JSON), and its validation into a [`RawEvent`]
//!   with one precise [`FieldError`] per problem.
//! - [`forget`]: erasure requests and the markers they leave on the attributed topic.
//! - [`site`]: a site's configuration (one type, read by the collector and the enricher).
//! - [`time`]: epoch-millisecond helpers and clock-skew correction.

pub mod event;
pub mod forget;
pub mod incoming;
pub mod site;
pub mod time;

pub use event::{
    AttributedEvent, AttributionModel, ConversionCredits, Credit, DEFAULT_SITE, EventType,
    LifecycleStage, RawEvent, SessionSource, TouchFields, UnknownModel, device_key, received_via,
};
pub use incoming::{FieldError, IncomingEvent, ServerContext, ValidationLimits};
pub use site::{SiteConfig, TrackRule};
