//! Active health checks against real upstreams on loopback: an HTTP check
//! that takes an endpoint out when its /healthz fails and back after
//! `healthy_threshold` passes; TCP checks against a listener that closes
//! and reopens, and a payload exchange; gRPC `grpc.health.v1.Health/Check`
//! against a small HTTP/2 server; `expected_statuses`; a new endpoint that
//! gets no traffic before its first pass; the proxy's counters.

mod common;

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const INTERVAL: Duration = Duration::from_millis(50);
/// What loopback and a busy 2-core machine may add to a deadline.
const SLACK: Duration = Duration::from_millis(2000);

/// What one health check request looked like.
#[derive(Clone, Debug, Default)]
struct Seen {
    user_agent: String,
    /// `Host`, or the HTTP/2 `:authority`.
    host: String,
    probe: String,
    version: String,
}

#[derive(Default)]
struct State {
    /// The status `GET /healthz` answers.
    health: AtomicU16,
    /// The gRPC serving status answered (1 SERVING, 2 NOT_SERVING).
    grpc: AtomicU8,
    /// Health check requests (HTTP or gRPC) answered.
    checks: AtomicUsize,
    /// The connections they came on.
    check_conns: Mutex<HashSet<usize>>,
    last_check: Mutex<Seen>,
    grpc_services: Mutex<Vec<String>>,
    /// Other requests answered (proxied traffic).
    served: AtomicUsize,
}

