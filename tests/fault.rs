//! Fault injection per route: delays and aborts by percentage (measured
//! over thousands of requests), gRPC aborts, faults forced by request
//! headers, the active-fault limit, and what the proxy counts.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A proxy whose listener `listener` sends `/` to one upstream through a
/// route with `fault` (YAML, inline).
async fn proxy_with_fault(
    listener: &str,
    fault: &str,
    up: SocketAddr,
) -> (legate::RunningProxy, SocketAddr) {
    one_vhost(
        listener,
        "",
        &format!(
            "              - {{ match: {{ prefix: / }}, route: {{ cluster: up }}, fault: {fault} }}"
        ),
        &format!("  - {{ name: up, endpoints: [{{ address: \"{up}\" }}] }}"),
    )
    .await
}

async fn statuses(
    addr: SocketAddr,
    n: usize,
    headers: &[(&str, &str)],
) -> std::collections::BTreeMap<u16, usize> {
    let mut out = std::collections::BTreeMap::new();
    for _ in 0..n {
        *out.entry(get(addr, "x", "/", headers).await.status)
            .or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborts_hit_their_percentage() {
    let up = upstream("up").await;
    let (p, addr) = proxy_with_fault(
        "fault-abort",
        "{ abort: { http_status: 503, percent: 25 } }",
        up.addr,
    )
    .await;
    let n = 5000;
    let counts = statuses(addr, n, &[]).await;
    println!("25% abort over {n} requests: {counts:?}");
    let aborted = counts.get(&503).copied().unwrap_or(0);
    assert_eq!(
        aborted + counts.get(&200).copied().unwrap_or(0),
        n,
        "{counts:?}"
    );
    let share = aborted as f64 / n as f64;
    assert!((share - 0.25).abs() <= 0.03, "{share} ({counts:?})");
    // Aborted requests never reach the upstream; the proxy counts them.
    assert_eq!(
        up.requests.load(std::sync::atomic::Ordering::SeqCst),
        n - aborted
    );
    let injected = metric(
        &p,
        "legate_http_fault_aborts_injected_total",
        &[("listener", "fault-abort")],
    )
    .await;
    assert_eq!(injected, Some(aborted as f64));
    let r = get(addr, "x", "/", &[]).await;
    if r.status == 503 {
        assert_eq!(r.text(), "fault filter abort");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_hit_their_percentage_and_hold_the_request() {
    let up = upstream("up").await;
    let (p, addr) = proxy_with_fault(
        "fault-delay",
        "{ delay: { fixed: 1ms, percent: 40 }, abort: { http_status: 418, percent: 0.01 } }",
        up.addr,
    )
    .await;
    let n = 5000;
    let counts = statuses(addr, n, &[]).await;
    let delayed = metric(
        &p,
        "legate_http_fault_delays_injected_total",
        &[("listener", "fault-delay")],
    )
    .await
    .unwrap_or(0.0);
    println!("40% delay over {n} requests: {delayed} delayed; statuses {counts:?}");
    assert!((delayed / n as f64 - 0.40).abs() <= 0.03, "{delayed}");

    // A delayed request reaches the upstream no sooner than the delay.
    let (p2, addr2) = proxy_with_fault(
        "fault-delay-all",
        "{ delay: { fixed: 300ms, percent: 100 } }",
        up.addr,
    )
    .await;
    let started = Instant::now();
    let r = get(addr2, "x", "/", &[]).await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    drop((p, p2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_aborts_answer_as_grpc_does() {
    let up = upstream("up").await;
    let (_p, addr) = proxy_with_fault(
        "fault-grpc",
        "{ abort: { grpc_status: 14, percent: 100 } }",
        up.addr,
    )
    .await;
    let r = get(
        addr,
        "x",
        "/pkg.Svc/Method",
        &[("content-type", "application/grpc")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), Some("14"));
    assert_eq!(r.header("grpc-message"), Some("fault filter abort"));
    assert_eq!(r.header("content-type"), Some("application/grpc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_force_faults_only_where_allowed() {
    let up = upstream("up").await;
    let (_p, addr) = proxy_with_fault(
        "fault-headers",
        "{ delay: { from_header: true, percent: 100 }, abort: { from_header: true, percent: 100 } }",
        up.addr,
    )
    .await;
    // No headers: nothing happens.
    assert_eq!(get(addr, "x", "/", &[]).await.status, 200);
    assert_eq!(
        get(addr, "x", "/", &[("x-envoy-fault-abort-request", "418")])
            .await
            .status,
        418
    );
    let r = get(addr, "x", "/", &[("x-envoy-fault-abort-grpc-request", "8")]).await;
    assert_eq!((r.status, r.header("grpc-status")), (200, Some("8")));
    // The percentage header lowers the share: 0 means never.
    let counts = statuses(
        addr,
        50,
        &[
            ("x-envoy-fault-abort-request", "418"),
            ("x-envoy-fault-abort-request-percentage", "0"),
        ],
    )
    .await;
    assert_eq!(counts, [(200, 50)].into());
    let started = Instant::now();
    assert_eq!(
        get(addr, "x", "/", &[("x-envoy-fault-delay-request", "250")])
            .await
            .status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(250));

    // A route that does not allow header faults ignores them.
    let (_q, plain) = proxy_with_fault(
        "fault-fixed",
        "{ abort: { http_status: 503, percent: 0 } }",
        up.addr,
    )
    .await;
    assert_eq!(
        get(plain, "x", "/", &[("x-envoy-fault-abort-request", "418")])
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_active_faults_bounds_requests_under_a_fault() {
    let up = upstream("up").await;
    let (p, addr) = proxy_with_fault(
        "fault-max",
        "{ delay: { fixed: 2s, percent: 100 }, max_active_faults: 1 }",
        up.addr,
    )
    .await;
    let first = tokio::spawn(async move { get(addr, "x", "/", &[]).await.status });
    eventually("the first request is being delayed", || async {
        metric(
            &p,
            "legate_http_fault_delays_injected_total",
            &[("listener", "fault-max")],
        )
        .await
            == Some(1.0)
    })
    .await;
    // The limit is reached: this one passes at once, undelayed.
    assert_eq!(get(addr, "x", "/", &[]).await.status, 200);
    assert_eq!(
        metric(
            &p,
            "legate_http_fault_delays_injected_total",
            &[("listener", "fault-max")]
        )
        .await,
        Some(1.0)
    );
    assert_eq!(first.await.unwrap(), 200);
}

#[test]
fn fault_configs_are_checked() {
    let cases = [
        ("{}", "fault: set `delay`, `abort` or both"),
        (
            "{ delay: { percent: 10 } }",
            "fault.delay: set exactly one of `fixed` and `from_header: true`",
        ),
        (
            "{ delay: { fixed: 0s, percent: 10 } }",
            "fault.delay.fixed: must be more than 0s",
        ),
        (
            "{ abort: { http_status: 99, percent: 10 } }",
            "fault.abort.http_status: 99 is not between 200 and 599",
        ),
        (
            "{ abort: { grpc_status: 17, percent: 10 } }",
            "fault.abort.grpc_status: 17 is not a gRPC status (0-16)",
        ),
        (
            "{ abort: { http_status: 503, grpc_status: 1, percent: 10 } }",
            "fault.abort: set exactly one of",
        ),
        (
            "{ abort: { http_status: 503, percent: 101 } }",
            "invalid percentage 101: must be between 0 and 100",
        ),
    ];
    for (fault, want) in cases {
        let err = route_errors(&format!(
            "direct_response: {{ status: 200 }}, fault: {fault}"
        ));
        assert!(err.contains(want), "{fault}: wanted {want:?}, got {err:?}");
    }
}
