//! Active health checking, with Envoy's semantics.
//!
//! A cluster with `health_checks` runs one supervisor task, which watches
//! the cluster's endpoint set and runs one session task per endpoint and
//! check: new endpoints (from the config, DNS or EDS) get sessions, removed
//! ones have theirs aborted, and everything ends when the cluster is
//! dropped (the tasks hold only a [`Weak`] to it).
//!
//! An endpoint starts failed and pending ([`Cluster::initial_flags`]); its
//! first check decides at once (a pass makes it healthy). Afterwards
//! `unhealthy_threshold` network failures or timeouts in a row make a
//! healthy endpoint unhealthy, while an HTTP status outside
//! `expected_statuses` or a gRPC answer other than SERVING does so at once
//! (Envoy's non-retriable failures); `healthy_threshold` passes in a row
//! make it healthy again. The next check comes after `interval` (or the
//! unhealthy / edge intervals, as Envoy chooses them) plus jitter. With
//! several checks, an endpoint is healthy while it passes all of them.
//!
//! Flags change only through [`Cluster::set_flags`]; no lock is held
//! across an `.await`.

use super::{Cluster, Endpoint, EndpointSet, flag};
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use legate_xds::model::{self, Checker, HealthCheckCodec, StatusRange};
use metrics::{Counter, Gauge, counter, describe_counter, describe_gauge, gauge};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::{AbortHandle, JoinSet};

/// The `User-Agent` of HTTP and gRPC checks (Envoy sends `Envoy/HC`).
pub const HC_USER_AGENT: &str = "Legate/HC";

/// The most reply bytes a TCP check reads while looking for its payloads.
const MAX_TCP_REPLY: usize = 64 * 1024;
/// The most response body bytes a gRPC check keeps (its answer is 7).
const MAX_GRPC_BODY: usize = 4096;
const GRPC_PATH: &str = "/grpc.health.v1.Health/Check";

pub fn describe_metrics() {
    describe_counter!(
        "legate_cluster_health_check_attempt_total",
        "Active health checks started, by cluster."
    );
    describe_counter!(
        "legate_cluster_health_check_success_total",
        "Active health checks passed, by cluster."
    );
    describe_counter!(
        "legate_cluster_health_check_failure_total",
        "Active health checks failed for any reason (a bad answer, a network failure or a timeout), by cluster."
    );
    describe_counter!(
        "legate_cluster_health_check_network_failure_total",
        "Active health checks failed because the endpoint could not be reached, the connection broke or the check timed out, by cluster."
    );
    describe_gauge!(
        "legate_cluster_health_check_healthy",
        "Endpoints passing their active health checks, by cluster."
    );
}

/// A health check whose configuration cannot be used (validation rules
/// these out; the check is then skipped, and logged).
#[derive(Debug, thiserror::Error)]
pub enum HealthCheckError {
    #[error("health_checks[{index}]: set exactly one of http, tcp or grpc")]
    NoChecker { index: usize },
    #[error("health_checks[{index}].{field}: {message}")]
    Invalid {
        index: usize,
        field: &'static str,
        message: String,
    },
}

// ---------------------------------------------------------------------------
// The per-endpoint state machine (Envoy's ActiveHealthCheckSession).

/// What a check result did to the endpoint's health (Envoy's
/// `HealthTransition`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    /// On the way to a change that needs more results in a row.
    ChangePending,
    Changed,
}

/// One check's view of one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not checked yet.
    Pending,
    Healthy,
    Unhealthy,
}

/// Consecutive results and the health they make.
#[derive(Debug)]
pub struct Tracker {
    unhealthy_threshold: u32,
    healthy_threshold: u32,
    pending: bool,
    healthy: bool,
    successes: u32,
    failures: u32,
}

impl Tracker {
    /// A new endpoint: unhealthy and pending its first check.
    pub fn new(unhealthy_threshold: u32, healthy_threshold: u32) -> Tracker {
        Tracker {
            unhealthy_threshold: unhealthy_threshold.max(1),
            healthy_threshold: healthy_threshold.max(1),
            pending: true,
            healthy: false,
            successes: 0,
            failures: 0,
        }
    }

    pub fn verdict(&self) -> Verdict {
        match (self.pending, self.healthy) {
            (true, _) => Verdict::Pending,
            (false, true) => Verdict::Healthy,
            (false, false) => Verdict::Unhealthy,
        }
    }

    /// A passed check. The first one makes the endpoint healthy at once.
    pub fn success(&mut self) -> Transition {
        self.record(true, false)
    }

    /// A failed check; `immediate` for a non-retriable one (a bad HTTP
    /// status, a gRPC answer other than SERVING), which makes a healthy
    /// endpoint unhealthy whatever the threshold.
    pub fn failure(&mut self, immediate: bool) -> Transition {
        self.record(false, immediate)
    }

