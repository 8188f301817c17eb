//! Wire types. Field names are the product's vocabulary: Avro schemas, ClickHouse columns and
//! dashboards depend on them, so renaming one is a schema migration. Fields added after the
//! first release come last and carry serde defaults, so records written before them decode.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a web frontend (or a server, or an analytics SDK) reports. New kinds are only ever
/// appended: the Avro enum and ClickHouse's `Enum8` codes follow this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// A visit or a click on the site: the carrier of a touch.
    Click,
    /// Micro-conversion: account, newsletter, webinar, waitlist …
    Signup,
    /// Micro-conversion: eBook, checklist, whitepaper, app …
    Download,
    /// Macro-conversion.
    Purchase,
    /// Says which user a device belongs to (a sign-in, Segment's `identify`/`alias`); never a
    /// touch, never a conversion.
    Identify,
    /// Anything else a site tracks (`event_name` says what): stored, never a touch, never a
    /// conversion.
    Custom,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        Self::Click,
        Self::Signup,
        Self::Download,
        Self::Purchase,
        Self::Identify,
        Self::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Click => "click",
            Self::Signup => "signup",
            Self::Download => "download",
            Self::Purchase => "purchase",
            Self::Identify => "identify",
            Self::Custom => "custom",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Signup, download and purchase are conversions; nothing else is.
    pub fn is_conversion(self) -> bool {
        matches!(self, Self::Signup | Self::Download | Self::Purchase)
    }
}

/// The site every event belongs to when a deployment serves only one.
pub const DEFAULT_SITE: &str = "default";

fn default_site() -> String {
    DEFAULT_SITE.to_owned()
}

/// How an event reached the collector, which decides its time basis (see
/// `schemas/attribution-rules.md`, section 2).
pub mod received_via {
    /// `POST /v1/events`, `t.js`: live, clock skew corrected.
    pub const EVENTS: &str = "events";
    /// `GET /v1/p.gif`: live.
    pub const PIXEL: &str = "pixel";
    /// The Segment-compatible routes: live, Segment's time rule.
    pub const SEGMENT: &str = "segment";
    /// `POST /v1/import`: history, `occurred_at` kept as the event time.
    pub const IMPORT: &str = "import";
    /// `producer replay FILE`: history, like an import.
    pub const REPLAY: &str = "replay";
}

fn default_received_via() -> String {
    received_via::EVENTS.to_owned()
}

/// One accepted event as the collector puts it on `touchstream.events.raw`
/// (schema `schemas/avro/raw_event.avsc`). Times are epoch milliseconds, UTC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RawEvent {
    /// Client UUID (the idempotency key) or one the collector made.
    pub event_id: String,
    pub event_type: EventType,
    /// First-party visitor id; the Kafka key.
    pub anonymous_id: String,
    pub user_id: Option<String>,
    /// Client clock, as sent.
    pub occurred_at: i64,
    /// Client clock when the batch left the browser, if sent.
    pub sent_at: Option<i64>,
    /// Collector clock when the request arrived.
    pub received_at: i64,
    /// `occurred_at` corrected for the client's clock skew: what attribution orders by.
    pub event_time: i64,
    pub page_url: String,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
    /// Truncated before it left the collector (IPv4 /24, IPv6 /48).
    pub ip: Option<String>,
    pub properties: BTreeMap<String, String>,
    // click
    pub target_url: Option<String>,
    pub element: Option<String>,
    // signup
    pub signup_kind: Option<String>,
    pub method: Option<String>,
    // download
    pub asset_id: Option<String>,
    pub asset_kind: Option<String>,
    // purchase
    pub order_id: Option<String>,
    /// Minor units (cents).
    pub revenue: Option<i64>,
    pub currency: Option<String>,
    // Added after the first release: defaults let records written before them still decode.
    /// The site (tenant) the event belongs to; state, identity and reports never mix sites.
    #[serde(default = "default_site")]
    pub site_id: String,
    /// The client's own name for the event (Segment's `event`, a page name), if it gave one.
    #[serde(default)]
    pub event_name: Option<String>,
    /// `event_time − occurred_at`: the clock-skew correction the collector applied (0 for
    /// imports and for events sent without `sent_at`).
    #[serde(default)]
    pub clock_correction_ms: i64,
    /// Which route brought it: one of [`received_via`]'s names.
    #[serde(default = "default_received_via")]
    pub received_via: String,
}

