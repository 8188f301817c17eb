//! The collector: web frontends POST events (or beacon them, or load a pixel); each is
//! validated, stamped and put on the raw topic as Avro.
//!
//! - [`config`]: the [`ProducerConfig`].
//! - [`api`]: the HTTP routes and the error → status mapping.
//! - [`body`]: reading a request body: size limits, gzip, content types, UTF-8, JSON.
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

pub mod api;
pub mod body;
pub mod config;
pub mod delivery;
pub mod metrics;
pub mod proxy;
pub mod replay;
pub mod segment;
pub mod sites;

use std::sync::Arc;

pub use config::ProducerConfig;
use touchstream_kafka::ensure_topics;
use touchstream_runtime::ops::{self, Served};
use touchstream_runtime::{Health, Shutdown};

use crate::delivery::Delivery;

pub struct Application {
    config: ProducerConfig,
    delivery: Arc<Delivery>,
    health: Health,
    mapping: Arc<segment::mapping::Mapping>,
}

impl Application {
    /// Connects to Kafka and creates the topics if needed.
    pub async fn build(config: ProducerConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let mapping = Arc::new(match &config.segment.mapping_path {
            Some(path) => segment::mapping::Mapping::from_path(path)?,
            None => segment::mapping::Mapping::builtin().clone(),
        });
        let health = Health::new();
        health.register("kafka", "connecting");
        let t = &config.topics;
        ensure_topics(&config.kafka, &[t.spec(&t.raw), t.spec(&t.dlq)]).await?;
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
        let served = ops::serve_router(self.config.listen, app, shutdown).await?;
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
