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

use crate::cluster::breaker::RetrySlot;
use crate::cluster::sent::SentHead;
use crate::cluster::{Cluster, Endpoint};
use crate::http::body::{DownBody, RespBody};
use crate::http::service::local_reply;
use crate::route::Target;
use crate::telemetry::flags::ResponseFlags;
use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use http_body_util::combinators::Collect;
use legate_xds::model::{self, RetryOn, RoutingPriority};
use pin_project::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
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
        // gRPC: trailers-only responses carry grpc-status in the headers
        // (looked up only when a gRPC condition is set).
        let grpc = [
            RetryOn::Cancelled,
            RetryOn::DeadlineExceeded,
            RetryOn::ResourceExhausted,
            RetryOn::Internal,
            RetryOn::Unavailable,
        ];
        if !grpc.iter().any(|c| self.has(*c)) {
            return false;
        }
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

/// One try of a retrying request, lent to it as it starts: the cluster
/// chosen once for the whole request, the endpoints to avoid, the try's
/// timeout and number; the try leaves in it the endpoint it went to.
pub struct Try<'c> {
    /// Borrowed from the route's configuration, as the request is.
    pub cluster: &'c Arc<Cluster>,
    /// When the try starts (the clock is read once for it).
    pub started: std::time::Instant,
    pub avoid: Vec<Arc<Endpoint>>,
    pub timeout: Option<Duration>,
    pub number: u32,
    /// Whether the endpoint chosen is to be avoided by the next try
    /// (`retry_previous_hosts`), so kept in `used`.
    pub avoid_used: bool,
    pub used: Option<Arc<Endpoint>>,
}

/// Legate's own answer to a try, and why it did not come from upstream:
/// what the service retries wrap fails with.
pub type LocalAnswer = (Resp, Failure);

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
#[derive(Clone, Copy)]
pub struct RetryLayer<'a> {
    policy: &'a Retry,
    target: &'a Target,
    /// The route timeout, covering every try.
    timeout: Option<Duration>,
    /// Whose retry limit the retries count against.
    priority: RoutingPriority,
    /// When the request was routed: the route timeout of a request without
    /// a body runs from then (the layer is made per request).
    routed: std::time::Instant,
}

impl<'a> RetryLayer<'a> {
    pub fn new(
        policy: &'a Retry,
        target: &'a Target,
        timeout: Option<Duration>,
        priority: RoutingPriority,
        routed: std::time::Instant,
    ) -> Self {
        RetryLayer {
            policy,
            target,
            timeout,
            priority,
            routed,
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
            routed: self.routed,
            inner,
        }
    }
}

#[derive(Clone)]
pub struct RetryService<'a, S> {
    policy: &'a Retry,
    target: &'a Target,
    timeout: Option<Duration>,
    priority: RoutingPriority,
    routed: std::time::Instant,
    inner: S,
}

type Resp = Response<RespBody>;

/// What a retrying request's tries send: the body, read in full, every
/// time; and a request head, the downstream one for the first try and
/// afterwards the upstream one the last try prepared and sent (see
/// [`TryRequest::keep`]), which is sent again with only its attempt count
/// changed.
struct Replay {
    version: Version,
    head: Option<SentHead>,
    body: Option<Bytes>,
    sent: bool,
}

impl Replay {
    /// The replay of a request without a body, whose first try sends the
    /// request itself.
    fn sent(version: Version) -> Replay {
        Replay {
            version,
            head: None,
            body: None,
            sent: true,
        }
    }

    fn new(parts: http::request::Parts, body: Option<Bytes>) -> Replay {
        Replay {
            version: parts.version,
            head: Some(SentHead::Parts(parts)),
            body,
            sent: false,
        }
    }

    /// The next try's request and the prepared head it sends again (none
    /// the first time: the request is the downstream one).
    fn request(&mut self) -> (Request<DownBody>, Option<http::request::Parts>) {
        let body = DownBody::Buffered(self.body.clone());
        if !std::mem::replace(&mut self.sent, true)
            && let Some(head) = self.head.take()
        {
            return (Request::from_parts(head.into_parts(), body), None);
        }
        let mut r = Request::new(body);
        *r.version_mut() = self.version;
        (r, self.head.take().map(SentHead::into_parts))
    }
}

impl Drop for Replay {
    /// The head kept for the next try goes back for reuse.
    fn drop(&mut self) {
        if let Some(SentHead::Parts(parts)) = self.head.take() {
            crate::http::header_maps::give_back(parts.headers);
        }
    }
}

/// What a retrying request holds, as it goes.
enum Held {
    Request(Request<DownBody>),
    /// The head, while the body is read.
    Parts(http::request::Parts),
    Replay(Replay),
    Gone,
}

