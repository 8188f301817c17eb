use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaResult;
use rdkafka::statistics::{Partition, Statistics};

/// A consumer context that turns librdkafka's statistics (enable with `statistics.interval.ms`)
/// into a `touchstream_<binary>_consumer_lag_records{topic,partition}` gauge.
pub struct LagContext {
    metric: String,
    from: LagFrom,
}

/// What the lag is counted from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LagFrom {
    /// The group's committed offset (librdkafka's `consumer_lag`): what a restart would read
    /// again. Right for a consumer that commits its own offsets (the sink).
    Committed,
    /// The consumer's position (the offset after the last record handed to the application).
    /// For a consumer whose offsets are committed through a producer's transaction (the
    /// enricher): its own consumer never learns those commits, so librdkafka's `consumer_lag`
    /// stays unknown (a new group) or frozen at the offset fetched on assignment.
    Position,
}

impl LagContext {
    /// Lag from the committed offset.
    pub fn new(binary: &str) -> Self {
        Self::with(binary, LagFrom::Committed)
    }

    /// Lag from the consumer's position, for a consumer that commits through transactions.
    pub fn by_position(binary: &str) -> Self {
        Self::with(binary, LagFrom::Position)
    }

    fn with(binary: &str, from: LagFrom) -> Self {
        Self {
            metric: format!("touchstream_{binary}_consumer_lag_records"),
            from,
        }
    }
}

/// Records behind the end of the partition (its last stable offset for a read_committed
/// consumer, else the high watermark), or `None` while that is not known.
fn lag(p: &Partition, from: LagFrom) -> Option<i64> {
    match from {
        // -1 until known.
        LagFrom::Committed => (p.consumer_lag >= 0).then_some(p.consumer_lag),
        LagFrom::Position => {
            let end = if p.ls_offset >= 0 {
                p.ls_offset
            } else {
                p.hi_offset
            };
            // Offsets below 0 are librdkafka's "not known" markers (-1, -1001 ...). Before the
            // first record the position is the committed offset, if the group has one.
            let position = [p.app_offset, p.committed_offset]
                .into_iter()
                .find(|o| *o >= 0)?;
            (end >= 0).then(|| (end - position).max(0))
        }
    }
}

impl ClientContext for LagContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in stats.topics {
            for (partition, p) in t.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                if partition < 0 {
                    continue;
                }
                if let Some(lag) = lag(&p, self.from) {
                    metrics::gauge!(self.metric.clone(), "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for LagContext {
    /// The answer to a commit the consumer did not wait for.
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "offset commit failed; the records after the last committed offsets will be delivered again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(app: i64, committed: i64, hi: i64, ls: i64, consumer_lag: i64) -> Partition {
        Partition {
            app_offset: app,
            committed_offset: committed,
            hi_offset: hi,
            ls_offset: ls,
            consumer_lag,
            ..Partition::default()
        }
    }

    #[test]
    fn lag_from_the_committed_offset_is_librdkafkas() {
        assert_eq!(
            lag(&partition(90, 50, 100, 100, 50), LagFrom::Committed),
            Some(50)
        );
        assert_eq!(
            lag(&partition(90, -1001, 100, 100, -1), LagFrom::Committed),
            None
        );
    }

    #[test]
    fn lag_from_the_position_ignores_a_committed_offset_the_consumer_never_learns() {
        // A transactional consumer of a new group: no committed offset, read up to 90 of 100.
        assert_eq!(
            lag(&partition(90, -1001, 100, 100, -1), LagFrom::Position),
            Some(10)
        );
        // Committed offset fetched on assignment (50) and frozen there: the position wins.
        assert_eq!(
            lag(&partition(90, 50, 100, 100, 50), LagFrom::Position),
            Some(10)
        );
        // The last stable offset, not the high watermark (an open transaction after it).
        assert_eq!(
            lag(&partition(90, -1001, 120, 100, -1), LagFrom::Position),
            Some(10)
        );
        // Nothing read yet: from the committed offset; unknown without one.
        assert_eq!(
            lag(&partition(-1001, 40, 100, 100, 60), LagFrom::Position),
            Some(60)
        );
        assert_eq!(
            lag(&partition(-1001, -1001, 100, 100, -1), LagFrom::Position),
            None
        );
        assert_eq!(
            lag(&partition(10, -1001, -1, -1, -1), LagFrom::Position),
            None
        );
    }
}