    /// A check's result: it ends the streak of the other kind and, if it
    /// goes against the endpoint's state, lengthens its own; the state
    /// changes when that streak reaches its threshold (at once for an
    /// `immediate` failure or for the first check of a new endpoint).
    fn record(&mut self, passed: bool, immediate: bool) -> Transition {
        let (streak, other, threshold) = if passed {
            (
                &mut self.successes,
                &mut self.failures,
                self.healthy_threshold,
            )
        } else {
            (
                &mut self.failures,
                &mut self.successes,
                self.unhealthy_threshold,
            )
        };
        *other = 0;
        let mut t = Transition::Unchanged;
        if self.healthy != passed {
            *streak = streak.saturating_add(1);
            if immediate || (passed && self.pending) || *streak >= threshold {
                self.healthy = passed;
                *streak = 0;
                t = Transition::Changed;
            } else {
                t = Transition::ChangePending;
            }
        }
        if std::mem::take(&mut self.pending) {
            t = Transition::Changed;
        }
        t
    }
}

// ---------------------------------------------------------------------------
// A check's configuration, ready to run.

struct Spec {
    timeout: Duration,
    interval: Duration,
    unhealthy_interval: Duration,
    unhealthy_edge_interval: Duration,
    healthy_edge_interval: Duration,
    initial_jitter: Duration,
    interval_jitter: Duration,
    interval_jitter_percent: u32,
    unhealthy_threshold: u32,
    healthy_threshold: u32,
    reuse: bool,
    probe: Probe,
}

enum Probe {
    Http(HttpProbe),
    Tcp(TcpProbe),
    Grpc(GrpcProbe),
}

struct HttpProbe {
    path: PathAndQuery,
    /// `Host` (HTTP/1) and, when it is a valid authority, `:authority`
    /// (HTTP/2; otherwise the endpoint's address).
    host: HeaderValue,
    authority: Option<Authority>,
    headers: Vec<(HeaderName, HeaderValue, bool)>,
    expected: Vec<StatusRange>,
    h2: bool,
}

struct TcpProbe {
    send: Option<Bytes>,
    receive: Vec<Vec<u8>>,
}

struct GrpcProbe {
    authority: Option<Authority>,
    body: Bytes,
}

fn invalid(index: usize, field: &'static str, message: impl ToString) -> HealthCheckError {
    HealthCheckError::Invalid {
        index,
        field,
        message: message.to_string(),
    }
}

impl Spec {
    fn new(index: usize, m: &model::HealthCheck, cluster: &str) -> Result<Spec, HealthCheckError> {
        let probe = match m.checker() {
            None => return Err(HealthCheckError::NoChecker { index }),
            Some(Checker::Http(h)) => {
                let host = h.host.as_deref().unwrap_or(cluster);
                let mut headers = Vec::new();
                for a in &h.request_headers_to_add {
                    let name = HeaderName::from_bytes(a.name.as_bytes())
                        .map_err(|e| invalid(index, "http.request_headers_to_add", e))?;
                    let value = HeaderValue::from_str(&a.value)
                        .map_err(|e| invalid(index, "http.request_headers_to_add", e))?;
                    headers.push((name, value, a.append));
                }
                Probe::Http(HttpProbe {
                    path: PathAndQuery::try_from(h.path.as_str())
                        .map_err(|e| invalid(index, "http.path", e))?,
                    host: HeaderValue::from_str(host)
                        .map_err(|e| invalid(index, "http.host", e))?,
                    authority: Authority::try_from(host).ok(),
                    headers,
                    expected: if h.expected_statuses.is_empty() {
                        vec![StatusRange {
                            start: 200,
                            end: 201,
                        }]
                    } else {
                        h.expected_statuses.clone()
                    },
                    h2: h.codec == HealthCheckCodec::Http2,
                })
            }
            Some(Checker::Tcp(t)) => {
                let bytes = |p: &model::Payload| {
                    p.bytes()
                        .map_err(|(_, m)| invalid(index, "tcp", format!("invalid payload: {m}")))
                };
                Probe::Tcp(TcpProbe {
                    send: t.send.as_ref().map(bytes).transpose()?.map(Bytes::from),
                    receive: t.receive.iter().map(bytes).collect::<Result<_, _>>()?,
                })
            }
            Some(Checker::Grpc(g)) => Probe::Grpc(GrpcProbe {
                authority: Authority::try_from(g.authority.as_deref().unwrap_or(cluster)).ok(),
                body: grpc_request(&g.service_name),
            }),
        };
        Ok(Spec {
            timeout: m.timeout.get(),
            interval: m.interval.get(),
            unhealthy_interval: m.unhealthy_interval().get(),
            unhealthy_edge_interval: m.unhealthy_edge_interval().get(),
            healthy_edge_interval: m.healthy_edge_interval().get(),
            initial_jitter: m.initial_jitter.get(),
            interval_jitter: m.interval_jitter.get(),
            interval_jitter_percent: m.interval_jitter_percent,
            unhealthy_threshold: m.unhealthy_threshold,
            healthy_threshold: m.healthy_threshold,
            reuse: m.reuse_connection,
            probe,
        })
    }

