//! The operations surface of every binary: Prometheus metrics, liveness and readiness.
//!
//! `/healthz` answers 200 while the process can answer at all (liveness). `/readyz` answers
//! 200 only while every dependency the binary registered is ready (Kafka connected, ClickHouse
//! answering, state restored); otherwise 503 with the names and reasons, so an orchestrator
//! stops routing traffic to it and an operator sees why. A dependency that works but lost part
//! of itself (a broker of three, one replica of a shard) leaves the binary ready and is named in
//! the body as degraded (`ready` then `degraded: kafka: …`), for as long as it lasts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

use crate::shutdown::Shutdown;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` listen (the producer serves them on its API port too).
    pub listen: SocketAddr,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self::on_port(9100)
    }
}

impl OpsConfig {
    pub fn on_port(port: u16) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

/// Latency buckets in seconds, from 100 µs to 30 s: Kafka acks, ClickHouse inserts and
/// transaction commits all fall in this range.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Clock-skew corrections in seconds: from a millisecond to a day.
const CLOCK_BUCKETS: &[f64] = &[
    0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("_clock_correction_seconds".into()),
                        CLOCK_BUCKETS,
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let handle = match builder.install_recorder() {
                Ok(h) => h,
                // Another recorder is installed (only happens in tests): render a private one.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok();
            handle
        })
        .clone()
}

/// Readiness of the dependencies of one binary.
#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<Mutex<BTreeMap<&'static str, Result<(), String>>>>,
    /// Dependencies that work, with what they lack (shown, not counted against readiness).
    degraded: Arc<Mutex<BTreeMap<&'static str, String>>>,
    /// The gauge that exports each check (1 ready, 0 not), labelled `check`.
    gauge: Option<&'static str>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also exports every check as the gauge `metric{check="…"}`: 1 while it is ready, 0 while
    /// it is not (what `/readyz` says, for dashboards and alerts). Each binary names its own
    /// (`touchstream_<binary>_ready`).
    pub fn exported_as(metric: &'static str) -> Self {
        // The recorder must exist before the first check is set, or that value is lost.
        let _ = metrics_handle();
        Self {
            gauge: Some(metric),
            ..Self::default()
        }
    }

    /// Registers a dependency as not ready yet.
    pub fn register(&self, name: &'static str, why: &str) {
        self.set(name, Err(why.to_string()));
    }

    pub fn ready(&self, name: &'static str) {
        self.set(name, Ok(()));
    }

    pub fn not_ready(&self, name: &'static str, why: impl Into<String>) {
        self.set(name, Err(why.into()));
    }

    /// Says what part of a working dependency is missing (`Some`), or that nothing is (`None`).
    pub fn degraded(&self, name: &'static str, what: Option<String>) {
        if let Ok(mut degraded) = self.degraded.lock() {
            match what {
                Some(what) => degraded.insert(name, what),
                None => degraded.remove(name),
            };
        }
    }

    /// The degraded dependencies, as `name: what` lines.
    pub fn degradations(&self) -> Vec<String> {
        self.degraded.lock().map_or_else(
            |_| Vec::new(),
            |d| {
                d.iter()
                    .map(|(name, what)| format!("{name}: {what}"))
                    .collect()
            },
        )
    }

    fn set(&self, name: &'static str, state: Result<(), String>) {
        if let Some(metric) = self.gauge {
            metrics::gauge!(metric, "check" => name).set(if state.is_ok() { 1.0 } else { 0.0 });
        }
        if let Ok(mut checks) = self.checks.lock() {
            checks.insert(name, state);
        }
    }

    /// Ok when every registered check is ready; else the failing ones.
    pub fn status(&self) -> Result<(), Vec<String>> {
        let checks = match self.checks.lock() {
            Ok(c) => c,
            Err(_) => return Err(vec!["health state poisoned".into()]),
        };
        let failing: Vec<String> = checks
            .iter()
            .filter_map(|(name, s)| s.as_ref().err().map(|why| format!("{name}: {why}")))
            .collect();
        if failing.is_empty() {
            Ok(())
        } else {
            Err(failing)
        }
    }
}

#[derive(Clone)]
struct OpsState {
    health: Health,
    metrics: PrometheusHandle,
}

/// `/metrics`, `/healthz`, `/readyz`, to merge into a binary's own router or serve alone.
pub fn router(health: Health) -> Router {
    let state = OpsState {
        health,
        metrics: metrics_handle(),
    };
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn render_metrics(State(s): State<OpsState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(s): State<OpsState>) -> Response {
    let degraded: String = s
        .health
        .degradations()
        .iter()
        .map(|d| format!("degraded: {d}\n"))
        .collect();
    match s.health.status() {
        Ok(()) => (StatusCode::OK, format!("ready\n{degraded}")).into_response(),
        Err(failing) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}\n{degraded}", failing.join("\n")),
        )
            .into_response(),
    }
}

/// A server running in the background: its bound address (port 0 works) and its task, which
/// ends once `shutdown` fired and in-flight requests finished.
pub struct Served {
    pub addr: SocketAddr,
    pub task: tokio::task::JoinHandle<()>,
}

/// Serves [`router`] on `listen` until `shutdown` fires.
pub async fn serve(
    listen: SocketAddr,
    health: Health,
    shutdown: Shutdown,
) -> anyhow::Result<Served> {
    serve_router(listen, router(health), shutdown).await
}

/// Binds `listen` and serves `app` in the background until `shutdown` fires.
pub async fn serve_router(
    listen: SocketAddr,
    app: Router,
    shutdown: Shutdown,
) -> anyhow::Result<Served> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {listen}: {e} (is another instance running?)")
    })?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "http server failed");
        }
    });
    Ok(Served { addr, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lists_what_is_not_ready() {
        let h = Health::new();
        assert!(h.status().is_ok());
        h.register("kafka", "connecting");
        h.register("clickhouse", "connecting");
        h.ready("kafka");
        assert_eq!(h.status(), Err(vec!["clickhouse: connecting".to_string()]));
        h.ready("clickhouse");
        assert!(h.status().is_ok());
    }

    #[test]
    fn a_degraded_dependency_is_named_but_leaves_the_binary_ready() {
        let h = Health::new();
        h.register("kafka", "connecting");
        h.ready("kafka");
        h.degraded("kafka", Some("broker 2 is missing".into()));
        assert!(h.status().is_ok());
        assert_eq!(h.degradations(), ["kafka: broker 2 is missing"]);
        h.degraded("kafka", None);
        assert!(h.degradations().is_empty());
    }
}
