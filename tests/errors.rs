//! Every error a client can meet, with Envoy's status codes.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = r#"
listeners:
  - name: web
    address: "127.0.0.1:0"
    http:
      max_request_headers_kb: 16
      route_config:
        virtual_hosts:
          - name: only
            domains: ["known.test"]
            routes:
              - match: { prefix: /ok }
                route: { cluster: up }
              - match: { prefix: /slow }
                route: { cluster: up, timeout: 200ms }
              - match: { prefix: /empty }
                route: { cluster: empty }
              - match: { prefix: /refused }
                route: { cluster: refused }
              - match: { prefix: /reset }
                route: { cluster: reset }
clusters:
  - name: up
    endpoints: [{ address: "{{up}}" }]
  - name: empty
  - name: refused
    connect_timeout: 1s
    endpoints: [{ address: "{{closed}}" }]
  - name: reset
    endpoints: [{ address: "{{reset}}" }]
"#;

/// An address nothing listens on.
async fn closed_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a.to_string()
}

/// A server that accepts, reads a little, and closes without answering.
async fn resetting_server() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    a.to_string()
}

async fn env() -> (legate::RunningProxy, Upstream) {
    let up = upstream("up").await;
    let p = proxy(
        CONFIG,
        &[
            ("up", up.addr.to_string()),
            ("closed", closed_port().await),
            ("reset", resetting_server().await),
        ],
    )
    .await;
    (p, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses() {
    let (p, _up) = env().await;
    let a = p.listener_addr("web").unwrap();
    assert_eq!(get(a, "known.test", "/ok", &[]).await.status, 200);
    assert_eq!(
        get(a, "unknown.test", "/ok", &[]).await.status,
        404,
        "no virtual host"
    );
    assert_eq!(
        get(a, "known.test", "/nope", &[]).await.status,
        404,
        "no route"
    );

    let r = get(a, "known.test", "/empty", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (503, "no healthy upstream"));

    let r = get(a, "known.test", "/refused", &[]).await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("connection failure"), "{}", r.text());

    let r = get(a, "known.test", "/reset", &[]).await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("connection termination"), "{}", r.text());

    let r = get(a, "known.test", "/slow/sleep/3000", &[]).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (504, "upstream request timeout")
    );

    let stats = admin_get(&p, "/stats/prometheus").await.text();
    for line in [
        "legate_cluster_upstream_cx_none_healthy_total{cluster=\"empty\"} 1",
        "legate_cluster_upstream_cx_connect_fail_total{cluster=\"refused\"} 1",
        "legate_cluster_upstream_rq_timeout_total{cluster=\"up\"} 1",
        "legate_cluster_upstream_rq_reset_total{cluster=\"reset\"} 1",
    ] {
        assert!(stats.contains(line), "missing {line}\n{stats}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_gets_400() {
    let (p, up) = env().await;
    let a = p.listener_addr("web").unwrap();
    let out = raw(a, b"THIS IS NOT HTTP\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    let out = raw(
        a,
        b"GET /ok HTTP/1.1\r\nHost: known.test\r\nbad header line\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    assert_eq!(
        up.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing reached upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    let (p, up) = env().await;
    let a = p.listener_addr("web").unwrap();
    let big = "x".repeat(20 * 1024);
    let req = format!("GET /ok HTTP/1.1\r\nHost: known.test\r\nx-big: {big}\r\n\r\n");
    let out = raw(a, req.as_bytes()).await;
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "{:?}",
        &out[..out.len().min(200)]
    );

    let mut many = String::from("GET /ok HTTP/1.1\r\nHost: known.test\r\n");
    for i in 0..150 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let out = raw(a, many.as_bytes()).await;
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "{:?}",
        &out[..out.len().min(200)]
    );

    // Just under the limit passes.
    let ok = "x".repeat(12 * 1024);
    assert_eq!(
        get(a, "known.test", "/ok", &[("x-big", ok.as_str())])
            .await
            .status,
        200
    );
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_sees_the_same_statuses() {
    let (p, _up) = env().await;
    let a = p.listener_addr("web").unwrap();
    let big = format!("x-big: {}", "x".repeat(20 * 1024));
    let cases: &[(&[&str], &str)] = &[
        (&["-H", "Host: known.test", "/ok"], "200"),
        (&["-H", "Host: known.test", "/nope"], "404"),
        (
            &["-H", "Host: known.test", "--http2-prior-knowledge", "/ok"],
            "200",
        ),
        (&["-H", "Host: known.test", "-H", &big, "/ok"], "431"),
    ];
    for (args, want) in cases {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
        let (path, rest) = args.split_last().unwrap();
        cmd.args(rest).arg(format!("http://{a}{path}"));
        let out = cmd.output().await.expect("curl is installed");
        assert_eq!(String::from_utf8_lossy(&out.stdout), *want, "curl {args:?}");
    }
}

/// The route timeout starts when the request body has been received, as
/// Envoy's does: a slow upload is not cut off, a slow upstream still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_starts_after_the_upload() {
    use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
    use hyper::body::Frame;
    use std::convert::Infallible;

    let (p, _up) = env().await;
    let a = p.listener_addr("web").unwrap();
    let client: hyper_util::client::legacy::Client<_, BoxBody<bytes::Bytes, Infallible>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();

    // 8 chunks, 100 ms apart: 800 ms of upload against a 200 ms route timeout.
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1);
    tokio::spawn(async move {
        for i in 0..8u8 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tx
                .send(bytes::Bytes::from(vec![b'a' + i; 1000]))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let req = http::Request::post(format!("http://{a}/slow/echo"))
        .header("host", "known.test")
        .body(BoxBody::new(StreamBody::new(stream)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body.len(),
        8000,
        "the whole upload reached the upstream and came back"
    );

    // A quick upload to a slow upstream still times out.
    let req = http::Request::post(format!("http://{a}/slow/sleep/3000"))
        .header("host", "known.test")
        .body(BoxBody::new(http_body_util::Full::new(
            bytes::Bytes::from_static(b"x"),
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 504);
}

/// Once the response headers are out, the route timeout keeps running until
/// the body ends: a body that stalls is cut (the response is reset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_covers_the_response_body() {
    // Headers and 5 of 100 promised bytes, then nothing.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalling = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let clusters = format!("  - name: stall\n    endpoints: [{{ address: \"{stalling}\" }}]");
    let p = proxy(&catch_all("stall", ", timeout: 300ms", &clusters), &[]).await;
    let a = p.listener_addr("web").unwrap();
    let req = http::Request::get(format!("http://{a}/"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), h1_client().request(req))
        .await
        .expect("headers arrive")
        .expect("response");
    assert_eq!(resp.status(), 200);
    use http_body_util::BodyExt;
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .expect("the proxy ends the stalled body instead of waiting 30 s");
    assert!(body.is_err(), "a cut body is an error, not a short success");
    let stats = admin_get(&p, "/stats/prometheus").await.text();
    assert!(
        stats.contains("legate_cluster_upstream_rq_timeout_total{cluster=\"stall\"} 1"),
        "{stats}"
    );
}
