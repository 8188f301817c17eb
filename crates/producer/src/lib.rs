//! The collector: web frontends POST events (or beacon them, or load a pixel); each is
//! validated, stamped and put on the raw topic as Avro.
//!
//! - [`config`]: the [`ProducerConfig`].
//! - [`server`]: the HTTP/1.1 connections: header, idle and connection-count limits, and named
//!   answers for requests hyper's parser refuses.
//! - [`limits`]: header checks before any route (User-Agent, declared body length).
//! - [`api`]: the HTTP routes and the error → status mapping.
//! - [`body`]: reading a request body: size and time limits, gzip, content types, UTF-8, JSON.
//! - [`cookieless`]: the visitor ids of cookieless requests (a daily-salted hash).
//! - [`delivery`]: Kafka delivery with a bounded number of events in flight.
//! - [`segment`]: the Segment tracking API (`/v1/batch`, `/v1/track` …) and its mapping.
//! - [`sites`]: which site a request belongs to (write keys, hosts, CORS, DNT policy).
//! - [`proxy`]: the client address behind trusted reverse proxies.
//! - [`replay`]: `producer replay FILE.ndjson`.
//! - [`metrics`]: every metric the producer emits.
//!
//! Delivery guarantee: a 2xx answer means every accepted event of the request was
//! acknowledged by Kafka (`acks=all`). When the broker is slow or down, requests wait at most
//! `produce_timeout_ms`, and once `max_in_flight_events` are waiting, new requests get 503 with
//! `Retry-After` at once instead of piling up in memory.

#[cfg(feature = "service")]
pub mod api;
pub mod body;
#[cfg(feature = "service")]
pub mod config;
#[cfg(feature = "service")]
pub mod cookieless;
#[cfg(feature = "service")]
pub mod delivery;
#[cfg(feature = "service")]
pub mod limits;
#[cfg(feature = "service")]
pub mod metrics;
#[cfg(feature = "service")]
pub mod proxy;
#[cfg(feature = "service")]
pub mod replay;
#[cfg(feature = "service")]
pub mod segment;
#[cfg(feature = "service")]
pub mod server;
#[cfg(feature = "service")]
pub mod sites;

#[cfg(feature = "service")]
pub use config::ProducerConfig;
#[cfg(feature = "service")]
pub use service::Application;

/// The collector as a whole: configuration to a running server.
#[cfg(feature = "service")]
mod service {
    use std::sync::Arc;
    use std::time::Duration;

    use touchstream_kafka::ensure_topics;
    use touchstream_runtime::ops::{self, Served};
    use touchstream_runtime::{Health, Shutdown};

    use crate::delivery::Delivery;
    use crate::segment::mapping::Mapping;
    use crate::server::{self, ServerLimits};
    use crate::{ProducerConfig, api};

    pub struct Application {
        config: ProducerConfig,
        delivery: Arc<Delivery>,
        health: Health,
        mapping: Arc<Mapping>,
    }

    impl Application {
        /// Connects to Kafka and creates the topics if needed.
        pub async fn build(config: ProducerConfig) -> anyhow::Result<Self> {
            config.validate()?;
            let mapping = Arc::new(match &config.segment.mapping_path {
                Some(path) => Mapping::from_path(path)?,
                None => Mapping::builtin().clone(),
            });
            let health = Health::exported_as("touchstream_producer_ready");
            health.register("kafka", "connecting");
            let t = &config.topics;
            ensure_topics(
                &config.kafka,
                &[t.spec(&t.raw), t.spec(&t.dlq), t.spec(&t.forgotten)],
            )
            .await?;
            let delivery = Arc::new(Delivery::new(&config)?);
            health.ready("kafka");
            Ok(Self {
                config,
                delivery,
                health,
                mapping,
            })
        }

        /// Serves until `shutdown` fires, then stops accepting, finishes in-flight requests and
        /// flushes the Kafka producer.
        pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
            let served = self.start(shutdown).await?;
            served.task.await?;
            Ok(())
        }

        /// Starts serving in the background (tests use the returned address).
        pub async fn start(self, shutdown: Shutdown) -> anyhow::Result<Served> {
            let app = api::router(&self.config, self.delivery.clone(), self.mapping.clone())
                .merge(ops::router(self.health.clone()));
            let c = &self.config;
            let limits = ServerLimits {
                header_read_timeout: Duration::from_millis(c.header_read_timeout_ms),
                idle_timeout: Duration::from_millis(c.idle_timeout_ms),
                max_connections: c.max_connections,
                max_header_bytes: c.max_header_bytes,
            };
            let served = server::serve(c.listen, app, limits, shutdown.clone()).await?;
            tokio::spawn(watch_broker(
                self.delivery.clone(),
                self.health.clone(),
                Duration::from_millis(c.readiness_check_ms),
                shutdown,
            ));
            tracing::info!(addr = %served.addr, topic = %self.config.topics.raw, "collector listening");
            let delivery = self.delivery;
            let http = served.task;
            let task = tokio::spawn(async move {
                let _ = http.await;
                delivery.flush().await;
                tracing::info!("collector stopped");
            });
            Ok(Served {
                addr: served.addr,
                task,
            })
        }
    }

    /// Keeps `/readyz` in step with the broker: not ready while it does not answer a metadata
    /// request, so a load balancer sends traffic elsewhere instead of into 503s.
    async fn watch_broker(
        delivery: Arc<Delivery>,
        health: Health,
        every: Duration,
        shutdown: Shutdown,
    ) {
        let timeout = every.min(Duration::from_secs(2));
        let mut was_ready = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match delivery.probe(timeout).await {
                Ok(()) => {
                    if !was_ready {
                        tracing::info!("kafka broker reachable again");
                    }
                    health.ready("kafka");
                    was_ready = true;
                }
                Err(why) => {
                    if was_ready {
                        tracing::warn!(error = %why, "kafka broker unreachable: not ready");
                    }
                    health.not_ready("kafka", format!("broker unreachable: {why}"));
                    was_ready = false;
                }
            }
        }
    }
}
