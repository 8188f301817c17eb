//! The sink: attributed events from Kafka into ClickHouse, exactly once as the reports see it.
//!
//! - [`config`]: the [`SinkConfig`], with the batch and retry policies.
//! - [`batch`]: rows accumulated from Kafka with the offsets and input bytes they came from.
//! - [`writer`]: the consume loop, the insert retries, and the halving that finds the rows
//!   ClickHouse refuses.
//! - [`metrics`]: every metric the sink emits.
//!
//! The guarantee: consumer offsets are committed only after ClickHouse acknowledged the insert
//! of every row before them. A crash between insert and commit replays rows; the tables
//! deduplicate on `event_id` (ReplacingMergeTree) and every report query is written to be
//! correct before merges, so a replay never double-counts.

pub mod batch;
pub mod config;
pub mod metrics;
mod writer;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use touchstream_kafka::{DlqWriter, LagContext, ensure_topics};
use touchstream_runtime::Health;
use touchstream_warehouse::Warehouse;

pub use crate::config::SinkConfig;

pub struct Application {
    config: SinkConfig,
    consumer: StreamConsumer<LagContext>,
    /// One server, or the shards of `clickhouse.cluster`.
    clickhouse: Warehouse,
    dlq: DlqWriter,
    health: Health,
}

impl Application {
    pub async fn build(config: SinkConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let health = Health::exported_as("touchstream_sink_ready");
        health.register("clickhouse", "not checked yet");
        if config.migrate_on_start {
            let applied = touchstream_warehouse::migrate(&config.clickhouse_admin()).await?;
            for name in applied {
                tracing::info!(migration = %name, "applied migration");
            }
        }
        let t = &config.topics;
        ensure_topics(&config.kafka, &[t.spec(&t.attributed), t.spec(&t.dlq)]).await?;
        let consumer = Self::consumer(&config)?;
        let producer: FutureProducer = config.kafka.producer("touchstream-sink-dlq").create()?;
        let dlq = DlqWriter::new(producer, config.topics.dlq.clone());
        let clickhouse = Warehouse::new(&config.clickhouse);
        health.ready("clickhouse");
        Ok(Self {
            config,
            consumer,
            clickhouse,
            dlq,
            health,
        })
    }

    /// The consumer of the attributed topic, subscribed.
    fn consumer(config: &SinkConfig) -> anyhow::Result<StreamConsumer<LagContext>> {
        let mut consumer_cfg = config.kafka.consumer("touchstream-sink", &config.group_id);
        // While ClickHouse is down the sink stops polling on purpose; stay in the group meanwhile.
        consumer_cfg
            .set("max.poll.interval.ms", "900000")
            .set("statistics.interval.ms", "5000")
            .set("session.timeout.ms", config.session_timeout_ms.to_string());
        if let Some(id) = config.group_instance_id() {
            consumer_cfg.set("group.instance.id", id);
        }
        let consumer: StreamConsumer<LagContext> =
            consumer_cfg.create_with_context(LagContext::new("sink"))?;
        consumer.subscribe(&[&config.topics.attributed])?;
        Ok(consumer)
    }
}
