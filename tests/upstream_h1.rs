//! Legate's upstream HTTP/1.1 client against scripted upstreams that send
//! exactly the bytes a test wants: response framing (chunked with trailers,
//! close-delimited, HEAD, 204, 1xx), malformed responses (502), connections
//! that close at awkward moments, request-body framing, and early answers
//! during an upload. Plus the downstream request-head timeout.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A request as the upstream read it: the head (lines as sent) and the body
/// (de-chunked).
#[derive(Clone, Debug)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

type Conn = BufReader<TcpStream>;

/// An upstream whose every connection runs `script(index, conn, log)`.
struct Scripted {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn scripted<F, Fut>(script: F) -> Scripted
where
    F: Fn(usize, Conn, Arc<Mutex<Vec<Seen>>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, s) = (connections.clone(), seen.clone());
    let script = Arc::new(script);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let i = c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(script(i, BufReader::new(stream), s.clone()));
        }
    });
    Scripted {
        addr,
        connections,
        seen,
    }
}

/// Reads one request (head and body) and logs it; `None` at the peer's close.
async fn read_request(conn: &mut Conn, log: &Mutex<Vec<Seen>>) -> Option<Seen> {
    let head = read_head(conn).await?;
    let mut seen = Seen {
        head,
        body: Vec::new(),
    };
    if seen
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut line = String::new();
            conn.read_line(&mut line).await.ok()?;
            let size = usize::from_str_radix(line.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            conn.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
            seen.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = seen.header("content-length") {
        let mut body = vec![0; n.parse().ok()?];
        conn.read_exact(&mut body).await.ok()?;
        seen.body = body;
    }
    log.lock().unwrap().push(seen.clone());
    Some(seen)
}

async fn read_head(conn: &mut Conn) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            return Some(head);
        }
        head.push_str(&line);
    }
}

/// Answers every request on the connection with `response`.
async fn answer_all(mut conn: Conn, log: Arc<Mutex<Vec<Seen>>>, response: &'static [u8]) {
    while read_request(&mut conn, &log).await.is_some() {
        if conn.get_mut().write_all(response).await.is_err() {
            return;
        }
    }
}

async fn legate_to(up: SocketAddr, http_extra: &str) -> legate::RunningProxy {
    let yaml = catch_all(
        "up",
        "",
        &format!("  - name: up\n    endpoints: [{{ address: \"{up}\" }}]"),
    )
    .replace("    http:\n", &format!("    http:\n{http_extra}"));
    proxy(&yaml, &[]).await
}

