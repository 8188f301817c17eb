//! Shutdown is a parameter, not a global: every long-running loop takes a [`Shutdown`] and
//! drains (flush, finish the batch, commit) when it fires.

use tokio_util::sync::CancellationToken;

pub type Shutdown = CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT.
pub fn on_signals() -> Shutdown {
    let token = CancellationToken::new();
    let fire = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received, draining");
        fire.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
