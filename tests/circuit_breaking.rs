//! Circuit breaking against real upstreams on loopback: requests held open
//! by a gated upstream fill each limit; the requests over it fail fast
//! with 503, `x-envoy-overloaded: true` and flag UO, exactly as many as
//! the limit says, and the proxy's counters and gauges agree.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// An upstream (HTTP/1 and HTTP/2) that holds every request until the test
/// opens the gate; counts requests in flight and connections accepted.
struct Gated {
    addr: SocketAddr,
    gate: Arc<Semaphore>,
    in_flight: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl Gated {
    fn open(&self) {
        self.gate.add_permits(10_000);
    }
}

async fn gated() -> Gated {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let (g, f, c) = (gate.clone(), in_flight.clone(), connections.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let (g, f) = (g.clone(), f.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let (g, f) = (g.clone(), f.clone());
                    async move {
                        f.fetch_add(1, Ordering::SeqCst);
                        let permit = g.acquire().await;
                        drop(permit);
                        f.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Gated {
        addr,
        gate,
        in_flight,
        connections,
    }
}

/// A proxy with one route to cluster `name` (endpoint `up`) whose cluster
/// YAML carries `cluster_extra` (flow style, after the endpoints).
async fn breaker_proxy(
    name: &str,
    up: SocketAddr,
    route_extra: &str,
    cluster_extra: &str,
) -> (legate::RunningProxy, SocketAddr) {
    one_vhost(
        name,
        "",
        &format!(
            "              - {{ match: {{ prefix: / }}, route: {{ cluster: {name}{route_extra} }} }}"
        ),
        &format!(
            "  - {{ name: {name}, endpoints: [{{ address: \"{up}\" }}]{cluster_extra} }}"
        ),
    )
    .await
}

async fn overflow(p: &legate::RunningProxy, cluster: &str, priority: &str, resource: &str) -> f64 {
    metric(
        p,
        "legate_cluster_circuit_breakers_overflow_total",
        &[
            ("cluster", cluster),
            ("priority", priority),
            ("resource", resource),
        ],
    )
    .await
    .unwrap_or(0.0)
}

async fn remaining(p: &legate::RunningProxy, cluster: &str, resource: &str) -> Option<f64> {
    metric(
        p,
        "legate_cluster_circuit_breakers_remaining",
        &[
            ("cluster", cluster),
            ("priority", "default"),
            ("resource", resource),
        ],
    )
    .await
}

fn spawn_get(addr: SocketAddr) -> tokio::task::JoinHandle<Resp> {
    tokio::spawn(async move { get(addr, "x", "/", &[]).await })
}

fn is_overload(r: &Resp) -> bool {
    r.status == 503 && r.header("x-envoy-overloaded") == Some("true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_limit_fails_exactly_the_requests_over_it() {
    let up = gated().await;
    let name = "cb-requests";
    let (p, addr) = breaker_proxy(
        name,
        up.addr,
        "",
        ", circuit_breakers: { default: { max_requests: 5 } }",
    )
    .await;
    assert_eq!(remaining(&p, name, "requests").await, Some(5.0));
    let held: Vec<_> = (0..5).map(|_| spawn_get(addr)).collect();
    eventually("5 requests held by the upstream", || async {
        up.in_flight.load(Ordering::SeqCst) == 5
    })
    .await;
    assert_eq!(remaining(&p, name, "requests").await, Some(0.0));
    // Over the limit: each fails at once, none reaches the upstream.
    for _ in 0..3 {
        let r = get(addr, "x", "/", &[]).await;
        assert!(is_overload(&r), "{} {:?}", r.status, r.text());
        assert_eq!(
            r.text(),
            "upstream connect error or disconnect/reset before headers. reset reason: overflow"
        );
    }
    assert_eq!(up.in_flight.load(Ordering::SeqCst), 5);
    up.open();
    for h in held {
        let r = h.await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    }
    assert_eq!(overflow(&p, name, "default", "requests").await, 3.0);
    let uo = metric(
        &p,
        "legate_http_response_flags_total",
        &[("listener", name), ("flag", "UO")],
    )
    .await;
    assert_eq!(uo, Some(3.0));
    // Capacity comes back.
    assert_eq!(get(addr, "x", "/", &[]).await.status, 200);
    assert_eq!(remaining(&p, name, "requests").await, Some(5.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_requests_wait_within_the_pending_limit() {
    // Istio's classic demo: one connection, one pending request.
    let up = gated().await;
    let name = "cb-pending";
    let (p, addr) = breaker_proxy(
        name,
        up.addr,
        "",
        ", circuit_breakers: { default: { max_connections: 1, max_pending_requests: 1 } }",
    )
    .await;
    let first = spawn_get(addr);
    eventually("the first request upstream", || async {
        up.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    // The second waits for the one connection; the third finds the
    // pending slot taken.
    let second = spawn_get(addr);
    eventually("the second request pending", || async {
        remaining(&p, name, "pending_requests").await == Some(0.0)
    })
    .await;
    let third = get(addr, "x", "/", &[]).await;
    assert!(is_overload(&third), "{}", third.status);
    up.open();
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(second.await.unwrap().status, 200);
    // Both went over the one connection.
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    assert_eq!(overflow(&p, name, "default", "pending_requests").await, 1.0);
    assert_eq!(overflow(&p, name, "default", "requests").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_over_the_limit_wait_as_pending_requests() {
    let up = gated().await;
    let name = "cb-h2";
    let (p, addr) = breaker_proxy(
        name,
        up.addr,
        "",
        ", protocol: http2, http2_max_concurrent_streams: 2, circuit_breakers: { default: { max_pending_requests: 2 } }",
    )
    .await;
    let mut held: Vec<_> = (0..2).map(|_| spawn_get(addr)).collect();
    eventually("two streams upstream", || async {
        up.in_flight.load(Ordering::SeqCst) == 2
    })
    .await;
    held.extend((0..2).map(|_| spawn_get(addr)));
    eventually("two requests pending", || async {
        remaining(&p, name, "pending_requests").await == Some(0.0)
    })
    .await;
    let over = get(addr, "x", "/", &[]).await;
    assert!(is_overload(&over), "{}", over.status);
    up.open();
    for h in held {
        assert_eq!(h.await.unwrap().status, 200);
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    assert_eq!(overflow(&p, name, "default", "pending_requests").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_priority_has_its_own_limits() {
    let up = gated().await;
    let name = "cb-priority";
    let (p, addr) = one_vhost(
        name,
        "",
        &format!(
            "              - {{ match: {{ prefix: /high }}, route: {{ cluster: {name}, priority: high }} }}\n              - {{ match: {{ prefix: / }}, route: {{ cluster: {name} }} }}"
        ),
        &format!(
            "  - {{ name: {name}, endpoints: [{{ address: \"{}\" }}], circuit_breakers: {{ default: {{ max_requests: 1 }}, high: {{ max_requests: 2 }} }} }}",
            up.addr
        ),
    )
    .await;
    let low = spawn_get(addr);
    eventually("the default-priority request upstream", || async {
        up.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(is_overload(&get(addr, "x", "/", &[]).await));
    let high: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get(addr, "x", "/high", &[]).await }))
        .collect();
    eventually("two high-priority requests upstream", || async {
        up.in_flight.load(Ordering::SeqCst) == 3
    })
    .await;
    assert!(is_overload(&get(addr, "x", "/high", &[]).await));
    up.open();
    assert_eq!(low.await.unwrap().status, 200);
    for h in high {
        assert_eq!(h.await.unwrap().status, 200);
    }
    assert_eq!(overflow(&p, name, "default", "requests").await, 1.0);
    assert_eq!(overflow(&p, name, "high", "requests").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_retry_limit_refuses_retries_over_it() {
    // An upstream that always answers 503.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    s.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let mut r = Response::new(Full::new(Bytes::from_static(b"down")));
                        *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let name = "cb-retries";
    let (p, addr) = breaker_proxy(
        name,
        up,
        ", retry: { retry_on: [5xx], num_retries: 3 }",
        ", circuit_breakers: { default: { max_retries: 0 } }",
    )
    .await;
    for _ in 0..4 {
        let r = get(addr, "x", "/", &[]).await;
        // The upstream's own answer: the request was not overloaded.
        assert_eq!((r.status, r.text().as_str()), (503, "down"));
        assert_eq!(r.header("x-envoy-overloaded"), None);
    }
    assert_eq!(seen.load(Ordering::SeqCst), 4);
    assert_eq!(overflow(&p, name, "default", "retries").await, 4.0);
    assert_eq!(
        metric(
            &p,
            "legate_cluster_upstream_rq_retry_overflow_total",
            &[("cluster", name)]
        )
        .await,
        Some(4.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_proxy_closes_connections_over_the_limit() {
    // An echo upstream.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let p = proxy(
        &format!(
            r#"
listeners:
  - name: cb-tcp
    address: "127.0.0.1:0"
    tcp: {{ cluster: cb-tcp }}
clusters:
  - {{ name: cb-tcp, endpoints: [{{ address: "{up}" }}], circuit_breakers: {{ default: {{ max_connections: 1 }} }} }}
"#
        ),
        &[],
    )
    .await;
    let addr = p.listener_addr("cb-tcp").unwrap();
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    first.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    first.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    // The second is closed without reaching the upstream.
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = second.write_all(b"ping").await;
    let mut rest = Vec::new();
    let n = second.read_to_end(&mut rest).await.unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(overflow(&p, "cb-tcp", "default", "connections").await, 1.0);
    // Once the first closes, a new connection gets through.
    drop(first);
    eventually("a connection after the first closed", || async {
        let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
            return false;
        };
        let mut buf = [0u8; 4];
        s.write_all(b"pong").await.is_ok()
            && s.read_exact(&mut buf).await.is_ok()
            && &buf == b"pong"
    })
    .await;
}
