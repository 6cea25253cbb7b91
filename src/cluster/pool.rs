//! Per-endpoint connection pools: a stack of idle HTTP/1.1 keep-alive
//! connections (driven by the requests that use them, see [`super::h1`]),
//! and one multiplexed HTTP/2 connection with a stream limit (hyper's).
//!
//! Locks here are plain mutexes held for a push or a pop, never across an
//! `.await`. Establishing the shared HTTP/2 connection goes through a
//! single-flight gate so a burst of requests opens one connection, not many.

use super::Endpoint;
use super::breaker::{CxSlot, Resource};
use super::h1::{Exchange, H1Body, H1Conn, H1Error};
use super::sent::SentHead;
use crate::http::body::ReqBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use legate_xds::model::RoutingPriority;
use pin_project::pin_project;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Why an upstream request failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connection failure: {0}")]
    ConnectFailure(std::io::Error),
    #[error("connection timeout")]
    ConnectTimeout,
    #[error("connection termination: {0}")]
    Reset(hyper::Error),
    #[error("connection termination: {0}")]
    Disconnected(H1Error),
    #[error("{0}")]
    Protocol(H1Error),
    /// The downstream request body failed (malformed, or the client left).
    #[error("request {0}")]
    RequestBody(H1Error),
    /// A circuit breaker's limit was reached.
    #[error("overflow: the cluster's {} limit is reached", .0.as_str())]
    Overflow(Resource),
}

impl UpstreamError {
    /// The connection failed after it was established.
    pub fn is_reset(&self) -> bool {
        matches!(
            self,
            UpstreamError::Reset(_) | UpstreamError::Disconnected(_)
        )
    }
}

impl From<H1Error> for UpstreamError {
    fn from(e: H1Error) -> Self {
        match e {
            H1Error::Protocol(_) => UpstreamError::Protocol(e),
            H1Error::Body(_) | H1Error::RequestLength => UpstreamError::RequestBody(e),
            _ => UpstreamError::Disconnected(e),
        }
    }
}

/// Settings shared by every endpoint of a cluster.
pub struct PoolSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle: usize,
    pub h2_max_streams: usize,
}

pub struct Pool {
    /// Idle connections, oldest first; reuse takes the newest (warmest).
    h1_idle: Mutex<VecDeque<(Box<H1Conn>, Instant)>>,
    h2: Mutex<Option<http2::SendRequest<ReqBody>>>,
    /// Single-flight gate for the HTTP/2 connect; holds when the last
    /// attempt failed, so requests queued behind it fail fast instead of
    /// each trying (and waiting) again.
    h2_gate: tokio::sync::Mutex<Option<Instant>>,
    h2_streams: Arc<Semaphore>,
    /// Connections open to the endpoint (for the circuit breaker).
    pub(crate) open: Arc<AtomicU32>,
    /// Requests waiting for a connection to come back to the pool (at
    /// the cluster's connection limit), and the signal that one did.
    waiters: AtomicU32,
    released: Notify,
}

impl Pool {
    pub fn new(settings: &PoolSettings) -> Self {
        Pool {
            h1_idle: Mutex::new(VecDeque::new()),
            h2: Mutex::new(None),
            h2_gate: tokio::sync::Mutex::new(None),
            h2_streams: Arc::new(Semaphore::new(settings.h2_max_streams)),
            open: Arc::new(AtomicU32::new(0)),
            waiters: AtomicU32::new(0),
            released: Notify::new(),
        }
    }

    /// Idle HTTP/1 connections and whether an HTTP/2 connection is open.
    pub fn idle_counts(&self) -> (usize, bool) {
        let idle = self.h1_idle.lock().map(|v| v.len()).unwrap_or(0);
        let h2 = self
            .h2
            .lock()
            .map(|g| g.as_ref().is_some_and(|s| !s.is_closed()))
            .unwrap_or(false);
        (idle, h2)
    }

