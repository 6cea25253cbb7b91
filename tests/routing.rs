//! Routing through a real proxy: virtual hosts, matches, actions, rewrites,
//! header changes and weighted splits.

mod common;

use common::*;

const CONFIG: &str = r#"
listeners:
  - name: web
    address: "127.0.0.1:0"
    http:
      route_config:
        virtual_hosts:
          - name: exact
            domains: ["api.example.com"]
            request_headers:
              add: [{ name: x-vhost, value: exact }]
            routes:
              - match: { prefix: / }
                route: { cluster: a }
          - name: suffix
            domains: ["*.example.com"]
            routes:
              - match: { prefix: / }
                route: { cluster: b }
          - name: prefix-wildcard
            domains: ["www.*"]
            routes:
              - match: { prefix: / }
                route: { cluster: c }
          - name: with-port
            domains: ["ported.test:8080"]
            routes:
              - match: { prefix: / }
                route: { cluster: c }
          - name: default
            domains: ["*"]
            response_headers:
              add: [{ name: x-vhost-resp, value: default }]
              remove: [x-upstream-secret]
            routes:
              - match: { path: /exact }
                route: { cluster: a }
              - match: { regex: "/re/[0-9]+" }
                route: { cluster: b }
              - match: { prefix: /CaseLess, case_sensitive: false }
                route: { cluster: c }
              - match:
                  prefix: /hdr
                  headers: [{ name: x-tier, exact: gold }]
                route: { cluster: a }
              - match:
                  prefix: /hdr
                  headers: [{ name: x-canary, present: true }]
                route: { cluster: b }
              - match:
                  prefix: /hdr
                  headers: [{ name: x-user, regex: "user-[0-9]+" }]
                route: { cluster: c }
              - match:
                  prefix: /hdr
                  headers: [{ name: x-tier, exact: gold, invert: true }]
                direct_response: { status: 418, body: "no gold\n" }
              - match:
                  prefix: /query
                  query_parameters: [{ name: v, exact: "2" }]
                route: { cluster: b }
              - match:
                  prefix: /query
                  query_parameters: [{ name: debug, present: true }]
                route: { cluster: c }
              - match: { prefix: /query }
                route: { cluster: a }
              - match: { prefix: /api/v1/ }
                route: { cluster: a, prefix_rewrite: /v2/ }
              - match: { prefix: /strip }
                route: { cluster: a, prefix_rewrite: / }
              - match: { regex: "/users/([0-9]+)/profile" }
                route:
                  cluster: a
                  regex_rewrite: { pattern: "^/users/([0-9]+)/profile$", substitution: '/profile?id=\1' }
              - match: { prefix: /host }
                route: { cluster: a, host_rewrite: internal.svc }
              - match: { prefix: /headers }
                request_headers:
                  add:
                    - { name: x-added, value: one }
                    - { name: x-appended, value: two, append: true }
                  remove: [x-remove-me]
                response_headers:
                  add: [{ name: x-route-resp, value: yes }]
                route: { cluster: a }
              - match: { prefix: /redirect/https }
                redirect: { scheme: https, host: secure.example.com, response_code: 308 }
              - match: { prefix: /redirect/path }
                redirect: { path: /elsewhere, response_code: 302, strip_query: true }
              - match: { prefix: /redirect/old }
                redirect: { prefix_rewrite: /new }
              - match: { path: /direct }
                direct_response: { status: 201, body: "made\n" }
              - match: { prefix: /split }
                route:
                  weighted_clusters:
                    - { name: a, weight: 70 }
                    - { name: b, weight: 20 }
                    - { name: c, weight: 10 }
clusters:
  - name: a
    endpoints: [{ address: "{{a}}" }]
  - name: b
    endpoints: [{ address: "{{b}}" }]
  - name: c
    endpoints: [{ address: "{{c}}" }]
"#;

struct Env {
    proxy: legate::RunningProxy,
    _up: Vec<Upstream>,
}

impl Env {
    fn addr(&self) -> std::net::SocketAddr {
        self.proxy.listener_addr("web").unwrap()
    }
    async fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        get(self.addr(), host, path, headers).await
    }
    async fn upstream_of(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
        let r = self.get(host, path, headers).await;
        assert_eq!(r.status, 200, "{host}{path}: {}", r.text());
        r.header("x-upstream").unwrap().to_string()
    }
}

