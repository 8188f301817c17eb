//! What the enricher's two stages say to each other on the person topic
//! (`touchstream.enricher.person`, keyed `site_id/user_id`): an internal topic, written and read
//! only by the enricher, inside the same transactions as everything else.
//!
//! The device stage (keyed by device, on the raw topic's partitions) knows a device's sessions
//! and who it belongs to when; the person stage (keyed by user, on the person topic's partitions)
//! knows a user's devices, touches, conversions and lifecycle. A device that has never signed in
//! is its own person and never reaches the person topic.
//!
//! Encoding: a version byte, then bincode (like the state changelogs): compact and fast, and
//! nobody outside the enricher reads it.

use serde::{Deserialize, Serialize};
use touchstream_attribution::TouchRecord;
use touchstream_model::forget::{ForgetRequest, Removed};
use touchstream_model::{EventType, LifecycleStage, RawEvent, SessionSource, TouchFields};

use crate::person::Retained;

/// One event with everything the device stage derived for it: its own classification, its
/// session, and whether it is a touch or late. The person it belongs to adds identity,
/// lifecycle and credits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceEvent {
    pub raw: RawEvent,
    /// The event's own hit, event-scoped (an internal click is Direct).
    pub touch: TouchFields,
    /// A click that is a touch: not internal navigation, not a bot.
    pub opens_touch: bool,
    pub session_id: String,
    /// The source of its session.
    pub session: SessionSource,
    /// Later than the allowed lateness behind its device's newest event.
    pub is_late: bool,
}

impl DeviceEvent {
    pub fn is_conversion(&self) -> bool {
        self.raw.event_type.is_conversion()
    }

    pub fn is_purchase(&self) -> bool {
        self.raw.event_type == EventType::Purchase
    }

    /// `(event time, event id)`: the order the rules are defined in.
    pub fn order_key(&self) -> (i64, &str) {
        (self.raw.event_time, self.raw.event_id.as_str())
    }
}

/// Conversions and purchases counted for a person's lifecycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub conversions: u32,
    pub purchases: u32,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.conversions = self.conversions.saturating_add(other.conversions);
        self.purchases = self.purchases.saturating_add(other.purchases);
    }

    pub fn one(purchase: bool) -> Counts {
        Counts {
            conversions: 1,
            purchases: u32::from(purchase),
        }
    }

    /// Visitor until the first conversion, customer from it, client from the first purchase.
    pub fn stage(self) -> LifecycleStage {
        if self.purchases > 0 {
            LifecycleStage::Client
        } else if self.conversions > 0 {
            LifecycleStage::Customer
        } else {
            LifecycleStage::Visitor
        }
    }
}

/// A session that changed after its events were written (a late event split, merged or gave
/// it a source).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionUpdate {
    pub event_id: String,
    pub session_id: String,
    pub session: SessionSource,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PersonRecord {
    /// The device belongs to this user from `linked_at` (the first event on which it carried
    /// the user id; sent again with an earlier time when an earlier such event arrives late).
    /// `touches`: the device's touches so far (they belong to its first user); `prelink`: its
    /// conversions from before `linked_at`, which count for the user's lifecycle from then on.
    Link {
        device: String,
        linked_at: i64,
        touches: Vec<TouchRecord>,
        prelink: Counts,
    },
    /// An event of the device at a time it belongs to this user; `sessions`: sessions of the
    /// user's events that the event changed (applied first, so a conversion is written once).
    Event {
        device: String,
        event: Box<DeviceEvent>,
        sessions: Vec<SessionUpdate>,
    },
    /// A touch that belongs to this user although its event was written elsewhere (made before
    /// the device's first link, arriving after it).
    Touch {
        device: String,
        touch: TouchRecord,
        late: bool,
        sessions: Vec<SessionUpdate>,
    },
    /// A conversion the device credited as its own person, which belongs to this user after
    /// all (a sign-in arrived late, earlier than the conversion): re-credit it, keeping its
    /// revision count and what it credited.
    Moved {
        device: String,
        conversion: Box<Retained>,
    },
    /// Sessions of events that may be this user's conversions changed.
    Sessions { updates: Vec<SessionUpdate> },
    /// An erasure request, as one device-stage partition forwards it to every person
    /// partition (key: the request id) once it has deleted the devices it names: `devices`
    /// (`(site_id, anonymous_id)`) and `removed` are what that partition deleted.
    Forget {
        request: ForgetRequest,
        raw_partition: i32,
        raw_partitions: i32,
        devices: Vec<(String, String)>,
        removed: Removed,
    },
}

/// The first byte of the current encoding.
const BINCODE_V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("person record in bincode: {0}")]
    Bincode(#[from] bincode::Error),
    #[error("person record starts with byte {0:#04x}: not an encoding this version knows")]
    UnknownEncoding(u8),
    #[error("empty person record")]
    Empty,
}

impl PersonRecord {
    pub fn encode_into(&self, buf: &mut Vec<u8>) -> Result<(), RecordError> {
        buf.clear();
        buf.push(BINCODE_V1);
        bincode::serialize_into(&mut *buf, self)?;
        Ok(())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        match bytes.first() {
            Some(&BINCODE_V1) => Ok(bincode::deserialize(&bytes[1..])?),
            Some(&other) => Err(RecordError::UnknownEncoding(other)),
            None => Err(RecordError::Empty),
        }
    }
}

/// `site_id/user_id`: a person's key on the person topic and in the person changelog.
pub fn person_key(site_id: &str, user_id: &str) -> String {
    touchstream_model::device_key(site_id, user_id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_round_trip_and_unknown_encodings_are_errors() {
        let record = PersonRecord::Link {
            device: "a1".into(),
            linked_at: 42,
            touches: vec![],
            prelink: Counts {
                conversions: 2,
                purchases: 1,
            },
        };
        let mut buf = Vec::new();
        record.encode_into(&mut buf).unwrap();
        assert_eq!(buf[0], BINCODE_V1);
        assert_eq!(PersonRecord::decode(&buf).unwrap(), record);
        assert!(matches!(
            PersonRecord::decode(&[9, 1]),
            Err(RecordError::UnknownEncoding(9))
        ));
        assert!(PersonRecord::decode(&buf[..buf.len() - 1]).is_err());
        assert!(matches!(PersonRecord::decode(&[]), Err(RecordError::Empty)));
    }

    #[test]
    fn lifecycle_stages_follow_the_counts() {
        assert_eq!(Counts::default().stage(), LifecycleStage::Visitor);
        assert_eq!(Counts::one(false).stage(), LifecycleStage::Customer);
        let mut c = Counts::one(false);
        c.add(Counts::one(true));
        assert_eq!((c.stage(), c.purchases), (LifecycleStage::Client, 1));
    }
}
