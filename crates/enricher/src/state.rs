//! The state of the partitions this instance owns, and its changelog encodings.
//!
//! Two stores, each restorable from a compacted changelog whose partitions mirror its input's:
//! devices (key `site_id/anonymous_id`, on the raw topic's partitions, changelog
//! `touchstream.enricher.state`) and users (key `site_id/user_id`, on the person topic's
//! partitions, changelog `touchstream.enricher.person-state`).
//!
//! Encoding: a version byte, then bincode. Device state version 2 is [`DeviceState`]; version 1
//! (bincode) and JSON (starting with `{`) are the single-visitor state of earlier releases,
//! still read: its touches and lifecycle carry over, its sessions go on numbering where they
//! were, and its stitched user id is dropped (the device links again on its next event with a
//! user id).

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::device::DeviceState;
use crate::person::PersonState;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state in bincode: {0}")]
    Bincode(#[from] bincode::Error),
    #[error("state in JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("state starts with byte {0:#04x}: not an encoding this version knows")]
    UnknownEncoding(u8),
    #[error("empty state")]
    Empty,
}

/// A state kept in a changelog.
pub trait Stored: Default + Serialize + DeserializeOwned {
    /// The first byte of the current encoding.
    const VERSION: u8;

    fn encode(&self) -> Result<Vec<u8>, StateError> {
        let mut bytes = Vec::with_capacity(256);
        bytes.push(Self::VERSION);
        bincode::serialize_into(&mut bytes, self)?;
        Ok(bytes)
    }

    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        match bytes.first() {
            Some(&v) if v == Self::VERSION => Ok(bincode::deserialize(&bytes[1..])?),
            Some(_) => Self::decode_earlier(bytes),
            None => Err(StateError::Empty),
        }
    }

    /// Encodings of earlier versions (the first byte is not [`Self::VERSION`]).
    fn decode_earlier(bytes: &[u8]) -> Result<Self, StateError> {
        Err(StateError::UnknownEncoding(bytes[0]))
    }
}

impl Stored for DeviceState {
    const VERSION: u8 = 2;

    fn decode_earlier(bytes: &[u8]) -> Result<Self, StateError> {
        let legacy: legacy::VisitorState = match bytes[0] {
            1 => bincode::deserialize(&bytes[1..])?,
            b'{' => serde_json::from_slice(bytes)?,
            other => return Err(StateError::UnknownEncoding(other)),
        };
        Ok(legacy.into_device())
    }
}

impl Stored for PersonState {
    const VERSION: u8 = 1;
}

struct Entry<S> {
    state: S,
    /// Size of the last encoding, for the state-size gauge.
    encoded_len: usize,
}

/// One store's states, per owned partition.
pub struct Store<S> {
    partitions: HashMap<i32, HashMap<String, Entry<S>>>,
    bytes: usize,
}

impl<S> Default for Store<S> {
    fn default() -> Self {
        Self {
            partitions: HashMap::new(),
            bytes: 0,
        }
    }
}