    /// The newest idle connection still fit to use. Expired or closed
    /// ones met on the way are dropped (outside the lock).
    fn pop_idle(&self, idle_timeout: Duration) -> Option<Box<H1Conn>> {
        loop {
            let (conn, since) = self.h1_idle.lock().ok()?.pop_back()?;
            if since.elapsed() <= idle_timeout && conn.is_usable() {
                return Some(conn);
            }
        }
    }

    /// Drops idle HTTP/1 connections that are closed or idle too long.
    pub fn reap(&self, idle_timeout: Duration) {
        let now = Instant::now();
        let stale = match self.h1_idle.lock() {
            Ok(mut idle) => {
                let (keep, stale): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut *idle)
                    .into_iter()
                    .partition(|(c, since)| {
                        now.duration_since(*since) <= idle_timeout && c.is_usable()
                    });
                *idle = keep;
                stale
            }
            Err(_) => return,
        };
        drop(stale);
    }

    fn checkin(&self, conn: Box<H1Conn>, settings: &PoolSettings) {
        if settings.max_idle == 0 {
            return;
        }
        let evicted = match self.h1_idle.lock() {
            Ok(mut idle) => {
                // Over the limit, the oldest goes.
                let evicted = if idle.len() >= settings.max_idle {
                    idle.pop_front()
                } else {
                    None
                };
                idle.push_back((conn, Instant::now()));
                evicted
            }
            Err(_) => return,
        };
        drop(evicted);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.released.notify_one();
        }
    }
}

async fn connect(ep: &Endpoint) -> Result<TcpStream, UpstreamError> {
    let settings = &ep.settings;
    match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(ep.addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            ep.stats.cx_total.increment(1);
            Ok(stream)
        }
        Ok(Err(e)) => {
            ep.stats.cx_connect_fail.increment(1);
            Err(UpstreamError::ConnectFailure(e))
        }
        Err(_) => {
            ep.stats.cx_connect_fail.increment(1);
            Err(UpstreamError::ConnectTimeout)
        }
    }
}

async fn connect_h1(ep: &Arc<Endpoint>, slot: CxSlot) -> Result<Box<H1Conn>, UpstreamError> {
    let stream = connect(ep).await?;
    let mut conn = H1Conn::new(stream, ep.stats.cx_active.clone());
    conn.slot = Some(slot);
    Ok(conn)
}

/// An HTTP/1 connection for a request that found none idle: a new one
/// when the circuit breaker allows, else the next one given back to the
/// pool (or a new one once a connection closes in the cluster). The
/// request is pending meanwhile, within the pending-request limit.
async fn acquire_h1(
    ep: &Arc<Endpoint>,
    priority: RoutingPriority,
) -> Result<(Box<H1Conn>, bool), UpstreamError> {
    let _pending = ep
        .breakers
        .pending(priority)
        .ok_or(UpstreamError::Overflow(Resource::Pending))?;
    let pool = &ep.pool;
    loop {
        // Register for both wake-ups first, then look: a connection given
        // back or closed after the look still wakes this request.
        let _watching = ep.breakers.watch_freed();
        let freed = ep.breakers.freed();
        let mut freed = std::pin::pin!(freed);
        freed.as_mut().enable();
        pool.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&pool.waiters);
        let released = pool.released.notified();
        let mut released = std::pin::pin!(released);
        released.as_mut().enable();
        if let Some(slot) = ep.breakers.try_connection(priority, &pool.open, false) {
            return Ok((connect_h1(ep, slot).await?, false));
        }
        if let Some(conn) = pool.pop_idle(ep.settings.idle_timeout) {
            return Ok((conn, true));
        }
        tokio::select! {
            _ = released => {}
            _ = freed => {}
        }
    }
}

struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A stream slot and a connection for an HTTP/2 request that found no
/// slot free or no connection open (boxed by the caller: rare, and its
/// future is large).
async fn pending_h2(
    ep: &Arc<Endpoint>,
    priority: RoutingPriority,
    has_permit: bool,
) -> Result<(Option<OwnedSemaphorePermit>, http2::SendRequest<ReqBody>), UpstreamError> {
    let _pending = ep
        .breakers
        .pending(priority)
        .ok_or(UpstreamError::Overflow(Resource::Pending))?;
    let permit = if has_permit {
        None
    } else {
        ep.pool.h2_streams.clone().acquire_owned().await.ok()
    };
    match cached_h2(ep) {
        Some(s) => Ok((permit, s)),
        None => Ok((permit, h2_connect(ep, priority).await?)),
    }
}