    /// The wait before an endpoint's first check: a random time up to
    /// `initial_jitter` (none without it).
    fn initial_delay(&self, rng: &mut fastrand::Rng) -> Duration {
        if self.initial_jitter.is_zero() {
            Duration::ZERO
        } else {
            with_jitter(Duration::ZERO, self.initial_jitter, 0, rng)
        }
    }

    /// The wait before the next check, as Envoy picks it: after a failure,
    /// `unhealthy_edge_interval` while a healthy endpoint is on its way to
    /// unhealthy, else `unhealthy_interval`; after a pass,
    /// `healthy_edge_interval` while an unhealthy one is on its way to
    /// healthy, else `interval`. Plus jitter.
    fn next_delay(&self, passed: bool, t: Transition, rng: &mut fastrand::Rng) -> Duration {
        let edge = t == Transition::ChangePending;
        let base = match (passed, edge) {
            (false, true) => self.unhealthy_edge_interval,
            (false, false) => self.unhealthy_interval,
            (true, true) => self.healthy_edge_interval,
            (true, false) => self.interval,
        };
        with_jitter(
            base,
            self.interval_jitter,
            self.interval_jitter_percent,
            rng,
        )
    }
}

/// Envoy's `intervalWithJitter`: `base`, plus a random time below
/// `base × percent / 100`, plus a random time below `jitter`; at least
/// 1 ms.
pub fn with_jitter(
    base: Duration,
    jitter: Duration,
    percent: u32,
    rng: &mut fastrand::Rng,
) -> Duration {
    let cap = u128::from(u64::MAX);
    let below = |rng: &mut fastrand::Rng, n: u128| {
        if n == 0 {
            0
        } else {
            u128::from(rng.u64(..u64::try_from(n.min(cap)).unwrap_or(u64::MAX)))
        }
    };
    let base_ns = base.as_nanos();
    let mut total = base_ns;
    total += below(rng, base_ns * u128::from(percent) / 100);
    total += below(rng, jitter.as_nanos());
    let total = Duration::from_nanos(u64::try_from(total.min(cap)).unwrap_or(u64::MAX));
    total.max(Duration::from_millis(1))
}

// ---------------------------------------------------------------------------
// Running checks.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailureKind {
    /// A bad answer (HTTP status, gRPC status): non-retriable.
    Active,
    /// Connection refused, reset or closed, a broken reply.
    Network,
    Timeout,
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
struct Failure {
    kind: FailureKind,
    reason: String,
}

impl Failure {
    fn active(reason: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Active,
            reason: reason.into(),
        }
    }

    fn network(reason: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Network,
            reason: reason.into(),
        }
    }
}

/// A connection kept between checks.
enum Conn {
    Http(HttpConn),
    Tcp(TcpStream),
}

enum HttpConn {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, Failure> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| Failure::network(format!("connect: {e}")))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

impl HttpConn {
    async fn open(addr: SocketAddr, h2: bool) -> Result<HttpConn, Failure> {
        let io = TokioIo::new(connect(addr).await?);
        let handshake = |e: hyper::Error| Failure::network(format!("handshake: {e}"));
        if h2 {
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .map_err(handshake)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(HttpConn::H2(send))
        } else {
            let (send, conn) = http1::handshake(io).await.map_err(handshake)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(HttpConn::H1(send))
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            HttpConn::H1(s) => s.is_closed(),
            HttpConn::H2(s) => s.is_closed(),
        }
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> hyper::Result<Response<Incoming>> {
        match self {
            HttpConn::H1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            HttpConn::H2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }
}

/// An HTTP exchange's answer: status, headers, up to the kept body bytes,
/// trailers.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: BytesMut,
    trailers: Option<HeaderMap>,
}

/// Sends `make()` on the kept connection (a fresh one if there is none, or
/// if the kept one turns out closed: then once more on a fresh one), reads
/// the whole answer (keeping `keep` body bytes) and keeps the connection
/// when `reuse`.
async fn exchange(
    conn: &mut Option<Conn>,
    addr: SocketAddr,
    h2: bool,
    reuse: bool,
    keep: usize,
    make: impl Fn() -> Result<Request<Full<Bytes>>, Failure>,
) -> Result<Answer, Failure> {
    loop {
        let kept = match conn.take() {
            Some(Conn::Http(c)) if !c.is_closed() => Some(c),
            _ => None,
        };
        let reused = kept.is_some();
        let mut c = match kept {
            Some(c) => c,
            None => HttpConn::open(addr, h2).await?,
        };
        let resp = match c.send(make()?).await {
            Ok(r) => r,
            // A keep-alive connection the endpoint closed meanwhile.
            Err(_) if reused => continue,
            Err(e) => return Err(Failure::network(format!("request failed: {e}"))),
        };
        let (parts, mut body) = resp.into_parts();
        let mut kept_body = BytesMut::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| Failure::network(format!("response body failed: {e}")))?;
            match frame.into_data() {
                Ok(data) => {
                    let room = keep.saturating_sub(kept_body.len());
                    kept_body.extend_from_slice(&data[..data.len().min(room)]);
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            }
        }
        if reuse {
            *conn = Some(Conn::Http(c));
        }
        return Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: kept_body,
            trailers,
        });
    }
}

