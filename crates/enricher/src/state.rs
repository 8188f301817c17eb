//! Per-visitor state, per input partition, and its changelog encoding.
//!
//! One visitor's state is its touches within the lookback (bounded by
//! `max_touches_per_visitor`), its recent events for sessionisation, the user id it was stitched to and its
//! lifecycle stage. Encoded as JSON on the compacted changelog topic: a visitor with the
//! default 64-touch bound takes at most about 64 × 250 B ≈ 16 kB, a typical one (7–13
//! touches) 2–4 kB.

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

impl VisitorState {
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let mut s: Self = serde_json::from_slice(bytes)?;
        s.encoded_len = bytes.len();
        Ok(s)
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
    pub fn encode(&mut self, partition: i32, key: &str) -> Result<Vec<u8>, serde_json::Error> {
        let Some(v) = self
            .partitions
            .get_mut(&partition)
            .and_then(|p| p.get_mut(key))
        else {
            return Ok(Vec::new());
        };
        let bytes = serde_json::to_vec(v)?;
        self.bytes = self.bytes + bytes.len() - v.encoded_len;
        v.encoded_len = bytes.len();
        Ok(bytes)
    }

    /// (visitors, encoded bytes).
    pub fn size(&self) -> (usize, usize) {
        (self.partitions.values().map(HashMap::len).sum(), self.bytes)
    }
}
