//! Fault injection (Envoy's HTTP fault filter, per route): a percentage of
//! requests is delayed before it is routed on, a percentage answered with
//! an error instead (a delayed request may be aborted too, as in Envoy).
//! Delays and statuses may come from the request's `x-envoy-fault-*`
//! headers when the route says so.

use crate::http::body::{DownBody, RespBody};
use crate::http::service::local_reply;
use crate::telemetry::ListenerStats;
use crate::telemetry::flags::ResponseFlags;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use legate_xds::model;
use pin_project::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tower::{Layer, Service};

static DELAY_HEADER: HeaderName = HeaderName::from_static("x-envoy-fault-delay-request");
static DELAY_PERCENT_HEADER: HeaderName =
    HeaderName::from_static("x-envoy-fault-delay-request-percentage");
static ABORT_HEADER: HeaderName = HeaderName::from_static("x-envoy-fault-abort-request");
static ABORT_GRPC_HEADER: HeaderName = HeaderName::from_static("x-envoy-fault-abort-grpc-request");
static ABORT_PERCENT_HEADER: HeaderName =
    HeaderName::from_static("x-envoy-fault-abort-request-percentage");

const DEFAULT_BODY: &str = "fault filter abort";

/// A share of requests: `numerator` out of `denominator`.
#[derive(Clone, Copy, Debug)]
struct Share {
    numerator: u32,
    denominator: u32,
}

impl Share {
    fn of(p: model::Percent) -> Share {
        Share {
            numerator: p.numerator.min(p.denominator),
            denominator: p.denominator.max(1),
        }
    }

    /// This share, lowered to the request's percentage header if it has one
    /// (a numerator over the same denominator, as Envoy reads it).
    fn with_header(self, headers: &HeaderMap, name: &HeaderName) -> Share {
        match header_u64(headers, name) {
            Some(n) => Share {
                numerator: self.numerator.min(u32::try_from(n).unwrap_or(u32::MAX)),
                ..self
            },
            None => self,
        }
    }

    fn draw(self) -> bool {
        self.numerator > 0 && fastrand::u32(0..self.denominator) < self.numerator
    }
}

fn header_u64(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

enum AbortWith {
    Http(StatusCode),
    Grpc(u32),
    FromHeader,
}

/// A route's fault injection, compiled.
pub struct Fault {
    delay: Option<(Option<Duration>, Share)>,
    abort: Option<(AbortWith, Share)>,
    body: Bytes,
    max_active: Option<u32>,
    /// Requests under an injected fault now.
    active: AtomicU32,
}

/// What to do to one request.
#[derive(Default)]
struct Plan {
    delay: Option<Duration>,
    abort: Option<Response<RespBody>>,
}

impl Fault {
    pub fn compile(m: &model::FaultInjection) -> Arc<Fault> {
        let delay = m.delay.as_ref().map(|d| {
            (
                d.fixed.map(|t| t.get()).filter(|_| !d.from_header),
                Share::of(d.percent),
            )
        });
        let abort = m.abort.as_ref().map(|a| {
            let with = match (a.http_status, a.grpc_status) {
                (Some(s), _) => StatusCode::from_u16(s)
                    .map(AbortWith::Http)
                    .unwrap_or(AbortWith::FromHeader),
                (None, Some(g)) => AbortWith::Grpc(g),
                (None, None) => AbortWith::FromHeader,
            };
            (with, Share::of(a.percent))
        });
        let body = m
            .abort
            .as_ref()
            .and_then(|a| a.body.clone())
            .unwrap_or_else(|| DEFAULT_BODY.to_string());
        Arc::new(Fault {
            delay,
            abort,
            body: Bytes::from(body),
            max_active: m.max_active_faults,
            active: AtomicU32::new(0),
        })
    }

    fn abort_response(&self, with: &AbortWith, headers: &HeaderMap) -> Option<Response<RespBody>> {
        let grpc = |code: u32| {
            let mut r = Response::new(RespBody::empty());
            let h = r.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert("grpc-status", HeaderValue::from(code));
            if let Ok(m) = HeaderValue::from_bytes(&self.body) {
                h.insert("grpc-message", m);
            }
            r
        };
        let http = |status: StatusCode| {
            let mut r = local_reply(status, "");
            *r.body_mut() = RespBody::text(self.body.clone());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
            r
        };
        let mut resp = match with {
            AbortWith::Http(s) => http(*s),
            AbortWith::Grpc(code) => grpc(*code),
            AbortWith::FromHeader => {
                if let Some(code) = header_u64(headers, &ABORT_GRPC_HEADER) {
                    grpc(u32::try_from(code).ok()?)
                } else {
                    let status = header_u64(headers, &ABORT_HEADER)?;
                    let status = u16::try_from(status)
                        .ok()
                        .filter(|s| (200..600).contains(s))?;
                    http(StatusCode::from_u16(status).ok()?)
                }
            }
        };
        ResponseFlags::mark(&mut resp, ResponseFlags::FI);
        Some(resp)
    }

    /// Draws this request's faults.
    fn plan(&self, headers: &HeaderMap) -> Plan {
        let mut plan = Plan::default();
        if let Some((fixed, share)) = &self.delay {
            let (delay, share) = match fixed {
                Some(d) => (Some(*d), *share),
                None => (
                    header_u64(headers, &DELAY_HEADER).map(Duration::from_millis),
                    share.with_header(headers, &DELAY_PERCENT_HEADER),
                ),
            };
            if delay.is_some() && share.draw() {
                plan.delay = delay;
            }
        }
        if let Some((with, share)) = &self.abort {
            let share = match with {
                AbortWith::FromHeader => share.with_header(headers, &ABORT_PERCENT_HEADER),
                _ => *share,
            };
            if share.draw() {
                plan.abort = self.abort_response(with, headers);
            }
        }
        plan
    }

    /// Counts a request under a fault, unless `max_active_faults` are
    /// already running.
    fn admit(self: &Arc<Self>) -> Option<ActiveFault> {
        let prev = self.active.fetch_add(1, Ordering::AcqRel);
        if self.max_active.is_some_and(|max| prev >= max) {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ActiveFault(self.clone()))
    }
}

/// A request under an injected fault, until it completes.
pub struct ActiveFault(Arc<Fault>);

impl Drop for ActiveFault {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The fault filter as a layer over the rest of the request's way. It
/// borrows the route's compiled fault and the listener's statistics for
/// the request (no reference counting per request).
#[derive(Clone, Copy)]
pub struct FaultLayer<'a> {
    fault: &'a Arc<Fault>,
    stats: &'a ListenerStats,
}

impl<'a> FaultLayer<'a> {
    pub fn new(fault: &'a Arc<Fault>, stats: &'a ListenerStats) -> FaultLayer<'a> {
        FaultLayer { fault, stats }
    }
}

