//! Legate's HTTP/1.1 server as a client on a raw socket sees it: framing
//! refusals (400 before anything goes upstream), `Expect: 100-continue`,
//! pipelining, HTTP/1.0 keep-alive rules, chunked uploads, `Date`, and what
//! happens to a body nobody read.

mod common;

use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn legate() -> (legate::RunningProxy, Upstream) {
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
              - match: { prefix: /up }
                route: { cluster: up }
clusters:
  - name: up
    endpoints: [{ address: "{{up}}" }]
"#;
    (proxy(yaml, &[("up", up.addr.to_string())]).await, up)
}

/// A response read off a raw connection.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one response (`content-length` or chunked framing, or none).
async fn answer(conn: &mut BufReader<TcpStream>) -> Answer {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read_line(&mut line))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed mid-head: {head:?}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut a = Answer {
        status,
        head,
        body: Vec::new(),
    };
    if let Some(n) = a.header("content-length") {
        let mut body = vec![0; n.parse().unwrap()];
        conn.read_exact(&mut body).await.unwrap();
        a.body = body;
    } else if a.header("transfer-encoding") == Some("chunked") {
        loop {
            let mut line = String::new();
            conn.read_line(&mut line).await.unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            conn.read_exact(&mut chunk).await.unwrap();
            if size == 0 {
                break;
            }
            a.body.extend_from_slice(&chunk[..size]);
        }
    }
    a
}

/// Whether the proxy closes the connection (within 10 s) with nothing more
/// to say.
async fn closed(conn: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest)).await {
        Ok(Ok(_)) | Ok(Err(_)) => rest.is_empty(),
        Err(_) => false,
    }
}

