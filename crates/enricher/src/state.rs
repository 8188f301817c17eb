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
use crate::person::{PersonState, Retained};

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

/// Changelog records: `(key, payload)`, a `None` payload deleting the key.
pub type Records = Vec<(String, Option<Vec<u8>>)>;

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

    /// The changelog records that bring `key`'s state up to date: `(key, payload)`, a `None`
    /// payload deleting the key. By default one record, the whole state.
    fn changelog(&mut self, key: &str) -> Result<Records, StateError> {
        Ok(vec![(key.to_owned(), Some(self.encode()?))])
    }

    /// The changelog records that delete `key`'s state altogether (an erasure): by default one
    /// tombstone.
    fn tombstones(&self, key: &str) -> Records {
        vec![(key.to_owned(), None)]
    }

    /// The states of one restored changelog partition, from its latest record per key:
    /// `(key, state, encoded length)`. Undecodable records are skipped (and logged).
    fn restore(records: HashMap<String, Vec<u8>>) -> Vec<(String, Self, usize)> {
        records
            .into_iter()
            .filter_map(|(key, bytes)| match Self::decode(&bytes) {
                Ok(state) => Some((key, state, bytes.len())),
                Err(e) => {
                    tracing::error!(error = %e, %key, "unreadable state skipped");
                    None
                }
            })
            .collect()
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

/// A user's state is written as one record for everything but its conversions (key
/// `site_id/user_id`) and one per kept conversion (key `site_id/user_id` + U+001F + the
/// conversion's event id), so that a transaction writes only what changed: a heavy buyer's
/// conversions are not encoded again with every click.
impl Stored for PersonState {
    const VERSION: u8 = 1;

    fn encode(&self) -> Result<Vec<u8>, StateError> {
        let mut bytes = Vec::with_capacity(256);
        bytes.push(Self::VERSION);
        bincode::serialize_into(&mut bytes, &PersonCore::of(self))?;
        Ok(bytes)
    }

    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        match bytes.first() {
            Some(&v) if v == Self::VERSION => {
                let core: PersonCoreOwned = bincode::deserialize(&bytes[1..])?;
                Ok(core.into_state())
            }
            Some(&other) => Err(StateError::UnknownEncoding(other)),
            None => Err(StateError::Empty),
        }
    }

    fn changelog(&mut self, key: &str) -> Result<Records, StateError> {
        let mut records = vec![(key.to_owned(), Some(self.encode()?))];
        for id in std::mem::take(&mut self.removed) {
            if !self.conversions.iter().any(|c| c.event.raw.event_id == id) {
                records.push((conversion_key(key, &id), None));
            }
        }
        for c in self.conversions.iter_mut().filter(|c| c.changed) {
            c.changed = false;
            let mut bytes = Vec::with_capacity(1024);
            bytes.push(CONVERSION_VERSION);
            bincode::serialize_into(&mut bytes, &*c)?;
            records.push((conversion_key(key, &c.event.raw.event_id), Some(bytes)));
        }
        Ok(records)
    }

    fn tombstones(&self, key: &str) -> Records {
        let mut records = vec![(key.to_owned(), None)];
        let ids = self
            .conversions
            .iter()
            .map(|c| c.event.raw.event_id.as_str())
            .chain(self.removed.iter().map(String::as_str));
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            if seen.insert(id) {
                records.push((conversion_key(key, id), None));
            }
        }
        records
    }

    fn restore(records: HashMap<String, Vec<u8>>) -> Vec<(String, Self, usize)> {
        let mut states: HashMap<String, (Self, usize)> = HashMap::new();
        let mut conversions: Vec<(String, Retained, usize)> = Vec::new();
        for (key, bytes) in records {
            match key.split_once(CONVERSION_SEPARATOR) {
                Some((person, _)) => match decode_conversion(&bytes) {
                    Ok(c) => conversions.push((person.to_owned(), c, bytes.len())),
                    Err(e) => tracing::error!(error = %e, %key, "unreadable conversion skipped"),
                },
                None => match Self::decode(&bytes) {
                    Ok(state) => {
                        let len = bytes.len();
                        match states.get_mut(&key) {
                            // Conversions restored before their person's record.
                            Some((existing, n)) => {
                                let kept = std::mem::take(&mut existing.conversions);
                                *existing = state;
                                existing.conversions = kept;
                                *n += len;
                            }
                            None => {
                                states.insert(key, (state, len));
                            }
                        }
                    }
                    Err(e) => tracing::error!(error = %e, %key, "unreadable state skipped"),
                },
            }
        }
        for (person, c, len) in conversions {
            let (state, n) = states.entry(person).or_default();
            state.conversions.push(c);
            *n += len;
        }
        states
            .into_iter()
            .map(|(key, (mut state, len))| {
                state
                    .conversions
                    .sort_by(|a, b| a.event.order_key().cmp(&b.event.order_key()));
                (key, state, len)
            })
            .collect()
    }
}

const CONVERSION_VERSION: u8 = 1;
const CONVERSION_SEPARATOR: char = '\u{1f}';

fn conversion_key(person: &str, event_id: &str) -> String {
    format!("{person}{CONVERSION_SEPARATOR}{event_id}")
}

fn decode_conversion(bytes: &[u8]) -> Result<Retained, StateError> {
    match bytes.first() {
        Some(&CONVERSION_VERSION) => Ok(bincode::deserialize(&bytes[1..])?),
        Some(&other) => Err(StateError::UnknownEncoding(other)),
        None => Err(StateError::Empty),
    }
}

