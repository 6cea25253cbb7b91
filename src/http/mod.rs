//! The HTTP connection manager: serves a downstream connection with hyper
//! (HTTP/1.1 and HTTP/2 prior knowledge, detected per connection) and runs
//! each request through the pipeline in [`service`].

pub mod body;
pub mod service;

use crate::route::RouteTable;
use crate::telemetry::ListenerStats;
use body::RespBody;
use http::{HeaderValue, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use legate_xds::model;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
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
}

impl ConnInfo {
    pub fn new(peer: SocketAddr) -> Self {
        let ip = peer.ip().to_string();
        ConnInfo {
            peer_ip: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown")),
        }
    }
}

/// The request-head clock of one HTTP/1 connection
/// (`request_headers_timeout`): it runs while no request is being served,
/// that is from accept, and from the end of each response, until the next
/// request head has been read; it stops while a request is served. Past
/// the timeout the connection is closed: a client trickling its headers, or
/// one idling on a keep-alive connection, cannot hold it forever.
///
/// One lazily re-armed timer per connection, as nginx's, in a task of its
/// own: a request only bumps two counters and reads the clock, where
/// hyper's own `header_read_timeout` arms and cancels a timer for every
/// request (~1,400 instructions each here).
/// HTTP/2 connections are not timed here (hyper's HTTP/2 server has its own
/// keep-alive handling): the clock stops for good at the first HTTP/2 request.
pub struct HeadClock {
    origin: tokio::time::Instant,
    /// Requests being served: their response bodies are still alive.
    active: AtomicUsize,
    /// When the last response ended, in milliseconds since `origin`.
    idle_since_ms: AtomicU64,
    h2: AtomicBool,
}

impl HeadClock {
    fn new() -> Self {
        HeadClock {
            origin: tokio::time::Instant::now(),
            active: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            h2: AtomicBool::new(false),
        }
    }

    /// A request head has arrived: the clock stops until the ticket (carried
    /// by the response body) is dropped.
    fn start(self: &Arc<Self>, version: Version) -> Option<ClockTicket> {
        if version == Version::HTTP_2 {
            self.h2.store(true, Ordering::Relaxed);
            return None;
        }
        self.active.fetch_add(1, Ordering::Relaxed);
        Some(ClockTicket(self.clone()))
    }

    /// Resolves when the connection has waited for a request head longer
    /// than `timeout`.
    async fn expired(&self, timeout: Duration) {
        let mut at = self.origin + timeout;
        loop {
            tokio::time::sleep_until(at).await;
            if self.h2.load(Ordering::Relaxed) {
                return std::future::pending().await;
            }
            let now = tokio::time::Instant::now();
            if self.active.load(Ordering::Acquire) > 0 {
                at = now + timeout;
                continue;
            }
            let idle = self.origin
                + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire))
                + timeout;
            if idle <= now {
                return;
            }
            at = idle;
        }
    }
}

/// A future polled only when it has asked to be: once at first, then only
/// after its own waker fired. A connection task wakes for every read and
/// write; a future that is nearly always pending (the drain signal) then
/// costs one atomic swap per wake-up instead of a poll.
pub struct WakeGate<F> {
    fut: Pin<Box<F>>,
    gate: Arc<Gate>,
}

#[derive(Default)]
struct Gate {
    woken: AtomicBool,
    /// The waker of the task polling the gate (a task's waker never changes).
    task: OnceLock<Waker>,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(w) = self.task.get() {
            w.wake_by_ref();
        }
    }
}

impl<F: Future> WakeGate<F> {
    pub fn new(fut: F) -> Self {
        let gate = Arc::new(Gate::default());
        gate.woken.store(true, Ordering::Relaxed);
        WakeGate {
            fut: Box::pin(fut),
            gate,
        }
    }
}

impl<F: Future> Future for WakeGate<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let task = self.gate.task.get_or_init(|| cx.waker().clone());
        // Polled from another task than the first: no gating, just poll.
        let same_task = task.will_wake(cx.waker());
        if same_task && !self.gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(self.gate.clone());
        let mut inner = Context::from_waker(if same_task { &waker } else { cx.waker() });
        self.fut.as_mut().poll(&mut inner)
    }
}

/// Ends a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Held by a response body: its drop restarts the connection's head clock.
pub struct ClockTicket(Arc<HeadClock>);

impl Drop for ClockTicket {
    fn drop(&mut self) {
        let clock = &self.0;
        let ms = clock.origin.elapsed().as_millis() as u64;
        clock.idle_since_ms.store(ms, Ordering::Release);
        clock.active.fetch_sub(1, Ordering::Release);
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
    let info = Arc::new(ConnInfo::new(peer));
    let clock = chain.headers_timeout.map(|_| Arc::new(HeadClock::new()));
    let svc_chain = chain.clone();
    let svc_clock = clock.clone();
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        let chain = svc_chain.clone();
        let info = info.clone();
        let ticket = svc_clock.as_ref().and_then(|c| c.start(req.version()));
        async move {
            let resp = service::handle(&chain, &info, req).await;
            Ok::<hyper::Response<ConnBody>, Infallible>(resp.map(|body| ConnBody {
                body,
                _ticket: ticket,
            }))
        }
    });
    // The head clock's timer runs in a task of its own, so the connection's
    // task never polls it; on expiry it shuts the socket down, which hyper
    // sees as the client's close.
    let _watchdog = match (&clock, chain.headers_timeout) {
        (Some(c), Some(t)) => socket2::SockRef::from(&stream)
            .try_clone()
            .ok()
            .map(|socket| {
                let c = c.clone();
                AbortOnDrop(tokio::spawn(async move {
                    c.expired(t).await;
                    tracing::debug!(%peer, "no complete request head within request_headers_timeout; closing");
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                }))
            }),
        _ => None,
    };
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