/// An HTTP/1.1 + HTTP/2 upstream with a switchable `/healthz`, a gRPC
/// health service and a listener that can close and open again on the
/// same port. Other paths answer 200 with `x-upstream: name`.
struct HcUpstream {
    addr: SocketAddr,
    name: &'static str,
    state: Arc<State>,
    /// While true, `/healthz` waits.
    hold: watch::Sender<bool>,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl HcUpstream {
    async fn start(name: &'static str) -> HcUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        state.health.store(200, Ordering::SeqCst);
        state.grpc.store(1, Ordering::SeqCst);
        let (hold, _) = watch::channel(false);
        let up = HcUpstream {
            addr,
            name,
            state,
            hold,
            accept: Mutex::new(None),
        };
        up.serve(listener);
        up
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (name, state, hold) = (self.name, self.state.clone(), self.hold.clone());
        let next_conn = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let conn = next_conn.fetch_add(1, Ordering::SeqCst);
                let (state, hold) = (state.clone(), hold.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        answer(name, conn, state.clone(), hold.subscribe(), req)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        *self.accept.lock().unwrap() = Some(task);
    }

    /// Stops listening: connecting is refused (open connections stay).
    async fn close(&self) {
        let task = self.accept.lock().unwrap().take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same port.
    async fn reopen(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn set_health(&self, status: u16) {
        self.state.health.store(status, Ordering::SeqCst);
    }

    fn checks(&self) -> usize {
        self.state.checks.load(Ordering::SeqCst)
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn answer(
    name: &'static str,
    conn: usize,
    state: Arc<State>,
    mut hold: watch::Receiver<bool>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let path = req.uri().path().to_string();
    if path != "/healthz" && path != "/grpc.health.v1.Health/Check" {
        state.served.fetch_add(1, Ordering::SeqCst);
        let mut r = Response::new(Full::new(Bytes::from_static(b"ok")).boxed());
        r.headers_mut()
            .insert("x-upstream", http::HeaderValue::from_static(name));
        return Ok(r);
    }
    let seen = Seen {
        user_agent: header("user-agent"),
        host: req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_else(|| header("host")),
        probe: header("x-probe"),
        version: format!("{:?}", req.version()),
    };
    *state.last_check.lock().unwrap() = seen;
    state.check_conns.lock().unwrap().insert(conn);
    if path == "/healthz" {
        let _ = hold.wait_for(|held| !*held).await;
        // Read before counting: a check counted is one whose answer is set.
        let status = state.health.load(Ordering::SeqCst);
        state.checks.fetch_add(1, Ordering::SeqCst);
        let mut r = Response::new(Full::new(Bytes::from_static(b"health\n")).boxed());
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        return Ok(r);
    }
    // grpc.health.v1.Health/Check: HealthCheckRequest { string service = 1 }.
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let service = match body.get(5..) {
        Some([0x0a, len, rest @ ..]) if rest.len() == *len as usize => {
            String::from_utf8_lossy(rest).into_owned()
        }
        _ => String::new(),
    };
    state.grpc_services.lock().unwrap().push(service);
    let status = state.grpc.load(Ordering::SeqCst);
    state.checks.fetch_add(1, Ordering::SeqCst);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let message = Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]);
    let body = Full::new(message)
        .with_trailers(std::future::ready(Some(Ok(trailers))))
        .boxed();
    let mut r = Response::new(body);
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc"),
    );
    Ok(r)
}

/// `cluster`'s endpoint `addr` health flags, as `/clusters` shows them.
async fn flags(p: &legate::RunningProxy, cluster: &str, addr: SocketAddr) -> String {
    let text = admin_get(p, "/clusters").await.text();
    let key = format!("{cluster}::{addr}::health_flags::");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or("(absent)")
        .to_string()
}

/// Polls `f` until it holds, failing after `limit`; returns how long it
/// took.
async fn until<F, Fut>(limit: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!("not within {limit:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_flags(
    p: &legate::RunningProxy,
    cluster: &str,
    addr: SocketAddr,
    want: &str,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let now = flags(p, cluster, addr).await;
        if now == want {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!("{cluster}::{addr}: flags {now:?}, not {want:?} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `n` requests through `addr`; counts answers per upstream.
async fn spread(addr: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let r = get(addr, "x", "/work", &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let name = r.header("x-upstream").unwrap_or("?").to_string();
        *out.entry(name).or_default() += 1;
    }
    out
}

async fn stat(p: &legate::RunningProxy, cluster: &str, name: &str) -> f64 {
    metric(p, name, &[("cluster", cluster)])
        .await
        .unwrap_or(0.0)
}

fn eps(ups: &[&HcUpstream]) -> String {
    let list: Vec<String> = ups
        .iter()
        .map(|u| format!("{{ address: \"{}\" }}", u.addr))
        .collect();
    list.join(", ")
}

/// One health-checked cluster `name` over `ups` (balancing panic off, so
/// only healthy endpoints get traffic) with the check `check` (YAML flow
/// mapping fields after `interval: 50ms`; 1 s timeout unless given).
fn hc_cluster(name: &str, ups: &[&HcUpstream], check: &str) -> String {
    format!(
        "  - name: {name}\n    healthy_panic_threshold: 0\n    endpoints: [{}]\n    health_checks:\n      - {{ interval: 50ms, {timeout}{check} }}\n",
        eps(ups),
        timeout = if check.contains("timeout:") {
            ""
        } else {
            "timeout: 1s, "
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_takes_a_failing_endpoint_out_and_back() {
    let a = HcUpstream::start("a").await;
    let b = HcUpstream::start("b").await;
    let cluster = hc_cluster(
        "hc-http",
        &[&a, &b],
        "unhealthy_threshold: 3, healthy_threshold: 2, http: { path: /healthz, request_headers_to_add: [{ name: x-probe, value: legate }] }",
    );
    let p = proxy(&catch_all("hc-http", "", &cluster), &[]).await;
    let addr = p.listener_addr("web").unwrap();
    let limit = INTERVAL * 3 + SLACK;
    wait_flags(&p, "hc-http", a.addr, "healthy", limit).await;
    wait_flags(&p, "hc-http", b.addr, "healthy", limit).await;
    assert_eq!(
        stat(&p, "hc-http", "legate_cluster_health_check_healthy").await,
        2.0
    );
    let both = spread(addr, 20).await;
    assert_eq!(both.len(), 2, "both endpoints serve: {both:?}");

    // What a check looks like: GET /healthz, Host the cluster's name,
    // Legate's user agent, the configured header, over one keep-alive
    // connection.
    let seen = b.state.last_check.lock().unwrap().clone();
    assert_eq!(seen.user_agent, "Legate/HC");
    assert_eq!(seen.host, "hc-http");
    assert_eq!(seen.probe, "legate");
    assert_eq!(seen.version, "HTTP/1.1");
    until(SLACK, "a few checks", || async { b.checks() >= 5 }).await;
    assert_eq!(
        b.state.check_conns.lock().unwrap().len(),
        1,
        "checks reuse their connection"
    );

    // b fails its checks: out at once (a status outside expected_statuses
    // is not retriable), well within interval × unhealthy_threshold.
    b.set_health(503);
    let took = wait_flags(&p, "hc-http", b.addr, "/failed_active_hc", limit).await;
    assert!(took <= limit, "{took:?}");
    let only_a = spread(addr, 30).await;
    assert_eq!(only_a.get("a"), Some(&30), "{only_a:?}");
    assert_eq!(
        stat(&p, "hc-http", "legate_cluster_health_check_healthy").await,
        1.0
    );

    // Back after healthy_threshold passes in a row (not one).
    let before = b.checks();
    b.set_health(200);
    wait_flags(&p, "hc-http", b.addr, "healthy", INTERVAL * 2 + SLACK).await;
    assert!(
        b.checks() >= before + 2,
        "healthy again after {} checks",
        b.checks() - before
    );
    until(SLACK, "traffic reaches b again", || async {
        spread(addr, 10).await.contains_key("b")
    })
    .await;

    // The counters moved; they are described.
    let attempts = stat(&p, "hc-http", "legate_cluster_health_check_attempt_total").await;
    let successes = stat(&p, "hc-http", "legate_cluster_health_check_success_total").await;
    let failures = stat(&p, "hc-http", "legate_cluster_health_check_failure_total").await;
    assert!(failures >= 1.0, "failures {failures}");
    assert!(successes >= 10.0, "successes {successes}");
    assert!(attempts >= successes + failures, "attempts {attempts}");
    assert_eq!(
        stat(
            &p,
            "hc-http",
            "legate_cluster_health_check_network_failure_total"
        )
        .await,
        0.0
    );
    assert_eq!(
        stat(&p, "hc-http", "legate_cluster_health_check_healthy").await,
        2.0
    );
    let text = admin_get(&p, "/stats/prometheus").await.text();
    for name in [
        "legate_cluster_health_check_attempt_total",
        "legate_cluster_health_check_success_total",
        "legate_cluster_health_check_failure_total",
        "legate_cluster_health_check_network_failure_total",
        "legate_cluster_health_check_healthy",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} is not described"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_check_follows_the_listener() {
    let a = HcUpstream::start("a").await;
    let b = HcUpstream::start("b").await;
    let c = HcUpstream::start("c").await;
    let clusters = format!(
        "{}{}",
        hc_cluster(
            "hc-tcp",
            &[&a, &b],
            "unhealthy_threshold: 2, healthy_threshold: 2, tcp: {}"
        ),
        // A payload exchange: an HTTP request by hand, "200 OK" expected.
        hc_cluster(
            "hc-tcp-payload",
            &[&c],
            "unhealthy_threshold: 1, healthy_threshold: 1, tcp: { send: { text: \"GET /healthz HTTP/1.1\\r\\nHost: c\\r\\n\\r\\n\" }, receive: [{ text: \"HTTP/1.1 \" }, { hex: \"323030204f4b\" }] }"
        ),
    );
    let p = proxy(&catch_all("hc-tcp", "", &clusters), &[]).await;
    let addr = p.listener_addr("web").unwrap();
    let limit = INTERVAL * 2 + SLACK;
    wait_flags(&p, "hc-tcp", a.addr, "healthy", limit).await;
    wait_flags(&p, "hc-tcp", b.addr, "healthy", limit).await;
    wait_flags(&p, "hc-tcp-payload", c.addr, "healthy", limit).await;
    assert_eq!(spread(addr, 20).await.len(), 2);

    // b stops listening: connection refused, twice in a row, and it is out.
    b.close().await;
    wait_flags(&p, "hc-tcp", b.addr, "/failed_active_hc", limit).await;
    let only_a = spread(addr, 20).await;
    assert_eq!(only_a.get("a"), Some(&20), "{only_a:?}");
    assert!(
        stat(
            &p,
            "hc-tcp",
            "legate_cluster_health_check_network_failure_total"
        )
        .await
            >= 2.0
    );
    b.reopen().await;
    wait_flags(&p, "hc-tcp", b.addr, "healthy", limit).await;
    until(SLACK, "traffic reaches b again", || async {
        spread(addr, 10).await.contains_key("b")
    })
    .await;

    // The payload check fails when the reply is not the expected one.
    c.set_health(503);
    wait_flags(&p, "hc-tcp-payload", c.addr, "/failed_active_hc", limit).await;
    c.set_health(200);
    wait_flags(&p, "hc-tcp-payload", c.addr, "healthy", limit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_check_wants_serving() {
    let a = HcUpstream::start("a").await;
    let b = HcUpstream::start("b").await;
    b.state.grpc.store(2, Ordering::SeqCst); // NOT_SERVING
    let cluster = hc_cluster(
        "hc-grpc",
        &[&a, &b],
        "unhealthy_threshold: 3, healthy_threshold: 2, grpc: { service_name: pay.v1.Payments }",
    );
    let p = proxy(&catch_all("hc-grpc", "", &cluster), &[]).await;
    let addr = p.listener_addr("web").unwrap();
    let limit = INTERVAL * 2 + SLACK;
    wait_flags(&p, "hc-grpc", a.addr, "healthy", limit).await;
    wait_flags(&p, "hc-grpc", b.addr, "/failed_active_hc", limit).await;
    let only_a = spread(addr, 20).await;
    assert_eq!(only_a.get("a"), Some(&20), "{only_a:?}");
    let seen = a.state.last_check.lock().unwrap().clone();
    assert_eq!(seen.version, "HTTP/2.0");
    assert_eq!(seen.host, "hc-grpc", ":authority is the cluster's name");
    assert_eq!(seen.user_agent, "Legate/HC");
    assert!(
        a.state
            .grpc_services
            .lock()
            .unwrap()
            .iter()
            .all(|s| s == "pay.v1.Payments")
    );
    // One HTTP/2 connection for every check.
    until(SLACK, "a few checks", || async { a.checks() >= 5 }).await;
    assert_eq!(a.state.check_conns.lock().unwrap().len(), 1);

    b.state.grpc.store(1, Ordering::SeqCst);
    wait_flags(&p, "hc-grpc", b.addr, "healthy", limit).await;
    a.state.grpc.store(2, Ordering::SeqCst);
    wait_flags(&p, "hc-grpc", a.addr, "/failed_active_hc", limit).await;
    let only_b = spread(addr, 20).await;
    assert_eq!(only_b.get("b"), Some(&20), "{only_b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_statuses_decide() {
    let ok = HcUpstream::start("ok").await;
    let teapot = HcUpstream::start("teapot").await;
    let no_content = HcUpstream::start("no-content").await;
    let reset = HcUpstream::start("reset").await;
    teapot.set_health(418);
    no_content.set_health(204);
    reset.set_health(205);
    let all = [&ok, &teapot, &no_content, &reset];
    let clusters = format!(
        "{}{}",
        hc_cluster(
            "hc-statuses",
            &all,
            "http: { path: /healthz, expected_statuses: [{ start: 200, end: 205 }, { start: 418, end: 419 }] }"
        ),
        // Default: 200 only; over HTTP/2 this time.
        hc_cluster(
            "hc-default",
            &all,
            "http: { path: /healthz, codec: http2, host: health.internal }"
        ),
    );
    let p = proxy(&catch_all("hc-statuses", "", &clusters), &[]).await;
    let limit = INTERVAL * 2 + SLACK;
    for (up, want) in [
        (&ok, "healthy"),
        (&teapot, "healthy"),
        (&no_content, "healthy"),
        (&reset, "/failed_active_hc"),
    ] {
        wait_flags(&p, "hc-statuses", up.addr, want, limit).await;
    }
    for (up, want) in [
        (&ok, "healthy"),
        (&teapot, "/failed_active_hc"),
        (&no_content, "/failed_active_hc"),
        (&reset, "/failed_active_hc"),
    ] {
        wait_flags(&p, "hc-default", up.addr, want, limit).await;
    }
    until(
        SLACK,
        "an HTTP/2 check with the configured host",
        || async {
            let s = ok.state.last_check.lock().unwrap().clone();
            s.version == "HTTP/2.0" && s.host == "health.internal"
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_endpoint_waits_for_its_first_pass() {
    let a = HcUpstream::start("a").await;
    let b = HcUpstream::start("b").await;
    let config = |ups: &[&HcUpstream]| {
        let yaml = format!(
            "admin: {{ address: \"127.0.0.1:0\" }}\n{}",
            catch_all(
                "hc-late",
                "",
                &hc_cluster(
                    "hc-late",
                    ups,
                    "unhealthy_threshold: 2, healthy_threshold: 100, timeout: 10s, http: { path: /healthz }",
                ),
            )
        );
        legate_xds::parse_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    };
    let p = legate::start(config(&[&a])).await.unwrap();
    let addr = p.listener_addr("web").unwrap();
    let limit = INTERVAL * 2 + SLACK;
    wait_flags(&p, "hc-late", a.addr, "healthy", limit).await;

    // b's /healthz does not answer yet: b is pending its first check.
    b.hold.send_replace(true);
    p.update(config(&[&a, &b])).unwrap();
    wait_flags(
        &p,
        "hc-late",
        b.addr,
        "/failed_active_hc/pending_active_hc",
        limit,
    )
    .await;
    until(SLACK, "b's first check is in flight", || async {
        !b.state.check_conns.lock().unwrap().is_empty()
    })
    .await;
    let only_a = spread(addr, 30).await;
    assert_eq!(only_a.get("a"), Some(&30), "{only_a:?}");
    assert_eq!(b.state.served.load(Ordering::SeqCst), 0);

    // Its first pass makes it healthy at once: 100 passes in a row
    // (healthy_threshold) would take 5 s.
    b.hold.send_replace(false);
    wait_flags(&p, "hc-late", b.addr, "healthy", limit).await;
    assert!(b.checks() < 10, "healthy after {} checks", b.checks());
    until(SLACK, "traffic reaches b", || async {
        spread(addr, 10).await.contains_key("b")
    })
    .await;

    // Removed, it is no longer checked.
    p.update(config(&[&a])).unwrap();
    until(SLACK, "b leaves /clusters", || async {
        flags(&p, "hc-late", b.addr).await == "(absent)"
    })
    .await;
    tokio::time::sleep(INTERVAL * 2).await;
    let after = b.checks();
    tokio::time::sleep(INTERVAL * 4).await;
    assert_eq!(b.checks(), after, "a removed endpoint is still checked");
}
