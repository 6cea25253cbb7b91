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
        "legate_cluster_upstream_rq_reset_total{cluster=\"reset\"} 1",
    ] {
        assert!(stats.contains(line), "missing {line}\n{stats}");
    }
    // Metrics are process-wide and other tests here time out requests on a
    // cluster named `up` too: at least this test's one.
    let timeouts: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("legate_cluster_upstream_rq_timeout_total{cluster=\"up\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(timeouts >= 1, "no timeout counted\n{stats}");
    // Each answer carries Envoy's response flag (other tests here share
    // the listener: at least this test's).
    for (flag, at_least) in [
        ("NR", 2.0),
        ("UH", 1.0),
        ("UF", 1.0),
        ("UC", 1.0),
        ("UT", 1.0),
    ] {
        let n = metric(
            &p,
            "legate_http_response_flags_total",
            &[("listener", "web"), ("flag", flag)],
        )
        .await
        .unwrap_or(0.0);
        assert!(n >= at_least, "{flag}: {n}");
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

/// HTTP/1 route timeouts run on one timer per connection: a short timeout
/// after a long one on the same keep-alive connection must still fire on
/// time, and a request after a timeout starts afresh. HTTP/2 streams time
/// out on their own timers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeouts_fire_on_a_reused_connection_and_on_http2() {
    let up = upstream("up").await;
    let yaml = r#"
listeners:
  - name: web
    address: "127.0.0.1:0"
    http:
      route_config:
        virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
              - match: { prefix: /long }
                route: { cluster: timed, timeout: 60s }
              - match: { prefix: /short }
                route: { cluster: timed, timeout: 200ms }
clusters:
  - name: timed
    endpoints: [{ address: "{{up}}" }]
"#;
    let p = proxy(yaml, &[("up", up.addr.to_string())]).await;
    let a = p.listener_addr("web").unwrap();
    // One kept-alive connection for all of these (a raw socket, so nothing
    // but this test decides which connection is used).
    let mut conn = tokio::io::BufReader::new(tokio::net::TcpStream::connect(a).await.unwrap());
    assert_eq!(exchange(&mut conn, "/long").await.0, 200);
    // Must fire at 200 ms, not at the 60 s deadline armed just before.
    let (status, body) = exchange(&mut conn, "/short/sleep/5000").await;
    assert_eq!((status, body.as_str()), (504, "upstream request timeout"));
    assert_eq!(
        exchange(&mut conn, "/short").await.0,
        200,
        "no stale firing"
    );
    assert_eq!(
        exchange(&mut conn, "/long/sleep/300").await.0,
        200,
        "the long one is long"
    );
    drop(conn);

    // HTTP/2: two streams at once on one connection, each with its timer.
    async fn get_on(client: &HttpClient, a: std::net::SocketAddr, path: &str) -> Resp {
        let req = http::Request::get(format!("http://{a}{path}"))
            .header("host", "svc")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        send(client, req).await
    }
    let h2 = h2_client();
    let slow = get_on(&h2, a, "/short/sleep/5000");
    let fast = get_on(&h2, a, "/long/sleep/100");
    let (slow, fast) = tokio::join!(slow, fast);
    assert_eq!((slow.status, fast.status), (504, 200));
}

/// One HTTP/1.1 request on `conn`; the response's status and body
/// (`content-length` framed).
async fn exchange(
    conn: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    path: &str,
) -> (u16, String) {
    use tokio::io::AsyncBufReadExt;
    conn.get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: svc\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut status = 0;
    let mut length = 0;
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read_line(&mut line))
            .await
            .expect("a response")
            .unwrap();
        assert!(n > 0, "the connection closed");
        if status == 0 {
            status = line.split(' ').nth(1).unwrap().parse().unwrap();
        } else if line == "\r\n" {
            break;
        } else if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await.unwrap();
    (status, String::from_utf8(body).unwrap())
}
