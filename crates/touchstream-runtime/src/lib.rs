//! What every touchstream binary shares, so that each `main.rs` is a few lines.
//!
//! - [`config`]: one typed struct per binary, layered defaults → TOML file → environment.
//! - [`telemetry`]: structured logs (JSON or text) through `tracing`.
//! - [`ops`]: the Prometheus recorder and the `/metrics`, `/healthz`, `/readyz` endpoints.
//! - [`shutdown`]: a cancellation token fired by SIGTERM or SIGINT.

pub mod config;
pub mod ops;
pub mod shutdown;
pub mod telemetry;

pub use config::{ConfigError, SHARED_KEYS, load_config, load_config_shared};
pub use ops::{Health, OpsConfig};
pub use shutdown::Shutdown;
pub use telemetry::LogConfig;
