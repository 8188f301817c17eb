//! The collector's HTTP/1.1 server: hyper driven directly (rather than through `axum::serve`)
//! so that the connection itself is bounded for a server on the open internet:
//!
//! - a client gets [`ServerLimits::header_read_timeout`] to send a request head, from its first
//!   byte; then 408 (with a JSON body) and the connection is closed (slowloris on headers);
//! - a connection with nothing read for [`ServerLimits::idle_timeout`] is closed (idle
//!   keep-alive, or a client that stopped half-way); the body's own time limit is enforced
//!   where the body is read (`body.rs`);
//! - at most [`ServerLimits::max_connections`] connections are served at once; beyond that a
//!   new connection is answered 503 at once and closed;
//! - the request head is bounded ([`ServerLimits::max_header_bytes`]; 431 above);
//! - requests hyper's parser refuses (bad request line, header bytes, Content-Length) get the
//!   status hyper chose, but with a JSON body naming the problem instead of hyper's bare answer:
//!   hyper writes its own bodiless error response, which [`Io`] recognises and holds back, and
//!   the connection task then writes the named answer itself.
//!
//! Every connection ends with a lingering close: the write side is shut, and what the client
//! still sends is read and dropped for a moment, so the answer is not lost to a TCP reset when
//! the client had more body in flight.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::task::TaskTracker;
use touchstream_runtime::Shutdown;
use touchstream_runtime::ops::Served;
use tower::ServiceExt;

use crate::metrics;

/// The connection-level limits (see the module doc).
#[derive(Clone, Debug)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
}

/// How long shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing connection keeps reading (and dropping) what the client still sends.
const LINGER: Duration = Duration::from_millis(500);

/// Binds `listen` and serves `app` in the background until `shutdown` fires; the task ends
/// once open connections finished (or [`DRAIN_TIMEOUT`] passed).
pub async fn serve(
    listen: SocketAddr,
    app: Router,
    limits: ServerLimits,
    shutdown: Shutdown,
) -> anyhow::Result<Served> {
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {listen}: {e} (is another instance running?)")
    })?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, app, limits, shutdown));
    Ok(Served { addr, task })
}