/// Marks `resp` as Legate's own.
pub fn mark_local(resp: Resp) -> Resp {
    local(resp)
}

fn local(mut resp: Resp) -> Resp {
    resp.extensions_mut().insert(LocalReply);
    resp
}

/// What one call of the service retries wrap is given.
pub struct TryRequest<'x, 'c> {
    /// The request: the downstream one for the first try; for a retry,
    /// only the body (and the downstream version).
    pub req: Request<DownBody>,
    /// The try (none for a request sent once).
    pub t: Option<&'x mut Try<'c>>,
    /// For a retry, the upstream request head the previous try sent, to
    /// send again with only its attempt count changed.
    pub prepared: Option<http::request::Parts>,
    /// Where the try leaves the head it sends, for the next (the retrying
    /// request keeps it; a try's own state does not carry it).
    pub keep: Option<&'x mut Option<SentHead>>,
}

/// The service retries wrap: one try, given a [`TryRequest`], answering
/// with the upstream's response, or failing with Legate's own answer and
/// why ([`LocalAnswer`]).
pub trait OneTry<'c> {
    type Future: Future<Output = Result<Resp, LocalAnswer>>;

    fn poll_ready_try(&mut self, cx: &mut Context<'_>) -> Poll<()>;

    fn call_try(&mut self, r: TryRequest<'_, 'c>) -> Self::Future;
}

impl<'c, S, F> OneTry<'c> for S
where
    S: for<'x> Service<TryRequest<'x, 'c>, Response = Resp, Error = LocalAnswer, Future = F>,
    F: Future<Output = Result<Resp, LocalAnswer>>,
{
    type Future = F;

    /// (An error here would be the call's to answer: it is made anyway.)
    fn poll_ready_try(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Service::<TryRequest<'_, 'c>>::poll_ready(self, cx).map(|_| ())
    }

    fn call_try(&mut self, r: TryRequest<'_, 'c>) -> F {
        self.call(r)
    }
}

impl<'a, S: OneTry<'a> + Clone> Service<Request<DownBody>> for RetryService<'a, S> {
    type Response = Resp;
    type Error = Infallible;
    type Future = RetryFuture<'a, S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready_try(cx).map(Ok)
    }

    fn call(&mut self, req: Request<DownBody>) -> RetryFuture<'a, S> {
        RetryFuture {
            policy: self.policy,
            target: self.target,
            timeout: self.timeout,
            priority: self.priority,
            routed: self.routed,
            inner: self.inner.clone(),
            held: Held::Request(req),
            cluster: None,
            deadline: None,
            avoid: Vec::new(),
            n: 0,
            current: None,
            slot: None,
            state: State::Start,
        }
    }
}

