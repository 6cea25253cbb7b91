//! Per-endpoint connection pools: a stack of idle HTTP/1.1 keep-alive
//! connections, and one multiplexed HTTP/2 connection with a stream limit.
//!
//! Locks here are plain mutexes held for a push or a pop, never across an
//! `.await`. Establishing the shared HTTP/2 connection goes through a
//! single-flight gate so a burst of requests opens one connection, not many.

use super::Endpoint;
use crate::http::body::ReqBody;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why an upstream request failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connection failure: {0}")]
    ConnectFailure(std::io::Error),
    #[error("connection timeout")]
    ConnectTimeout,
    #[error("connection termination: {0}")]
    Reset(hyper::Error),
}

impl UpstreamError {
    /// Envoy's response flag for this failure.
    pub fn flag(&self) -> &'static str {
        match self {
            UpstreamError::ConnectFailure(_) | UpstreamError::ConnectTimeout => "UF",
            UpstreamError::Reset(_) => "UC",
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
    h1_idle: Mutex<VecDeque<(http1::SendRequest<ReqBody>, Instant)>>,
    h2: Mutex<Option<http2::SendRequest<ReqBody>>>,
    /// Single-flight gate for the HTTP/2 connect; holds when the last
    /// attempt failed, so requests queued behind it fail fast instead of
    /// each trying (and waiting) again.
    h2_gate: tokio::sync::Mutex<Option<Instant>>,
    h2_streams: Arc<Semaphore>,
}

impl Pool {
    pub fn new(settings: &PoolSettings) -> Self {
        Pool {
            h1_idle: Mutex::new(VecDeque::new()),
            h2: Mutex::new(None),
            h2_gate: tokio::sync::Mutex::new(None),
            h2_streams: Arc::new(Semaphore::new(settings.h2_max_streams)),
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

    fn pop_idle(&self, idle_timeout: Duration) -> Option<http1::SendRequest<ReqBody>> {
        let mut idle = self.h1_idle.lock().ok()?;
        while let Some((sender, since)) = idle.pop_back() {
            if sender.is_closed() || since.elapsed() > idle_timeout {
                continue;
            }
            return Some(sender);
        }
        None
    }

    /// Drops idle HTTP/1 connections that are closed or idle too long.
    pub fn reap(&self, idle_timeout: Duration) {
        let now = Instant::now();
        if let Ok(mut idle) = self.h1_idle.lock() {
            idle.retain(|(s, since)| !s.is_closed() && now.duration_since(*since) <= idle_timeout);
        }
    }

    fn checkin(&self, sender: http1::SendRequest<ReqBody>, settings: &PoolSettings) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        if let Ok(mut idle) = self.h1_idle.lock() {
            // Expired connections sit at the front (oldest first); closed ones
            // are skipped when popped. Over the limit, the oldest goes.
            while idle.front().is_some_and(|(s, since)| {
                s.is_closed() || now.duration_since(*since) > settings.idle_timeout
            }) {
                idle.pop_front();
            }
            if settings.max_idle == 0 {
                return;
            }
            if idle.len() >= settings.max_idle {
                idle.pop_front();
            }
            idle.push_back((sender, now));
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

async fn connect_h1(ep: &Arc<Endpoint>) -> Result<http1::SendRequest<ReqBody>, UpstreamError> {
    let stream = connect(ep).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(UpstreamError::Reset)?;
    let gauge = ep.stats.cx_active.clone();
    gauge.increment(1.0);
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
        gauge.decrement(1.0);
    });
    Ok(sender)
}

async fn h2_sender(ep: &Arc<Endpoint>) -> Result<http2::SendRequest<ReqBody>, UpstreamError> {
    if let Some(s) = cached_h2(ep) {
        return Ok(s);
    }
    // The connect path is rare and its future large: keep it off the
    // per-request future (boxed), so every request carries and moves less.
    Box::pin(h2_connect(ep)).await
}

async fn h2_connect(ep: &Arc<Endpoint>) -> Result<http2::SendRequest<ReqBody>, UpstreamError> {
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

/// Sends `req` to `ep` over a pooled connection. The returned guard must
/// live as long as the response body.
pub async fn send(
    ep: &Arc<Endpoint>,
    req: Request<ReqBody>,
    use_h2: bool,
) -> Result<(Response<Incoming>, UpstreamGuard), UpstreamError> {
    ep.active.fetch_add(1, Ordering::Relaxed);
    let mut guard = UpstreamGuard {
        endpoint: ep.clone(),
        h1: None,
        _permit: None,
        done: false,
    };
    if use_h2 {
        let permit = ep.pool.h2_streams.clone().acquire_owned().await.ok();
        guard._permit = permit;
        let mut sender = h2_sender(ep).await?;
        sender.ready().await.map_err(UpstreamError::Reset)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Reset)?;
        Ok((resp, guard))
    } else {
        let mut req = req;
        // A pooled connection may have been closed by the server while idle;
        // if hyper hands the request back unsent, retry once on a new one.
        if let Some(mut sender) = ep.pool.pop_idle(ep.settings.idle_timeout) {
            if sender.ready().await.is_ok() {
                match sender.try_send_request(req).await {
                    Ok(resp) => {
                        guard.h1 = Some(sender);
                        return Ok((resp, guard));
                    }
                    Err(mut e) => match e.take_message() {
                        Some(back) => req = back,
                        None => return Err(UpstreamError::Reset(e.into_error())),
                    },
                }
            } else {
                return Box::pin(send_fresh_h1(ep, req, guard)).await;
            }
        }
        // New connections are the rare path; boxed to keep this future small.
        Box::pin(send_fresh_h1(ep, req, guard)).await
    }
}

async fn send_fresh_h1(
    ep: &Arc<Endpoint>,
    req: Request<ReqBody>,
    mut guard: UpstreamGuard,
) -> Result<(Response<Incoming>, UpstreamGuard), UpstreamError> {
    let mut sender = connect_h1(ep).await?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(UpstreamError::Reset)?;
    guard.h1 = Some(sender);
    Ok((resp, guard))
}

/// Held for the life of an upstream response: returns the HTTP/1 connection
/// to the pool when the body has been read to the end, releases the HTTP/2
/// stream slot, and keeps the endpoint's active-request count right.
pub struct UpstreamGuard {
    endpoint: Arc<Endpoint>,
    h1: Option<http1::SendRequest<ReqBody>>,
    _permit: Option<OwnedSemaphorePermit>,
    done: bool,
}

impl UpstreamGuard {
    /// The response body ended cleanly: the connection can be reused.
    pub fn finish(&mut self) {
        if !self.done {
            self.done = true;
            if let Some(sender) = self.h1.take() {
                self.endpoint.pool.checkin(sender, &self.endpoint.settings);
            }
        }
    }

    /// The response failed mid-body: never reuse the connection.
    pub fn fail(&mut self) {
        self.done = true;
        self.h1 = None;
    }

    /// The route timeout fired while the body was streaming.
    pub fn timed_out(&self) {
        self.endpoint.stats.rq_timeout.increment(1);
    }

    /// The connection will be taken over by an upgrade (WebSocket).
    pub fn detach(&mut self) {
        self.done = true;
        self.h1 = None;
    }
}

impl Drop for UpstreamGuard {
    fn drop(&mut self) {
        self.endpoint.active.fetch_sub(1, Ordering::Relaxed);
    }
}
