//! Retries against deliberately misbehaving upstreams on loopback: one that
//! fails every third request, one that resets, one that refuses
//! connections, one that hangs, one that always fails; replayed bodies,
//! streaming bodies sent once, the attempt header, and the proxy's counts.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Clone, Copy)]
enum Act {
    Ok,
    Status(u16),
    /// Close the connection without answering.
    Reset,
    Hang,
}

/// An upstream whose n-th request (from 1) gets `behaviour(n)`. Answers
/// carry `x-upstream: name`, the request's body and its attempt header.
struct Misbehaving {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

async fn misbehaving(name: &'static str, behaviour: fn(usize) -> Act) -> Misbehaving {
    let (addr, requests) = serve(move |n, req| async move {
        let attempt = req
            .headers()
            .get("x-envoy-attempt-count")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let status = match behaviour(n) {
            Act::Ok => 200,
            Act::Status(s) => s,
            Act::Reset => return Err("reset"),
            Act::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                200
            }
        };
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        r.headers_mut()
            .insert("x-upstream", http::HeaderValue::from_static(name));
        r.headers_mut()
            .insert("x-attempt", http::HeaderValue::from_str(&attempt).unwrap());
        Ok(r)
    })
    .await;
    Misbehaving { addr, requests }
}

/// An HTTP/1.1 and HTTP/2 upstream on loopback whose n-th request (from 1)
/// is answered by `answer(n, request)`; an error resets the connection.
/// Returns its address and its request count.
async fn serve<F, Fut>(answer: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(usize, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, &'static str>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (count, answer) = (count.clone(), answer.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    answer(count.fetch_add(1, Ordering::SeqCst) + 1, req)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, requests)
}

/// A proxy whose only route sends to a cluster named like the listener
/// (the `endpoints`; metrics are process-wide, so each test has its own)
/// with the retry policy `retry` (YAML inline).
async fn retrying_proxy(
    listener: &str,
    retry: &str,
    endpoints: &[SocketAddr],
    extra: &str,
) -> (legate::RunningProxy, SocketAddr) {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|a| format!("{{ address: \"{a}\" }}"))
        .collect();
    one_vhost(
        listener,
        "include_attempt_count: true",
        &format!("              - {{ match: {{ prefix: / }}, route: {{ cluster: {listener}, retry: {retry} {extra} }} }}"),
        &format!("  - {{ name: {listener}, connect_timeout: 1s, endpoints: [{}] }}", eps.join(", ")),
    )
    .await
}