impl RawEvent {
    /// An event with only what every event has; the type-specific and optional fields are
    /// empty, the site is the default one, and all four times are `event_time`.
    pub fn new(
        event_id: impl Into<String>,
        event_type: EventType,
        anonymous_id: impl Into<String>,
        event_time: i64,
        page_url: impl Into<String>,
    ) -> Self {
        Self {
            event_id: event_id.into(),
            event_type,
            anonymous_id: anonymous_id.into(),
            user_id: None,
            occurred_at: event_time,
            sent_at: None,
            received_at: event_time,
            event_time,
            page_url: page_url.into(),
            referrer: None,
            user_agent: None,
            ip: None,
            properties: BTreeMap::new(),
            target_url: None,
            element: None,
            signup_kind: None,
            method: None,
            asset_id: None,
            asset_kind: None,
            order_id: None,
            revenue: None,
            currency: None,
            site_id: default_site(),
            event_name: None,
            clock_correction_ms: 0,
            received_via: default_received_via(),
        }
    }

    /// The Kafka key of the device this event came from: `site_id/anonymous_id` (a site id
    /// never contains `/`).
    pub fn device_key(&self) -> String {
        device_key(&self.site_id, &self.anonymous_id)
    }
}

/// `site_id/anonymous_id`: the key of a device on the raw and attributed topics and in the
/// enricher's state.
pub fn device_key(site_id: &str, anonymous_id: &str) -> String {
    let mut key = String::with_capacity(site_id.len() + 1 + anonymous_id.len());
    key.push_str(site_id);
    key.push('/');
    key.push_str(anonymous_id);
    key
}

/// How an event's own hit was classified (the vocabulary is in the README).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TouchFields {
    /// GA4 default channel group name, or "AI Assistant".
    pub channel: String,
    pub source: String,
    pub medium: String,
    pub campaign: Option<String>,
    /// utm_content: the post.
    pub content: Option<String>,
    pub term: Option<String>,
    /// utm_id.
    pub campaign_id: Option<String>,
    pub click_id_kind: Option<String>,
    /// The source id when the source is a social network, else null.
    pub social_network: Option<String>,
    pub is_internal: bool,
    pub is_bot: bool,
    pub is_spam_referrer: bool,
}

impl TouchFields {
    /// The classification of a hit with no referrer and no campaign data.
    pub fn direct() -> Self {
        Self {
            channel: "Direct".into(),
            source: "(direct)".into(),
            medium: "(none)".into(),
            campaign: None,
            content: None,
            term: None,
            campaign_id: None,
            click_id_kind: None,
            social_network: None,
            is_internal: false,
            is_bot: false,
            is_spam_referrer: false,
        }
    }
}

/// Lifecycle stage of an identity; it only moves forward (hence `Ord`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStage {
    /// No conversion yet.
    #[default]
    Visitor,
    /// Gave an email or took something: first signup or download.
    Customer,
    /// At least one purchase.
    Client,
}

impl LifecycleStage {
    pub const ALL: [LifecycleStage; 3] = [Self::Visitor, Self::Customer, Self::Client];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Visitor => "visitor",
            Self::Customer => "customer",
            Self::Client => "client",
        }
    }
}

impl fmt::Display for LifecycleStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The attribution models; every conversion is credited under all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributionModel {
    FirstTouch,
    LastTouch,
    /// GA's default: the last touch that is not Direct (the last touch if all are Direct).
    LastNonDirect,
    Linear,
    /// 40 % first, 40 % last, 20 % shared by the touches between.
    PositionBased,
    /// Weight ∝ 2^(−age / half-life), age measured back from the conversion.
    TimeDecay,
}