/// A user's state without its conversions, as its main changelog record holds it.
#[derive(Serialize)]
struct PersonCore<'a> {
    devices: &'a [crate::person::LinkedDevice],
    touches: &'a [crate::person::PersonTouch],
    settled: crate::records::Counts,
    max_event_time: i64,
}

#[derive(serde::Deserialize)]
struct PersonCoreOwned {
    devices: Vec<crate::person::LinkedDevice>,
    touches: Vec<crate::person::PersonTouch>,
    settled: crate::records::Counts,
    max_event_time: i64,
}

impl<'a> PersonCore<'a> {
    fn of(p: &'a PersonState) -> Self {
        Self {
            devices: &p.devices,
            touches: &p.touches,
            settled: p.settled,
            max_event_time: p.max_event_time,
        }
    }
}

impl PersonCoreOwned {
    fn into_state(self) -> PersonState {
        let mut p = PersonState::default();
        p.devices = self.devices;
        p.touches = self.touches;
        p.settled = self.settled;
        p.max_event_time = self.max_event_time;
        p
    }
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

    /// The partitions this store holds, in order.
    pub fn owned(&self) -> std::collections::BTreeSet<i32> {
        self.partitions.keys().copied().collect()
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

    /// The changelog records of one state (see [`Stored::changelog`]), with the size
    /// accounting updated (a rough figure for states written as several records: what was
    /// written last, plus what was there before).
    pub fn changelog(&mut self, partition: i32, key: &str) -> Result<Records, StateError> {
        let Some(e) = self
            .partitions
            .get_mut(&partition)
            .and_then(|p| p.get_mut(key))
        else {
            return Ok(Vec::new());
        };
        let records = e.state.changelog(key)?;
        let main = records
            .first()
            .and_then(|(_, b)| b.as_ref())
            .map_or(0, Vec::len);
        let others: usize = records
            .iter()
            .skip(1)
            .filter_map(|(_, b)| b.as_ref())
            .map(Vec::len)
            .sum();
        let len = if records.len() > 1 || others > 0 {
            e.encoded_len.max(main) + others
        } else {
            main
        };
        self.bytes = self.bytes + len - e.encoded_len;
        e.encoded_len = len;
        Ok(records)
    }

    /// Takes out the states of `partition` that `select` picks (an erasure), with their keys.
    pub fn remove_where(
        &mut self,
        partition: i32,
        mut select: impl FnMut(&str, &S) -> bool,
    ) -> Vec<(String, S)> {
        let Some(map) = self.partitions.get_mut(&partition) else {
            return Vec::new();
        };
        let keys: Vec<String> = map
            .iter()
            .filter(|(k, e)| select(k, &e.state))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(e) = map.remove(&key) {
                self.bytes -= e.encoded_len;
                out.push((key, e.state));
            }
        }
        out
    }

    /// Runs `change` on every state of `partition`; returns the keys of those it changed.
    pub fn change_where(
        &mut self,
        partition: i32,
        mut change: impl FnMut(&str, &mut S) -> bool,
    ) -> Vec<String> {
        let Some(map) = self.partitions.get_mut(&partition) else {
            return Vec::new();
        };
        map.iter_mut()
            .filter_map(|(k, e)| change(k, &mut e.state).then(|| k.clone()))
            .collect()
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
            user_id: (i == 270).then(|| "u-1".into()),
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
    fn a_users_conversions_have_changelog_records_of_their_own() {
        let attributor = Attributor::new(&EnricherConfig::default()).unwrap();
        let mut d = DeviceState::default();
        let mut p = PersonState::default();
        let mut feed = |e: RawEvent, p: &mut PersonState| {
            for (user, record) in attributor.device_event(&mut d, e).to_persons {
                attributor.person_record(p, &user, record);
            }
        };
        let signed_in = |e: RawEvent| RawEvent {
            user_id: Some("u-1".into()),
            ..e
        };
        feed(
            signed_in(event(0, "https://shop.example/", Some("https://t.co/x"))),
            &mut p,
        );
        feed(
            signed_in(event(1, "https://shop.example/thanks", None)),
            &mut p,
        );
        feed(
            signed_in(event(2, "https://shop.example/thanks", None)),
            &mut p,
        );
        assert_eq!(p.conversions.len(), 2);
        let key = "default/u-1";
        let first = p.changelog(key).unwrap();
        assert_eq!(first.len(), 3, "the person and its two conversions");
        let records: HashMap<String, Vec<u8>> = first
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().unwrap()))
            .collect();
        let restored = PersonState::restore(records.clone());
        assert_eq!(restored.len(), 1);
        let (k, back, _) = &restored[0];
        assert_eq!(k, key);
        assert_eq!(back.touches, p.touches);
        assert_eq!(back.devices, p.devices);
        let ids = |s: &PersonState| -> Vec<String> {
            s.conversions
                .iter()
                .map(|c| c.event.raw.event_id.clone())
                .collect()
        };
        assert_eq!(ids(back), ids(&p));
        assert_eq!(back.conversions[1].credited, p.conversions[1].credited);
        // Nothing changed: only the person's own record again.
        assert_eq!(p.changelog(key).unwrap().len(), 1);
        // A conversion handed over (a late sign-in elsewhere) is deleted from the changelog.
        let taken = p.take_conversions_from(i64::MIN);
        assert_eq!(taken.len(), 2);
        let after = p.changelog(key).unwrap();
        assert_eq!(after.iter().filter(|(_, v)| v.is_none()).count(), 2);
        let mut records = records;
        for (k, v) in after {
            match v {
                Some(v) => records.insert(k, v),
                None => records.remove(&k),
            };
        }
        assert!(PersonState::restore(records)[0].1.conversions.is_empty());
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