impl HttpProbe {
    fn request(&self, addr: SocketAddr) -> Result<Request<Full<Bytes>>, Failure> {
        let mut uri = http::uri::Parts::default();
        uri.path_and_query = Some(self.path.clone());
        let mut b = Request::builder().method(Method::GET);
        if self.h2 {
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = Some(authority_or(&self.authority, addr)?);
            b = b.version(Version::HTTP_2);
        } else {
            b = b.header(HOST, self.host.clone());
        }
        let mut req = b
            .uri(Uri::from_parts(uri).map_err(|e| Failure::network(format!("request: {e}")))?)
            .header(USER_AGENT, HeaderValue::from_static(HC_USER_AGENT))
            .body(Full::new(Bytes::new()))
            .map_err(|e| Failure::network(format!("request: {e}")))?;
        let headers = req.headers_mut();
        for (name, value, append) in &self.headers {
            if *append {
                headers.append(name.clone(), value.clone());
            } else {
                headers.insert(name.clone(), value.clone());
            }
        }
        Ok(req)
    }

    async fn run(
        &self,
        addr: SocketAddr,
        reuse: bool,
        conn: &mut Option<Conn>,
    ) -> Result<(), Failure> {
        let answer = exchange(conn, addr, self.h2, reuse, 0, || self.request(addr)).await?;
        let status = answer.status.as_u16();
        if self.expected.iter().any(|r| r.contains(status)) {
            Ok(())
        } else {
            Err(Failure::active(format!("HTTP status {status}")))
        }
    }
}

/// The configured authority, or the endpoint's address when the
/// configured one (often the cluster's name) is not a valid authority.
fn authority_or(a: &Option<Authority>, addr: SocketAddr) -> Result<Authority, Failure> {
    match a {
        Some(a) => Ok(a.clone()),
        None => Authority::try_from(addr.to_string())
            .map_err(|e| Failure::network(format!("authority: {e}"))),
    }
}

impl TcpProbe {
    async fn run(
        &self,
        addr: SocketAddr,
        reuse: bool,
        conn: &mut Option<Conn>,
    ) -> Result<(), Failure> {
        if self.receive.is_empty() {
            // Connecting is the check (Envoy closes at once, as here).
            let mut s = connect(addr).await?;
            if let Some(send) = &self.send {
                s.write_all(send)
                    .await
                    .map_err(|e| Failure::network(format!("write: {e}")))?;
            }
            return Ok(());
        }
        loop {
            let kept = match conn.take() {
                Some(Conn::Tcp(s)) => Some(s),
                _ => None,
            };
            let reused = kept.is_some();
            let mut s = match kept {
                Some(s) => s,
                None => connect(addr).await?,
            };
            match self.exchange(&mut s).await {
                Ok(()) => {
                    if reuse {
                        *conn = Some(Conn::Tcp(s));
                    }
                    return Ok(());
                }
                // A kept connection the endpoint closed meanwhile.
                Err((true, _)) if reused => continue,
                Err((_, f)) => return Err(f),
            }
        }
    }

    /// Sends and reads until every expected payload has come. The error
    /// says whether nothing at all came back.
    async fn exchange(&self, s: &mut TcpStream) -> Result<(), (bool, Failure)> {
        if let Some(send) = &self.send {
            s.write_all(send)
                .await
                .map_err(|e| (true, Failure::network(format!("write: {e}"))))?;
        }
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        loop {
            buf.reserve(1024);
            let n = s
                .read_buf(&mut buf)
                .await
                .map_err(|e| (buf.is_empty(), Failure::network(format!("read: {e}"))))?;
            if n == 0 {
                return Err((
                    buf.is_empty(),
                    Failure::network("connection closed before the expected reply"),
                ));
            }
            if contains_in_order(&buf, &self.receive) {
                return Ok(());
            }
            if buf.len() > MAX_TCP_REPLY {
                return Err((
                    false,
                    Failure::network(format!(
                        "the expected reply is not in the first {MAX_TCP_REPLY} bytes"
                    )),
                ));
            }
        }
    }
}