impl<'a, S> Layer<S> for FaultLayer<'a> {
    type Service = FaultService<'a, S>;

    fn layer(&self, inner: S) -> FaultService<'a, S> {
        FaultService {
            fault: self.fault,
            stats: self.stats,
            inner,
        }
    }
}

pub struct FaultService<'a, S> {
    fault: &'a Arc<Fault>,
    stats: &'a ListenerStats,
    inner: S,
}

type Resp = Response<RespBody>;

impl<'a, S> Service<Request<DownBody>> for FaultService<'a, S>
where
    S: Service<Request<DownBody>, Response = Resp, Error = Infallible> + Clone,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = FaultFuture<'a, S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<DownBody>) -> FaultFuture<'a, S> {
        let plan = self.fault.plan(req.headers());
        if plan.delay.is_none() && plan.abort.is_none() {
            return FaultFuture::Inner {
                call: self.inner.call(req),
                _active: None,
                delayed: false,
            };
        }
        let Some(active) = self.fault.admit() else {
            return FaultFuture::Inner {
                call: self.inner.call(req),
                _active: None,
                delayed: false,
            };
        };
        if let Some(d) = plan.delay {
            self.stats.fault_delays.increment(1);
            tracing::debug!(delay = ?d, "fault injection: delaying the request (DI)");
            return FaultFuture::Delay(Box::pin(Delayed {
                sleep: tokio::time::sleep(d),
                req: Some(req),
                abort: plan.abort,
                inner: self.inner.clone(),
                stats: self.stats,
                active: Some(active),
            }));
        }
        self.stats.fault_aborts.increment(1);
        tracing::debug!("fault injection: aborting the request (FI)");
        FaultFuture::Abort(plan.abort.map(Box::new))
    }
}

#[pin_project(project = FaultProj)]
pub enum FaultFuture<'a, S: Service<Request<DownBody>>> {
    Inner {
        #[pin]
        call: S::Future,
        _active: Option<ActiveFault>,
        /// The request was delayed (flag DI on its response).
        delayed: bool,
    },
    /// Boxed: only delayed requests pay for holding the request here.
    Delay(Pin<Box<Delayed<'a, S>>>),
    /// Boxed: only aborted requests pay for holding the response here.
    Abort(Option<Box<Resp>>),
}

/// A request waiting out its injected delay.
#[pin_project]
pub struct Delayed<'a, S> {
    #[pin]
    sleep: tokio::time::Sleep,
    req: Option<Request<DownBody>>,
    abort: Option<Resp>,
    inner: S,
    stats: &'a ListenerStats,
    active: Option<ActiveFault>,
}

impl<S> Future for FaultFuture<'_, S>
where
    S: Service<Request<DownBody>, Response = Resp, Error = Infallible>,
{
    type Output = Result<Resp, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project() {
                FaultProj::Inner { call, delayed, .. } => {
                    let mut resp = ready!(call.poll(cx));
                    if *delayed && let Ok(r) = &mut resp {
                        ResponseFlags::mark(r, ResponseFlags::DI);
                    }
                    return Poll::Ready(resp);
                }
                FaultProj::Abort(resp) => {
                    return Poll::Ready(Ok(resp.take().map_or_else(
                        || local_reply(StatusCode::INTERNAL_SERVER_ERROR, ""),
                        |r| *r,
                    )));
                }
                FaultProj::Delay(delayed) => {
                    let d = delayed.as_mut().project();
                    ready!(d.sleep.poll(cx));
                    let (req, abort, inner, stats, active) =
                        (d.req, d.abort, d.inner, d.stats, d.active);
                    if let Some(mut resp) = abort.take() {
                        stats.fault_aborts.increment(1);
                        ResponseFlags::mark(&mut resp, ResponseFlags::DI);
                        FaultFuture::Abort(Some(Box::new(resp)))
                    } else {
                        let Some(req) = req.take() else {
                            return Poll::Ready(Ok(local_reply(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "",
                            )));
                        };
                        FaultFuture::Inner {
                            call: inner.call(req),
                            _active: active.take(),
                            delayed: true,
                        }
                    }
                }
            };
            self.set(next);
        }
    }
}
