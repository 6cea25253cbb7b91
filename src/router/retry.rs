//! Retries (Envoy's retry policy) as a `tower::Layer` over the service that
//! makes one try upstream.
//!
//! A request is replayable when it has no body, or a `content-length` body
//! of at most [`MAX_BUFFERED`] (read in full first); others, and upgrades,
//! are sent once. The route timeout covers every try; `per_try_timeout`
//! bounds each. Between tries: full-jitter exponential back-off. A retry
//! needs a slot under the cluster's circuit breaker for retries (by
//! default a budget: 20 % of the requests in flight and pending, at least
//! 3; see [`crate::cluster::breaker`]). A request whose retries run out
//! gets flag URX; one whose retry the breaker refuses gets UO.

use crate::cluster::{Cluster, Endpoint};
use crate::http::body::{DownBody, RespBody};
use crate::http::service::local_reply;
use crate::route::Target;
use crate::telemetry::flags::ResponseFlags;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use legate_xds::model::{self, RetryOn, RoutingPriority};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service};

/// Largest request body kept for replay.
pub const MAX_BUFFERED: u64 = 64 * 1024;

/// A route's retry policy, compiled.
pub struct Retry {
    on: u16,
    num_retries: u32,
    per_try: Option<Duration>,
    codes: Vec<u16>,
    base: Duration,
    max: Duration,
    previous_hosts: bool,
}

fn bit(c: RetryOn) -> u16 {
    1 << (RetryOn::ALL.iter().position(|x| *x == c).unwrap_or(0) as u16)
}

impl Retry {
    pub fn compile(m: &model::RetryPolicy) -> Arc<Retry> {
        let base = m.backoff_base.get();
        Arc::new(Retry {
            on: m.retry_on.iter().fold(0, |acc, c| acc | bit(*c)),
            num_retries: m.num_retries,
            per_try: m.per_try_timeout.map(|d| d.get()),
            codes: m.retriable_status_codes.clone(),
            base,
            max: m.backoff_max.map_or(base * 10, |d| d.get()),
            previous_hosts: m.retry_previous_hosts,
        })
    }

    fn has(&self, c: RetryOn) -> bool {
        self.on & bit(c) != 0
    }

    /// Whether a try's outcome is one to retry.
    fn retriable(&self, resp: &Response<RespBody>, failure: Option<Failure>) -> bool {
        if let Some(f) = failure {
            return match f {
                Failure::ConnectFailure => {
                    self.has(RetryOn::ConnectFailure)
                        || self.has(RetryOn::FiveXx)
                        || self.has(RetryOn::GatewayError)
                }
                Failure::RefusedStream => {
                    self.has(RetryOn::RefusedStream)
                        || self.has(RetryOn::Reset)
                        || self.has(RetryOn::FiveXx)
                        || self.has(RetryOn::GatewayError)
                }
                Failure::Reset => {
                    self.has(RetryOn::Reset)
                        || self.has(RetryOn::FiveXx)
                        || self.has(RetryOn::GatewayError)
                }
                // A per-try timeout is a 504.
                Failure::Timeout => self.has(RetryOn::FiveXx) || self.has(RetryOn::GatewayError),
                Failure::Other => false,
            };
        }
        let status = resp.status().as_u16();
        if self.has(RetryOn::FiveXx) && (500..600).contains(&status) {
            return true;
        }
        if self.has(RetryOn::GatewayError) && matches!(status, 502..=504) {
            return true;
        }
        if self.has(RetryOn::Retriable4xx) && status == 409 {
            return true;
        }
        if self.has(RetryOn::RetriableStatusCodes) && self.codes.contains(&status) {
            return true;
        }
        // gRPC: trailers-only responses carry grpc-status in the headers.
        if let Some(code) = resp
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
        {
            let c = match code {
                1 => RetryOn::Cancelled,
                4 => RetryOn::DeadlineExceeded,
                8 => RetryOn::ResourceExhausted,
                13 => RetryOn::Internal,
                14 => RetryOn::Unavailable,
                _ => return false,
            };
            return self.has(c);
        }
        false
    }

    /// Envoy's full-jitter back-off before retry `n` (1-based): a random
    /// time up to `base × (2^n − 1)`, capped at `max`.
    fn backoff(&self, n: u32) -> Duration {
        let factor = (1u64 << n.min(20)) - 1;
        let ceiling = self
            .base
            .saturating_mul(u32::try_from(factor).unwrap_or(u32::MAX))
            .min(self.max);
        let nanos = ceiling.as_nanos().min(u128::from(u64::MAX)) as u64;
        Duration::from_nanos(if nanos == 0 {
            0
        } else {
            fastrand::u64(0..=nanos)
        })
    }
}

