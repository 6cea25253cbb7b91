//! The HTTP connection manager: serves a downstream connection with hyper
//! (HTTP/1.1 and HTTP/2 prior knowledge, detected per connection) and runs
//! each request through the pipeline in [`service`].

pub mod body;
pub mod clock;
pub mod service;

use crate::route::RouteTable;
use crate::telemetry::ListenerStats;
use body::RespBody;
use clock::{AbortOnDrop, ClockTicket, ConnClock, WakeGate};
use http::{HeaderValue, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use legate_xds::model;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// An HTTP filter chain compiled from its model.
pub struct HttpChain {
    pub routes: RouteTable,
    pub generate_request_id: bool,
    pub stats: Arc<ListenerStats>,
    /// `request_headers_timeout`; `None` when disabled.
    headers_timeout: Option<Duration>,
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
            // The request-head timeout is Legate's own [`HeadClock`]: one
            // timer per connection instead of hyper's one per request.
            h1.timer(TokioTimer::new())
                .keep_alive(true)
                // One buffer and one write per response: cheaper than writev
                // for the small bodies most requests have.
                .writev(false)
                // The read buffer bounds the request head: past it hyper answers 431.
                .max_buf_size(header_bytes.max(8192))
                .max_headers(hcm.max_request_headers_count as usize)
                .header_read_timeout(None);
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
            headers_timeout: (!hcm.request_headers_timeout.is_zero())
                .then(|| hcm.request_headers_timeout.get()),
            builder,
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

/// The body hyper serves: the pipeline's, plus the head-clock ticket.
#[pin_project::pin_project]
pub struct ConnBody {
    #[pin]
    body: RespBody,
    _ticket: Option<ClockTicket>,
}

impl http_body::Body for ConnBody {
    type Data = bytes::Bytes;
    type Error = body::BodyError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, body::BodyError>>> {
        self.project().body.poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
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
    let svc_chain = chain.clone();
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        let chain = svc_chain.clone();
        let info = info.clone();
        let ticket = info.clock.start(req.version() == Version::HTTP_2);
        async move {
            let resp = service::handle(&chain, &info, req).await;
            Ok::<hyper::Response<ConnBody>, Infallible>(resp.map(|body| ConnBody {
                body,
                _ticket: ticket,
            }))
        }
    });
    // The connection's timers run in a task of its own, so the connection's
    // task never polls them. When the head timeout passes it shuts the
    // socket down (through a duplicate of its descriptor), which hyper sees
    // as the client's close.
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
    let conn = chain
        .builder
        .serve_connection_with_upgrades(TokioIo::new(stream), svc);
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