async fn env() -> Env {
    let (a, b, c) = (
        upstream("a").await,
        upstream("b").await,
        upstream("c").await,
    );
    let proxy = proxy(
        CONFIG,
        &[
            ("a", a.addr.to_string()),
            ("b", b.addr.to_string()),
            ("c", c.addr.to_string()),
        ],
    )
    .await;
    Env {
        proxy,
        _up: vec![a, b, c],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_hosts_by_host() {
    let e = env().await;
    assert_eq!(e.upstream_of("api.example.com", "/x", &[]).await, "a");
    assert_eq!(
        e.upstream_of("API.Example.COM", "/x", &[]).await,
        "a",
        "host match is case-insensitive"
    );
    // As in Envoy, the port is part of the host: "api.example.com:9999" is not
    // "api.example.com"; it falls to the default vhost, which has no "/x".
    assert_eq!(e.get("api.example.com:9999", "/x", &[]).await.status, 404);
    assert_eq!(e.upstream_of("shop.example.com", "/x", &[]).await, "b");
    assert_eq!(e.upstream_of("deep.shop.example.com", "/x", &[]).await, "b");
    assert_eq!(e.upstream_of("www.other.org", "/x", &[]).await, "c");
    assert_eq!(e.upstream_of("ported.test:8080", "/x", &[]).await, "c");
    // example.com itself does not match "*.example.com": falls to default, which has no "/x" route.
    assert_eq!(e.get("example.com", "/x", &[]).await.status, 404);
    // The exact vhost's request header addition is visible upstream.
    let seen = e.get("api.example.com", "/x", &[]).await.seen();
    assert_eq!(seen["headers"]["x-vhost"], "exact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_matches() {
    let e = env().await;
    assert_eq!(e.upstream_of("any", "/exact", &[]).await, "a");
    assert_eq!(
        e.get("any", "/exact/more", &[]).await.status,
        404,
        "exact path is exact"
    );
    assert_eq!(
        e.upstream_of("any", "/exact?q=1", &[]).await,
        "a",
        "query is not part of the path"
    );
    assert_eq!(e.upstream_of("any", "/re/123", &[]).await, "b");
    assert_eq!(
        e.get("any", "/re/12x", &[]).await.status,
        404,
        "regex must match the whole path"
    );
    assert_eq!(e.upstream_of("any", "/caseless/x", &[]).await, "c");
    assert_eq!(e.upstream_of("any", "/CASELESS", &[]).await, "c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_query_matches() {
    let e = env().await;
    assert_eq!(
        e.upstream_of("any", "/hdr", &[("x-tier", "gold")]).await,
        "a"
    );
    assert_eq!(e.upstream_of("any", "/hdr", &[("x-canary", "")]).await, "b");
    assert_eq!(
        e.upstream_of("any", "/hdr", &[("x-user", "user-42")]).await,
        "c"
    );
    let r = e
        .get(
            "any",
            "/hdr",
            &[("x-user", "user-42x"), ("x-tier", "silver")],
        )
        .await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (418, "no gold\n"),
        "regex is whole-value; inverted match catches it"
    );
    // An absent header never matches, inverted or not (Envoy).
    assert_eq!(
        e.get("any", "/hdr", &[("x-user", "user-42x")]).await.status,
        404
    );
    // Each value of a repeated header is tried on its own.
    assert_eq!(
        e.upstream_of("any", "/hdr", &[("x-tier", "silver"), ("x-tier", "gold")])
            .await,
        "a"
    );
    assert_eq!(e.upstream_of("any", "/query?v=2", &[]).await, "b");
    assert_eq!(e.upstream_of("any", "/query?a=1&v=2", &[]).await, "b");
    assert_eq!(e.upstream_of("any", "/query?v=3&debug", &[]).await, "c");
    assert_eq!(e.upstream_of("any", "/query?v=3", &[]).await, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites() {
    let e = env().await;
    assert_eq!(
        e.get("any", "/api/v1/users?x=1", &[]).await.seen()["path"],
        "/v2/users?x=1"
    );
    // Only the matched prefix is replaced, as in Envoy.
    assert_eq!(
        e.get("any", "/strip/inner", &[]).await.seen()["path"],
        "//inner"
    );
    assert_eq!(e.get("any", "/stripped", &[]).await.seen()["path"], "/ped");
    assert_eq!(e.get("any", "/strip", &[]).await.seen()["path"], "/");
    assert_eq!(
        e.get("any", "/users/42/profile", &[]).await.seen()["path"],
        "/profile?id=42"
    );
    let seen = e.get("original.host", "/host", &[]).await.seen();
    assert_eq!(seen["headers"]["host"], "internal.svc");
    let seen = e.get("original.host", "/exact", &[]).await.seen();
    assert_eq!(
        seen["headers"]["host"], "original.host",
        "Host is preserved without a rewrite"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_mutations_and_forwarding_headers() {
    let e = env().await;
    let r = e
        .get(
            "any",
            "/headers",
            &[
                ("x-remove-me", "1"),
                ("x-appended", "one"),
                ("x-added", "old"),
                ("x-forwarded-for", "10.1.2.3"),
            ],
        )
        .await;
    assert_eq!(r.header("x-route-resp"), Some("yes"));
    assert_eq!(r.header("x-vhost-resp"), Some("default"));
    let seen = r.seen();
    let h = &seen["headers"];
    assert_eq!(h["x-added"], "one", "append: false replaces");
    assert!(h.get("x-remove-me").is_none());
    // The upstream JSON keeps the last value of a repeated header.
    assert_eq!(h["x-appended"], "two");
    assert_eq!(h["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    let id = h["x-request-id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "x-request-id generated: {id}");

    let seen = e
        .get("any", "/exact", &[("x-request-id", "keep-me")])
        .await
        .seen();
    assert_eq!(
        seen["headers"]["x-request-id"], "keep-me",
        "an existing x-request-id is kept"
    );
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_direct_responses() {
    let e = env().await;
    let r = e.get("shop.test:8000", "/redirect/https/x?a=1", &[]).await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("https://secure.example.com/redirect/https/x?a=1")
    );
    let r = e.get("shop.test:8000", "/redirect/path?a=1", &[]).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("http://shop.test:8000/elsewhere")
    );
    let r = e.get("shop.test", "/redirect/old/page?z=9", &[]).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("http://shop.test/new/page?z=9"));
    let r = e.get("any", "/direct", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (201, "made\n"));
    assert_eq!(
        r.header("x-vhost-resp"),
        Some("default"),
        "vhost response headers apply to direct responses"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_within_three_percent() {
    let e = env().await;
    let client = h1_client();
    let addr = e.addr();
    let mut counts = std::collections::HashMap::new();
    let n = 10_000;
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..8 {
        let client = client.clone();
        tasks.spawn(async move {
            let mut local = std::collections::HashMap::<String, usize>::new();
            for _ in 0..(n / 8) {
                let req = http::Request::get(format!("http://{addr}/split/{chunk}"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                let r = send(&client, req).await;
                assert_eq!(r.status, 200);
                *local
                    .entry(r.header("x-upstream").unwrap().to_string())
                    .or_default() += 1;
            }
            local
        });
    }
    while let Some(r) = tasks.join_next().await {
        for (k, v) in r.unwrap() {
            *counts.entry(k).or_insert(0usize) += v;
        }
    }
    for (name, pct) in [("a", 70.0), ("b", 20.0), ("c", 10.0)] {
        let got = *counts.get(name).unwrap_or(&0) as f64 * 100.0 / n as f64;
        assert!(
            (got - pct).abs() <= 3.0,
            "{name}: {got:.2}% vs {pct}% ({counts:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_downstream_routes_by_authority() {
    let e = env().await;
    let req = http::Request::get(format!("http://{}/exact", e.addr()))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = send(&h2_client(), req).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("a"));
    let seen = r.seen();
    assert_eq!(
        seen["version"], "HTTP/1.1",
        "default upstream protocol is HTTP/1.1"
    );
    assert_eq!(
        seen["headers"]["host"],
        e.addr().to_string(),
        ":authority becomes Host upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_any_host_port_ignores_ports() {
    let a = upstream("a").await;
    let p = proxy(
        r#"
listeners:
  - name: web
    address: "127.0.0.1:0"
    http:
      strip_any_host_port: true
      route_config:
        virtual_hosts:
          - name: api
            domains: ["api.example.com"]
            routes: [{ match: { prefix: / }, route: { cluster: a } }]
clusters:
  - name: a
    endpoints: [{ address: "{{a}}" }]
"#,
        &[("a", a.addr.to_string())],
    )
    .await;
    let addr = p.listener_addr("web").unwrap();
    assert_eq!(
        get(addr, "api.example.com:8443", "/", &[]).await.status,
        200
    );
    assert_eq!(get(addr, "[::1]:80", "/", &[]).await.status, 404);
}

/// `append_x_forwarded_for: false` (Envoy's `use_remote_address: false`):
/// x-forwarded-for goes upstream as the client sent it, or not at all.
#[tokio::test]
async fn x_forwarded_for_append_can_be_turned_off() {
    let up = upstream("up").await;
    let yaml = catch_all(
        "up",
        "",
        "  - name: up\n    endpoints: [{ address: \"{{UP}}\" }]",
    )
    .replace(
        "    http:\n",
        "    http:\n      append_x_forwarded_for: false\n",
    );
    let p = proxy(&yaml, &[("UP", up.addr.to_string())]).await;
    let addr = p.listener_addr("web").unwrap();
    let seen = get(addr, "x", "/", &[("x-forwarded-for", "10.1.2.3")])
        .await
        .seen();
    assert_eq!(seen["headers"]["x-forwarded-for"], "10.1.2.3");
    let seen = get(addr, "x", "/", &[]).await.seen();
    assert!(seen["headers"].get("x-forwarded-for").is_none(), "{seen}");
}
