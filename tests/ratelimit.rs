//! Local rate limiting: exact to the token (also under concurrency),
//! refills, a virtual host's shared bucket, x-ratelimit headers, limits
//! that are worked out but not enforced, and what the proxy counts.

mod common;

use common::*;
use std::net::SocketAddr;

async fn limited_proxy(
    listener: &str,
    vhost_extra: &str,
    routes: &str,
    up: SocketAddr,
) -> (legate::RunningProxy, SocketAddr) {
    let clusters = format!("  - {{ name: up, endpoints: [{{ address: \"{up}\" }}] }}");
    one_vhost(listener, vhost_extra, routes, &clusters).await
}

fn one_route(limit: &str) -> String {
    format!(
        "              - match: {{ prefix: / }}\n                route: {{ cluster: up }}\n                rate_limit: {limit}\n"
    )
}

async fn count(p: &legate::RunningProxy, listener: &str, result: &str) -> f64 {
    metric(
        p,
        "legate_http_local_rate_limit_total",
        &[("listener", listener), ("result", result)],
    )
    .await
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_to_the_token() {
    let up = upstream("up").await;
    let (p, addr) = limited_proxy(
        "rl-exact",
        "",
        &one_route("{ max_tokens: 5, fill_interval: 1h }"),
        up.addr,
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(get(addr, "x", "/", &[]).await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let r = get(addr, "x", "/", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (429, "local_rate_limited"));
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert_eq!(count(&p, "rl-exact", "ok").await, 5.0);
    assert_eq!(count(&p, "rl-exact", "rate_limited").await, 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_under_concurrency() {
    let up = upstream("up").await;
    let (_p, addr) = limited_proxy(
        "rl-conc",
        "",
        &one_route("{ max_tokens: 25, fill_interval: 1h }"),
        up.addr,
    )
    .await;
    let tasks: Vec<_> = (0..100)
        .map(|_| tokio::spawn(async move { get(addr, "x", "/", &[]).await.status }))
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_refills() {
    let up = upstream("up").await;
    let (_p, addr) = limited_proxy(
        "rl-refill",
        "",
        &one_route("{ max_tokens: 2, tokens_per_fill: 2, fill_interval: 300ms, status: 503 }"),
        up.addr,
    )
    .await;
    let mut s = Vec::new();
    for _ in 0..3 {
        s.push(get(addr, "x", "/", &[]).await.status);
    }
    // Two pass and the third is refused, unless a fill fell between them
    // (then all pass).
    assert!(s == [200, 200, 503] || s == [200, 200, 200], "{s:?}");
    eventually("a fill brings tokens back", || async {
        get(addr, "x", "/", &[]).await.status == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_host_bucket_is_shared_by_routes_without_their_own() {
    let up = upstream("up").await;
    let routes = "              - match: { prefix: /own }\n                route: { cluster: up }\n                rate_limit: { max_tokens: 1, fill_interval: 1h }\n              - match: { prefix: /a }\n                route: { cluster: up }\n              - match: { prefix: /b }\n                route: { cluster: up }\n";
    let (_p, addr) = limited_proxy(
        "rl-vhost",
        "rate_limit: { max_tokens: 3, fill_interval: 1h }",
        routes,
        up.addr,
    )
    .await;
    let mut s = Vec::new();
    for path in ["/a", "/a", "/b", "/b", "/a"] {
        s.push(get(addr, "x", path, &[]).await.status);
    }
    assert_eq!(s, [200, 200, 200, 429, 429]);
    assert_eq!(get(addr, "x", "/own", &[]).await.status, 200);
    assert_eq!(get(addr, "x", "/own", &[]).await.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_ratelimit_headers_count_down() {
    let up = upstream("up").await;
    let (_p, addr) = limited_proxy(
        "rl-headers",
        "",
        &one_route("{ max_tokens: 3, fill_interval: 60s, x_ratelimit_headers: true, response_headers: [{ name: retry-after, value: \"60\" }] }"),
        up.addr,
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = get(addr, "x", "/", &[]).await;
        seen.push((
            r.status,
            r.header("x-ratelimit-limit").map(str::to_string),
            r.header("x-ratelimit-remaining").map(str::to_string),
            r.header("retry-after").map(str::to_string),
        ));
        let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset), "{reset}");
    }
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        seen,
        [
            (200, s("3"), s("2"), None),
            (200, s("3"), s("1"), None),
            (200, s("3"), s("0"), None),
            (429, s("3"), s("0"), s("60")),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_not_enforced_only_marks_requests() {
    let up = upstream("up").await;
    let (p, addr) = limited_proxy(
        "rl-shadow",
        "",
        &one_route("{ max_tokens: 1, fill_interval: 1h, enforced: 0, request_headers_when_not_enforced: [{ name: x-over-limit, value: \"1\" }] }"),
        up.addr,
    )
    .await;
    let first = get(addr, "x", "/", &[]).await;
    assert_eq!(first.status, 200);
    assert!(first.seen()["headers"].get("x-over-limit").is_none());
    let second = get(addr, "x", "/", &[]).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.seen()["headers"]["x-over-limit"], "1");
    assert_eq!(count(&p, "rl-shadow", "rate_limited").await, 1.0);
}

#[test]
fn rate_limit_configs_are_checked() {
    let cases = [
        (
            "{ max_tokens: 1, fill_interval: 10ms }",
            "rate_limit.fill_interval: must be at least 50ms",
        ),
        (
            "{ max_tokens: 1, tokens_per_fill: 0, fill_interval: 1s }",
            "rate_limit.tokens_per_fill: must be at least 1",
        ),
        (
            "{ max_tokens: 1, fill_interval: 1s, status: 200 }",
            "rate_limit.status: 200 is not between 400 and 599",
        ),
        ("{ fill_interval: 1s }", "missing field `max_tokens`"),
    ];
    for (limit, want) in cases {
        let err = route_errors(&format!(
            "direct_response: {{ status: 200 }}, rate_limit: {limit}"
        ));
        assert!(err.contains(want), "{limit}: wanted {want:?}, got {err:?}");
    }
}

/// A rate-limited route's own answers (a direct response, a redirect, and
/// a 503 for a cluster with nobody healthy) get the route's and virtual
/// host's response header changes, as they do on a route without filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_routes_own_answers_get_the_response_headers() {
    let up = upstream("up").await;
    let limit = "rate_limit: { max_tokens: 100, fill_interval: 1h }";
    let headers = "response_headers: { add: [{ name: x-route, value: r }] }";
    let routes = format!(
        "              - {{ match: {{ prefix: /direct }}, direct_response: {{ status: 207, body: here }}, {limit}, {headers} }}\n              - {{ match: {{ prefix: /moved }}, redirect: {{ path: /new }}, {limit}, {headers} }}\n              - {{ match: {{ prefix: /nobody }}, route: {{ cluster: empty }}, {limit}, {headers} }}\n"
    );
    let clusters = format!(
        "  - {{ name: up, endpoints: [{{ address: \"{}\" }}] }}\n  - {{ name: empty, endpoints: [] }}",
        up.addr
    );
    let (_p, addr) = one_vhost(
        "rl-own-answers",
        "response_headers: { add: [{ name: x-vhost, value: v }] }",
        &routes,
        &clusters,
    )
    .await;
    expect_route_and_vhost_headers(addr, &[("/direct", 207), ("/moved", 301), ("/nobody", 503)])
        .await;
    assert_eq!(get(addr, "x", "/direct", &[]).await.text(), "here");
}
