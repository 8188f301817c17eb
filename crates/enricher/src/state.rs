//! Per-visitor state, per input partition, and its changelog encoding.
//!
//! One visitor's state is its touches within the lookback (bounded by
//! `max_touches_per_visitor`), its recent events for sessionisation, the user id it was stitched to and its
//! lifecycle stage. Encoded on the compacted changelog topic as a version byte (1) followed by
//! bincode: JSON, which earlier versions wrote (and which is still read: it starts with `{`),
//! cost the enricher an eighth of its time re-encoding every visitor it touched.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use touchstream_attribution::{Lifecycle, SessionState, TouchRecord};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VisitorState {
    /// Touches ordered by event time, oldest first.
    pub touches: Vec<TouchRecord>,
    /// The events still inside the lateness window, for sessionisation by event time.
    pub sessions: SessionState,
    pub user_id: Option<String>,
    pub lifecycle: Lifecycle,
    /// Newest event time seen: what lateness is measured against.
    pub max_event_time: i64,
    /// Size of the last encoding, for the state-size gauge.
    #[serde(skip)]
    pub encoded_len: usize,
}

/// The first byte of the current changelog encoding.
const BINCODE_V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("visitor state in bincode: {0}")]
    Bincode(#[from] bincode::Error),
    #[error("visitor state in JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("visitor state starts with byte {0:#04x}: not an encoding this version knows")]
    UnknownEncoding(u8),
    #[error("empty visitor state")]
    Empty,
}

impl VisitorState {
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let mut s: Self = match bytes.first() {
            Some(&BINCODE_V1) => bincode::deserialize(&bytes[1..])?,
            Some(b'{') => serde_json::from_slice(bytes)?,
            Some(&other) => return Err(StateError::UnknownEncoding(other)),
            None => return Err(StateError::Empty),
        };
        s.encoded_len = bytes.len();
        Ok(s)
    }

    /// The changelog encoding of this state.
    pub fn encode(&self) -> Result<Vec<u8>, StateError> {
        let mut bytes = Vec::with_capacity(256);
        bytes.push(BINCODE_V1);
        bincode::serialize_into(&mut bytes, self)?;
        Ok(bytes)
    }
}

/// The state of the partitions this instance owns.
#[derive(Default)]
pub struct PartitionStates {
    partitions: HashMap<i32, HashMap<String, VisitorState>>,
    bytes: usize,
}

impl PartitionStates {
    pub fn owns(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition)
    }

    pub fn insert_partition(&mut self, partition: i32, visitors: HashMap<String, VisitorState>) {
        self.drop_partition(partition);
        self.bytes += visitors.values().map(|v| v.encoded_len).sum::<usize>();
        self.partitions.insert(partition, visitors);
    }

    pub fn drop_partition(&mut self, partition: i32) {
        if let Some(visitors) = self.partitions.remove(&partition) {
            self.bytes -= visitors.values().map(|v| v.encoded_len).sum::<usize>();
        }
    }

    pub fn visitor(&mut self, partition: i32, key: &str) -> &mut VisitorState {
        self.partitions
            .entry(partition)
            .or_default()
            .entry(key.to_string())
            .or_default()
    }

    /// Encodes one visitor for the changelog and updates the size accounting.
    pub fn encode(&mut self, partition: i32, key: &str) -> Result<Vec<u8>, StateError> {
        let Some(v) = self
            .partitions
            .get_mut(&partition)
            .and_then(|p| p.get_mut(key))
        else {
            return Ok(Vec::new());
        };
        let bytes = v.encode()?;
        self.bytes = self.bytes + bytes.len() - v.encoded_len;
        v.encoded_len = bytes.len();
        Ok(bytes)
    }

    /// (visitors, encoded bytes).
    pub fn size(&self) -> (usize, usize) {
        (self.partitions.values().map(HashMap::len).sum(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use touchstream_model::{EventType, RawEvent};

    use super::*;
    use crate::attribute::Attributor;
    use crate::config::EnricherConfig;

    fn click(i: i64, page_url: &str, referrer: Option<&str>) -> RawEvent {
        let t = 1_795_600_000_000 + i * 60_000;
        RawEvent {
            event_id: format!("e-{i}"),
            event_type: if page_url.contains("thanks") {
                EventType::Purchase
            } else {
                EventType::Click
            },
            anonymous_id: "v-1".into(),
            user_id: (i > 2).then(|| "u-1".into()),
            occurred_at: t,
            sent_at: Some(t),
            received_at: t,
            event_time: t,
            page_url: page_url.into(),
            referrer: referrer.map(str::to_string),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0".into()),
            ip: None,
            properties: BTreeMap::new(),
            target_url: None,
            element: None,
            signup_kind: None,
            method: None,
            asset_id: None,
            asset_kind: None,
            order_id: page_url.contains("thanks").then(|| "o-1".into()),
            revenue: page_url.contains("thanks").then_some(4900),
            currency: page_url.contains("thanks").then(|| "EUR".into()),
            site_id: touchstream_model::DEFAULT_SITE.into(),
            event_name: None,
            clock_correction_ms: 0,
            received_via: touchstream_model::received_via::EVENTS.into(),
        }
    }

    /// A visitor with touches from three networks, sessions and a purchase.
    fn state() -> VisitorState {
        let attributor = Attributor::new(&EnricherConfig {
            site_hosts: vec!["shop.example".into()],
            ..EnricherConfig::default()
        })
        .unwrap();
        let mut v = VisitorState::default();
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
            attributor.attribute(&mut v, click(i as i64 * 90, url, referrer));
        }
        assert!(v.touches.len() >= 3, "{v:?}");
        v
    }

    fn same(a: &VisitorState, b: &VisitorState) {
        assert_eq!(
            serde_json::to_value(a).unwrap(),
            serde_json::to_value(b).unwrap()
        );
    }

    #[test]
    fn state_round_trips_through_the_changelog_encoding() {
        let v = state();
        let bytes = v.encode().unwrap();
        assert_eq!(bytes[0], BINCODE_V1);
        let back = VisitorState::decode(&bytes).unwrap();
        same(&back, &v);
        assert_eq!(back.encoded_len, bytes.len());
        assert!(bytes.len() < serde_json::to_vec(&v).unwrap().len());
    }

    #[test]
    fn json_written_by_earlier_versions_still_restores() {
        let v = state();
        let json = serde_json::to_vec(&v).unwrap();
        same(&VisitorState::decode(&json).unwrap(), &v);
    }

    #[test]
    fn unknown_or_cut_encodings_are_errors_not_panics() {
        assert!(matches!(
            VisitorState::decode(&[7, 1, 2]),
            Err(StateError::UnknownEncoding(7))
        ));
        assert!(matches!(VisitorState::decode(&[]), Err(StateError::Empty)));
        let bytes = state().encode().unwrap();
        for cut in 1..bytes.len() {
            assert!(VisitorState::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