impl<S: Stored> Store<S> {
    pub fn owns(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// Takes over a restored partition: `(key, state, encoded length)`.
    pub fn insert_partition(&mut self, partition: i32, states: Vec<(String, S, usize)>) {
        self.drop_partition(partition);
        let map: HashMap<String, Entry<S>> = states
            .into_iter()
            .map(|(key, state, encoded_len)| (key, Entry { state, encoded_len }))
            .collect();
        self.bytes += map.values().map(|e| e.encoded_len).sum::<usize>();
        self.partitions.insert(partition, map);
    }

    pub fn drop_partition(&mut self, partition: i32) {
        if let Some(states) = self.partitions.remove(&partition) {
            self.bytes -= states.values().map(|e| e.encoded_len).sum::<usize>();
        }
    }

    /// The state under `key`, a fresh one if there is none yet.
    pub fn get_mut(&mut self, partition: i32, key: &str) -> &mut S {
        let map = self.partitions.entry(partition).or_default();
        if !map.contains_key(key) {
            map.insert(
                key.to_owned(),
                Entry {
                    state: S::default(),
                    encoded_len: 0,
                },
            );
        }
        match map.get_mut(key) {
            Some(e) => &mut e.state,
            None => unreachable!("inserted above"),
        }
    }

    /// Encodes one state for the changelog and updates the size accounting.
    pub fn encode(&mut self, partition: i32, key: &str) -> Result<Vec<u8>, StateError> {
        let Some(e) = self
            .partitions
            .get_mut(&partition)
            .and_then(|p| p.get_mut(key))
        else {
            return Ok(Vec::new());
        };
        let bytes = e.state.encode()?;
        self.bytes = self.bytes + bytes.len() - e.encoded_len;
        e.encoded_len = bytes.len();
        Ok(bytes)
    }

    /// (states, encoded bytes).
    pub fn size(&self) -> (usize, usize) {
        (self.partitions.values().map(HashMap::len).sum(), self.bytes)
    }
}

/// A restored changelog key: today's `site_id/id`, or an earlier release's bare id (which was
/// on the default site).
pub fn restored_key(key: String) -> String {
    if key.contains('/') {
        key
    } else {
        touchstream_model::device_key(touchstream_model::DEFAULT_SITE, &key)
    }
}

/// The visitor state of earlier releases, frozen as it was written.
mod legacy {
    use serde::Deserialize;
    use touchstream_attribution::{CampaignKey, Lifecycle, SessionState, Touch, TouchRecord};

    use crate::device::DeviceState;
    use crate::person::{PersonState, PersonTouch};
    use crate::records::Counts;

    #[derive(Deserialize)]
    pub struct VisitorState {
        touches: Vec<OldTouch>,
        sessions: OldSessions,
        #[allow(dead_code)]
        user_id: Option<String>,
        lifecycle: Lifecycle,
        max_event_time: i64,
    }

