//! Edge cases found in review: h2c upgrade requests, absolute-form targets,
//! repeated forwarding and cookie headers, response headers on Legate's own
//! replies, the route timeout while waiting for a stream, and idle pools.

mod common;

use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
const TWO_VHOSTS: &str = r#"
listeners:
  - name: web
    address: "127.0.0.1:0"
    http:
      route_config:
        virtual_hosts:
          - name: api
            domains: ["api.example.com"]
            routes: [{ match: { prefix: / }, route: { cluster: a } }]
          - name: rest
            domains: ["*"]
            response_headers:
              add: [{ name: x-vhost, value: rest }]
            routes:
              - match: { prefix: /h2 }
                route: { cluster: h2 }
              - match: { prefix: /empty }
                route: { cluster: empty }
              - match: { prefix: / }
                route: { cluster: b }
clusters:
  - name: a
    endpoints: [{ address: "{{a}}" }]
  - name: b
    endpoints: [{ address: "{{b}}" }]
  - name: h2
    protocol: http2
    endpoints: [{ address: "{{b}}" }]
  - name: empty
"#;

async fn two_vhosts() -> (legate::RunningProxy, Upstream, Upstream) {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let p = proxy(
        TWO_VHOSTS,
        &[("a", a.addr.to_string()), ("b", b.addr.to_string())],
    )
    .await;
    (p, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_requests_are_served_as_http1() {
    let (p, _a, _b) = two_vhosts().await;
    let addr = p.listener_addr("web").unwrap();
    for path in ["/plain", "/h2/plain"] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nConnection: close\r\n\r\n"
        );
        let out = raw(addr, req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{path}: {out}");
        let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
        let seen: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(seen["headers"].get("upgrade").is_none(), "{seen}");
        assert!(seen["headers"].get("http2-settings").is_none(), "{seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_target_decides_the_virtual_host() {
    let (p, _a, _b) = two_vhosts().await;
    let addr = p.listener_addr("web").unwrap();
    let out = raw(
        addr,
        b"GET http://api.example.com/x HTTP/1.1\r\nHost: elsewhere.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        out.contains("x-upstream: a"),
        "routed by the target's authority: {out}"
    );
    assert!(
        out.contains(r#""host":"api.example.com""#),
        "forwarded with it too: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_forwarded_for_lines_are_all_kept() {
    let (p, _a, _b) = two_vhosts().await;
    let addr = p.listener_addr("web").unwrap();
    let out = raw(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        out.contains(r#""x-forwarded-for":"10.0.0.1, 10.0.0.2, 127.0.0.1""#),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cookies_are_joined_for_http1_upstreams() {
    let (p, _a, _b) = two_vhosts().await;
    let addr = p.listener_addr("web").unwrap();
    let req = http::Request::get(format!("http://{addr}/"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let seen = send(&h2_client(), req).await.seen();
    assert_eq!(seen["headers"]["cookie"], "a=1; b=2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legate_replies_get_the_response_header_changes() {
    let (p, _a, _b) = two_vhosts().await;
    let r = get(p.listener_addr("web").unwrap(), "x", "/empty", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-vhost"), Some("rest"), "as Envoy's router does");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_covers_waiting_for_a_stream_slot() {
    let up = upstream("h2").await;
    let yaml = format!(
        r#"
listeners:
  - name: web
    address: "127.0.0.1:0"
    http:
      route_config:
        virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
              - match: {{ prefix: /hold }}
                route: {{ cluster: h2, timeout: 0s }}
              - match: {{ prefix: / }}
                route: {{ cluster: h2, timeout: 300ms }}
clusters:
  - name: h2
    protocol: http2
    http2_max_concurrent_streams: 1
    endpoints: [{{ address: "{}" }}]
"#,
        up.addr
    );
    let p = proxy(&yaml, &[]).await;
    let addr = p.listener_addr("web").unwrap();
    // Take the only stream slot for 3 s.
    let holder = tokio::spawn(async move { get(addr, "x", "/hold/sleep/3000", &[]).await.status });
    eventually("the slot is taken", || async {
        up.inflight.load(Ordering::SeqCst) == 1
    })
    .await;
    // A request with a body must not wait for the slot past its timeout.
    let req = http::Request::post(format!("http://{addr}/echo"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"payload",
        )))
        .unwrap();
    let started = std::time::Instant::now();
    let r = send(&h1_client(), req).await;
    assert_eq!(r.status, 504);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "timed out before the slot freed"
    );
    assert_eq!(holder.await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_reaped_and_a_zero_cap_keeps_none() {
    let up = upstream("up").await;
    let clusters = format!(
        "  - name: up\n    idle_timeout: 200ms\n    endpoints: [{{ address: \"{}\" }}]\n  - name: none\n    max_idle_connections_per_endpoint: 0\n    endpoints: [{{ address: \"{}\" }}]",
        up.addr, up.addr
    );
    let p = proxy(&catch_all("up", "", &clusters), &[]).await;
    let addr = p.listener_addr("web").unwrap();
    assert_eq!(get(addr, "x", "/", &[]).await.status, 200);
    let idle = format!("up::{}::cx_idle::", up.addr);
    eventually("the idle connection is pooled", || async {
        admin_get(&p, "/clusters")
            .await
            .text()
            .contains(&format!("{idle}1"))
    })
    .await;
    // Nothing calls the endpoint again; the reaper still closes it.
    eventually("the idle connection is reaped", || async {
        admin_get(&p, "/clusters")
            .await
            .text()
            .contains(&format!("{idle}0"))
    })
    .await;

    let p2 = proxy(&catch_all("none", "", &clusters), &[]).await;
    let addr2 = p2.listener_addr("web").unwrap();
    for _ in 0..3 {
        assert_eq!(get(addr2, "x", "/", &[]).await.status, 200);
    }
    let text = admin_get(&p2, "/clusters").await.text();
    assert!(
        text.contains(&format!("none::{}::cx_idle::0", up.addr)),
        "{text}"
    );
}