/// Whether every needle is in `hay`, each after the previous one (Envoy's
/// TCP health-check matching).
pub fn contains_in_order(mut hay: &[u8], needles: &[Vec<u8>]) -> bool {
    for n in needles {
        if n.is_empty() {
            continue;
        }
        match hay.windows(n.len()).position(|w| w == n.as_slice()) {
            Some(i) => hay = &hay[i + n.len()..],
            None => return false,
        }
    }
    true
}

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse` (`status` is the ServingStatus).
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// A `grpc.health.v1.HealthCheckRequest { service }`, framed.
fn grpc_request(service: &str) -> Bytes {
    let msg = HealthCheckRequest {
        service: service.to_string(),
    };
    let len = prost::Message::encoded_len(&msg);
    let mut framed = Vec::with_capacity(len + 5);
    framed.push(0); // not compressed
    framed.extend_from_slice(&(len as u32).to_be_bytes());
    prost::Message::encode_raw(&msg, &mut framed);
    Bytes::from(framed)
}

/// The `status` of a framed `grpc.health.v1.HealthCheckResponse`.
pub fn grpc_serving_status(body: &[u8]) -> Result<i32, String> {
    let Some((head, rest)) = body.split_first_chunk::<5>() else {
        return Err("no gRPC message in the response".into());
    };
    if head[0] != 0 {
        return Err("compressed gRPC message (not supported)".into());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if rest.len() != len {
        return Err("malformed gRPC response (truncated, or more than one message)".into());
    }
    <HealthCheckResponse as prost::Message>::decode(rest)
        .map(|r| r.status)
        .map_err(|e| format!("malformed HealthCheckResponse: {e}"))
}

fn serving_status_name(s: i32) -> String {
    match s {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        other => format!("status {other}"),
    }
}

impl GrpcProbe {
    fn request(&self, addr: SocketAddr) -> Result<Request<Full<Bytes>>, Failure> {
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(authority_or(&self.authority, addr)?)
            .path_and_query(GRPC_PATH)
            .build()
            .map_err(|e| Failure::network(format!("request: {e}")))?;
        Request::builder()
            .method(Method::POST)
            .uri(uri)
            .version(Version::HTTP_2)
            .header(CONTENT_TYPE, "application/grpc")
            .header("te", "trailers")
            .header(USER_AGENT, HC_USER_AGENT)
            .body(Full::new(self.body.clone()))
            .map_err(|e| Failure::network(format!("request: {e}")))
    }

    async fn run(
        &self,
        addr: SocketAddr,
        reuse: bool,
        conn: &mut Option<Conn>,
    ) -> Result<(), Failure> {
        let a = exchange(conn, addr, true, reuse, MAX_GRPC_BODY, || {
            self.request(addr)
        })
        .await?;
        if a.status != StatusCode::OK {
            return Err(Failure::active(format!(
                "HTTP status {}",
                a.status.as_u16()
            )));
        }
        let grpc = |h: &HeaderMap, name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = grpc(&a.headers, CONTENT_TYPE.as_str()).unwrap_or_default();
        if !content_type.starts_with("application/grpc") {
            return Err(Failure::active(format!(
                "not a gRPC response (content-type {content_type:?})"
            )));
        }
        // Trailers, or the headers of a trailers-only response.
        let source = a.trailers.as_ref().unwrap_or(&a.headers);
        let status = grpc(source, "grpc-status").or_else(|| grpc(&a.headers, "grpc-status"));
        match status.as_deref() {
            Some("0") => {}
            Some(code) => {
                let message = grpc(source, "grpc-message").unwrap_or_default();
                return Err(Failure::active(format!("grpc-status {code} {message}")));
            }
            None => return Err(Failure::active("no grpc-status in the response")),
        }
        match grpc_serving_status(&a.body) {
            Ok(1) => Ok(()),
            Ok(other) => Err(Failure::active(serving_status_name(other))),
            Err(m) => Err(Failure::active(m)),
        }
    }
}

impl Probe {
    async fn run(
        &self,
        addr: SocketAddr,
        reuse: bool,
        conn: &mut Option<Conn>,
    ) -> Result<(), Failure> {
        match self {
            Probe::Http(p) => p.run(addr, reuse, conn).await,
            Probe::Tcp(p) => p.run(addr, reuse, conn).await,
            Probe::Grpc(p) => p.run(addr, reuse, conn).await,
        }
    }
}

// ---------------------------------------------------------------------------
// Sessions, flags and metrics.

struct Stats {
    attempt: Counter,
    success: Counter,
    failure: Counter,
    network_failure: Counter,
    healthy: Gauge,
}

impl Stats {
    fn new(cluster: &str) -> Stats {
        let c = cluster.to_string();
        Stats {
            attempt: counter!("legate_cluster_health_check_attempt_total", "cluster" => c.clone()),
            success: counter!("legate_cluster_health_check_success_total", "cluster" => c.clone()),
            failure: counter!("legate_cluster_health_check_failure_total", "cluster" => c.clone()),
            network_failure: counter!("legate_cluster_health_check_network_failure_total", "cluster" => c.clone()),
            healthy: gauge!("legate_cluster_health_check_healthy", "cluster" => c),
        }
    }
}

/// What every task of one cluster's health checking shares.
struct Shared {
    cluster: Weak<Cluster>,
    name: Arc<str>,
    stats: Stats,
    /// Serialises the count and set of the `healthy` gauge.
    gauge: Mutex<()>,
}

impl Shared {
    fn update_gauge(&self, cluster: &Cluster) {
        let _serial = self.gauge.lock().unwrap_or_else(|p| p.into_inner());
        let passing = cluster
            .endpoints()
            .all
            .iter()
            .filter(|e| e.flags() & flag::FAILED_ACTIVE_HC == 0)
            .count();
        self.stats.healthy.set(passing as f64);
    }

    /// Records check `slot`'s verdict on `ep` and sets the endpoint's flags
    /// from all its checks' verdicts; logs what changed.
    fn record(
        &self,
        ep: &Weak<Endpoint>,
        verdicts: &Mutex<Vec<Verdict>>,
        slot: usize,
        verdict: Verdict,
        why: &str,
    ) {
        let (Some(cluster), Some(ep)) = (self.cluster.upgrade(), ep.upgrade()) else {
            return;
        };
        let mut v = verdicts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(current) = v.get_mut(slot) else {
            return;
        };
        if *current == verdict {
            return;
        }
        *current = verdict;
        let failed = v.iter().any(|x| *x != Verdict::Healthy);
        let pending = v.contains(&Verdict::Pending);
        let on = if failed { flag::FAILED_ACTIVE_HC } else { 0 }
            | if pending { flag::PENDING_ACTIVE_HC } else { 0 };
        let off = (flag::FAILED_ACTIVE_HC | flag::PENDING_ACTIVE_HC) & !on;
        let before = ep.flags();
        // Under the verdicts' lock, so two checks of one endpoint cannot
        // set its flags out of order.
        if !cluster.set_flags(&ep, on, off) {
            return;
        }
        drop(v);
        let was_failed = before & flag::FAILED_ACTIVE_HC != 0;
        let (name, addr) = (&self.name, ep.addr);
        match (was_failed, failed) {
            (true, false) => {
                tracing::info!(cluster = %name, endpoint = %addr, "endpoint {addr} of cluster {name} is now healthy ({why})");
            }
            (false, true) => {
                tracing::info!(cluster = %name, endpoint = %addr, "endpoint {addr} of cluster {name} is now unhealthy ({why})");
            }
            (true, true) if before & flag::PENDING_ACTIVE_HC != 0 && !pending => {
                tracing::info!(cluster = %name, endpoint = %addr, "endpoint {addr} of cluster {name} is unhealthy (first check failed: {why})");
            }
            _ => {}
        }
        if was_failed != failed {
            self.update_gauge(&cluster);
        }
    }
}

/// Starts health checking `cluster` with `checks` (nothing without
/// checks). Called once, from [`Cluster::start_background_tasks`].
pub fn start(cluster: &Arc<Cluster>, checks: &[model::HealthCheck]) {
    if checks.is_empty() {
        return;
    }
    let mut specs = Vec::new();
    for (i, m) in checks.iter().enumerate() {
        match Spec::new(i, m, &cluster.name) {
            Ok(s) => specs.push(Arc::new(s)),
            Err(e) => {
                tracing::error!(cluster = %cluster.name, error = %e, "health check ignored");
            }
        }
    }
    let shared = Arc::new(Shared {
        cluster: Arc::downgrade(cluster),
        name: cluster.name.clone(),
        stats: Stats::new(&cluster.name),
        gauge: Mutex::new(()),
    });
    tokio::spawn(supervise(shared, specs));
}

/// Keeps one session per endpoint and check while the cluster lives.
async fn supervise(shared: Arc<Shared>, specs: Vec<Arc<Spec>>) {
    // Woken when the endpoint list changes (and ended when the cluster
    // goes): new endpoints get their sessions at once.
    let Some(mut membership) = shared.cluster.upgrade().map(|c| c.watch_membership()) else {
        return;
    };
    // Aborts every session when the supervisor ends.
    let mut tasks = JoinSet::new();
    let mut sessions: HashMap<usize, (Weak<Endpoint>, Vec<AbortHandle>)> = HashMap::new();
    let mut seen: Weak<EndpointSet> = Weak::new();
    loop {
        {
            let Some(cluster) = shared.cluster.upgrade() else {
                return;
            };
            let set = cluster.endpoints();
            let unchanged = seen.upgrade().is_some_and(|s| Arc::ptr_eq(&s, &set));
            if !unchanged {
                seen = Arc::downgrade(&set);
                let mut present = HashSet::with_capacity(set.all.len());
                let mut changed = false;
                for ep in &set.all {
                    // The map holds a Weak: the address is not reused while
                    // the entry lives.
                    let key = Arc::as_ptr(ep) as usize;
                    present.insert(key);
                    if sessions.contains_key(&key) {
                        continue;
                    }
                    changed = true;
                    if specs.is_empty() {
                        // Every check was ignored: nothing holds it back.
                        cluster.set_flags(ep, 0, flag::FAILED_ACTIVE_HC | flag::PENDING_ACTIVE_HC);
                    }
                    let verdicts = Arc::new(Mutex::new(vec![Verdict::Pending; specs.len()]));
                    let handles = specs
                        .iter()
                        .enumerate()
                        .map(|(slot, spec)| {
                            tasks.spawn(session(
                                shared.clone(),
                                spec.clone(),
                                slot,
                                Arc::downgrade(ep),
                                verdicts.clone(),
                            ))
                        })
                        .collect();
                    sessions.insert(key, (Arc::downgrade(ep), handles));
                }
                if present.len() != sessions.len() {
                    sessions.retain(|key, (_, handles)| {
                        let keep = present.contains(key);
                        if !keep {
                            handles.iter().for_each(AbortHandle::abort);
                            changed = true;
                        }
                        keep
                    });
                }
                if changed {
                    shared.update_gauge(&cluster);
                }
            }
        }
        while tasks.try_join_next().is_some() {}
        if membership.changed().await.is_err() {
            return;
        }
    }
}

/// Checks one endpoint with one check until the endpoint or the cluster
/// goes (or the supervisor aborts it).
async fn session(
    shared: Arc<Shared>,
    spec: Arc<Spec>,
    slot: usize,
    ep: Weak<Endpoint>,
    verdicts: Arc<Mutex<Vec<Verdict>>>,
) {
    let Some(addr) = ep.upgrade().map(|e| e.addr) else {
        return;
    };
    let mut rng = fastrand::Rng::new();
    let mut tracker = Tracker::new(spec.unhealthy_threshold, spec.healthy_threshold);
    let mut conn: Option<Conn> = None;
    let mut delay = spec.initial_delay(&mut rng);
    loop {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if shared.cluster.strong_count() == 0 || ep.strong_count() == 0 {
            return;
        }
        shared.stats.attempt.increment(1);
        let result =
            match tokio::time::timeout(spec.timeout, spec.probe.run(addr, spec.reuse, &mut conn))
                .await
            {
                Ok(r) => r,
                Err(_) => {
                    conn = None;
                    Err(Failure {
                        kind: FailureKind::Timeout,
                        reason: format!("timed out after {:?}", spec.timeout),
                    })
                }
            };
        let (passed, transition, why) = match &result {
            Ok(()) => {
                shared.stats.success.increment(1);
                let first = tracker.verdict() == Verdict::Pending;
                let t = tracker.success();
                let why = if first {
                    "passed its first check".to_string()
                } else {
                    format!("passed {} checks in a row", spec.healthy_threshold)
                };
                (true, t, why)
            }
            Err(f) => {
                shared.stats.failure.increment(1);
                if f.kind != FailureKind::Active {
                    shared.stats.network_failure.increment(1);
                }
                tracing::debug!(cluster = %shared.name, endpoint = %addr, reason = %f, "health check failed");
                let first = tracker.verdict() == Verdict::Pending;
                let t = tracker.failure(f.kind == FailureKind::Active);
                let why = match f.kind {
                    _ if first => f.reason.clone(),
                    FailureKind::Active => f.reason.clone(),
                    _ => format!(
                        "{} failed checks in a row, the last: {}",
                        spec.unhealthy_threshold, f.reason
                    ),
                };
                (false, t, why)
            }
        };
        if transition == Transition::Changed {
            shared.record(&ep, &verdicts, slot, tracker.verdict(), &why);
        }
        delay = spec.next_delay(passed, transition, &mut rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_result_decides_then_thresholds_apply() {
        let mut t = Tracker::new(3, 2);
        assert_eq!(t.verdict(), Verdict::Pending);
        assert_eq!(t.success(), Transition::Changed);
        assert_eq!(t.verdict(), Verdict::Healthy);
        // Network failures count up to the threshold.
        assert_eq!(t.failure(false), Transition::ChangePending);
        assert_eq!(t.failure(false), Transition::ChangePending);
        // A pass in between starts the count over.
        assert_eq!(t.success(), Transition::Unchanged);
        assert_eq!(t.failure(false), Transition::ChangePending);
        assert_eq!(t.failure(false), Transition::ChangePending);
        assert_eq!(t.failure(false), Transition::Changed);
        assert_eq!(t.verdict(), Verdict::Unhealthy);
        assert_eq!(t.failure(false), Transition::Unchanged);
        // Back after healthy_threshold passes in a row.
        assert_eq!(t.success(), Transition::ChangePending);
        assert_eq!(t.failure(false), Transition::Unchanged);
        assert_eq!(t.success(), Transition::ChangePending);
        assert_eq!(t.success(), Transition::Changed);
        assert_eq!(t.verdict(), Verdict::Healthy);
        // A bad answer makes it unhealthy at once.
        assert_eq!(t.failure(true), Transition::Changed);
        assert_eq!(t.verdict(), Verdict::Unhealthy);

        // A first failure leaves it unhealthy (no longer pending); then it
        // needs the threshold.
        let mut t = Tracker::new(1, 3);
        assert_eq!(t.failure(false), Transition::Changed);
        assert_eq!(t.verdict(), Verdict::Unhealthy);
        assert_eq!(t.success(), Transition::ChangePending);
        assert_eq!(t.success(), Transition::ChangePending);
        assert_eq!(t.success(), Transition::Changed);
        // unhealthy_threshold 1: the first network failure does it.
        assert_eq!(t.failure(false), Transition::Changed);
    }

    #[test]
    fn jitter_stays_within_envoys_bounds() {
        let mut rng = fastrand::Rng::with_seed(7);
        let ms = Duration::from_millis;
        let (mut low, mut high) = (Duration::MAX, Duration::ZERO);
        for _ in 0..2000 {
            // 100 ms + below 10 % of it + below 30 ms.
            let d = with_jitter(ms(100), ms(30), 10, &mut rng);
            assert!(d >= ms(100) && d < ms(140), "{d:?}");
            low = low.min(d);
            high = high.max(d);
        }
        assert!(low < ms(105) && high > ms(130), "{low:?}..{high:?}");
        for _ in 0..100 {
            assert_eq!(with_jitter(ms(250), Duration::ZERO, 0, &mut rng), ms(250));
            let initial = with_jitter(Duration::ZERO, ms(50), 0, &mut rng);
            assert!(initial >= ms(1) && initial < ms(50), "{initial:?}");
        }
        // Never 0 (Envoy's live-lock guard).
        assert_eq!(
            with_jitter(Duration::ZERO, Duration::ZERO, 50, &mut rng),
            ms(1)
        );
    }

    #[test]
    fn intervals_follow_the_transition() {
        let m: model::HealthCheck = spec_model();
        let spec = Spec::new(0, &m, "c").unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        let ms = Duration::from_millis;
        // unhealthy_edge_interval defaults to unhealthy_interval.
        for (healthy, transition, delay) in [
            (true, Transition::Unchanged, 100),
            (true, Transition::Changed, 100),
            (true, Transition::ChangePending, 30),
            (false, Transition::Unchanged, 500),
            (false, Transition::Changed, 500),
            (false, Transition::ChangePending, 500),
        ] {
            assert_eq!(
                spec.next_delay(healthy, transition, &mut rng),
                ms(delay),
                "healthy {healthy}, {transition:?}"
            );
        }
        assert_eq!(spec.initial_delay(&mut rng), Duration::ZERO);
    }

    fn spec_model() -> model::HealthCheck {
        let text = r#"{"timeout":"1s","interval":"100ms","unhealthy_interval":"500ms","healthy_edge_interval":"30ms","http":{"path":"/healthz"}}"#;
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn payloads_match_in_order() {
        let n = |s: &str| s.as_bytes().to_vec();
        assert!(contains_in_order(b"+OK hello PONG", &[n("OK"), n("PONG")]));
        assert!(!contains_in_order(b"PONG +OK", &[n("OK"), n("PONG")]));
        assert!(contains_in_order(b"anything", &[]));
        assert!(!contains_in_order(b"PO", &[n("PONG")]));
    }

    #[test]
    fn grpc_messages_by_hand() {
        assert_eq!(&grpc_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &grpc_request("svc")[..],
            &[0, 0, 0, 0, 5, 0x0a, 3, b's', b'v', b'c']
        );
        assert_eq!(grpc_serving_status(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(1));
        assert_eq!(grpc_serving_status(&[0, 0, 0, 0, 2, 0x08, 2]), Ok(2));
        // Empty message: UNKNOWN; unknown fields are skipped.
        assert_eq!(grpc_serving_status(&[0, 0, 0, 0, 0]), Ok(0));
        assert_eq!(
            grpc_serving_status(&[0, 0, 0, 0, 6, 0x12, 2, b'h', b'i', 0x08, 1]),
            Ok(1)
        );
        assert!(grpc_serving_status(&[0, 0, 0, 0, 3, 0x08, 1]).is_err());
        assert!(grpc_serving_status(&[1, 0, 0, 0, 2, 0x08, 1]).is_err());
        assert!(grpc_serving_status(&[]).is_err());
    }
}
