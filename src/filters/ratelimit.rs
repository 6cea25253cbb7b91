//! Local rate limiting (Envoy's local_ratelimit filter): a token bucket per
//! route (or shared by a virtual host's routes), taken from by every
//! connection and worker without a lock.

use crate::http::body::{DownBody, RespBody};
use crate::http::service::local_reply;
use crate::route::headers::HeaderOps;
use crate::telemetry::ListenerStats;
use crate::telemetry::flags::ResponseFlags;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use legate_xds::model;
use pin_project::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::{Layer, Service};

static LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// A token bucket: starts full, gains `per_fill` tokens (up to `max`) at
/// every whole `interval` since it was made, as Envoy's timer-driven one.
/// Its state is one atomic word: the number of fills it has counted and the
/// tokens it holds.
pub struct TokenBucket {
    max: u32,
    per_fill: u32,
    /// The fill interval in nanoseconds (at least a millisecond): the
    /// arithmetic per request is in `u64`, not in `Duration`'s `u128`
    /// nanoseconds (two 128-bit divisions a request, ~60 instructions).
    interval_ns: u64,
    start: Instant,
    /// High 32 bits: fills counted; low 32 bits: tokens.
    state: AtomicU64,
}

/// What taking a token found.
pub struct Taken {
    pub allowed: bool,
    /// Tokens left.
    pub remaining: u32,
    /// Until the next fill.
    pub reset: Duration,
}

impl TokenBucket {
    pub fn new(max: u32, per_fill: u32, interval: Duration) -> TokenBucket {
        TokenBucket {
            max,
            per_fill,
            interval_ns: u64::try_from(interval.max(Duration::from_millis(1)).as_nanos())
                .unwrap_or(u64::MAX),
            start: Instant::now(),
            state: AtomicU64::new(u64::from(max)),
        }
    }

    /// Takes one token if there is one.
    pub fn take(&self, now: Instant) -> Taken {
        let elapsed = now.saturating_duration_since(self.start);
        let elapsed_ns = elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()));
        let fills = elapsed_ns / self.interval_ns;
        let since_fill = elapsed_ns - fills * self.interval_ns;
        // (Counted modulo 2^32, as the state word keeps it.)
        let fills_now = fills as u32;
        let reset = Duration::from_nanos(self.interval_ns - since_fill);
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let (fills, tokens) = ((cur >> 32) as u32, cur as u32);
            let new_fills = fills_now.wrapping_sub(fills);
            let tokens = if new_fills == 0 {
                tokens
            } else {
                let added = u64::from(new_fills) * u64::from(self.per_fill);
                (u64::from(tokens) + added).min(u64::from(self.max)) as u32
            };
            let (allowed, left) = match tokens.checked_sub(1) {
                Some(left) => (true, left),
                None => (false, 0),
            };
            let next = (u64::from(fills_now.max(fills)) << 32) | u64::from(left);
            if next == cur && !allowed {
                return Taken {
                    allowed,
                    remaining: 0,
                    reset,
                };
            }
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Taken {
                        allowed,
                        remaining: left,
                        reset,
                    };
                }
                Err(actual) => cur = actual,
            }
        }
    }
}

/// A route's (or virtual host's) rate limit, compiled.
pub struct RateLimit {
    bucket: TokenBucket,
    status: StatusCode,
    enabled: (u32, u32),
    enforced: (u32, u32),
    x_headers: bool,
    limit_value: HeaderValue,
    response_headers: HeaderOps,
    request_headers: HeaderOps,
}

fn share(p: model::Percent) -> (u32, u32) {
    (p.numerator.min(p.denominator), p.denominator.max(1))
}

fn draw((n, d): (u32, u32)) -> bool {
    n >= d || (n > 0 && fastrand::u32(0..d) < n)
}

impl RateLimit {
    pub fn compile(m: &model::LocalRateLimit) -> Result<Arc<RateLimit>, String> {
        let ops = |adds: &[model::HeaderValueOption], what: &str| {
            HeaderOps::compile(
                what,
                &model::HeaderMutation {
                    add: adds.to_vec(),
                    remove: Vec::new(),
                },
            )
            .map_err(|e| e.to_string())
        };
        Ok(Arc::new(RateLimit {
            bucket: TokenBucket::new(m.max_tokens, m.tokens_per_fill, m.fill_interval.get()),
            status: StatusCode::from_u16(m.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS),
            enabled: share(m.enabled),
            enforced: share(m.enforced),
            x_headers: m.x_ratelimit_headers,
            limit_value: HeaderValue::from(m.max_tokens),
            response_headers: ops(&m.response_headers, "rate_limit.response_headers")?,
            request_headers: ops(
                &m.request_headers_when_not_enforced,
                "rate_limit.request_headers_when_not_enforced",
            )?,
        }))
    }

    fn x_headers(&self, taken: &Taken, h: &mut http::HeaderMap) {
        if self.x_headers {
            h.insert(LIMIT.clone(), self.limit_value.clone());
            h.insert(REMAINING.clone(), HeaderValue::from(taken.remaining));
            // Whole seconds, rounded up, as Envoy writes it.
            let secs = taken.reset.as_millis().div_ceil(1000) as u64;
            h.insert(RESET.clone(), HeaderValue::from(secs));
        }
    }
}