/// One try of a retrying request, passed down with it: the cluster chosen
/// once for the whole request, the endpoints to avoid, the try's timeout
/// and number; and passed back: the endpoint it went to and, when Legate
/// answered itself, why.
pub struct Try {
    pub cluster: Arc<Cluster>,
    pub avoid: Vec<Arc<Endpoint>>,
    pub timeout: Option<Duration>,
    pub number: u32,
    pub used: Option<Arc<Endpoint>>,
    pub failure: Option<Failure>,
}

/// Marks a response Legate made itself on a retrying route (so the route's
/// response header changes still apply to it).
#[derive(Clone, Copy)]
pub struct LocalReply;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    ConnectFailure,
    Reset,
    RefusedStream,
    Timeout,
    /// Not an upstream failure (no healthy endpoint, a bad request, ...).
    Other,
}

/// Retries as a layer over the service that makes one try.
pub struct RetryLayer<'a> {
    policy: &'a Retry,
    target: &'a Target,
    /// The route timeout, covering every try.
    timeout: Option<Duration>,
    /// Whose retry limit the retries count against.
    priority: RoutingPriority,
}

impl<'a> RetryLayer<'a> {
    pub fn new(
        policy: &'a Retry,
        target: &'a Target,
        timeout: Option<Duration>,
        priority: RoutingPriority,
    ) -> Self {
        RetryLayer {
            policy,
            target,
            timeout,
            priority,
        }
    }
}

impl<'a, S> Layer<S> for RetryLayer<'a> {
    type Service = RetryService<'a, S>;

    fn layer(&self, inner: S) -> RetryService<'a, S> {
        RetryService {
            policy: self.policy,
            target: self.target,
            timeout: self.timeout,
            priority: self.priority,
            inner,
        }
    }
}

pub struct RetryService<'a, S> {
    policy: &'a Retry,
    target: &'a Target,
    timeout: Option<Duration>,
    priority: RoutingPriority,
    inner: S,
}

type Resp = Response<RespBody>;

/// The parts of a request a retry sends again.
struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Option<Bytes>,
}

impl Replay {
    fn request(&self) -> Request<DownBody> {
        let mut r = Request::new(DownBody::Buffered(self.body.clone()));
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = self.version;
        *r.headers_mut() = self.headers.clone();
        r
    }
}

/// The request with its body read, if it can be replayed; else as it was.
async fn buffer(req: Request<DownBody>) -> Result<Result<Replay, Request<DownBody>>, Resp> {
    if crate::http::service::is_upgrade(&req) {
        return Ok(Err(req));
    }
    let empty = http_body::Body::is_end_stream(req.body());
    let length = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if !empty && length.is_none_or(|l| l > MAX_BUFFERED) {
        return Ok(Err(req));
    }
    let (parts, body) = req.into_parts();
    let body = if empty {
        None
    } else {
        match body.collect().await {
            Ok(b) => Some(b.to_bytes()),
            Err(_) => return Err(local_reply(StatusCode::BAD_REQUEST, "bad request body")),
        }
    };
    Ok(Ok(Replay {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body,
    }))
}

/// Marks `resp` as Legate's own.
pub fn mark_local(resp: Resp) -> Resp {
    local(resp)
}

fn local(mut resp: Resp) -> Resp {
    resp.extensions_mut().insert(LocalReply);
    resp
}

impl<'a, S> Service<Request<DownBody>> for RetryService<'a, S>
where
    S: Service<
            (Request<DownBody>, Option<Try>),
            Response = (Resp, Option<Try>),
            Error = Infallible,
        > + Clone
        + Send
        + 'a,
    S::Future: Send + 'a,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send + 'a>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<DownBody>) -> Self::Future {
        let (policy, target, timeout, priority) =
            (self.policy, self.target, self.timeout, self.priority);
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let replay = match buffer(req).await {
                Ok(Ok(r)) => r,
                // Not replayable: one try, as a route without retries.
                Ok(Err(req)) => return Ok(once(&mut inner, req).await),
                Err(resp) => return Ok(local(resp)),
            };
            let Some(cluster) = target.pick().cloned() else {
                // No such cluster: the try answers it (503, NC).
                return Ok(once(&mut inner, replay.request()).await);
            };
            let deadline = timeout.map(|t| Instant::now() + t);
            Ok(tries(policy, &cluster, &replay, &mut inner, deadline, priority).await)
        })
    }
}

/// One try without retries.
async fn once<S>(inner: &mut S, req: Request<DownBody>) -> Resp
where
    S: Service<
            (Request<DownBody>, Option<Try>),
            Response = (Resp, Option<Try>),
            Error = Infallible,
        >,
{
    match inner.call((req, None)).await {
        Ok((resp, _)) => resp,
        Err(never) => match never {},
    }
}

fn timed_out(cluster: &Cluster) -> Resp {
    cluster.stats.rq_timeout.increment(1);
    cluster.stats.rq[4].increment(1);
    flag(
        local(local_reply(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream request timeout",
        )),
        ResponseFlags::UT,
    )
}

fn flag(mut resp: Resp, flags: ResponseFlags) -> Resp {
    ResponseFlags::mark(&mut resp, flags);
    resp
}

