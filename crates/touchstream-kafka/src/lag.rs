use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;

/// A consumer context that turns librdkafka's statistics (enable with `statistics.interval.ms`)
/// into a `touchstream_<binary>_consumer_lag_records{topic,partition}` gauge.
pub struct LagContext {
    metric: String,
}

impl LagContext {
    pub fn new(binary: &str) -> Self {
        Self {
            metric: format!("touchstream_{binary}_consumer_lag_records"),
        }
    }
}

impl ClientContext for LagContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in stats.topics {
            for (partition, p) in t.partitions {
                // -1 is librdkafka's internal "unassigned" partition, and lag is -1 until known.
                if partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(self.metric.clone(), "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(p.consumer_lag as f64);
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
