//! The HTTP connection manager: serves a downstream connection with hyper
//! (HTTP/1.1 and HTTP/2 prior knowledge, detected per connection) and runs
//! each request through the pipeline in [`service`].

pub mod body;
pub mod service;

use crate::route::RouteTable;
use crate::telemetry::ListenerStats;
use body::RespBody;
use http::HeaderValue;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use legate_xds::model;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// An HTTP filter chain compiled from its model.
pub struct HttpChain {
    pub routes: RouteTable,
    pub generate_request_id: bool,
    pub stats: Arc<ListenerStats>,
    builder: auto::Builder<TokioExecutor>,
}

impl HttpChain {
    pub fn new(
        hcm: &model::HttpConnectionManager,
        routes: RouteTable,
        stats: Arc<ListenerStats>,
    ) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let header_bytes = hcm.max_request_headers_kb as usize * 1024;
        {
            let mut h1 = builder.http1();
            h1.timer(TokioTimer::new())
                .keep_alive(true)
                // The read buffer bounds the request head: past it hyper answers 431.
                .max_buf_size(header_bytes.max(8192))
                .max_headers(hcm.max_request_headers_count as usize);
            if !hcm.request_headers_timeout.is_zero() {
                h1.header_read_timeout(hcm.request_headers_timeout.get());
            } else {
                h1.header_read_timeout(None);
            }
        }
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(hcm.http2_max_concurrent_streams)
            .max_header_list_size(header_bytes as u32)
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(2 << 20);
        HttpChain {
            routes,
            generate_request_id: hcm.generate_request_id,
            stats,
            builder,
        }
    }
}

/// What the pipeline knows about the downstream connection.
pub struct ConnInfo {
    /// The peer IP, rendered once per connection for `x-forwarded-for`.
    pub peer_ip: HeaderValue,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr) -> Self {
        let ip = peer.ip().to_string();
        ConnInfo {
            peer_ip: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown")),
        }
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
    let info = Arc::new(ConnInfo::new(peer));
    let svc_chain = chain.clone();
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        let chain = svc_chain.clone();
        let info = info.clone();
        async move {
            Ok::<hyper::Response<RespBody>, Infallible>(service::handle(&chain, &info, req).await)
        }
    });
    let conn = chain
        .builder
        .serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    if *drain.borrow() {
        conn.as_mut().graceful_shutdown();
    }
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { let _ = drain.wait_for(|d| *d).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "downstream connection ended with an error");
    }
}
