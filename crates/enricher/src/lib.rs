//! The enricher: raw events in, attributed events out, exactly once.
//!
//! - [`config`]: the [`EnricherConfig`].
//! - [`attribute`]: the pure step, one event and its visitor's state → an attributed event
//!   (classification, session, stitching, lifecycle, credits under six models).
//! - [`state`]: per-visitor state per partition and its changelog encoding.
//! - [`processor`]: the Kafka transaction loop, state restore, rebalances, DLQ.
//! - [`metrics`]: every metric the enricher emits.

pub mod attribute;
pub mod config;
pub mod metrics;
pub mod processor;
pub mod state;

use std::sync::Arc;

pub use config::EnricherConfig;
use touchstream_kafka::ensure_topics;
use touchstream_runtime::{Health, Shutdown, ops};

use crate::attribute::Attributor;

pub struct Application {
    config: EnricherConfig,
    attributor: Arc<Attributor>,
    health: Health,
}

impl Application {
    pub async fn build(config: EnricherConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let attributor = Arc::new(Attributor::new(&config)?);
        let t = &config.topics;
        ensure_topics(
            &config.kafka,
            &[
                t.spec(&t.raw),
                t.spec(&t.attributed),
                t.spec(&t.dlq),
                t.spec(&t.changelog),
            ],
        )
        .await?;
        let health = Health::new();
        health.register("kafka", "starting");
        Ok(Self {
            config,
            attributor,
            health,
        })
    }

    /// Processes until `shutdown` fires; the transaction in progress is committed first.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let served = ops::serve(
            self.config.ops.listen,
            self.health.clone(),
            shutdown.clone(),
        )
        .await?;
        tracing::info!(topic = %self.config.topics.raw, ops = %served.addr, "enricher starting");
        let Self {
            config,
            attributor,
            health,
        } = self;
        let loop_shutdown = shutdown.clone();
        let worker = std::thread::Builder::new()
            .name("enricher-loop".into())
            .spawn(move || processor::run(&config, &attributor, &health, &loop_shutdown))?;
        // The loop ends only on shutdown; wait for it without blocking the runtime.
        tokio::task::spawn_blocking(move || worker.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the enricher loop panicked"))?;
        shutdown.cancel();
        served.task.await?;
        tracing::info!("enricher stopped");
        Ok(())
    }
}