async fn stat(p: &legate::RunningProxy, cluster: &str, name: &str) -> f64 {
    metric(p, name, &[("cluster", cluster)])
        .await
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_failing_upstream_becomes_no_client_errors() {
    let up = misbehaving("flaky", |n| {
        if n % 3 == 0 {
            Act::Status(503)
        } else {
            Act::Ok
        }
    })
    .await;
    let (p, addr) = retrying_proxy(
        "retry-third",
        "{ retry_on: [5xx], num_retries: 2 }",
        &[up.addr],
        "",
    )
    .await;
    let n = 600;
    let mut failed = 0;
    for _ in 0..n {
        if get(addr, "x", "/", &[]).await.status != 200 {
            failed += 1;
        }
    }
    let upstream = up.requests.load(Ordering::SeqCst);
    let retries = stat(&p, "retry-third", "legate_cluster_upstream_rq_retry_total").await;
    println!("{n} requests, {failed} failed; upstream saw {upstream}; {retries} retries");
    assert_eq!(failed, 0);
    // Bounded extra load: one retry per failure, no more.
    assert_eq!(upstream as f64, n as f64 + retries);
    assert!(retries <= n as f64 / 2.0, "{retries}");
    assert_eq!(
        stat(
            &p,
            "retry-third",
            "legate_cluster_upstream_rq_retry_success_total"
        )
        .await,
        retries
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_refused_connections_go_to_another_endpoint() {
    let good = misbehaving("good", |_| Act::Ok).await;
    let resetting = misbehaving("resetting", |_| Act::Reset).await;
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (_p, addr) = retrying_proxy(
        "retry-hosts",
        "{ retry_on: [reset, connect-failure], num_retries: 2, retry_previous_hosts: true }",
        &[resetting.addr, refused, good.addr],
        "",
    )
    .await;
    for _ in 0..60 {
        let r = get(addr, "x", "/", &[]).await;
        assert_eq!((r.status, r.header("x-upstream")), (200, Some("good")));
    }
    assert!(resetting.requests.load(Ordering::SeqCst) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_try_times_out_and_the_next_one_answers() {
    let hang = misbehaving("hang", |_| Act::Hang).await;
    let good = misbehaving("good", |_| Act::Ok).await;
    let (p, addr) = retrying_proxy(
        "retry-hang",
        "{ retry_on: [gateway-error], num_retries: 1, per_try_timeout: 200ms, retry_previous_hosts: true }",
        &[hang.addr, good.addr],
        ", timeout: 5s",
    )
    .await;
    for _ in 0..4 {
        let r = get(addr, "x", "/", &[]).await;
        assert_eq!((r.status, r.header("x-upstream")), (200, Some("good")));
    }
    assert!(stat(&p, "retry-hang", "legate_cluster_upstream_rq_timeout_total").await >= 1.0);
    // Without a per-try timeout, the route timeout covers every try: 504.
    let (_q, slow) = retrying_proxy(
        "retry-route-timeout",
        "{ retry_on: [5xx], num_retries: 3 }",
        &[hang.addr],
        ", timeout: 300ms",
    )
    .await;
    let r = get(slow, "x", "/", &[]).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (504, "upstream request timeout")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_caps_retries_when_everything_fails() {
    let down = misbehaving("down", |_| Act::Status(503)).await;
    let (p, addr) = retrying_proxy(
        "retry-budget",
        "{ retry_on: [5xx], num_retries: 5, backoff_base: 50ms }",
        &[down.addr],
        "",
    )
    .await;
    let clients = 30;
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(async move { get(addr, "x", "/", &[]).await.status }))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 503);
    }
    let upstream = down.requests.load(Ordering::SeqCst);
    let overflow = stat(
        &p,
        "retry-budget",
        "legate_cluster_upstream_rq_retry_overflow_total",
    )
    .await;
    let retries = stat(&p, "retry-budget", "legate_cluster_upstream_rq_retry_total").await;
    println!(
        "{clients} requests to a dead upstream: {upstream} tries, {retries} retries, {overflow} refused by the budget"
    );
    // Unbudgeted, every request would try 6 times.
    assert!(upstream < clients * 6, "{upstream}");
    assert!(overflow > 0.0);
    assert_eq!(upstream as f64, clients as f64 + retries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_bodies_are_replayed_and_streams_sent_once() {
    let up = misbehaving("odd", |n| {
        if n % 2 == 1 {
            Act::Status(503)
        } else {
            Act::Ok
        }
    })
    .await;
    let (_p, addr) = retrying_proxy(
        "retry-body",
        "{ retry_on: [5xx], num_retries: 1 }",
        &[up.addr],
        "",
    )
    .await;
    let client = h1_client();
    let req = Request::post(format!("http://{addr}/echo"))
        .body(Full::new(Bytes::from_static(b"hello body")))
        .unwrap();
    let r = send(&client, req).await;
    assert_eq!(
        (r.status, r.text().as_str(), r.header("x-attempt")),
        (200, "hello body", Some("2"))
    );
    // A chunked (streaming) body is not kept: one try, its 503 comes back.
    let before = up.requests.load(Ordering::SeqCst);
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
        hyper::body::Frame::data(Bytes::from_static(b"chunk")),
    )]);
    let req = Request::post(format!("http://{addr}/echo"))
        .body(http_body_util::StreamBody::new(stream))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(up.requests.load(Ordering::SeqCst), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attempt_header_counts_tries() {
    let up = misbehaving(
        "second",
        |n| if n == 1 { Act::Status(502) } else { Act::Ok },
    )
    .await;
    let (_p, addr) = retrying_proxy(
        "retry-attempt",
        "{ retry_on: [gateway-error] }",
        &[up.addr],
        "",
    )
    .await;
    let r = get(addr, "x", "/", &[]).await;
    assert_eq!((r.status, r.header("x-attempt")), (200, Some("2")));
    let r = get(addr, "x", "/", &[]).await;
    assert_eq!(r.header("x-attempt"), Some("1"));
}

#[test]
fn retry_configs_are_checked() {
    let cases = [
        (
            "{ retry_on: [] }",
            "route.retry.retry_on: name at least one condition",
        ),
        ("{ retry_on: [teapot] }", "unknown variant `teapot`"),
        (
            "{ retry_on: [retriable-status-codes] }",
            "route.retry.retriable_status_codes: retriable-status-codes needs the codes",
        ),
        (
            "{ retry_on: [5xx], backoff_base: 0s }",
            "route.retry.backoff_base: must be more than 0s",
        ),
        (
            "{ retry_on: [5xx], backoff_base: 1s, backoff_max: 10ms }",
            "route.retry.backoff_max: must not be less than backoff_base",
        ),
    ];
    for (retry, want) in cases {
        let err = route_errors(&format!("route: {{ cluster: c, retry: {retry} }}"));
        assert!(err.contains(want), "{retry}: wanted {want:?}, got {err:?}");
    }
}

/// A retry sends the request the first try prepared: forwarding headers
/// and the route's header changes appear once, never once per try, over
/// an HTTP/1 and an HTTP/2 upstream alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_sends_the_same_request_again() {
    // Fails every odd request; answers the others with what it saw.
    let (up, _) = serve(|n, req| async move {
        let (parts, body) = req.into_parts();
        let h = &parts.headers;
        let all = |name: &str| {
            h.get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or("?").to_string())
                .collect::<Vec<_>>()
                .join("|")
        };
        let seen = format!(
            "xff={} appended={} host={} attempt={} path={} body={}",
            all("x-forwarded-for"),
            all("x-appended"),
            h.get("host")
                .map(|v| v.to_str().unwrap_or("?").to_string())
                .or_else(|| parts.uri.authority().map(|a| a.to_string()))
                .unwrap_or_default(),
            all("x-envoy-attempt-count"),
            parts.uri.path(),
            String::from_utf8_lossy(&body.collect().await.unwrap().to_bytes()),
        );
        let mut r = Response::new(Full::new(Bytes::from(seen)));
        if n % 2 == 1 {
            *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        }
        Ok(r)
    })
    .await;
    for (name, protocol) in [("retry-same-h1", "http1"), ("retry-same-h2", "http2")] {
        let (_p, addr) = one_vhost(
            name,
            "include_attempt_count: true",
            &format!(
                "              - match: {{ prefix: / }}\n                request_headers: {{ add: [{{ name: x-appended, value: two, append: true }}] }}\n                route: {{ cluster: {name}, prefix_rewrite: /v2/, retry: {{ retry_on: [5xx], num_retries: 1 }} }}"
            ),
            &format!("  - {{ name: {name}, protocol: {protocol}, endpoints: [{{ address: \"{up}\" }}] }}"),
        )
        .await;
        let req = Request::post(format!("http://{addr}/x"))
            .header("host", "svc.example")
            .header("x-forwarded-for", "10.0.0.9")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let r = send(&h1_client(), req).await;
        assert_eq!(r.status, 200, "{protocol}: {}", r.text());
        assert_eq!(
            r.text(),
            "xff=10.0.0.9, 127.0.0.1 appended=two host=svc.example attempt=2 path=/v2/x body=payload",
            "{protocol}"
        );
    }
}

/// Legate's own replies on a retrying route (the route timeout, retries
/// run out) carry the route's and the virtual host's response header
/// changes, as the upstream's responses do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_replies_on_a_retrying_route_get_the_response_headers() {
    let hang = misbehaving("hang", |_| Act::Hang).await;
    let down = misbehaving("down", |_| Act::Status(503)).await;
    let ok = misbehaving("ok", |_| Act::Ok).await;
    let route = |prefix: &str, cluster: &str, extra: &str| {
        format!(
            "              - {{ match: {{ prefix: {prefix} }}, route: {{ cluster: {cluster}, retry: {{ retry_on: [5xx], backoff_base: 1ms }} {extra} }}, response_headers: {{ add: [{{ name: x-route, value: r }}] }} }}\n"
        )
    };
    let routes = [
        route("/slow", "retry-headers-hang", ", timeout: 200ms"),
        route("/down", "retry-headers-down", ""),
        route("/", "retry-headers-ok", ""),
    ]
    .concat();
    let (_p, addr) = one_vhost(
        "retry-headers",
        "response_headers: { add: [{ name: x-vhost, value: v }] }",
        &routes,
        &format!(
            "  - {{ name: retry-headers-hang, endpoints: [{{ address: \"{}\" }}] }}\n  - {{ name: retry-headers-down, endpoints: [{{ address: \"{}\" }}] }}\n  - {{ name: retry-headers-ok, endpoints: [{{ address: \"{}\" }}] }}",
            hang.addr, down.addr, ok.addr
        ),
    )
    .await;
    expect_route_and_vhost_headers(addr, &[("/slow", 504), ("/down", 503), ("/", 200)]).await;
    // The 503 is the upstream's, passed on after the retry ran out.
    assert_eq!(down.requests.load(Ordering::SeqCst), 2);
}

/// Every combination of retries, a rate limit and fault injection on a
/// route composes in Envoy's order: the rate limit first (a request it
/// refuses meets no fault), then the fault (an abort is never retried),
/// then retries. Each upstream answers its first request with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_combination_of_layers_composes_in_order() {
    // (retries, rate limit, fault) -> statuses of: a plain request, one
    // asking for a 418 fault, a plain one.
    let combos: [((bool, bool, bool), [u16; 3]); 8] = [
        ((true, true, true), [200, 418, 429]),
        ((true, true, false), [200, 200, 429]),
        ((true, false, true), [200, 418, 200]),
        ((true, false, false), [200, 200, 200]),
        ((false, true, true), [503, 418, 429]),
        ((false, true, false), [503, 200, 429]),
        ((false, false, true), [503, 418, 200]),
        ((false, false, false), [503, 200, 200]),
    ];
    let mut ups = Vec::new();
    let (mut routes, mut clusters) = (String::new(), String::new());
    for (i, ((retry, limit, fault), _)) in combos.iter().enumerate() {
        let up = misbehaving("combo", |n| if n == 1 { Act::Status(503) } else { Act::Ok }).await;
        let retry = if *retry {
            ", retry: { retry_on: [5xx], backoff_base: 1ms }"
        } else {
            ""
        };
        let limit = if *limit {
            ", rate_limit: { max_tokens: 2, fill_interval: 1h }"
        } else {
            ""
        };
        let fault = if *fault {
            ", fault: { abort: { from_header: true, percent: 100 } }"
        } else {
            ""
        };
        routes.push_str(&format!(
            "              - {{ match: {{ prefix: /c{i}/ }}, route: {{ cluster: combo-{i}{retry} }}{limit}{fault} }}\n"
        ));
        clusters.push_str(&format!(
            "  - {{ name: combo-{i}, endpoints: [{{ address: \"{}\" }}] }}\n",
            up.addr
        ));
        ups.push(up);
    }
    let (_p, addr) = one_vhost("combos", "", &routes, &clusters).await;
    for (i, (combo, want)) in combos.iter().enumerate() {
        let path = format!("/c{i}/");
        let got = [
            get(addr, "x", &path, &[]).await.status,
            get(addr, "x", &path, &[("x-envoy-fault-abort-request", "418")])
                .await
                .status,
            get(addr, "x", &path, &[]).await.status,
        ];
        assert_eq!(got, *want, "(retries, rate limit, fault) = {combo:?}");
    }
}