#[pin_project(project = StateProj)]
enum State<F> {
    /// The request is held: see whether it can be replayed.
    Start,
    /// Reading a replayable body in full (boxed: most requests have none).
    Collecting(Pin<Box<Collect<DownBody>>>),
    /// A try (or, for a request that cannot be replayed, the one call).
    Trying(#[pin] F),
    Backoff(#[pin] tokio::time::Sleep),
}

/// A retrying request: written out as a state machine (not an `async`
/// block) so it needs no allocation of its own and stays small to move.
#[pin_project(project = RetryProj)]
pub struct RetryFuture<'a, S: OneTry<'a>> {
    policy: &'a Retry,
    target: &'a Target,
    /// The route timeout, covering every try.
    timeout: Option<Duration>,
    priority: RoutingPriority,
    routed: std::time::Instant,
    inner: S,
    held: Held,
    cluster: Option<&'a Arc<Cluster>>,
    deadline: Option<Instant>,
    avoid: Vec<Arc<Endpoint>>,
    /// Tries made so far.
    n: u32,
    /// The try in flight (none for a request sent once).
    current: Option<Try<'a>>,
    /// The retry in flight's place under the circuit breaker.
    slot: Option<RetrySlot>,
    #[pin]
    state: State<S::Future>,
}

fn internal_error() -> Resp {
    local(local_reply(StatusCode::INTERNAL_SERVER_ERROR, ""))
}

impl<'a, S: OneTry<'a>> Future for RetryFuture<'a, S> {
    type Output = Result<Resp, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let step = match this.state.as_mut().project() {
                StateProj::Start => {
                    let Held::Request(req) = &*this.held else {
                        return Poll::Ready(Ok(internal_error()));
                    };
                    let empty = http_body::Body::is_end_stream(req.body());
                    // The body's length as its framing gave it (none when
                    // chunked, or an HTTP/2 body without content-length).
                    let length = http_body::Body::size_hint(req.body()).exact();
                    let replayable = !crate::http::service::wants_upgrade(req)
                        && (empty || length.is_some_and(|l| l <= MAX_BUFFERED));
                    let version = req.version();
                    let held = if replayable && empty {
                        // The first try sends the request as it came (there
                        // is no body to keep); the head it sends comes back
                        // into the replay.
                        Held::Replay(Replay::sent(version))
                    } else {
                        Held::Gone
                    };
                    let Held::Request(req) = std::mem::replace(this.held, held) else {
                        return Poll::Ready(Ok(internal_error()));
                    };
                    if !replayable {
                        Step::Call(req)
                    } else if empty {
                        let routed = Instant::from_std(*this.routed);
                        match begin(&mut this, routed) {
                            Some(Step::Try) => {
                                let Held::Replay(replay) = &mut *this.held else {
                                    return Poll::Ready(Ok(internal_error()));
                                };
                                let r = TryRequest {
                                    req,
                                    t: this.current.as_mut(),
                                    prepared: None,
                                    keep: Some(&mut replay.head),
                                };
                                this.state.set(State::Trying(this.inner.call_try(r)));
                                continue;
                            }
                            Some(step) => step,
                            None => Step::Call(req),
                        }
                    } else {
                        let (parts, body) = req.into_parts();
                        *this.held = Held::Parts(parts);
                        this.state.set(State::Collecting(Box::pin(body.collect())));
                        continue;
                    }
                }
                StateProj::Collecting(body) => match ready!(body.as_mut().poll(cx)) {
                    Ok(b) => {
                        let Held::Parts(parts) = std::mem::replace(this.held, Held::Gone) else {
                            return Poll::Ready(Ok(internal_error()));
                        };
                        *this.held = Held::Replay(Replay::new(parts, Some(b.to_bytes())));
                        // The route timeout runs once the body has been read.
                        match begin(&mut this, Instant::now()) {
                            Some(step) => step,
                            None => {
                                let Held::Replay(replay) = &mut *this.held else {
                                    return Poll::Ready(Ok(internal_error()));
                                };
                                Step::Call(replay.request().0)
                            }
                        }
                    }
                    Err(_) => {
                        return Poll::Ready(Ok(local(local_reply(
                            StatusCode::BAD_REQUEST,
                            "bad request body",
                        ))));
                    }
                },
                StateProj::Trying(call) => {
                    // (Taken apart in place: rebuilt as a tuple, the
                    // response was copied a byte at a time, ~440
                    // instructions.)
                    let polled = ready!(call.poll(cx));
                    let failure = match &polled {
                        Ok(_) => None,
                        Err((_, f)) => Some(*f),
                    };
                    let (Ok(mut resp) | Err((mut resp, _))) = polled;
                    // Decided on a borrow, marked in place: the response
                    // moves once, out.
                    match after_try(&mut this, &resp, failure) {
                        Verdict::Return(flags) => {
                            if failure.is_some() {
                                resp.extensions_mut().insert(LocalReply);
                            }
                            if !flags.is_empty() {
                                ResponseFlags::mark(&mut resp, flags);
                            }
                            return Poll::Ready(Ok(resp));
                        }
                        Verdict::Wait(sleep) => {
                            // The failed try's response (and its
                            // connection) goes now.
                            drop(resp);
                            Step::Wait(sleep)
                        }
                    }
                }
                StateProj::Backoff(sleep) => {
                    ready!(sleep.poll(cx));
                    next_try(&mut this)
                }
            };
            match step {
                // The call's future is made where it is kept: moved on its
                // way there, all of it would be copied each time.
                Step::Call(req) => {
                    let r = TryRequest {
                        req,
                        t: None,
                        prepared: None,
                        keep: None,
                    };
                    this.state.set(State::Trying(this.inner.call_try(r)))
                }
                Step::Try => {
                    let Held::Replay(replay) = &mut *this.held else {
                        return Poll::Ready(Ok(internal_error()));
                    };
                    let (req, prepared) = replay.request();
                    let r = TryRequest {
                        req,
                        t: this.current.as_mut(),
                        prepared,
                        // A try leaves the head it sends with the request.
                        keep: Some(&mut replay.head),
                    };
                    this.state.set(State::Trying(this.inner.call_try(r)))
                }
                Step::Wait(sleep) => this.state.set(State::Backoff(sleep)),
                Step::Done(resp) => return Poll::Ready(Ok(resp)),
            }
        }
    }
}

type Proj<'p, 'a, S> = RetryProj<'p, 'a, S>;