    #[derive(Deserialize)]
    struct OldTouch {
        event_id: String,
        time_ms: i64,
        touch: Touch,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct OldSessions {
        next_session: u64,
        watermark_ms: Option<i64>,
        retained: Vec<OldRetained>,
        anchor: Option<OldRetained>,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct OldRetained {
        event_id: String,
        time_ms: i64,
        campaign: Option<CampaignKey>,
        session: u64,
        session_campaign: Option<CampaignKey>,
    }

    impl VisitorState {
        pub fn into_device(self) -> DeviceState {
            let touches = self
                .touches
                .into_iter()
                .map(|t| PersonTouch {
                    device: String::new(),
                    touch: TouchRecord::new(t.event_id, t.time_ms, &t.touch),
                })
                .collect();
            let l = self.lifecycle;
            let settled = Counts {
                conversions: l.purchases.max(u32::from(
                    l.stage > touchstream_model::LifecycleStage::Visitor,
                )),
                purchases: l.purchases,
            };
            let mut own = PersonState::default();
            own.touches = touches;
            own.settled = settled;
            own.max_event_time = self.max_event_time;
            DeviceState {
                sessions: SessionState::resuming(self.sessions.next_session),
                own,
                links: Vec::new(),
                max_event_time: self.max_event_time,
            }
        }
    }
}

/// Bytes of states in the store per state, for the memory figure.
pub fn bytes_per_state<S: Stored>(store: &Store<S>) -> f64 {
    let (n, bytes) = store.size();
    if n == 0 { 0.0 } else { bytes as f64 / n as f64 }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use touchstream_model::{EventType, RawEvent};

    use super::*;
    use crate::attribute::Attributor;
    use crate::config::EnricherConfig;

    fn event(i: i64, page_url: &str, referrer: Option<&str>) -> RawEvent {
        let t = 1_795_600_000_000 + i * 60_000;
        let purchase = page_url.contains("thanks");
        RawEvent {
            user_id: (i > 2).then(|| "u-1".into()),
            referrer: referrer.map(str::to_string),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0".into()),
            order_id: purchase.then(|| "o-1".into()),
            revenue: purchase.then_some(4900),
            currency: purchase.then(|| "EUR".into()),
            ..RawEvent::new(
                format!("e-{i}"),
                if purchase {
                    EventType::Purchase
                } else {
                    EventType::Click
                },
                "v-1",
                t,
                page_url,
            )
        }
    }

    /// A device with touches from three networks, sessions, a link and a conversion.
    fn device() -> DeviceState {
        let attributor = Attributor::new(&EnricherConfig {
            site_hosts: vec!["shop.example".into()],
            ..EnricherConfig::default()
        })
        .unwrap();
        let mut d = DeviceState::default();
        let hits = [
            (
                "https://shop.example/?utm_source=linkedin&utm_medium=social&utm_content=post-7",
                Some("https://www.linkedin.com/"),
            ),
            ("https://shop.example/blog", Some("https://l.facebook.com/")),
            (
                "https://shop.example/pricing",
                Some("https://www.google.com/"),
            ),
            (
                "https://shop.example/thanks",
                Some("https://shop.example/cart"),
            ),
        ];
        for (i, (url, referrer)) in hits.into_iter().enumerate() {
            attributor.device_event(&mut d, event(i as i64 * 90, url, referrer));
        }
        assert!(d.own.touches.len() >= 3, "{d:?}");
        assert_eq!(d.links.len(), 1);
        d
    }

    #[test]
    fn state_round_trips_through_the_changelog_encoding() {
        let d = device();
        let bytes = d.encode().unwrap();
        assert_eq!(bytes[0], DeviceState::VERSION);
        assert_eq!(DeviceState::decode(&bytes).unwrap(), d);
        assert!(bytes.len() < serde_json::to_vec(&d).unwrap().len());
        let p = PersonState::default();
        assert_eq!(PersonState::decode(&p.encode().unwrap()).unwrap(), p);
    }

    #[test]
    fn unknown_or_cut_encodings_are_errors_not_panics() {
        assert!(matches!(
            DeviceState::decode(&[7, 1, 2]),
            Err(StateError::UnknownEncoding(7))
        ));
        assert!(matches!(DeviceState::decode(&[]), Err(StateError::Empty)));
        let bytes = device().encode().unwrap();
        for cut in 1..bytes.len() {
            assert!(DeviceState::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn visitor_state_written_by_earlier_releases_still_restores() {
        // JSON as the first releases wrote it: two touches, a purchase, sessions up to 3.
        let json = br#"{"touches":[
            {"event_id":"t1","time_ms":1000,"touch":{"channel":"Organic Social","source":"linkedin","medium":"referral","campaign":null,"content":"post-7","term":null,"campaign_id":null,"click_id_kind":null,"social_network":"linkedin","is_internal":false,"is_bot":false,"is_spam_referrer":false}},
            {"event_id":"t2","time_ms":2000,"touch":{"channel":"Organic Search","source":"google","medium":"organic","campaign":null,"content":null,"term":null,"campaign_id":null,"click_id_kind":null,"social_network":null,"is_internal":false,"is_bot":false,"is_spam_referrer":false}}],
          "sessions":{"next_session":3,"watermark_ms":2000,"retained":[],"anchor":null},
          "user_id":"u-1","lifecycle":{"stage":"client","purchases":1},"max_event_time":2000}"#;
        let d = DeviceState::decode(json).unwrap();
        assert_eq!(d.own.touches.len(), 2);
        assert_eq!(d.own.touches[0].touch.source, "linkedin");
        assert_eq!((d.own.settled.conversions, d.own.settled.purchases), (1, 1));
        assert_eq!(d.max_event_time, 2000);
        assert!(d.links.is_empty());
        assert_eq!(restored_key("v-1".into()), "default/v-1");
        assert_eq!(restored_key("shop/v-1".into()), "shop/v-1");
    }
}