async fn connect(p: &legate::RunningProxy) -> BufReader<TcpStream> {
    BufReader::new(
        TcpStream::connect(p.listener_addr("web").unwrap())
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_request_framing_gets_400_and_nothing_goes_upstream() {
    let (p, up) = legate().await;
    for req in [
        "POST /up HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /up HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\n\r\nhello",
        "POST /up HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /up HTTP/1.0\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /up HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        "POST /up HTTP/1.1\r\nhost: a\r\ncontent-length: 0x5\r\n\r\nhello",
        "GET /up HTTP/1.1\r\nhost: a\r\nx-bad\x01header: 1\r\n\r\n",
    ] {
        let mut c = connect(&p).await;
        c.get_mut().write_all(req.as_bytes()).await.unwrap();
        let a = answer(&mut c).await;
        assert_eq!(a.status, 400, "{req:?}");
        assert_eq!(a.header("connection"), Some("close"));
        assert!(closed(&mut c).await, "closed after the 400");
    }
    assert_eq!(
        up.requests.load(Ordering::SeqCst),
        0,
        "nothing reached upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body() {
    let (p, up) = legate().await;
    let mut c = connect(&p).await;
    c.get_mut()
        .write_all(b"POST /up/echo HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n")
        .await
        .unwrap();
    let interim = answer(&mut c).await;
    assert_eq!(interim.status, 100);
    c.get_mut().write_all(b"hello").await.unwrap();
    let a = answer(&mut c).await;
    assert_eq!((a.status, a.body.as_slice()), (200, &b"hello"[..]));
    assert_eq!(up.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (p, _up) = legate().await;
    let mut c = connect(&p).await;
    c.get_mut()
        .write_all(
            b"GET /up/first HTTP/1.1\r\nhost: a\r\n\r\n\
              POST /up/echo HTTP/1.1\r\nhost: a\r\ncontent-length: 6\r\n\r\nsecond\
              GET /up/third HTTP/1.1\r\nhost: a\r\n\r\n",
        )
        .await
        .unwrap();
    let first = answer(&mut c).await;
    assert!(String::from_utf8_lossy(&first.body).contains("/up/first"));
    let second = answer(&mut c).await;
    assert_eq!(second.body, b"second");
    let third = answer(&mut c).await;
    assert!(String::from_utf8_lossy(&third.body).contains("/up/third"));
    assert!(first.header("date").is_some_and(|d| d.ends_with(" GMT")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_closes_unless_kept_alive() {
    let (p, _up) = legate().await;
    let mut c = connect(&p).await;
    c.get_mut()
        .write_all(b"GET /up HTTP/1.0\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let a = answer(&mut c).await;
    assert_eq!((a.status, a.header("connection")), (200, Some("close")));
    assert!(closed(&mut c).await);

    let mut c = connect(&p).await;
    for _ in 0..2 {
        c.get_mut()
            .write_all(b"GET /up HTTP/1.0\r\nhost: a\r\nconnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let a = answer(&mut c).await;
        assert_eq!(
            (a.status, a.header("connection")),
            (200, Some("keep-alive"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_uploads_reach_the_upstream_whole() {
    let (p, _up) = legate().await;
    let mut c = connect(&p).await;
    c.get_mut()
        .write_all(
            b"POST /up/echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n",
        )
        .await
        .unwrap();
    let a = answer(&mut c).await;
    assert_eq!((a.status, a.body.as_slice()), (200, &b"hello, world"[..]));
    // The connection goes on.
    c.get_mut()
        .write_all(b"GET /up HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(answer(&mut c).await.status, 200);
    // A malformed chunk: the upload fails, the connection closes.
    let mut c = connect(&p).await;
    c.get_mut()
        .write_all(b"POST /up/echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n")
        .await
        .unwrap();
    let a = answer(&mut c).await;
    assert_eq!(
        (a.status, a.body.as_slice()),
        (400, &b"bad request body"[..])
    );
    assert!(closed(&mut c).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_nobody_reads_ends_the_connection_after_the_answer() {
    let (p, up) = legate().await;
    let mut c = connect(&p).await;
    // No route: 404 without reading the body (it may be large).
    c.get_mut()
        .write_all(b"POST /nowhere HTTP/1.1\r\nhost: a\r\ncontent-length: 100000\r\n\r\nsome")
        .await
        .unwrap();
    let a = answer(&mut c).await;
    assert_eq!(a.status, 404);
    assert!(
        closed(&mut c).await,
        "its unread body cannot be skipped safely"
    );
    // HEAD: no body, whatever the length says.
    let mut c = connect(&p).await;
    c.get_mut()
        .write_all(b"HEAD /up HTTP/1.1\r\nhost: a\r\n\r\nGET /up HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let head = answer_head_only(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let next = answer(&mut c).await;
    assert_eq!(
        next.status, 200,
        "the next response starts right after the HEAD one"
    );
    assert_eq!(up.requests.load(Ordering::SeqCst), 2);
}

/// The head of a response that has no body whatever its headers say.
async fn answer_head_only(conn: &mut BufReader<TcpStream>) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).await.unwrap();
        if line == "\r\n" || line.is_empty() {
            return head;
        }
        head.push_str(&line);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_past_64_kib_are_read_whole_when_allowed() {
    let up = upstream("up").await;
    let yaml = catch_all(
        "up",
        "",
        &format!(
            "  - name: up\n    endpoints: [{{ address: \"{}\" }}]",
            up.addr
        ),
    )
    .replace(
        "    http:\n",
        "    http:\n      max_request_headers_kb: 256\n",
    );
    let p = proxy(&yaml, &[]).await;
    let mut c = connect(&p).await;
    let big = "b".repeat(100 * 1024);
    c.get_mut()
        .write_all(
            format!("GET /x HTTP/1.1\r\nhost: a\r\nx-big: {big}\r\nx-after: yes\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let a = answer(&mut c).await;
    assert_eq!(a.status, 200);
    let seen: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(seen["headers"]["x-after"], "yes");
    assert_eq!(
        seen["headers"]["x-big"].as_str().map(str::len),
        Some(big.len())
    );
}

/// A body that is malformed is the client's protocol error (flag DPE); one
/// the client stops sending by leaving is a downstream connection
/// termination (flag DC). Both count in the listener's flag counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_uploads_are_flagged_by_why() {
    let (p, _up) = legate().await;
    let flag = |f: &'static str| {
        let p = &p;
        async move {
            metric(
                p,
                "legate_http_response_flags_total",
                &[("listener", "web"), ("flag", f)],
            )
            .await
            .unwrap_or(0.0)
        }
    };
    let (dpe, dc) = (flag("DPE").await, flag("DC").await);
    let mut c = connect(&p).await;
    c.get_mut()
        .write_all(b"POST /up/echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n")
        .await
        .unwrap();
    assert_eq!(answer(&mut c).await.status, 400);
    eventually("DPE counted", || async { flag("DPE").await > dpe }).await;
    // Ten bytes of a hundred, then the client is gone.
    let mut c = connect(&p).await;
    c.get_mut()
        .write_all(b"POST /up/echo HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    drop(c);
    eventually("DC counted", || async { flag("DC").await > dc }).await;
}