/// What a step of a retrying request comes to: the request's one call
/// (not replayable, or no cluster to retry against), the next try (see
/// [`try_at`]), a back-off, or the response. Passed straight back to the
/// poll that acts on it, never kept.
#[allow(clippy::large_enum_variant)]
enum Step {
    Call(Request<DownBody>),
    Try,
    Wait(tokio::time::Sleep),
    Done(Resp),
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

/// The request is replayable: pick the cluster once for every try, start
/// the route timeout's clock at `now`, ready the first try. None when the
/// route's cluster does not exist (the request's one call answers that:
/// 503, NC).
fn begin<'a, S: OneTry<'a>>(this: &mut Proj<'_, 'a, S>, now: Instant) -> Option<Step> {
    let cluster = this.target.pick()?;
    *this.cluster = Some(cluster);
    *this.deadline = this.timeout.map(|t| now + t);
    Some(try_at(this, now))
}

/// Starts the next try (see [`try_at`]).
fn next_try<'a, S: OneTry<'a>>(this: &mut Proj<'_, 'a, S>) -> Step {
    try_at(this, Instant::now())
}

/// Readies the next try at `now` ([`Step::Try`]: the poll makes it), with
/// the per-try timeout cut to what is left of the route timeout (the try's
/// own timer enforces both).
fn try_at<'a, S: OneTry<'a>>(this: &mut Proj<'_, 'a, S>, now: Instant) -> Step {
    let Some(cluster) = *this.cluster else {
        return Step::Done(internal_error());
    };
    *this.n += 1;
    let left = this.deadline.map(|d| d.saturating_duration_since(now));
    if left.is_some_and(|l| l.is_zero()) {
        return Step::Done(timed_out(cluster));
    }
    let timeout = match (this.policy.per_try, left) {
        (Some(p), Some(l)) => Some(p.min(l)),
        (p, l) => p.or(l),
    };
    *this.current = Some(Try {
        cluster,
        started: now.into_std(),
        avoid: if this.policy.previous_hosts {
            std::mem::take(this.avoid)
        } else {
            Vec::new()
        },
        timeout,
        number: *this.n,
        avoid_used: this.policy.previous_hosts,
        used: None,
    });
    Step::Try
}

/// What a try's outcome comes to: the response, returned (with response
/// flags to add), or a back-off before the next try. Carries no response:
/// [`after_try`] decides on a borrow of it.
enum Verdict {
    Return(ResponseFlags),
    Wait(tokio::time::Sleep),
}

/// Decides on a try's outcome (with `failure`, Legate's own answer): the
/// response to return, or the back-off before the next try.
fn after_try<'a, S: OneTry<'a>>(
    this: &mut Proj<'_, 'a, S>,
    resp: &Resp,
    failure: Option<Failure>,
) -> Verdict {
    let done = Verdict::Return(ResponseFlags::default());
    let Some(t) = this.current.take() else {
        // Sent once.
        return done;
    };
    // The head the try sent, to send again.
    let prepared = matches!(&*this.held, Held::Replay(r) if r.head.is_some());
    let Some(cluster) = this.cluster.as_ref() else {
        return done;
    };
    let policy: &Retry = this.policy;
    *this.avoid = t.avoid;
    let n = *this.n;
    if failure == Some(Failure::Timeout) && this.deadline.is_some_and(|d| Instant::now() >= d) {
        // The route timeout, not the per-try one: no more tries.
        return done;
    }
    if !policy.retriable(resp, failure) {
        if n > 1 {
            cluster.stats.rq_retry_success.increment(1);
        }
        return done;
    }
    if n > policy.num_retries {
        cluster.stats.rq_retry_limit_exceeded.increment(1);
        return Verdict::Return(ResponseFlags::URX);
    }
    if !prepared {
        // The try failed before it had a request to send: nothing to send
        // again (such failures are not retriable; this is a safeguard).
        return done;
    }
    let Some(slot) = cluster.breakers.retry_slot(*this.priority) else {
        cluster.stats.rq_retry_overflow.increment(1);
        return Verdict::Return(ResponseFlags::UO);
    };
    *this.slot = Some(slot);
    if let Some(ep) = t.used {
        this.avoid.push(ep);
    }
    cluster.stats.rq_retry.increment(1);
    let pause = policy.backoff(n);
    match *this.deadline {
        Some(d) if Instant::now() + pause >= d => {
            // No time left for another try after the pause: wait out the
            // route timeout and answer it.
            Verdict::Wait(tokio::time::sleep_until(d))
        }
        _ => Verdict::Wait(tokio::time::sleep(pause)),
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