/// Tries until one is not retriable, the retries run out, the budget says
/// no or the route timeout passes; returns the last try's response.
async fn tries<S>(
    policy: &Retry,
    cluster: &Arc<Cluster>,
    replay: &Replay,
    inner: &mut S,
    deadline: Option<Instant>,
    priority: RoutingPriority,
) -> Resp
where
    S: Service<
            (Request<DownBody>, Option<Try>),
            Response = (Resp, Option<Try>),
            Error = Infallible,
        >,
{
    let mut avoid: Vec<Arc<Endpoint>> = Vec::new();
    let mut _retry_slot = None;
    let mut n = 0;
    loop {
        n += 1;
        // Each try gets the per-try timeout, cut to what is left of the
        // route timeout (the try's own timer enforces both).
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return timed_out(cluster);
        }
        let timeout = match (policy.per_try, left) {
            (Some(p), Some(l)) => Some(p.min(l)),
            (p, l) => p.or(l),
        };
        let t = Try {
            cluster: cluster.clone(),
            avoid: if policy.previous_hosts {
                std::mem::take(&mut avoid)
            } else {
                Vec::new()
            },
            timeout,
            number: n,
            used: None,
            failure: None,
        };
        let (resp, t) = match inner.call((replay.request(), Some(t))).await {
            Ok((resp, Some(t))) => (resp, t),
            Ok((resp, None)) => return resp,
            Err(never) => match never {},
        };
        avoid = t.avoid;
        let mark = |resp: Resp| {
            if t.failure.is_some() {
                local(resp)
            } else {
                resp
            }
        };
        if t.failure == Some(Failure::Timeout) && deadline.is_some_and(|d| Instant::now() >= d) {
            // The route timeout, not the per-try one: no more tries.
            return mark(resp);
        }
        if !policy.retriable(&resp, t.failure) {
            if n > 1 {
                cluster.stats.rq_retry_success.increment(1);
            }
            return mark(resp);
        }
        if n > policy.num_retries {
            cluster.stats.rq_retry_limit_exceeded.increment(1);
            return flag(mark(resp), ResponseFlags::URX);
        }
        let Some(slot) = cluster.breakers.retry(priority) else {
            cluster.stats.rq_retry_overflow.increment(1);
            return flag(mark(resp), ResponseFlags::UO);
        };
        _retry_slot = Some(slot);
        if let Some(ep) = t.used {
            avoid.push(ep);
        }
        // The failed try's response (and its connection) goes now.
        drop(resp);
        cluster.stats.rq_retry.increment(1);
        let pause = policy.backoff(n);
        if deadline.is_some_and(|d| Instant::now() + pause >= d) {
            tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await;
            return timed_out(cluster);
        }
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn policy(on: &[RetryOn]) -> Retry {
        Retry {
            on: on.iter().fold(0, |a, c| a | bit(*c)),
            num_retries: 1,
            per_try: None,
            codes: vec![418],
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
            previous_hosts: false,
        }
    }

    fn resp(status: u16, grpc: Option<&str>) -> Resp {
        let mut r = local_reply(StatusCode::from_u16(status).unwrap(), "");
        if let Some(g) = grpc {
            r.headers_mut()
                .insert("grpc-status", HeaderValue::from_str(g).unwrap());
        }
        r
    }

    #[test]
    fn conditions_follow_envoys_names() {
        let p = policy(&[RetryOn::GatewayError]);
        assert!(p.retriable(&resp(503, None), None));
        assert!(!p.retriable(&resp(500, None), None));
        let p = policy(&[RetryOn::FiveXx]);
        assert!(p.retriable(&resp(500, None), None) && !p.retriable(&resp(404, None), None));
        let p = policy(&[RetryOn::Retriable4xx, RetryOn::RetriableStatusCodes]);
        assert!(p.retriable(&resp(409, None), None) && p.retriable(&resp(418, None), None));
        assert!(!p.retriable(&resp(400, None), None));
        let p = policy(&[RetryOn::Unavailable]);
        assert!(p.retriable(&resp(200, Some("14")), None));
        assert!(!p.retriable(&resp(200, Some("13")), None));
        let failed = resp(503, None);
        let connect = Some(Failure::ConnectFailure);
        assert!(policy(&[RetryOn::ConnectFailure]).retriable(&failed, connect));
        assert!(!policy(&[RetryOn::Reset]).retriable(&failed, connect));
        // Not an upstream failure: never, whatever the status.
        assert!(!policy(&[RetryOn::FiveXx]).retriable(&failed, Some(Failure::Other)));
    }

    #[test]
    fn backoff_is_full_jitter_capped() {
        let p = policy(&[]);
        for n in 1..8 {
            for _ in 0..200 {
                let ceiling =
                    (Duration::from_millis(25) * ((1 << n) - 1)).min(Duration::from_millis(250));
                assert!(p.backoff(n) <= ceiling);
            }
        }
    }
}