impl AttributionModel {
    pub const ALL: [AttributionModel; 6] = [
        Self::FirstTouch,
        Self::LastTouch,
        Self::LastNonDirect,
        Self::Linear,
        Self::PositionBased,
        Self::TimeDecay,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FirstTouch => "first_touch",
            Self::LastTouch => "last_touch",
            Self::LastNonDirect => "last_non_direct",
            Self::Linear => "linear",
            Self::PositionBased => "position_based",
            Self::TimeDecay => "time_decay",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

impl fmt::Display for AttributionModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the model names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownModel(pub String);

impl fmt::Display for UnknownModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown attribution model {:?}: use one of first_touch, last_touch, last_non_direct, linear, position_based, time_decay",
            self.0
        )
    }
}

impl std::error::Error for UnknownModel {}

impl FromStr for AttributionModel {
    type Err = UnknownModel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownModel(s.to_owned()))
    }
}

/// One credited touch of one conversion under one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Credit {
    pub model: AttributionModel,
    pub touch_event_id: String,
    pub touch_time: i64,
    pub channel: String,
    pub source: String,
    pub social_network: Option<String>,
    pub campaign: Option<String>,
    pub content: Option<String>,
    /// Weights of one conversion under one model sum to 1.
    pub weight: f64,
    /// weight × revenue, in minor units (0 for micro-conversions without revenue).
    pub revenue_credit: f64,
    /// This touch was credited by an earlier revision of the conversion and no longer is:
    /// weight and revenue credit are 0, and the row supersedes the earlier one.
    #[serde(default)]
    pub retracted: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversionCredits {
    pub touches_to_conversion: i32,
    pub days_to_conversion: f64,
    pub credits: Vec<Credit>,
}

/// What the enricher puts on `touchstream.events.attributed` (schema
/// `schemas/avro/attributed_event.avsc`): the raw event, its touch, session, identity and
/// lifecycle, and for conversions the credits under every model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributedEvent {
    pub event: RawEvent,
    pub touch: TouchFields,
    /// Whether this event opened a touch (a click that is not internal navigation).
    pub opens_touch: bool,
    pub session_id: String,
    /// user_id once known (signup/identify stitched it), else the anonymous_id.
    pub identity_id: String,
    pub lifecycle_stage: LifecycleStage,
    /// Purchases of this identity so far, this one included.
    pub purchase_count: i32,
    pub conversion: Option<ConversionCredits>,
    // Added after the first release (defaults keep earlier records readable).
    /// 0 when first attributed; a conversion credited again (a late touch, a device linked
    /// late) is written again with a higher revision, and readers keep the highest.
    #[serde(default)]
    pub revision: i32,
    /// The session-scoped source: the touch that opened this event's session (Direct when
    /// the session did not start with a touch). `touch` is the event's own hit.
    #[serde(default)]
    pub session: SessionSource,
    /// The event arrived later than the allowed lateness behind its device's newest event:
    /// attributed best effort.
    #[serde(default)]
    pub is_late: bool,
}

/// The source of a session: the classification of the touch that opened it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionSource {
    pub channel: String,
    pub source: String,
    pub medium: String,
    pub campaign: Option<String>,
    pub content: Option<String>,
    pub social_network: Option<String>,
}

impl Default for SessionSource {
    /// A session that did not start with a touch.
    fn default() -> Self {
        Self {
            channel: "Direct".into(),
            source: "(direct)".into(),
            medium: "(none)".into(),
            campaign: None,
            content: None,
            social_network: None,
        }
    }
}

impl From<&TouchFields> for SessionSource {
    fn from(t: &TouchFields) -> Self {
        Self {
            channel: t.channel.clone(),
            source: t.source.clone(),
            medium: t.medium.clone(),
            campaign: t.campaign.clone(),
            content: t.content.clone(),
            social_network: t.social_network.clone(),
        }
    }
}