/// The rate limit as a layer over the rest of the request's way. It
/// borrows the route's compiled limit and the listener's statistics for
/// the request (no reference counting per request).
///
/// It is made for one request, with the instant the request was routed at
/// (read once for the request's layers: a clock read is ~40 instructions).
#[derive(Clone, Copy)]
pub struct RateLimitLayer<'a> {
    limit: &'a RateLimit,
    stats: &'a ListenerStats,
    now: Instant,
}

impl<'a> RateLimitLayer<'a> {
    pub fn new(limit: &'a RateLimit, stats: &'a ListenerStats, now: Instant) -> RateLimitLayer<'a> {
        RateLimitLayer { limit, stats, now }
    }
}

impl<'a, S> Layer<S> for RateLimitLayer<'a> {
    type Service = RateLimitService<'a, S>;

    fn layer(&self, inner: S) -> RateLimitService<'a, S> {
        RateLimitService {
            limit: self.limit,
            stats: self.stats,
            now: self.now,
            inner,
        }
    }
}

pub struct RateLimitService<'a, S> {
    limit: &'a RateLimit,
    stats: &'a ListenerStats,
    now: Instant,
    inner: S,
}

type Resp = Response<RespBody>;

impl<'a, S> Service<Request<DownBody>> for RateLimitService<'a, S>
where
    S: Service<Request<DownBody>, Response = Resp, Error = Infallible>,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = RateLimitFuture<'a, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<DownBody>) -> RateLimitFuture<'a, S::Future> {
        let l = self.limit;
        if !draw(l.enabled) {
            return RateLimitFuture::Inner {
                call: self.inner.call(req),
                taken: None,
                limit: None,
            };
        }
        let taken = l.bucket.take(self.now);
        if taken.allowed {
            self.stats.rate_limit_ok.increment(1);
        } else if draw(l.enforced) {
            self.stats.rate_limited.increment(1);
            tracing::debug!("local rate limit: refused (RL)");
            let mut resp = local_reply(l.status, "");
            *resp.body_mut() = RespBody::text(Bytes::from_static(b"local_rate_limited"));
            l.response_headers.apply(resp.headers_mut());
            l.x_headers(&taken, resp.headers_mut());
            ResponseFlags::mark(&mut resp, ResponseFlags::RL);
            return RateLimitFuture::Limited(Some(Box::new(resp)));
        } else {
            // Limited but not enforced: let through, marked.
            self.stats.rate_limited.increment(1);
            l.request_headers.apply(req.headers_mut());
        }
        RateLimitFuture::Inner {
            call: self.inner.call(req),
            taken: Some(taken),
            limit: l.x_headers.then_some(l),
        }
    }
}

#[pin_project(project = RateLimitProj)]
pub enum RateLimitFuture<'a, F> {
    Inner {
        #[pin]
        call: F,
        taken: Option<Taken>,
        /// Set when the response gets x-ratelimit headers.
        limit: Option<&'a RateLimit>,
    },
    /// Boxed: only refused requests pay for holding the response here.
    Limited(Option<Box<Resp>>),
}

impl<F> Future for RateLimitFuture<'_, F>
where
    F: Future<Output = Result<Resp, Infallible>>,
{
    type Output = Result<Resp, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RateLimitProj::Inner { call, taken, limit } => {
                let Poll::Ready(Ok(mut resp)) = call.poll(cx) else {
                    return Poll::Pending;
                };
                if let (Some(l), Some(t)) = (limit.as_ref(), taken.as_ref()) {
                    l.x_headers(t, resp.headers_mut());
                }
                Poll::Ready(Ok(resp))
            }
            RateLimitProj::Limited(resp) => Poll::Ready(Ok(resp.take().map_or_else(
                || local_reply(StatusCode::INTERNAL_SERVER_ERROR, ""),
                |r| *r,
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;
    use std::time::{Duration, Instant};

    #[test]
    fn the_bucket_gives_exactly_its_tokens_and_refills_by_interval() {
        let b = TokenBucket::new(3, 2, Duration::from_secs(1));
        let t0 = b.start;
        let took: Vec<bool> = (0..5).map(|_| b.take(t0).allowed).collect();
        assert_eq!(took, [true, true, true, false, false]);
        // Half an interval: nothing new.
        assert!(!b.take(t0 + Duration::from_millis(500)).allowed);
        // One fill: two tokens.
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(
            (b.take(t1).allowed, b.take(t1).allowed, b.take(t1).allowed),
            (true, true, false)
        );
        // Many fills: capped at the maximum.
        let t9 = t0 + Duration::from_secs(9);
        let n = (0..10).filter(|_| b.take(t9).allowed).count();
        assert_eq!(n, 3);
        let r = b.take(t9 + Duration::from_millis(250));
        assert_eq!(
            (r.allowed, r.remaining, r.reset),
            (false, 0, Duration::from_millis(750))
        );
        let _ = Instant::now();
    }

    #[test]
    fn a_zero_bucket_refuses_everything() {
        let b = TokenBucket::new(0, 1, Duration::from_secs(1));
        assert!(!b.take(b.start + Duration::from_secs(5)).allowed);
    }
}
