use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use touchstream_kafka::{KafkaConfig, Topics};
use touchstream_model::SiteConfig;
use touchstream_runtime::LogConfig;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProducerConfig {
    /// Where the API (and /metrics, /healthz, /readyz) listens.
    pub listen: SocketAddr,
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub log: LogConfig,
    /// Largest request body as sent (compressed or not): 413 above.
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression (gzip bombs): 413 above.
    pub max_decompressed_bytes: usize,
    /// Most events in one request: 413 above.
    pub max_batch_events: usize,
    /// Events accepted but not yet acknowledged by Kafka; beyond it, 503 + Retry-After.
    pub max_in_flight_events: usize,
    /// How long one request may wait for Kafka's acknowledgement before 503.
    pub produce_timeout_ms: u64,
    /// Seconds suggested to clients in Retry-After.
    pub retry_after_secs: u32,
    /// Origins allowed by CORS; `["*"]` allows any.
    pub cors_origins: Vec<String>,
    /// When true, requests with `DNT: 1` or `Sec-GPC: 1` are answered but not collected.
    pub honour_do_not_track: bool,
    /// How long a client may take to send a request's head (request line and headers), from
    /// its first byte; past it the connection gets 408 and is closed (slowloris).
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send a request's body; past it, 408 and close.
    pub body_read_timeout_ms: u64,
    /// How long a connection may stay open with nothing read from it (keep-alive idle, or a
    /// client that stopped sending); past it the connection is closed.
    pub idle_timeout_ms: u64,
    /// Connections served at once; beyond it, new connections get 503 and are closed.
    pub max_connections: usize,
    /// Largest request head (request line plus headers); above it, 431.
    pub max_header_bytes: usize,
    /// Largest User-Agent header; above it, 431.
    pub max_user_agent_bytes: usize,
    /// How often the broker's reachability is checked for `/readyz`.
    pub readiness_check_ms: u64,
    /// The deployment's sites (the shared top-level `[[sites]]` of the config file). Empty:
    /// one site, `default`, with `cors_origins` and `honour_do_not_track` above.
    pub sites: Vec<SiteConfig>,
    /// Addresses or CIDRs of reverse proxies whose `Forwarded` / `X-Forwarded-For` headers
    /// are believed; from anyone else those headers are ignored and the socket address is
    /// the client's.
    pub trusted_proxies: Vec<String>,
    /// The Segment-compatible routes (`/v1/batch`, `/v1/track` …).
    pub segment: SegmentConfig,
    /// How the visitor ids of cookieless requests (`?cookieless=1`) are salted.
    pub cookieless: crate::cookieless::CookielessConfig,
}

/// Limits of the Segment-compatible routes, as Segment documents them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentConfig {
    /// Largest message (one call) as JSON: a larger message is refused on its own.
    pub max_message_bytes: usize,
    /// Largest request as JSON (after gzip): 400 above. The SDKs cap their batches by bytes
    /// just below Segment's 500 KB, so there is no limit on the number of messages.
    pub max_batch_bytes: usize,
    /// Replace the built-in mapping of calls to events (`schemas/mappings/segment.toml`).
    pub mapping_path: Option<std::path::PathBuf>,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 32 * 1024,
            max_batch_bytes: 500 * 1024,
            mapping_path: None,
        }
    }
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            kafka: KafkaConfig::default(),
            topics: Topics::default(),
            log: LogConfig::default(),
            max_body_bytes: 1 << 20,
            max_decompressed_bytes: 4 << 20,
            max_batch_events: 500,
            max_in_flight_events: 50_000,
            produce_timeout_ms: 5_000,
            retry_after_secs: 2,
            cors_origins: vec!["*".into()],
            honour_do_not_track: false,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
            max_header_bytes: 16 * 1024,
            max_user_agent_bytes: 1_024,
            readiness_check_ms: 2_000,
            sites: Vec::new(),
            trusted_proxies: Vec::new(),
            segment: SegmentConfig::default(),
            cookieless: Default::default(),
        }
    }
}

impl ProducerConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_body_bytes > 0, "max_body_bytes must be positive");
        anyhow::ensure!(
            self.max_decompressed_bytes >= self.max_body_bytes,
            "max_decompressed_bytes ({}) must be at least max_body_bytes ({})",
            self.max_decompressed_bytes,
            self.max_body_bytes
        );
        anyhow::ensure!(
            self.max_in_flight_events >= self.max_batch_events,
            "max_in_flight_events ({}) must be at least max_batch_events ({}) or full batches could never be accepted",
            self.max_in_flight_events,
            self.max_batch_events
        );
        anyhow::ensure!(
            self.produce_timeout_ms >= 100,
            "produce_timeout_ms must be at least 100"
        );
        for (name, ms) in [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("readiness_check_ms", self.readiness_check_ms),
        ] {
            anyhow::ensure!(ms >= 100, "{name} must be at least 100");
        }
        anyhow::ensure!(self.max_connections > 0, "max_connections must be positive");
        anyhow::ensure!(
            self.max_header_bytes >= 8 * 1024,
            "max_header_bytes must be at least 8192 (hyper needs that much buffer)"
        );
        anyhow::ensure!(
            self.max_user_agent_bytes < self.max_header_bytes,
            "max_user_agent_bytes must be below max_header_bytes"
        );
        // Segment's SDKs give up on a request after 10 s and send it again: the answer must
        // come before that (the resend would be deduplicated, but is wasted work).
        anyhow::ensure!(
            self.produce_timeout_ms <= 8_000,
            "produce_timeout_ms must be at most 8000: a request waits up to it plus a second for Kafka, and Segment's SDKs time out after 10 s"
        );
        touchstream_model::site::check_sites(&self.sites).map_err(anyhow::Error::msg)?;
        crate::proxy::TrustedProxies::parse(&self.trusted_proxies)?;
        anyhow::ensure!(
            self.segment.max_message_bytes <= self.segment.max_batch_bytes,
            "segment.max_message_bytes must be at most segment.max_batch_bytes"
        );
        self.cookieless.validate()?;
        Ok(())
    }
}
