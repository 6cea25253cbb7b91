//! Outlier detection and the panic threshold against real upstreams on
//! loopback: endpoints that fail in a row (5xx, refused connections) are
//! ejected after exactly N failures and come back after their time (longer
//! each time); the ejection limit holds; success-rate outliers go; under
//! the panic threshold every endpoint takes traffic.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// An upstream answering `x-upstream: name`; with 503 while `failing`,
/// or, with `every_other`, 500 to every second request.
struct Up {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

async fn up(name: &'static str, failing: bool, every_other: bool) -> Up {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(AtomicBool::new(failing));
    let (r, f) = (requests.clone(), fail.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (r, f) = (r.clone(), f.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let n = r.fetch_add(1, Ordering::SeqCst) + 1;
                    let status = if f.load(Ordering::SeqCst) {
                        503
                    } else if every_other && n % 2 == 0 {
                        500
                    } else {
                        200
                    };
                    async move {
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"x")));
                        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        resp.headers_mut()
                            .insert("x-upstream", http::HeaderValue::from_static(name));
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Up {
        addr,
        requests,
        failing: fail,
    }
}

async fn cluster_proxy(
    name: &str,
    eps: &[SocketAddr],
    extra: &str,
) -> (legate::RunningProxy, SocketAddr) {
    let eps: Vec<String> = eps
        .iter()
        .map(|a| format!("{{ address: \"{a}\" }}"))
        .collect();
    one_vhost(
        name,
        "",
        &format!("              - {{ match: {{ prefix: / }}, route: {{ cluster: {name} }} }}"),
        &format!(
            "  - {{ name: {name}, connect_timeout: 1s, endpoints: [{}]{extra} }}",
            eps.join(", ")
        ),
    )
    .await
}

/// The `/clusters` health flags of `addr` in `cluster`.
async fn health(p: &legate::RunningProxy, cluster: &str, addr: SocketAddr) -> String {
    let text = admin_get(p, "/clusters").await.text();
    let key = format!("{cluster}::{addr}::health_flags::");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or("")
        .to_string()
}

async fn ejected(p: &legate::RunningProxy, cluster: &str, addr: SocketAddr) -> bool {
    health(p, cluster, addr)
        .await
        .contains("/failed_outlier_check")
}

async fn enforced(p: &legate::RunningProxy, cluster: &str, kind: &str) -> f64 {
    metric(
        p,
        "legate_cluster_outlier_detection_ejections_enforced_total",
        &[("cluster", cluster), ("type", kind)],
    )
    .await
    .unwrap_or(0.0)
}

/// Ejections `max_ejection_percent` did not allow.
async fn overflowed(p: &legate::RunningProxy, cluster: &str) -> f64 {
    metric(
        p,
        "legate_cluster_outlier_detection_ejections_overflow_total",
        &[("cluster", cluster)],
    )
    .await
    .unwrap_or(0.0)
}

/// Waits until `addr` is ejected, then until it returns; the time between.
async fn ejection_time(p: &legate::RunningProxy, cluster: &str, addr: SocketAddr) -> Duration {
    eventually("the endpoint ejected", || ejected(p, cluster, addr)).await;
    let from = Instant::now();
    eventually("the endpoint back", || async {
        !ejected(p, cluster, addr).await
    })
    .await;
    from.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_5xx_eject_an_endpoint_until_its_time_is_up() {
    let bad = up("bad", true, false).await;
    let good = up("good", false, false).await;
    let name = "od-5xx";
    let (p, addr) = cluster_proxy(
        name,
        &[bad.addr, good.addr],
        ", outlier_detection: { consecutive_5xx: 3, interval: 50ms, base_ejection_time: 600ms, max_ejection_percent: 50 }",
    )
    .await;
    // Round robin: the bad endpoint gets every other request until its
    // third 503 in a row ejects it; then the good one takes everything.
    let mut failed = 0;
    for _ in 0..30 {
        if get(addr, "x", "/", &[]).await.status != 200 {
            failed += 1;
        }
    }
    assert_eq!(failed, 3);
    assert_eq!(bad.requests.load(Ordering::SeqCst), 3);
    assert!(ejected(&p, name, bad.addr).await);
    assert_eq!(enforced(&p, name, "consecutive_5xx").await, 1.0);
    assert_eq!(
        metric(
            &p,
            "legate_cluster_outlier_detection_ejections_active",
            &[("cluster", name)]
        )
        .await,
        Some(1.0)
    );
    // It comes back after base_ejection_time (checked every interval).
    bad.failing.store(false, Ordering::SeqCst);
    let first = ejection_time(&p, name, bad.addr).await;
    assert!(first >= Duration::from_millis(500), "{first:?}");
    eventually("traffic back on the returned endpoint", || async {
        get(addr, "x", "/", &[]).await.header("x-upstream") == Some("bad")
    })
    .await;
    // Failing again at once: ejected for twice as long.
    bad.failing.store(true, Ordering::SeqCst);
    let before = bad.requests.load(Ordering::SeqCst);
    for _ in 0..12 {
        get(addr, "x", "/", &[]).await;
    }
    assert_eq!(bad.requests.load(Ordering::SeqCst) - before, 3);
    bad.failing.store(false, Ordering::SeqCst);
    let second = ejection_time(&p, name, bad.addr).await;
    assert!(second >= Duration::from_millis(1100), "{second:?}");
    assert_eq!(enforced(&p, name, "consecutive_5xx").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_count_as_failures_or_local_origin_ones() {
    let good = up("good", false, false).await;
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // Not split: a refused connection is a 503 to outlier detection.
    let name = "od-connect";
    let (p, addr) = cluster_proxy(
        name,
        &[refused, good.addr],
        ", outlier_detection: { consecutive_5xx: 2, interval: 1s, base_ejection_time: 30s, max_ejection_percent: 50 }",
    )
    .await;
    let mut failed = 0;
    for _ in 0..20 {
        if get(addr, "x", "/", &[]).await.status != 200 {
            failed += 1;
        }
    }
    assert_eq!(failed, 2);
    assert_eq!(enforced(&p, name, "consecutive_5xx").await, 1.0);
    // Split: counted apart, by consecutive_local_origin_failure.
    let name = "od-split";
    let (p, addr) = cluster_proxy(
        name,
        &[refused, good.addr],
        ", outlier_detection: { split_external_local_origin_errors: true, consecutive_local_origin_failure: 3, consecutive_5xx: 1, interval: 1s, base_ejection_time: 30s, max_ejection_percent: 50 }",
    )
    .await;
    let mut failed = 0;
    for _ in 0..20 {
        if get(addr, "x", "/", &[]).await.status != 200 {
            failed += 1;
        }
    }
    assert_eq!(failed, 3);
    assert_eq!(
        enforced(&p, name, "consecutive_local_origin_failure").await,
        1.0
    );
    assert_eq!(enforced(&p, name, "consecutive_5xx").await, 0.0);
    assert!(ejected(&p, name, refused).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_max_ejection_percent_is_ejected() {
    let bad: Vec<Up> = vec![
        up("bad", true, false).await,
        up("bad", true, false).await,
        up("bad", true, false).await,
    ];
    let good = up("good", false, false).await;
    let name = "od-max";
    let mut eps: Vec<SocketAddr> = bad.iter().map(|u| u.addr).collect();
    eps.push(good.addr);
    let (p, addr) = cluster_proxy(
        name,
        &eps,
        ", outlier_detection: { consecutive_5xx: 2, interval: 1s, base_ejection_time: 30s, max_ejection_percent: 30 }",
    )
    .await;
    for _ in 0..40 {
        get(addr, "x", "/", &[]).await;
    }
    // One endpoint is always allowed; a second would be 50 % > 30 %.
    let mut out = 0;
    for u in &bad {
        if ejected(&p, name, u.addr).await {
            out += 1;
        }
    }
    assert_eq!(out, 1);
    assert_eq!(enforced(&p, name, "consecutive_5xx").await, 1.0);
    let overflow = overflowed(&p, name).await;
    assert!(overflow >= 2.0, "{overflow}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_cluster_ejects_only_with_always_eject_one_host() {
    // Two endpoints: one ejection is 50 %, over the default 10 %.
    let bad = up("bad", true, false).await;
    let good = up("good", false, false).await;
    for (name, extra, ejects) in [
        ("od-small", "", false),
        ("od-small-one", ", always_eject_one_host: true", true),
    ] {
        let (p, addr) = cluster_proxy(
            name,
            &[bad.addr, good.addr],
            &format!(", outlier_detection: {{ consecutive_5xx: 2, interval: 1s, base_ejection_time: 30s{extra} }}"),
        )
        .await;
        for _ in 0..10 {
            get(addr, "x", "/", &[]).await;
        }
        assert_eq!(ejected(&p, name, bad.addr).await, ejects, "{name}");
        let overflow = overflowed(&p, name).await;
        assert_eq!(overflow > 0.0, !ejects, "{name}: {overflow}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_rate_outlier_is_ejected() {
    // Four endpoints always succeed, one fails every other request: no
    // streak, but a success rate far under the others'.
    let mut ups = Vec::new();
    for _ in 0..4 {
        ups.push(up("good", false, false).await);
    }
    let flaky = up("flaky", false, true).await;
    let name = "od-rate";
    let mut eps: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    eps.push(flaky.addr);
    let (p, addr) = cluster_proxy(
        name,
        &eps,
        ", outlier_detection: { consecutive_5xx: 1000, interval: 300ms, base_ejection_time: 30s, success_rate_request_volume: 20, max_ejection_percent: 20 }",
    )
    .await;
    let load = Load::start(addr, "/", 2);
    eventually("the flaky endpoint ejected", || {
        ejected(&p, name, flaky.addr)
    })
    .await;
    load.finish().await;
    assert_eq!(enforced(&p, name, "success_rate").await, 1.0);
    for u in &ups {
        assert!(!ejected(&p, name, u.addr).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_panic_threshold_every_endpoint_takes_traffic() {
    let ups = [
        up("a", false, false).await,
        up("b", false, false).await,
        up("c", false, false).await,
    ];
    let statuses = ["unhealthy", "unhealthy", "healthy"];
    let eps: Vec<String> = ups
        .iter()
        .zip(statuses)
        .map(|(u, h)| format!("{{ address: \"{}\", health_status: {h} }}", u.addr))
        .collect();
    // One healthy of three is under 50 %: all three take traffic.
    let mk = |name: &'static str, threshold: &'static str| {
        let eps = eps.join(", ");
        async move {
            one_vhost(
                name,
                "",
                &format!(
                    "              - {{ match: {{ prefix: / }}, route: {{ cluster: {name} }} }}"
                ),
                &format!("  - {{ name: {name}, endpoints: [{eps}]{threshold} }}"),
            )
            .await
        }
    };
    let (p, addr) = mk("od-panic", "").await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        if let Some(u) = get(addr, "x", "/", &[]).await.header("x-upstream") {
            seen.insert(u.to_string());
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    let panics = metric(
        &p,
        "legate_cluster_lb_healthy_panic_total",
        &[("cluster", "od-panic")],
    )
    .await
    .unwrap_or(0.0);
    assert!(panics >= 12.0, "{panics}");
    // With the threshold at 0, only the healthy one.
    let (_q, addr) = mk("od-nopanic", ", healthy_panic_threshold: 0").await;
    for _ in 0..12 {
        assert_eq!(
            get(addr, "x", "/", &[]).await.header("x-upstream"),
            Some("c")
        );
    }
}
