//! The HTTP connection manager: serves a downstream connection (HTTP/1.1
//! with Legate's own server in [`h1server`], HTTP/2 prior knowledge with
//! hyper's; detected per connection) and runs each request through the
//! pipeline in [`service`].

pub mod body;
pub mod clock;
pub mod h1server;
pub mod header_maps;
pub mod service;

use crate::route::RouteTable;
use crate::telemetry::ListenerStats;
use arc_swap::ArcSwap;
use body::DownBody;
use body::RespBody;
use clock::{AbortOnDrop, ConnClock, WakeGate};
use http::HeaderValue;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use legate_xds::model;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// An HTTP filter chain compiled from its model.
pub struct HttpChain {
    /// The route table, swapped whole when routes or clusters change (every
    /// request loads the current one, so keep-alive connections see
    /// updates). Shared by every chain using the same `rds` name.
    pub routes: Arc<ArcSwap<RouteTable>>,
    pub generate_request_id: bool,
    /// Append the peer address to `x-forwarded-for`.
    pub append_xff: bool,
    pub stats: Arc<ListenerStats>,
    /// `request_headers_timeout`; `None` when disabled.
    headers_timeout: Option<Duration>,
    /// Largest HTTP/1 request head, and most headers (past them: 431).
    pub max_head_bytes: usize,
    pub max_headers: usize,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl HttpChain {
    pub fn new(
        hcm: &model::HttpConnectionManager,
        routes: Arc<ArcSwap<RouteTable>>,
        stats: Arc<ListenerStats>,
    ) -> Self {
        let header_bytes = hcm.max_request_headers_kb as usize * 1024;
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(hcm.http2_max_concurrent_streams)
            .max_header_list_size(header_bytes as u32)
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(2 << 20);
        HttpChain {
            routes,
            generate_request_id: hcm.generate_request_id,
            append_xff: hcm.append_x_forwarded_for,
            stats,
            headers_timeout: (!hcm.request_headers_timeout.is_zero())
                .then(|| hcm.request_headers_timeout.get()),
            max_head_bytes: header_bytes,
            max_headers: hcm.max_request_headers_count as usize,
            h2,
        }
    }
}

/// What the pipeline knows about the downstream connection.
pub struct ConnInfo {
    /// The peer IP, rendered once per connection for `x-forwarded-for`.
    pub peer_ip: HeaderValue,
    /// The connection's timers (HTTP/1 route timeouts run on it).
    pub clock: Arc<ConnClock>,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, clock: Arc<ConnClock>) -> Self {
        let ip = peer.ip().to_string();
        ConnInfo {
            peer_ip: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown")),
            clock,
        }
    }
}

/// Whether the connection opens with the HTTP/2 preface (prior knowledge).
/// Looks without reading: the bytes stay for the server that takes it.
async fn starts_with_h2_preface(stream: &TcpStream) -> std::io::Result<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
    let mut buf = [0u8; 16];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != PREFACE[..n] {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface so far: wait for more bytes (readiness is
        // cleared first, or this would spin).
        let _ = stream.try_io(tokio::io::Interest::READABLE, || {
            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
        });
        stream.readable().await?;
    }
}

/// Serves one downstream connection until it closes, or until drain is
/// signalled (then in-flight requests finish; HTTP/1 gets `Connection:
/// close`, HTTP/2 a GOAWAY).
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    chain: Arc<HttpChain>,
    mut drain: watch::Receiver<bool>,
) {
    let clock = ConnClock::new(chain.headers_timeout);
    let info = Arc::new(ConnInfo::new(peer, clock.clone()));
    // The connection's timers run in a task of its own, so the connection's
    // task never polls them. When the head timeout passes it shuts the
    // socket down (through a duplicate of its descriptor), which the server
    // sees as the client's close.
    let socket = chain
        .headers_timeout
        .and_then(|_| socket2::SockRef::from(&stream).try_clone().ok());
    let _watchdog = AbortOnDrop(tokio::spawn(async move {
        clock.watch().await;
        tracing::debug!(%peer, "no complete request head within request_headers_timeout; closing");
        if let Some(socket) = socket {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }));
    match starts_with_h2_preface(&stream).await {
        Ok(false) => return h1server::serve(stream, info, chain, drain).await,
        Ok(true) => info.clock.mark_http2(),
        Err(_) => return,
    }
    let svc_chain = chain.clone();
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        let chain = svc_chain.clone();
        let info = info.clone();
        async move {
            let resp = service::handle(&chain, &info, req.map(DownBody::H2)).await;
            Ok::<hyper::Response<RespBody>, Infallible>(resp)
        }
    });
    let conn = chain.h2.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    if *drain.borrow() {
        conn.as_mut().graceful_shutdown();
    }
    // The drain signal is polled only when it has news (see `WakeGate`):
    // polling a watch channel on each of the connection's wake-ups cost
    // ~600 instructions per request.
    let draining = WakeGate::new(async move {
        let _ = drain.wait_for(|d| *d).await;
    });
    let result = tokio::select! {
        biased;
        r = conn.as_mut() => r,
        _ = draining => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "downstream connection ended with an error");
    }
}
