//! Rows accumulated from Kafka, with where each came from and the bytes it was decoded from.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use touchstream_model::forget::ForgetMarker;
use touchstream_warehouse::{CreditRow, EventRow};

use crate::config::BatchPolicy;

/// The record an event row was built from, kept for the DLQ: a refused row is dead-lettered
/// as the input the sink received, so it can be replayed.
pub struct Source {
    pub partition: i32,
    pub offset: i64,
    /// The attributed event's Avro bytes as read from the topic.
    pub payload: Vec<u8>,
    pub key: Option<Vec<u8>>,
}

#[derive(Default)]
pub struct Batch {
    pub events: Vec<EventRow>,
    pub credits: Vec<CreditRow>,
    /// Where each event row came from, for the DLQ.
    pub sources: Vec<Source>,
    /// For each event row, where its credits start in `credits`.
    credit_starts: Vec<usize>,
    /// Highest offset seen per partition (decoded or dead-lettered).
    next_offsets: BTreeMap<i32, i64>,
    bytes: usize,
    started: Option<Instant>,
    /// Erasure markers read into this batch: their rows are deleted once the batch (every row
    /// before them) is in ClickHouse.
    pub forgets: Vec<ForgetMarker>,
}

impl Batch {
    pub fn push(&mut self, source: Source, event: EventRow, credits: Vec<CreditRow>) {
        self.started.get_or_insert_with(Instant::now);
        self.credit_starts.push(self.credits.len());
        self.events.push(event);
        self.credits.extend(credits);
        self.bytes += source.payload.len();
        self.next_offsets
            .insert(source.partition, source.offset + 1);
        self.sources.push(source);
    }

    /// A record that produced no row (dead-lettered) still moves the offset.
    pub fn skip(&mut self, partition: i32, offset: i64) {
        self.started.get_or_insert_with(Instant::now);
        self.next_offsets.insert(partition, offset + 1);
    }

    pub fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }

    pub fn is_full(&self, policy: &BatchPolicy) -> bool {
        self.events.len() >= policy.max_rows || self.bytes >= policy.max_bytes
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the oldest row has waited `max_wait`.
    pub fn deadline(&self, max_wait: Duration) -> Option<Instant> {
        self.started.map(|s| s + max_wait)
    }

    /// Event rows `start..end` and their credit rows.
    pub fn slice(&self, start: usize, end: usize) -> (Vec<EventRow>, Vec<CreditRow>)
    where
        EventRow: Clone,
        CreditRow: Clone,
    {
        let credit_end = self
            .credit_starts
            .get(end)
            .copied()
            .unwrap_or(self.credits.len());
        let credit_start = self.credit_starts.get(start).copied().unwrap_or(credit_end);
        (
            self.events[start..end].to_vec(),
            self.credits[credit_start..credit_end].to_vec(),
        )
    }

    pub fn commit_list(&self, topic: &str) -> anyhow::Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in &self.next_offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        Ok(tpl)
    }
}
