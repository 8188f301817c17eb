//! touchstream-attribution: where did a visitor come from, and which touches get the credit?
//!
//! Pure logic, no I/O (except the explicit catalogue loaders), shared by the enricher and the
//! `touchstream classify` command. The vocabulary (channels, networks, touches, sessions,
//! conversions, lifecycle, models) is the README's Design section's, used verbatim; the exact
//! rules are in `schemas/attribution-rules.md`.
//!
//! - [`channel`]: the channel names (GA4's default channel group + "AI Assistant") and GA4's
//!   rules from source/medium/campaign to channel.
//! - [`catalogue`]: the source catalogue (`schemas/sources/catalogue.toml`, compiled in,
//!   replaceable by path): hosts, shorteners, app ids, utm_source aliases, in-app browser markers,
//!   GA4 source lists, referrer spam.
//! - [`classify`]: one hit (page URL, referrer, user agent) → [`Touch`], with the
//!   precedence of `schemas/attribution-rules.md` (section 4): utm_* > ad click ids > referrer > in-app browser > Direct; bot and referrer-spam
//!   flags.
//! - [`session`]: GA's sessionisation, for a whole history or incrementally with late events.
//! - [`credit`]: crediting a conversion to its touches under every attribution model.
//! - [`lifecycle`]: visitor → customer → client.

pub mod catalogue;
pub mod channel;
pub mod classify;
pub mod credit;
pub mod lifecycle;
pub mod session;

pub use catalogue::{Catalogue, CatalogueError};
pub use channel::{Channel, SourceCategory, UnknownChannel};
pub use classify::{Classifier, DIRECT_SOURCE, Hit, Touch};
pub use credit::{
    AttributionModel, Conversion, ConversionCredits, Credit, CreditConfig, TouchRecord,
    UnknownModel, credit,
};
pub use lifecycle::{ConversionKind, Lifecycle, LifecycleStage};
pub use session::{
    CampaignKey, Reassignment, Session, SessionAssignment, SessionChange, SessionConfig,
    SessionEvent, SessionState, Sessionizer, sessionize, source_of,
};
