mod common;

// Protocol coverage through a real, in-process Legate: HTTP/1.1 keep-alive,
// HTTP/2 on both sides, gRPC (unary, streaming, trailers) with tonic,
// HTTP/1.1 Upgrade tunnels, and the opaque TCP proxy (half-close, refused
// upstreams, idle timeout). Everything runs on 127.0.0.1 ephemeral ports.

use bytes::Bytes;
use common::{HttpClient, h2_client, proxy, send, upstream};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use legate::RunningProxy;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

// ---------------------------------------------------------------------------
// HTTP/1.1
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_keep_alive_reuses_one_connection_on_each_side() {
    let up = upstream("ka").await;
    let (_proxy, addr) = http_proxy(up.addr, "http1").await;

    // One explicit client connection, so reuse downstream is by construction.
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);

    for i in 0..50 {
        within("client connection ready", sender.ready())
            .await
            .expect("Legate kept the client connection open");
        let req = Request::get(format!("/req/{i}"))
            .header("host", "keepalive.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = within("response", sender.send_request(req)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "request {i}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(seen["path"], format!("/req/{i}"));
        assert_eq!(seen["headers"]["host"], "keepalive.test");
    }

    assert_eq!(up.requests.load(Ordering::SeqCst), 50);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "Legate should reuse one pooled upstream connection for sequential requests"
    );
}

// ---------------------------------------------------------------------------
// HTTP/2
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_both_sides_keeps_authority_and_multiplexes() {
    let up = upstream("h2").await;
    let (_proxy, addr) = http_proxy(up.addr, "http2").await;
    let client = h2_client();
    let authority = addr.to_string();
    let h2 = format!("{:?}", Version::HTTP_2);

    let resp = send(&client, get_req(&format!("http://{addr}/first"))).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = resp.seen();
    assert_eq!(seen["version"], h2.as_str());
    assert_eq!(seen["authority"], authority.as_str());
    assert_eq!(seen["path"], "/first");

    // 100 concurrent streams; the upstream holds each briefly so they overlap.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let client: HttpClient = client.clone();
        let uri = format!("http://{addr}/sleep/20?i={i}");
        set.spawn(async move { (i, send(&client, get_req(&uri)).await) });
    }
    let mut ok = 0;
    while let Some(joined) = within("concurrent requests", set.join_next()).await {
        let (i, resp) = joined.expect("request task");
        assert_eq!(resp.status, 200, "request {i}: {}", resp.text());
        let seen = resp.seen();
        assert_eq!(seen["version"], h2.as_str());
        assert_eq!(seen["authority"], authority.as_str());
        assert_eq!(seen["path"], format!("/sleep/20?i={i}"));
        ok += 1;
    }
    assert_eq!(ok, 100);
    assert_eq!(up.requests.load(Ordering::SeqCst), 101);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "all streams should share one upstream HTTP/2 connection"
    );

    // A body larger than the stream and connection windows streams through.
    let big = Bytes::from(random_bytes(3 * 1024 * 1024, 3));
    let req = Request::post(format!("http://{addr}/echo"))
        .body(Full::new(big.clone()))
        .unwrap();
    let resp = send(&client, req).await;
    assert_eq!(resp.status, 200);
    assert!(resp.body == big, "3 MiB echoed intact over HTTP/2");
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);

    // An HTTP/1.1 client's Host becomes the upstream :authority.
    let resp = common::get(addr, "svc.example:8080", "/from-h1", &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = resp.seen();
    assert_eq!(seen["version"], h2.as_str());
    assert_eq!(seen["authority"], "svc.example:8080");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_downstream_to_http1_upstream_sets_host() {
    let up = upstream("h1").await;
    let (_proxy, addr) = http_proxy(up.addr, "http1").await;
    let client = h2_client();

    for i in 0..3 {
        let resp = send(&client, get_req(&format!("http://{addr}/down-h2/{i}"))).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.header("x-upstream"), Some("h1"));
        let seen = resp.seen();
        assert_eq!(seen["version"], format!("{:?}", Version::HTTP_11));
        assert_eq!(seen["headers"]["host"], addr.to_string());
        assert_eq!(seen["path"], format!("/down-h2/{i}"));
    }
}