async fn h2_connect(
    ep: &Arc<Endpoint>,
    priority: RoutingPriority,
) -> Result<http2::SendRequest<ReqBody>, UpstreamError> {
    // Single flight: one task connects, the others wait and reuse it.
    let waited_since = Instant::now();
    let mut gate = ep.pool.h2_gate.lock().await;
    if let Some(s) = cached_h2(ep) {
        return Ok(s);
    }
    // An attempt that failed while we waited answers for us too.
    if gate.is_some_and(|failed_at| failed_at >= waited_since) {
        ep.stats.cx_connect_fail.increment(1);
        return Err(UpstreamError::ConnectFailure(std::io::Error::other(
            "the connection attempt this request waited for failed",
        )));
    }
    // One connection per endpoint: always within the breaker's rule that
    // an endpoint without a connection may open one.
    let slot = ep
        .breakers
        .try_connection(priority, &ep.pool.open, false)
        .ok_or(UpstreamError::Overflow(Resource::Connections))?;
    let stream = match connect(ep).await {
        Ok(s) => s,
        Err(e) => {
            *gate = Some(Instant::now());
            return Err(e);
        }
    };
    *gate = None;
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(2 << 20)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .handshake(TokioIo::new(stream))
        .await
        .map_err(UpstreamError::Reset)?;
    let gauge = ep.stats.cx_active.clone();
    gauge.increment(1.0);
    tokio::spawn(async move {
        let _slot = slot;
        let _ = conn.await;
        gauge.decrement(1.0);
    });
    if let Ok(mut slot) = ep.pool.h2.lock() {
        *slot = Some(sender.clone());
    }
    Ok(sender)
}

fn cached_h2(ep: &Endpoint) -> Option<http2::SendRequest<ReqBody>> {
    let slot = ep.pool.h2.lock().ok()?;
    slot.as_ref().filter(|s| !s.is_closed()).cloned()
}