async fn accept_loop(listener: TcpListener, app: Router, limits: ServerLimits, shutdown: Shutdown) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let (app, limits, shutdown) = (app.clone(), limits.clone(), shutdown.clone());
                connections.spawn(async move {
                    connection(tcp, peer, app, limits, shutdown).await;
                    drop(permit);
                });
            }
            Err(_) => {
                metrics::connection_refused();
                // One non-blocking write into an empty socket buffer, then close: a refused
                // connection costs no task and no wait.
                let body = error_body(
                    "the collector is serving its maximum number of connections; retry later",
                );
                let _ = tcp.try_write(&raw_response(503, &body, &[("retry-after", "1")]));
            }
        }
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ServerLimits,
    shutdown: Shutdown,
) {
    let _ = tcp.set_nodelay(true);
    let tcp = Arc::new(tcp);
    let shared = Arc::new(Shared::default());
    let io = Io::new(tcp.clone(), limits.idle_timeout, shared.clone());
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let answer = app.clone().oneshot(req.map(Body::new));
        async move { answer.await.map(with_error_body) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        // One contiguous buffer per write, so hyper's own error answers are recognisable.
        .writev(false)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let outcome = tokio::select! {
        outcome = conn.as_mut() => outcome,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = outcome {
        let status = shared.held_back.load(Ordering::Acquire);
        if status != 0 {
            metrics::malformed_http(status);
            let reason = parse_error_reason(&e, status);
            write_all(&tcp, &raw_response(status, &error_body(&reason), &[])).await;
        } else if e.is_timeout() && shared.unanswered.load(Ordering::Acquire) {
            // Part of a request head came, not all of it in time. (A connection idle between
            // requests is closed without a word, as any HTTP/1.1 server does.)
            metrics::malformed_http(408);
            let reason = format!(
                "the request head (request line and headers) did not arrive within {} ms",
                limits.header_read_timeout.as_millis()
            );
            write_all(&tcp, &raw_response(408, &error_body(&reason), &[])).await;
        } else {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
    }
    linger_close(&tcp).await;
}

/// Gives a JSON body to an error answer that has none (axum's own 404 and 405 of the merged
/// ops routes, for example): every answer of the service then carries a content type, which is
/// what tells them apart from hyper's own answers (see [`hyper_error_answer`]).
fn with_error_body(mut response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    let bare = (status.is_client_error() || status.is_server_error())
        && !response
            .headers()
            .contains_key(axum::http::header::CONTENT_TYPE);
    if bare {
        let reason = status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase();
        let body = error_body(&reason);
        let headers = response.headers_mut();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        headers.remove(axum::http::header::CONTENT_LENGTH);
        *response.body_mut() = Body::from(body);
    }
    response
}

/// What hyper's parser refused, in words a client developer can act on.
fn parse_error_reason(e: &hyper::Error, status: u16) -> String {
    match status {
        431 => "the request head (request line and headers) is too large".to_string(),
        414 => "the request URI is too long".to_string(),
        _ => format!("the request is not valid HTTP/1.1: {e}"),
    }
}

fn error_body(reason: &str) -> Vec<u8> {
    serde_json::json!({ "error": reason })
        .to_string()
        .into_bytes()
}

/// A complete HTTP/1.1 response that closes the connection.
fn raw_response(status: u16, body: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    let text = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {status} {text}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Writes `bytes` within a second (a client that does not read does not keep us).
async fn write_all(tcp: &TcpStream, mut bytes: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !bytes.is_empty() {
        let ready = tokio::time::timeout_at(deadline, tcp.writable()).await;
        if !matches!(ready, Ok(Ok(()))) {
            return;
        }
        match tcp.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// Shuts the write side, then reads and drops what the client still sends for [`LINGER`].
async fn linger_close(tcp: &TcpStream) {
    let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 8192];
    let mut left = 1 << 20;
    while left > 0 {
        match tokio::time::timeout_at(deadline, tcp.readable()).await {
            Ok(Ok(())) => match tcp.try_read(&mut sink) {
                Ok(0) => return,
                Ok(n) => left -= n.min(left),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            },
            _ => return,
        }
    }
}

/// What [`Io`] tells the connection task.
#[derive(Default)]
struct Shared {
    /// The status of an error answer hyper wrote itself and [`Io`] held back; 0 when none.
    held_back: AtomicU16,
    /// Bytes arrived since the last answer was written (a request is under way).
    unanswered: AtomicBool,
}

/// The socket as hyper sees it: reads time out after `idle` without a byte, and hyper's own
/// bodiless error answers are held back (see [`Shared`]) for the connection task to replace
/// with a named one. Shutdown is left to [`linger_close`].
struct Io {
    tcp: Arc<TcpStream>,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    shared: Arc<Shared>,
}

impl Io {
    fn new(tcp: Arc<TcpStream>, idle: Duration, shared: Arc<Shared>) -> Self {
        Self {
            tcp,
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
            shared,
        }
    }

    fn touch(&mut self) {
        let next = Instant::now() + self.idle;
        self.idle_timer.as_mut().reset(next);
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.tcp.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => match this.tcp.try_read(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        if n > 0 {
                            this.shared.unanswered.store(true, Ordering::Release);
                        }
                        this.touch();
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                },
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    ready!(this.idle_timer.as_mut().poll(cx));
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "nothing received within the idle timeout",
                    )));
                }
            }
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(status) = hyper_error_answer(buf) {
            this.shared.held_back.store(status, Ordering::Release);
            return Poll::Ready(Ok(buf.len()));
        }
        loop {
            ready!(this.tcp.poll_write_ready(cx))?;
            match this.tcp.try_write(buf) {
                Ok(n) => {
                    this.shared.unanswered.store(false, Ordering::Release);
                    this.touch();
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The status of `buf` when it is an error answer hyper made up itself: a 4xx/5xx head with
/// `content-length: 0` and no content type. Every answer of the collector's own routes carries
/// a content type (the fallbacks included), so only hyper's parse-error answers look like this.
fn hyper_error_answer(buf: &[u8]) -> Option<u16> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    if !(400..600).contains(&status) {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != buf.len() {
        return None;
    }
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    (head.contains("\r\ncontent-length: 0") && !head.contains("\r\ncontent-type:"))
        .then_some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_hypers_bodiless_error_answers() {
        assert_eq!(
            hyper_error_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            hyper_error_answer(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n"
            ),
            Some(431)
        );
        // The collector's own answers have a content type, a body, or a 2xx status.
        assert_eq!(
            hyper_error_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(
            hyper_error_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}"),
            None
        );
        assert_eq!(
            hyper_error_answer(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"),
            None
        );
    }

    #[test]
    fn raw_answers_are_complete_responses() {
        let r = String::from_utf8(raw_response(408, b"{}", &[("retry-after", "1")]))
            .unwrap_or_default();
        assert!(r.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{r}");
        assert!(r.contains("content-length: 2\r\n") && r.contains("connection: close\r\n"));
        assert!(r.ends_with("retry-after: 1\r\n\r\n{}"), "{r}");
    }
}