// ---------------------------------------------------------------------------
// gRPC (tonic), cluster speaking HTTP/2
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary() {
    let (_proxy, mut client) = grpc_setup().await;
    let reply = within(
        "unary call",
        client.unary(
            tonic::Request::new(grpc::EchoRequest {
                message: "hello".into(),
                count: 0,
            }),
            grpc::path(grpc::UNARY),
            grpc::codec(),
        ),
    )
    .await
    .expect("unary call succeeds")
    .into_inner();
    assert_eq!(reply.message, "echo: hello");
    assert_eq!(reply.seq, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bidi_streaming_is_not_buffered() {
    let (_proxy, mut client) = grpc_setup().await;
    let (tx, rx) = mpsc::channel::<grpc::EchoRequest>(1);
    // The call resolves on response headers, before any message was sent.
    let mut replies = within(
        "bidi call opens",
        client.streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            grpc::path(grpc::BIDI),
            grpc::codec(),
        ),
    )
    .await
    .expect("bidi call opens")
    .into_inner();

    // Lock step: each echo must come back before the next message is sent.
    for i in 0..5 {
        tx.send(grpc::EchoRequest {
            message: format!("msg-{i}"),
            count: 0,
        })
        .await
        .unwrap();
        let reply = within("echo of one message", replies.message())
            .await
            .expect("stream ok")
            .expect("a reply, not the end of the stream");
        assert_eq!(reply.message, format!("echo: msg-{i}"));
        assert_eq!(reply.seq, i + 1);
    }
    drop(tx);
    let end = within("end of stream", replies.message())
        .await
        .expect("clean end");
    assert!(end.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_error_status_and_trailers_pass_through() {
    let (_proxy, mut client) = grpc_setup().await;

    // Trailers-only response (the status arrives in the only HEADERS frame).
    let status = within(
        "failing unary call",
        client.unary::<_, grpc::EchoReply, _>(
            tonic::Request::new(grpc::EchoRequest::default()),
            grpc::path(grpc::FAIL),
            grpc::codec(),
        ),
    )
    .await
    .expect_err("the call fails");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "nope");
    assert_eq!(
        status
            .metadata()
            .get(grpc::TRAILER_KEY)
            .map(|v| v.to_str().unwrap()),
        Some(grpc::TRAILER_VALUE)
    );

    // A real trailers frame after a message.
    within("grpc client ready", client.ready()).await.unwrap();
    let mut stream = within(
        "streaming call that fails late",
        client.server_streaming(
            tonic::Request::new(grpc::EchoRequest::default()),
            grpc::path(grpc::FAIL_AFTER_ONE),
            grpc::codec(),
        ),
    )
    .await
    .expect("response headers")
    .into_inner();
    let first = within("first message", stream.message())
        .await
        .expect("first message ok")
        .expect("one message before the error");
    assert_eq!(first.message, "before the error");
    let status = within("trailers", stream.message())
        .await
        .expect_err("the stream ends with an error status");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(status.message(), "nope");
    assert_eq!(
        status
            .metadata()
            .get(grpc::TRAILER_KEY)
            .map(|v| v.to_str().unwrap()),
        Some(grpc::TRAILER_VALUE)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_server_streaming_100_messages() {
    let (_proxy, mut client) = grpc_setup().await;
    let mut stream = within(
        "server streaming call",
        client.server_streaming(
            tonic::Request::new(grpc::EchoRequest {
                message: "tick".into(),
                count: 100,
            }),
            grpc::path(grpc::SERVER_STREAM),
            grpc::codec(),
        ),
    )
    .await
    .expect("response headers")
    .into_inner();
    for i in 0..100 {
        let reply = within("next message", stream.message())
            .await
            .expect("message ok")
            .unwrap_or_else(|| panic!("stream ended after {i} messages"));
        assert_eq!(reply.seq, i);
        assert_eq!(reply.message, format!("tick {i}"));
    }
    let end = within("end of stream", stream.message())
        .await
        .expect("grpc-status 0 in the trailers");
    assert!(end.is_none());
}

// ---------------------------------------------------------------------------
// HTTP/1.1 Upgrade (WebSocket-style tunnel)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_tunnels_raw_bytes_and_plain_requests_still_work() {
    let up = upgrade_upstream().await;
    let (_proxy, addr) = http_proxy(up, "http1").await;

    // A plain request on the listener, on its own connection.
    let resp = common::get(addr, "ws.test", "/plain", &[]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "plain");

    // One client connection: a plain keep-alive request, then the upgrade.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    stream
        .write_all(b"GET /plain HTTP/1.1\r\nHost: ws.test\r\n\r\n")
        .await
        .unwrap();
    let head = within("plain response head", read_head(&mut stream, &mut buf))
        .await
        .expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let len: usize = header_value(&head, "content-length")
        .expect("content-length")
        .parse()
        .unwrap();
    let body = within(
        "plain body",
        read_exact_buffered(&mut stream, &mut buf, len),
    )
    .await;
    assert_eq!(body, b"plain");

    stream
        .write_all(
            b"GET /chat HTTP/1.1\r\n\
              Host: ws.test\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let head = within("101 response head", read_head(&mut stream, &mut buf))
        .await
        .expect("a response");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        header_value(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{head}"
    );
    assert!(buf.is_empty(), "no bytes may follow the 101 yet");

    // Several round trips through the tunnel.
    for i in 0..5 {
        let msg = format!("frame {i}: {}", "x".repeat(i * 100));
        stream.write_all(msg.as_bytes()).await.unwrap();
        let mut echoed = vec![0; msg.len()];
        within("echo", stream.read_exact(&mut echoed))
            .await
            .unwrap();
        assert_eq!(echoed, msg.as_bytes());
    }
    // A larger chunk, written and read concurrently.
    let big = random_bytes(256 * 1024, 7);
    let (mut r, mut w) = stream.split();
    let mut echoed = vec![0; big.len()];
    let (wrote, read) = within("large echo", async {
        tokio::join!(w.write_all(&big), r.read_exact(&mut echoed))
    })
    .await;
    wrote.unwrap();
    read.unwrap();
    assert!(echoed == big, "large payload came back intact");

    // Closing our side ends the tunnel end to end.
    stream.shutdown().await.unwrap();
    expect_closed(&mut stream, Duration::from_secs(10)).await;
}

// ---------------------------------------------------------------------------
// TCP proxy
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_proxy_is_byte_exact_with_half_close() {
    let (up, mut received) = reverse_echo_upstream().await;
    let (_proxy, addr) = tcp_proxy(up, "1h").await;

    let payload = random_bytes(1024 * 1024, 42);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    within("send payload", stream.write_all(&payload))
        .await
        .unwrap();
    // Half-close: the upstream only answers once it sees our FIN.
    stream.shutdown().await.unwrap();

    let mut got = Vec::with_capacity(payload.len());
    within("read reply to EOF", stream.read_to_end(&mut got))
        .await
        .unwrap();
    let n = within("upstream report", received.recv())
        .await
        .expect("upstream saw a connection");
    assert_eq!(n, payload.len(), "upstream received every byte before EOF");
    let expected: Vec<u8> = payload.iter().rev().copied().collect();
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "reply is the payload reversed, byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_proxy_closes_client_when_upstream_refuses() {
    // A bound socket that never listens: connecting to it is refused, and
    // no other test can take the port meanwhile.
    let reserved =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    reserved.bind(&any.into()).unwrap();
    let closed = reserved.local_addr().unwrap().as_socket().unwrap();
    let (_proxy, addr) = tcp_proxy(closed, "1h").await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    expect_closed(&mut stream, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_idle_timeout_closes_a_quiet_connection() {
    let (up, mut upstream_closed) = silent_upstream().await;
    let (_proxy, addr) = tcp_proxy(up, "200ms").await;

    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    expect_closed(&mut stream, Duration::from_secs(5)).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(150),
        "closed after {elapsed:?}, before the idle timeout could have passed"
    );
    // Legate closes its upstream side too.
    within("upstream sees the close", upstream_closed.recv())
        .await
        .expect("upstream connection ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_idle_timeout_spares_an_active_connection() {
    let up = echo_upstream().await;
    let (_proxy, addr) = tcp_proxy(up, "1s").await;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Traffic every 100 ms for 2.5 s: well past the 1 s idle timeout overall,
    // but never idle for long.
    for i in 0..25u32 {
        let msg = i.to_be_bytes();
        stream.write_all(&msg).await.unwrap();
        let mut echoed = [0u8; 4];
        within("echo", stream.read_exact(&mut echoed))
            .await
            .expect("connection still open while active");
        assert_eq!(echoed, msg);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then quiet: the timeout applies.
    expect_closed(&mut stream, Duration::from_secs(10)).await;
}

// ---------------------------------------------------------------------------
// Helpers: proxies
// ---------------------------------------------------------------------------

/// An HTTP listener routing everything to one cluster speaking `protocol`.
async fn http_proxy(upstream: SocketAddr, protocol: &str) -> (RunningProxy, SocketAddr) {
    http_proxy_with(upstream, protocol, "").await
}

/// As [`http_proxy`], with `route_extra` added to the route action (e.g.
/// `, retry: {...}`).
async fn http_proxy_with(
    upstream: SocketAddr,
    protocol: &str,
    route_extra: &str,
) -> (RunningProxy, SocketAddr) {
    let p = proxy(
        r#"
listeners:
  - name: main
    address: "127.0.0.1:0"
    http:
      route_config:
        virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
              - match: { prefix: / }
                route: { cluster: backend{{ROUTE}} }
clusters:
  - name: backend
    protocol: {{PROTOCOL}}
    endpoints: [{ address: "{{UPSTREAM}}" }]
"#,
        &[
            ("PROTOCOL", protocol.to_string()),
            ("UPSTREAM", upstream.to_string()),
            ("ROUTE", route_extra.to_string()),
        ],
    )
    .await;
    let addr = p.listener_addr("main").expect("listener bound");
    (p, addr)
}

/// A TCP proxy listener to one endpoint.
async fn tcp_proxy(upstream: SocketAddr, idle: &str) -> (RunningProxy, SocketAddr) {
    let p = proxy(
        r#"
listeners:
  - name: main
    address: "127.0.0.1:0"
    tcp: { cluster: echo, idle_timeout: {{IDLE}} }
clusters:
  - name: echo
    endpoints: [{ address: "{{UPSTREAM}}" }]
"#,
        &[
            ("IDLE", idle.to_string()),
            ("UPSTREAM", upstream.to_string()),
        ],
    )
    .await;
    let addr = p.listener_addr("main").expect("listener bound");
    (p, addr)
}

// ---------------------------------------------------------------------------
// Helpers: raw upstreams
// ---------------------------------------------------------------------------

/// Reads to EOF, reports how many bytes it got, writes them back reversed,
/// then closes.
async fn reverse_echo_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                if stream.read_to_end(&mut data).await.is_err() {
                    return;
                }
                let _ = tx.send(data.len());
                data.reverse();
                let _ = stream.write_all(&data).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, rx)
}

/// Echoes every read straight back until EOF.
async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Never writes; reads until the peer closes, then reports.
async fn silent_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink).await;
                let _ = tx.send(());
            });
        }
    });
    (addr, rx)
}