/// An upstream response body: read by Legate's HTTP/1 client, or a
/// stream of hyper's HTTP/2 connection.
#[pin_project(project = UpstreamBodyProj)]
pub enum UpstreamBody {
    H1(#[pin] H1Body),
    H2(#[pin] Incoming),
}

/// Why an upstream response body failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamBodyError {
    #[error(transparent)]
    H1(#[from] H1Error),
    #[error(transparent)]
    H2(#[from] hyper::Error),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        match self.project() {
            UpstreamBodyProj::H1(b) => b.poll_frame(cx).map_err(UpstreamBodyError::H1),
            UpstreamBodyProj::H2(b) => b.poll_frame(cx).map_err(UpstreamBodyError::H2),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::H1(b) => b.is_end_stream(),
            UpstreamBody::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::H1(b) => b.size_hint(),
            UpstreamBody::H2(b) => b.size_hint(),
        }
    }
}

/// What the caller allows of an HTTP/1 exchange.
#[derive(Clone, Copy, Debug, Default)]
pub struct SendFlags {
    /// The request asks for a protocol upgrade, so a 101 is expected.
    pub upgrade: bool,
    /// The response head may be forwarded raw (see `h1::RawHead`): the
    /// downstream is HTTP/1 and no response header changes apply.
    pub raw_head: bool,
    /// Whose circuit-breaker limits the request counts against.
    pub priority: RoutingPriority,
}

/// What sending a request upstream comes to: the response and the guard.
pub type SendOutput = Result<(Response<UpstreamBody>, UpstreamGuard), UpstreamError>;

/// Sends `req` to the endpoint `guard` holds (see
/// [`UpstreamGuard::acquire`]) over a pooled connection; the guard comes
/// back with the response and must live as long as its body. `keep`, when
/// given, gets the request head as sent (a retrying route's next try sends
/// it again).
///
/// Not an `async fn`: the common cases (an idle HTTP/1 connection; an open
/// HTTP/2 connection with a stream slot free) start here, synchronously,
/// and the future returned holds only what the exchange still needs: the
/// HTTP/1 exchange, or hyper's response future. It is part of every
/// request's state, moved as the request's future is built, so its size
/// counts. The other cases (a connection to open or wait for, a stream
/// slot to wait for) are boxed.
#[inline]
pub fn send(
    req: Request<ReqBody>,
    use_h2: bool,
    flags: SendFlags,
    mut guard: UpstreamGuard,
    keep: Option<&mut Option<SentHead>>,
) -> impl Future<Output = SendOutput> + Send + use<> {
    if use_h2 {
        if let Some(k) = keep {
            // hyper takes the request: a retry needs a copy of its head.
            *k = Some(SentHead::copy(&req));
        }
        let ep = &guard.endpoint;
        if let Ok(permit) = ep.pool.h2_streams.clone().try_acquire_owned()
            && let Some(mut sender) = cached_h2(ep)
            // An HTTP/2 sender is ready unless its connection has closed.
            && let Poll::Ready(Ok(())) =
                sender.poll_ready(&mut Context::from_waker(std::task::Waker::noop()))
        {
            guard._permit = Some(permit);
            return Sending::H2 {
                call: sender.send_request(req),
                guard: Some(guard),
            };
        }
        // No stream slot free, or no connection yet: the request is
        // pending (within the limit) until it has both.
        return Sending::Other(Box::pin(send_h2(req, flags.priority, guard)));
    }
    let ep = &guard.endpoint;
    match ep.pool.pop_idle(ep.settings.idle_timeout) {
        Some(conn) => Sending::H1(exchange_h1(
            start_h1(conn, true, req, flags, keep),
            flags,
            guard,
        )),
        // A new connection, or a wait for one: the head is written once
        // there is one, so a caller that keeps it gets a copy now.
        None => {
            if let Some(k) = keep {
                *k = Some(SentHead::copy(&req));
            }
            Sending::Other(Box::pin(async move {
                let (conn, reused) = acquire_h1(&guard.endpoint, flags.priority).await?;
                let exchange = start_h1(conn, reused, req, flags, None);
                exchange_h1(exchange, flags, guard).await
            }))
        }
    }
}

/// A request on its way upstream (see [`send`]).
#[pin_project(project = SendingProj)]
enum Sending<A, B> {
    /// On an HTTP/1 connection, its head written.
    H1(#[pin] A),
    /// On the HTTP/2 connection: hyper's response future.
    H2 {
        #[pin]
        call: B,
        guard: Option<UpstreamGuard>,
    },
    /// Waiting for a connection or a stream slot first.
    Other(Pin<Box<dyn Future<Output = SendOutput> + Send>>),
}

impl<A, B> Future for Sending<A, B>
where
    A: Future<Output = SendOutput>,
    B: Future<Output = hyper::Result<Response<Incoming>>>,
{
    type Output = SendOutput;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SendOutput> {
        match self.project() {
            SendingProj::H1(f) => f.poll(cx),
            SendingProj::H2 { call, guard } => {
                let resp = match ready!(call.poll(cx)) {
                    Ok(resp) => resp,
                    Err(e) => return Poll::Ready(Err(UpstreamError::Reset(e))),
                };
                match guard.take() {
                    Some(g) => Poll::Ready(Ok((resp.map(UpstreamBody::H2), g))),
                    // Polled again after it ended.
                    None => Poll::Pending,
                }
            }
            SendingProj::Other(f) => f.as_mut().poll(cx),
        }
    }
}

/// An HTTP/2 request that found no stream slot free or no connection
/// open: it waits (within the pending limit) for both.
pub(crate) async fn send_h2(
    req: Request<ReqBody>,
    priority: RoutingPriority,
    mut guard: UpstreamGuard,
) -> SendOutput {
    let ep = &guard.endpoint;
    let ready = match ep.pool.h2_streams.clone().try_acquire_owned() {
        Ok(permit) => cached_h2(ep).map(|sender| (Some(permit), sender)),
        Err(_) => None,
    };
    let (permit, mut sender) = match ready {
        Some(ready) => ready,
        None => pending_h2(ep, priority, guard._permit.is_some()).await?,
    };
    if permit.is_some() {
        guard._permit = permit;
    }
    sender.ready().await.map_err(UpstreamError::Reset)?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(UpstreamError::Reset)?;
    Ok((resp.map(UpstreamBody::H2), guard))
}

/// An HTTP/1 exchange whose head is written: its response head, read.
///
/// Not an `async fn`: the block keeps the exchange it captures, where an
/// `async fn` would keep its argument and a copy of it.
#[allow(clippy::manual_async_fn)]
fn exchange_h1(
    mut exchange: Exchange,
    flags: SendFlags,
    guard: UpstreamGuard,
) -> impl Future<Output = SendOutput> + Send {
    async move {
        let ep = &guard.endpoint;
        let head = loop {
            // (The result is taken apart here, not matched on around the
            // await below, which would keep all of it in the future.)
            let e = match std::future::poll_fn(|cx| exchange.poll_head(cx)).await {
                Ok(head) => break head,
                Err(e) => e,
            };
            if !exchange.retryable(&e) {
                return Err(e.into());
            }
            // A pooled connection the server closed while it sat idle:
            // once more on a new one, when that is safe.
            tracing::debug!(endpoint = %ep.addr, error = %e, "pooled connection failed; retrying on a new one");
            // It replaces a connection: within the limit by definition.
            let slot = ep
                .breakers
                .replace_connection(flags.priority, &ep.pool.open);
            exchange.retry_on(Box::pin(connect_h1(ep, slot)).await?);
        };
        let mut resp = exchange.into_response(head)?.map(UpstreamBody::H1);
        if resp.body().is_end_stream() {
            guard.release(resp.body_mut());
        }
        Ok((resp, guard))
    }
}

/// Writes the request head out on `conn`; the head then goes back to the
/// caller if it keeps it (a retrying route's next try sends it again).
fn start_h1(
    conn: Box<H1Conn>,
    reused: bool,
    req: Request<ReqBody>,
    flags: SendFlags,
    keep: Option<&mut Option<SentHead>>,
) -> Exchange {
    let (parts, body) = req.into_parts();
    let exchange = Exchange::new(conn, reused, &parts, body, flags.upgrade, flags.raw_head);
    match keep {
        Some(k) => *k = Some(SentHead::Parts(parts)),
        None => crate::http::header_maps::give_back(parts.headers),
    }
    exchange
}

/// Held for the life of an upstream response: releases the HTTP/2 stream
/// slot and keeps the endpoint's active-request count right.
pub struct UpstreamGuard {
    endpoint: Arc<Endpoint>,
    _permit: Option<OwnedSemaphorePermit>,
    priority: RoutingPriority,
}

impl UpstreamGuard {
    /// Counts a request in flight on `ep` until dropped, if the cluster's
    /// circuit breaker allows another request of `priority`.
    #[inline]
    pub fn acquire(ep: &Arc<Endpoint>, priority: RoutingPriority) -> Result<Self, UpstreamError> {
        if !ep.breakers.try_request(priority) {
            return Err(UpstreamError::Overflow(Resource::Requests));
        }
        ep.active.fetch_add(1, Ordering::Relaxed);
        Ok(UpstreamGuard {
            endpoint: ep.clone(),
            _permit: None,
            priority,
        })
    }

    /// The response body has ended: an HTTP/1 connection that can serve
    /// another request goes back to the pool.
    pub fn release(&self, body: &mut UpstreamBody) {
        if let UpstreamBody::H1(b) = body
            && let Some(conn) = b.take_reusable()
        {
            self.endpoint.pool.checkin(conn, &self.endpoint.settings);
        }
    }

    /// The route timeout fired while the body was streaming.
    pub fn timed_out(&self) {
        self.endpoint.stats.rq_timeout.increment(1);
    }
}

impl Drop for UpstreamGuard {
    fn drop(&mut self) {
        self.endpoint.active.fetch_sub(1, Ordering::Relaxed);
        self.endpoint.breakers.end_request(self.priority);
    }
}