fn post(addr: SocketAddr, path: &str, body: &'static [u8]) -> http::Request<Full<Bytes>> {
    http::Request::post(format!("http://{addr}{path}"))
        .header("host", "svc")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_responses_pass_through_with_trailers_on_one_connection() {
    let up = scripted(|_, conn, log| {
        answer_all(
            conn,
            log,
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
        )
    })
    .await;
    let p = legate_to(up.addr, "").await;
    let addr = p.listener_addr("web").unwrap();
    for _ in 0..3 {
        let r = get(addr, "svc", "/", &[]).await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
        assert!(
            r.header("transfer-encoding")
                .is_none_or(|te| te == "chunked")
        );
    }
    // HTTP/2 downstream: the trailers arrive as trailers.
    let req = http::Request::get(format!("http://{addr}/"))
        .header("host", "svc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = h2_client().request(req).await.unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-trailer"], "t");
    assert_eq!(collected.to_bytes(), "hello world");
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "one kept-alive connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_delimited_response_is_read_to_the_end_and_not_reused() {
    let up = scripted(|_, mut conn, log| async move {
        if read_request(&mut conn, &log).await.is_some() {
            let _ = conn
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
                .await;
        }
    })
    .await;
    let p = legate_to(up.addr, "").await;
    let addr = p.listener_addr("web").unwrap();
    for _ in 0..2 {
        let r = get(addr, "svc", "/", &[]).await;
        assert_eq!((r.status, r.text().as_str()), (200, "until the end"));
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informational_responses_are_skipped() {
    let up = scripted(|_, conn, log| {
        answer_all(
            conn,
            log,
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        )
    })
    .await;
    let p = legate_to(up.addr, "").await;
    let addr = p.listener_addr("web").unwrap();
    for _ in 0..2 {
        let r = get(addr, "svc", "/", &[]).await;
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_204_and_304_responses_have_no_body_and_keep_the_connection() {
    let up = scripted(|_, mut conn, log| async move {
        while let Some(req) = read_request(&mut conn, &log).await {
            let resp: &[u8] = if req.head.starts_with("HEAD") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"
            } else if req.head.contains("/nothing") {
                b"HTTP/1.1 204 No Content\r\n\r\n"
            } else {
                b"HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n"
            };
            if conn.get_mut().write_all(resp).await.is_err() {
                return;
            }
        }
    })
    .await;
    let p = legate_to(up.addr, "").await;
    let addr = p.listener_addr("web").unwrap();
    let client = h1_client();
    let head = http::Request::head(format!("http://{addr}/"))
        .header("host", "svc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(&client, head).await;
    assert_eq!((r.status, r.header("content-length")), (200, Some("10")));
    assert!(r.body.is_empty());
    assert_eq!(get(addr, "svc", "/nothing", &[]).await.status, 204);
    let r = get(addr, "svc", "/cached", &[]).await;
    assert_eq!((r.status, r.header("etag")), (304, Some("\"x\"")));
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_upstream_responses_get_502() {
    let cases: [&'static [u8]; 5] = [
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: -2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
    ];
    for response in cases {
        let up = scripted(move |_, conn, log| answer_all(conn, log, response)).await;
        let p = legate_to(up.addr, "").await;
        let r = get(p.listener_addr("web").unwrap(), "svc", "/", &[]).await;
        assert_eq!(r.status, 502, "for {:?}", String::from_utf8_lossy(response));
        assert!(
            r.text().ends_with("reset reason: protocol error"),
            "{}",
            r.text()
        );
    }
    // A response head past 60 KiB.
    let up = scripted(|_, mut conn, log| async move {
        if read_request(&mut conn, &log).await.is_some() {
            let big = format!(
                "HTTP/1.1 200 OK\r\nx-big: {}\r\n\r\n",
                "a".repeat(70 * 1024)
            );
            let _ = conn.get_mut().write_all(big.as_bytes()).await;
        }
    })
    .await;
    let p = legate_to(up.addr, "").await;
    assert_eq!(
        get(p.listener_addr("web").unwrap(), "svc", "/", &[])
            .await
            .status,
        502
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_closing_before_its_response_gets_503() {
    let up = scripted(|_, mut conn, log| async move {
        let _ = read_request(&mut conn, &log).await;
    })
    .await;
    let p = legate_to(up.addr, "").await;
    let r = get(p.listener_addr("web").unwrap(), "svc", "/", &[]).await;
    assert_eq!(r.status, 503);
    assert!(
        r.text().ends_with("reset reason: connection termination"),
        "{}",
        r.text()
    );
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "a new connection is not retried"
    );
    // A body cut short: the downstream response is cut too.
    let up = scripted(|_, mut conn, log| async move {
        if read_request(&mut conn, &log).await.is_some() {
            let _ = conn
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
                .await;
        }
    })
    .await;
    let p = legate_to(up.addr, "").await;
    let req = http::Request::get(format!("http://{}/", p.listener_addr("web").unwrap()))
        .header("host", "svc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    // The client sees an error, never a short success: either the body
    // fails, or (when the cut comes before the head was flushed) the
    // whole response.
    match h1_client().request(req).await {
        Ok(resp) => {
            assert_eq!(resp.status(), 200);
            assert!(
                resp.into_body().collect().await.is_err(),
                "a truncated body is an error"
            );
        }
        Err(e) => assert!(
            e.is_connect() || format!("{e:?}").contains("IncompleteMessage"),
            "{e:?}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_upstream_closed_is_not_used() {
    let closed = Arc::new(AtomicUsize::new(0));
    let c = closed.clone();
    // Each connection serves one keep-alive response, then the server closes it.
    let up = scripted(move |_, mut conn, log| {
        let c = c.clone();
        async move {
            if read_request(&mut conn, &log).await.is_some() {
                let _ = conn
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
            drop(conn);
            c.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    let p = legate_to(up.addr, "").await;
    let addr = p.listener_addr("web").unwrap();
    // POSTs: once written they are never replayed, so only checking the
    // pooled connection before use can save them.
    for i in 1..=3 {
        let r = send(&h1_client(), post(addr, "/order", b"one order")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        eventually("the upstream closed its side", || {
            let c = closed.clone();
            async move { c.load(Ordering::SeqCst) == i }
        })
        .await;
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 3);
    assert_eq!(
        up.seen.lock().unwrap().len(),
        3,
        "no request was lost or sent twice"
    );
}

/// The first connection answers one request, then reads the next and
/// closes without answering (the server's idle close racing our reuse).
/// Later connections answer normally.
async fn closes_on_the_second_request(i: usize, mut conn: Conn, log: Arc<Mutex<Vec<Seen>>>) {
    if i == 0 {
        if read_request(&mut conn, &log).await.is_some() {
            let _ = conn
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
        let _ = read_request(&mut conn, &log).await;
        return;
    }
    answer_all(
        conn,
        log,
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_lost_to_a_closing_connection_is_retried_only_when_safe() {
    let up = scripted(closes_on_the_second_request).await;
    let p = legate_to(up.addr, "").await;
    let addr = p.listener_addr("web").unwrap();
    assert_eq!(get(addr, "svc", "/", &[]).await.text(), "ok");
    let r = get(addr, "svc", "/again", &[]).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "fresh"),
        "a bodiless GET goes again"
    );
    let seen: Vec<String> = up
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.head.lines().next().unwrap().to_string())
        .collect();
    assert_eq!(
        seen,
        [
            "GET / HTTP/1.1",
            "GET /again HTTP/1.1",
            "GET /again HTTP/1.1"
        ]
    );

    // The same race with a POST: not replayed (it may have been processed).
    let up = scripted(closes_on_the_second_request).await;
    let p = legate_to(up.addr, "").await;
    let addr = p.listener_addr("web").unwrap();
    assert_eq!(get(addr, "svc", "/", &[]).await.status, 200);
    let r = send(&h1_client(), post(addr, "/order", b"one order")).await;
    assert_eq!(r.status, 503);
    let posts = up
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.head.starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "the POST reached the upstream once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_framed_for_the_upstream() {
    let up = scripted(|_, conn, log| {
        answer_all(conn, log, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    })
    .await;
    let p = legate_to(up.addr, "").await;
    let addr = p.listener_addr("web").unwrap();

    // HTTP/1 with a length: sent with that length.
    assert_eq!(
        send(&h1_client(), post(addr, "/a", b"twelve bytes"))
            .await
            .status,
        200
    );
    // An empty POST says so.
    assert_eq!(send(&h1_client(), post(addr, "/b", b"")).await.status, 200);
    // HTTP/2 without a length: sent chunked.
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake::<_, _, StreamBody<_>>(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let frames = futures_util::stream::iter(
        ["first ", "second ", "third"].map(|s| Ok::<_, Infallible>(Frame::data(Bytes::from(s)))),
    );
    let req = http::Request::post("http://svc/c")
        .body(StreamBody::new(frames))
        .unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), 200);

    let seen = up.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].header("content-length").as_deref(), Some("12"));
    assert_eq!(seen[0].body, b"twelve bytes");
    assert_eq!(seen[1].header("content-length").as_deref(), Some("0"));
    assert_eq!(
        seen[2].header("transfer-encoding").as_deref(),
        Some("chunked")
    );
    assert_eq!(seen[2].header("content-length"), None);
    assert_eq!(seen[2].body, b"first second third");
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_streams_both_ways() {
    // The test upstream echoes the body: 4 MiB up and back at once.
    let up = upstream("echo").await;
    let p = legate_to(up.addr, "").await;
    let addr = p.listener_addr("web").unwrap();
    let body: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
    let req = http::Request::post(format!("http://{addr}/echo"))
        .header("host", "svc")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let r = send(&h1_client(), req).await;
    assert_eq!(r.status, 200);
    assert!(r.body == body, "the echo came back intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_upload_ends_reaches_the_client() {
    // The upstream answers as soon as it has the head, reads no body.
    let up = scripted(|_, mut conn, _log| async move {
        if read_head(&mut conn).await.is_some() {
            let _ = conn
                .get_mut()
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large")
                .await;
            // Keep reading (and dropping) so the proxy's writes do not fail.
            let mut sink = [0u8; 4096];
            while matches!(conn.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    })
    .await;
    let p = legate_to(up.addr, "").await;
    let addr = p.listener_addr("web").unwrap();
    // Half the announced body, then wait for the answer.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nhost: svc\r\ncontent-length: 100000\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[b'x'; 50000]).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("too large") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer before the upload ends")
            .unwrap();
        assert!(
            n > 0,
            "closed before the answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 413"));
}

/// Reads until the peer closes; panics if it has not closed within 10 s.
async fn closed_within_deadline(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the proxy closes the connection")
        .ok();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_timeout_closes_slow_and_idle_connections_only() {
    let up = upstream("up").await;
    let p = legate_to(up.addr, "      request_headers_timeout: 300ms\n").await;
    let addr = p.listener_addr("web").unwrap();

    // A head trickled and never finished: closed, nothing forwarded.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: svc\r\n")
        .await
        .unwrap();
    assert!(closed_within_deadline(&mut slow).await.is_empty());

    // An idle keep-alive connection: served, then closed once idle.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_within_deadline(&mut idle).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));

    // Being served is not waiting: a response slower than the timeout, and
    // another request on the same connection afterwards, both succeed.
    let client = h1_client();
    for path in ["/sleep/900", "/"] {
        let req = http::Request::get(format!("http://{addr}{path}"))
            .header("host", "svc")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send(&client, req).await.status, 200);
    }
    assert_eq!(
        up.requests.load(Ordering::SeqCst),
        3,
        "the trickled head never went upstream"
    );
}
