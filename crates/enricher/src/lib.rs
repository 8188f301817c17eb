//! The enricher: raw events in, attributed events out, exactly once.
//!
//! Two stages run in one loop, so that a person's devices can live on different partitions and
//! instances (schemas/attribution-rules.md, section 5): the device stage reads the raw topic
//! (keyed by device) and the person stage reads the person topic (keyed by user), which the
//! device stage writes inside the same transactions.
//!
//! - [`config`]: the [`EnricherConfig`].
//! - [`attribute`]: the two pure steps: a raw event and its device's state, a person record and
//!   its user's state → attributed events and person records.
//! - [`device`]: a device's state: sessions, links to users, itself as its own person.
//! - [`person`]: a person's state and rules: touches, linked devices, conversions kept to be
//!   re-credited, lifecycle.
//! - [`records`]: what the device stage tells a user on the person topic.
//! - [`state`]: the two stores per owned partition and their changelog encodings.
//! - [`processor`]: the Kafka transaction loop, state restore, rebalances, DLQ.
//! - [`metrics`]: every metric the enricher emits.

pub mod attribute;
pub mod config;
pub mod device;
pub mod metrics;
pub mod person;
pub mod processor;
pub mod records;
pub mod state;

use std::sync::Arc;

pub use config::EnricherConfig;
use touchstream_kafka::ensure_topics;
use touchstream_runtime::{Health, Shutdown, ops};

use crate::attribute::Attributor;
use crate::processor::Input;

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
                t.spec(&t.person),
                t.spec(&t.person_changelog),
                t.spec(&t.forgotten),
            ],
        )
        .await?;
        let health = Health::exported_as("touchstream_enricher_ready");
        for input in [Input::Raw, Input::Person] {
            health.register(input.name(), "starting");
        }
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
        let (watched, stop) = (self.health.clone(), shutdown.clone());
        touchstream_kafka::watch_brokers(
            &self.config.kafka,
            "touchstream-enricher-brokers",
            &self.config.topics.raw,
            std::time::Duration::from_secs(2),
            move |missing| {
                watched.degraded("kafka", missing);
                !stop.is_cancelled()
            },
        )?;
        let Self {
            config,
            attributor,
            health,
        } = self;
        // One thread per stage; each loop ends only on shutdown (its last transaction
        // committed). Wait for both without blocking the runtime.
        let config = Arc::new(config);
        let mut workers = Vec::new();
        let mut heartbeats = Vec::new();
        for (input, name) in [
            (Input::Raw, "enricher-device"),
            (Input::Person, "enricher-person"),
        ] {
            let heartbeat = Arc::new(processor::Heartbeat::default());
            heartbeats.push((input, heartbeat.clone()));
            let (config, attributor, health, stop) = (
                config.clone(),
                attributor.clone(),
                health.clone(),
                shutdown.clone(),
            );
            workers.push(
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || {
                        processor::run(&config, &attributor, &health, &stop, input, &heartbeat)
                    })?,
            );
        }
        watchdog(heartbeats, shutdown.clone())?;
        for worker in workers {
            let finished = tokio::task::spawn_blocking(move || worker.join()).await?;
            if finished.is_err() {
                // One stage gone means no exactly-once pipeline: stop the other too.
                shutdown.cancel();
                anyhow::bail!("an enricher stage panicked");
            }
        }
        shutdown.cancel();
        served.task.await?;
        tracing::info!("enricher stopped");
        Ok(())
    }
}

/// Ends the process when a stage has been stuck in one step for [`processor::STALL`]: a stage
/// blocked for good (inside the Kafka client, say) would otherwise hold its partitions while
/// `/readyz` says ready, and nothing would move them to another instance. Exiting hands them
/// over (after the group's session timeout) and lets the supervisor start a fresh process; the
/// log names the stage and the step it was stuck in. Transactions make this safe: what the
/// stuck stage had not committed is aborted and done again by the next owner.
fn watchdog(
    heartbeats: Vec<(Input, Arc<processor::Heartbeat>)>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("enricher-watchdog".into())
        .spawn(move || {
            while !shutdown.is_cancelled() {
                for (input, heartbeat) in &heartbeats {
                    let (since, phase) = heartbeat.since();
                    if since > processor::STALL && !shutdown.is_cancelled() {
                        tracing::error!(
                            stage = input.name(),
                            phase,
                            stuck_secs = since.as_secs(),
                            "an enricher stage is stuck; exiting so that its partitions move to another instance and a supervisor starts this one afresh"
                        );
                        std::process::exit(70);
                    }
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        })
        .map(|_| ())
}