/// A minimal HTTP/1.1 server: plain requests get `200 plain` (keep-alive);
/// a request with `Upgrade: websocket` and `Connection: upgrade` gets a 101
/// and the connection becomes a raw echo. An upgrade request whose
/// `Connection` header lost the `upgrade` token gets a 400.
async fn upgrade_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_upgrade_connection(stream));
        }
    });
    addr
}

async fn serve_upgrade_connection(mut stream: TcpStream) {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut stream, &mut buf).await {
        let wants_ws =
            header_value(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let conn_upgrade = header_value(&head, "connection").is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
        let reply: &[u8] = match (wants_ws, conn_upgrade) {
            (true, true) => {
                b"HTTP/1.1 101 Switching Protocols\r\n\
                  Upgrade: websocket\r\n\
                  Connection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            }
            (true, false) => {
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 19\r\n\r\nupgrade header lost"
            }
            _ => b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nplain",
        };
        if stream.write_all(reply).await.is_err() {
            return;
        }
        if wants_ws && conn_upgrade {
            if !buf.is_empty() && stream.write_all(&buf).await.is_err() {
                return;
            }
            let (mut r, mut w) = stream.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers: raw HTTP/1.1 and sockets
// ---------------------------------------------------------------------------

/// Reads one message head (through the blank line) from `stream`, using and
/// refilling `buf`; bytes after the head stay in `buf`. None on EOF.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads exactly `len` bytes, taking what `buf` already holds first.
async fn read_exact_buffered<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    len: usize,
) -> Vec<u8> {
    while buf.len() < len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "EOF inside a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..len).collect()
}

/// The first value of header `name` (case-insensitive) in a message head.
fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Asserts the peer closes `stream` (EOF or reset) within `limit`; any data
/// read meanwhile is discarded.
async fn expect_closed(stream: &mut TcpStream, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

/// Awaits `fut`, panicking with `what` if it takes longer than 20 s.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

fn get_req(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri).body(Full::new(Bytes::new())).unwrap()
}

// ---------------------------------------------------------------------------
// Helpers: gRPC
// ---------------------------------------------------------------------------

/// Starts the tonic echo server, a Legate in front of it (HTTP/2 cluster),
/// and a tonic client connected to Legate.
async fn grpc_setup() -> (RunningProxy, tonic::client::Grpc<tonic::transport::Channel>) {
    let server = grpc::serve().await;
    let (p, addr) = http_proxy(server, "http2").await;
    let channel = within(
        "grpc channel connects",
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .expect("connect to Legate");
    let mut client = tonic::client::Grpc::new(channel);
    within("grpc client ready", client.ready()).await.unwrap();
    (p, client)
}

/// A hand-written gRPC echo service: the shape `tonic-build` generates,
/// without protoc.
mod grpc {
    use std::convert::Infallible;
    use std::task::{Context, Poll};
    use tokio::net::TcpListener;
    use tokio_stream::StreamExt;
    use tonic::codegen::{BoxFuture, BoxStream, Service, http};
    use tonic::server::{NamedService, ServerStreamingService, StreamingService, UnaryService};
    use tonic::{Code, Request, Response, Status, Streaming};
    use tonic_prost::ProstCodec;

    pub const UNARY: &str = "/legate.test.Echo/Unary";
    pub const BIDI: &str = "/legate.test.Echo/Bidi";
    pub const SERVER_STREAM: &str = "/legate.test.Echo/ServerStream";
    pub const FAIL: &str = "/legate.test.Echo/Fail";
    pub const FAIL_AFTER_ONE: &str = "/legate.test.Echo/FailAfterOne";
    pub const TRAILER_KEY: &str = "x-failure-detail";
    pub const TRAILER_VALUE: &str = "looked everywhere";

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EchoRequest {
        #[prost(string, tag = "1")]
        pub message: String,
        /// Number of replies for server streaming.
        #[prost(uint32, tag = "2")]
        pub count: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EchoReply {
        #[prost(string, tag = "1")]
        pub message: String,
        #[prost(uint32, tag = "2")]
        pub seq: u32,
    }

    pub fn path(p: &'static str) -> http::uri::PathAndQuery {
        http::uri::PathAndQuery::from_static(p)
    }

    /// Client codec: encodes requests, decodes replies.
    pub fn codec() -> ProstCodec<EchoRequest, EchoReply> {
        ProstCodec::default()
    }

    fn not_found() -> Status {
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert(TRAILER_KEY, TRAILER_VALUE.parse().unwrap());
        Status::with_metadata(Code::NotFound, "nope", md)
    }

    /// Binds an ephemeral port and serves the echo service on it.
    pub async fn serve() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(EchoServer)
                .serve_with_incoming(incoming),
        );
        addr
    }

    #[derive(Clone)]
    struct EchoServer;

    impl NamedService for EchoServer {
        const NAME: &'static str = "legate.test.Echo";
    }

    impl Service<http::Request<tonic::body::Body>> for EchoServer {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
            Box::pin(async move {
                let mut grpc =
                    tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
                let resp = match req.uri().path() {
                    UNARY => grpc.unary(Unary, req).await,
                    FAIL => grpc.unary(Fail, req).await,
                    BIDI => grpc.streaming(Bidi, req).await,
                    SERVER_STREAM => grpc.server_streaming(ServerStream, req).await,
                    FAIL_AFTER_ONE => grpc.server_streaming(FailAfterOne, req).await,
                    _ => Status::unimplemented("no such method").into_http(),
                };
                Ok(resp)
            })
        }
    }

    /// Echoes one message.
    struct Unary;

    impl UnaryService<EchoRequest> for Unary {
        type Response = EchoReply;
        type Future = BoxFuture<Response<EchoReply>, Status>;

        fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
            let req = req.into_inner();
            Box::pin(async move {
                Ok(Response::new(EchoReply {
                    message: format!("echo: {}", req.message),
                    seq: 1,
                }))
            })
        }
    }

    /// Answers NotFound with custom metadata (a trailers-only response).
    struct Fail;

    impl UnaryService<EchoRequest> for Fail {
        type Response = EchoReply;
        type Future = BoxFuture<Response<EchoReply>, Status>;

        fn call(&mut self, _req: Request<EchoRequest>) -> Self::Future {
            Box::pin(async { Err(not_found()) })
        }
    }

    /// Echoes each message as soon as it arrives.
    struct Bidi;

    impl StreamingService<EchoRequest> for Bidi {
        type Response = EchoReply;
        type ResponseStream = BoxStream<EchoReply>;
        type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

        fn call(&mut self, req: Request<Streaming<EchoRequest>>) -> Self::Future {
            Box::pin(async move {
                let mut seq = 0;
                let replies = req.into_inner().map(move |m| {
                    seq += 1;
                    m.map(|m| EchoReply {
                        message: format!("echo: {}", m.message),
                        seq,
                    })
                });
                Ok(Response::new(Box::pin(replies) as Self::ResponseStream))
            })
        }
    }

    /// `count` replies, numbered from 0.
    struct ServerStream;

    impl ServerStreamingService<EchoRequest> for ServerStream {
        type Response = EchoReply;
        type ResponseStream = BoxStream<EchoReply>;
        type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

        fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
            let req = req.into_inner();
            Box::pin(async move {
                let replies = (0..req.count).map(move |i| {
                    Ok(EchoReply {
                        message: format!("{} {i}", req.message),
                        seq: i,
                    })
                });
                Ok(Response::new(
                    Box::pin(tokio_stream::iter(replies)) as Self::ResponseStream
                ))
            })
        }
    }

    /// One reply, then NotFound with custom metadata in a real trailers frame.
    struct FailAfterOne;

    impl ServerStreamingService<EchoRequest> for FailAfterOne {
        type Response = EchoReply;
        type ResponseStream = BoxStream<EchoReply>;
        type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

        fn call(&mut self, _req: Request<EchoRequest>) -> Self::Future {
            Box::pin(async {
                let items = vec![
                    Ok(EchoReply {
                        message: "before the error".into(),
                        seq: 0,
                    }),
                    Err(not_found()),
                ];
                Ok(Response::new(
                    Box::pin(tokio_stream::iter(items)) as Self::ResponseStream
                ))
            })
        }
    }
}

/// A route with retries sends an upgrade once, as a plain route does, and
/// the tunnel works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_go_through_a_retrying_route() {
    let up = upgrade_upstream().await;
    let (_p, addr) = http_proxy_with(
        up,
        "http1",
        ", retry: { retry_on: [5xx, reset], num_retries: 2 }",
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    stream
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        )
        .await
        .unwrap();
    let head = within("101 response head", read_head(&mut stream, &mut buf))
        .await
        .expect("a response");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream.write_all(b"ping through").await.unwrap();
    let mut echoed = vec![0; 12];
    within("echo", stream.read_exact(&mut echoed))
        .await
        .unwrap();
    assert_eq!(echoed, b"ping through");
}
