//! Legate's HTTP/1.1 server for downstream connections.
//!
//! One loop per connection, in the connection's task: read a request head,
//! run the pipeline, write the response (its body as it streams, while the
//! request body may still be uploading), and go again while the connection
//! is kept alive. It shares its framing with the upstream client
//! (`cluster::h1`): the same chunked decoder, body reader and writer.
//!
//! hyper's server is built for applications: a dispatcher between the
//! socket and the service, buffers of its own, a response `HeaderMap`
//! encoded field by field. For a proxy that was a quarter of the work of a
//! request (see the README's benchmark); this loop does what a proxy
//! needs and no more.
//!
//! Requests (RFC 9112): a malformed head gets 400, a head over
//! `max_request_headers_kb` or with more than `max_request_headers_count`
//! headers 431, and the connection closes. `Transfer-Encoding` whose last
//! coding is not `chunked`, `Transfer-Encoding` with `Content-Length`, or
//! conflicting lengths get 400 (no guessing where a message ends, which is
//! how requests are smuggled). `Expect: 100-continue` is answered at once.

use super::body::{DownBody, RespBody};
use super::clock::WakeGate;
use super::{ConnInfo, HttpChain, service};
use crate::cluster::h1::{
    self, Chunk, FramingHeaders, H1Conn, H1Error, Read, Sink, Source, Span, Upload, UploadMode,
    header_span, parse_length, poll_fill_from, push_decimal, push_header,
};
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{oneshot, watch};

/// Request headers parsed without a heap allocation (more need one).
const HEADERS_ON_STACK: usize = 128;

/// The read side of a downstream connection. A request body borrows it
/// while it is read and hands it back through a [`Slot`].
pub struct DownRead {
    half: OwnedReadHalf,
    rbuf: BytesMut,
}

impl Source for DownRead {
    fn rbuf(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        poll_fill_from(&mut self.half, &mut self.rbuf, cx, want)
    }
}

/// The write side: response heads and bodies.
struct DownWrite {
    half: OwnedWriteHalf,
    wbuf: Vec<u8>,
}

impl Sink for DownWrite {
    type Io = OwnedWriteHalf;
    fn parts(&mut self) -> (&mut Vec<u8>, &mut OwnedWriteHalf) {
        (&mut self.wbuf, &mut self.half)
    }
    fn wbuf_len(&self) -> usize {
        self.wbuf.len()
    }
}

/// Where a request body returns the read side, and whether it was read to
/// the end (otherwise the connection cannot go on).
type Slot = Arc<Mutex<Option<(Box<DownRead>, bool)>>>;

/// A request body read from the downstream connection.
pub struct RequestBody {
    read: Read,
    src: Option<Box<DownRead>>,
    slot: Option<Slot>,
}

impl RequestBody {
    fn give_back(&mut self) {
        if let (Some(src), Some(slot)) = (self.src.take(), self.slot.as_ref()) {
            let complete = self.read == Read::Done;
            if let Ok(mut s) = slot.lock() {
                *s = Some((src, complete));
            }
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        let Some(src) = this.src.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = h1::poll_body(&mut this.read, &mut **src, cx);
        if this.read == Read::Done || matches!(polled, Poll::Ready(Some(Err(_)))) {
            this.give_back();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.read, Read::Done | Read::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.read {
            Read::Length(n) => SizeHint::with_exact(n),
            Read::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.give_back();
    }
}

/// In a request that asks to upgrade: receives the connection, as a byte
/// stream, once a 101 has been written. (Request extensions must be
/// `Clone`; the receiver is taken once.)
#[derive(Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Box<H1Conn>>>>>);

impl OnUpgrade {
    /// The connection, once the 101 is out; `None` if it never comes.
    pub async fn connection(self) -> Option<Box<H1Conn>> {
        let rx = self.0.lock().ok()?.take()?;
        rx.await.ok()
    }
}

/// A request head, parsed.
struct Head {
    req: Request<()>,
    body: Read,
    keep_alive: bool,
    expect_continue: bool,
    trailers_ok: bool,
}

enum HeadError {
    /// The peer closed (or the socket failed) before a complete head.
    Closed,
    /// Answer with this status and close.
    Refuse(StatusCode),
}

fn has_token(v: &[u8], token: &[u8]) -> bool {
    v.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Parses a request head at the start of `buf`, consuming it. `None` until
/// it is complete.
fn parse_request(
    buf: &mut BytesMut,
    max_bytes: usize,
    max_count: usize,
) -> Result<Option<Head>, HeadError> {
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADERS_ON_STACK];
    let mut heap = Vec::new();
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if max_count <= HEADERS_ON_STACK {
        &mut stack[..max_count]
    } else {
        heap.resize_with(max_count, MaybeUninit::uninit);
        &mut heap
    };
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(len)) if len <= max_bytes => len,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::Refuse(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HeadError::Refuse(StatusCode::BAD_REQUEST)),
    };
    let bad = || HeadError::Refuse(StatusCode::BAD_REQUEST);
    let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes()).map_err(|_| bad())?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let base = buf.as_ptr() as usize;
    let path = parsed.path.unwrap_or("");
    let path_at = (path.as_ptr() as usize - base, path.len());
    let mut spans: [Span; HEADERS_ON_STACK] = [(0, 0, 0, 0); HEADERS_ON_STACK];
    let mut spill: Vec<Span> = Vec::new();
    let mut framing = FramingHeaders::default();
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    let mut trailers_ok = false;
    let count = parsed.headers.len();
    for (i, h) in parsed.headers.iter().enumerate() {
        let name = h.name.as_bytes();
        if framing.note(name, h.value).map_err(|()| bad())? {
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= has_token(h.value, b"close");
            keep_alive_token |= has_token(h.value, b"keep-alive");
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"te") {
            trailers_ok |= has_token(h.value, b"trailers");
        }
        let span = header_span(h, base);
        if i < HEADERS_ON_STACK {
            spans[i] = span;
        } else {
            spill.push(span);
        }
    }
    let FramingHeaders {
        length,
        encoded,
        chunked,
    } = framing;
    // Where the body ends must be certain (RFC 9112 §6.3): anything else is
    // how requests are smuggled past a proxy.
    let body = if encoded {
        if length.is_some() || version == Version::HTTP_10 || !chunked {
            return Err(bad());
        }
        Read::Chunked(Chunk::Size)
    } else {
        match length {
            None | Some(0) => Read::Done,
            Some(n) => Read::Length(n),
        }
    };
    let head = buf.split_to(len).freeze();
    let uri =
        Uri::from_maybe_shared(head.slice(path_at.0..path_at.0 + path_at.1)).map_err(|_| bad())?;
    // Room for what the pipeline adds (x-forwarded-*, x-request-id, ...)
    // without growing the map.
    let mut headers = super::header_maps::take(count + 8);
    for &(n0, n1, v0, v1) in spans[..count.min(HEADERS_ON_STACK)].iter().chain(&spill) {
        let name = HeaderName::from_bytes(&head[n0 as usize..n1 as usize]).map_err(|_| bad())?;
        let value = HeaderValue::from_maybe_shared(head.slice(v0 as usize..v1 as usize))
            .map_err(|_| bad())?;
        if name == header::EXPECT && expect_continue {
            // Answered here; the upstream gets the body without asking.
            continue;
        }
        headers.append(name, value);
    }
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    let keep_alive = if version == Version::HTTP_10 {
        keep_alive_token && !close
    } else {
        !close
    };
    Ok(Some(Head {
        req,
        body,
        keep_alive,
        expect_continue: expect_continue && body != Read::Done,
        trailers_ok,
    }))
}

/// Reads and parses the next request head.
fn poll_head(
    src: &mut DownRead,
    max_bytes: usize,
    max_count: usize,
    cx: &mut Context<'_>,
) -> Poll<Result<Head, HeadError>> {
    loop {
        if !src.rbuf.is_empty() {
            if let Some(head) = parse_request(&mut src.rbuf, max_bytes, max_count)? {
                return Poll::Ready(Ok(head));
            }
            if src.rbuf.len() >= max_bytes {
                return Poll::Ready(Err(HeadError::Refuse(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                )));
            }
        }
        match std::task::ready!(src.poll_fill(cx, 8 * 1024)) {
            Ok(0) | Err(_) => return Poll::Ready(Err(HeadError::Closed)),
            Ok(_) => {}
        }
    }
}

thread_local! {
    /// The `Date` value, formatted once per second per thread.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((0, [b' '; 29])) };
}

/// An IMF-fixdate (RFC 9110 §5.6.7) for `secs` since the Unix epoch.
fn http_date(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as usize;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u64;
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    out[5..7].copy_from_slice(&two(day));
    out[8..11].copy_from_slice(MONTHS[month - 1]);
    out[12..14].copy_from_slice(&two(year / 100));
    out[14..16].copy_from_slice(&two(year));
    out[17..19].copy_from_slice(&two(rem / 3600));
    out[20..22].copy_from_slice(&two(rem / 60 % 60));
    out[23..25].copy_from_slice(&two(rem % 60));
    out
}

fn push_date(w: &mut Vec<u8>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != now {
            *d = (now, http_date(now));
        }
        w.extend_from_slice(b"date: ");
        w.extend_from_slice(&d.1);
        w.extend_from_slice(b"\r\n");
    });
}

/// Encodes a response head into `w`; returns how its body is framed, or
/// `None` when it has none. Clears `keep_alive` when the connection must
/// close after it.
fn encode_head(
    w: &mut Vec<u8>,
    parts: &http::response::Parts,
    body: &RespBody,
    head_request: bool,
    http10: bool,
    keep_alive: &mut bool,
) -> Option<UploadMode> {
    w.clear();
    let status = parts.status;
    w.extend_from_slice(b"HTTP/1.1 ");
    w.extend_from_slice(status.as_str().as_bytes());
    w.push(b' ');
    w.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    w.extend_from_slice(b"\r\n");
    let no_body = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut length: Option<u64> = None;
    let mut has_date = false;
    let mut raw_length = false;
    if let Some(raw) = body.raw_head() {
        // The upstream's own lines, as received (hop-by-hop ones left out).
        for run in raw.runs() {
            w.extend_from_slice(run);
        }
        has_date = raw.has_date;
        raw_length = raw.has_length;
    }
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            match parse_length(value.as_bytes()) {
                Some(n) if length.is_none() => length = Some(n),
                _ => continue,
            }
        } else if name == header::TRANSFER_ENCODING
            || (name == header::CONNECTION && status != StatusCode::SWITCHING_PROTOCOLS)
        {
            // Framing and the connection are this hop's to decide.
            continue;
        } else if name == header::DATE {
            has_date = true;
        }
        push_header(w, name, value);
    }
    if !has_date {
        push_date(w);
    }
    let exact = body.size_hint().exact();
    let mode = if no_body {
        None
    } else if let Some(n) = length {
        Some(UploadMode::Length(n))
    } else if let (true, Some(n)) = (raw_length, exact) {
        // The upstream's `Content-Length` line went out with the others.
        Some(UploadMode::Length(n))
    } else if let Some(n) = exact {
        w.extend_from_slice(b"content-length: ");
        push_decimal(w, n);
        w.extend_from_slice(b"\r\n");
        Some(UploadMode::Length(n))
    } else if http10 {
        *keep_alive = false;
        Some(UploadMode::Close)
    } else {
        w.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Some(UploadMode::Chunked)
    };
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // The connection is the tunnel's now.
    } else if !*keep_alive {
        w.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        w.extend_from_slice(b"connection: keep-alive\r\n");
    }
    w.extend_from_slice(b"\r\n");
    mode
}

/// A short response Legate writes itself before closing (400, 431).
async fn refuse(write: &mut DownWrite, status: StatusCode) {
    let w = &mut write.wbuf;
    w.clear();
    w.extend_from_slice(b"HTTP/1.1 ");
    w.extend_from_slice(status.as_str().as_bytes());
    w.push(b' ');
    w.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    w.extend_from_slice(b"\r\ncontent-length: 0\r\nconnection: close\r\n");
    push_date(w);
    w.extend_from_slice(b"\r\n");
    let _ = flush(write).await;
}

/// Writes out what is in `wbuf`.
async fn flush(write: &mut DownWrite) -> Result<(), H1Error> {
    let mut out: Upload<RespBody> = Upload::new(None, UploadMode::Length(0));
    std::future::poll_fn(|cx| out.poll(write, cx)).await
}

/// Serves HTTP/1.1 on `stream` until the peer closes, the connection
/// cannot go on, or drain is signalled (then the current response is the
/// last, with `Connection: close`).
pub async fn serve(
    stream: TcpStream,
    info: Arc<ConnInfo>,
    chain: Arc<HttpChain>,
    drain: watch::Receiver<bool>,
) {
    let (r, w) = stream.into_split();
    let mut read = Some(Box::new(DownRead {
        half: r,
        rbuf: BytesMut::with_capacity(8 * 1024),
    }));
    let mut write = DownWrite {
        half: w,
        wbuf: Vec::with_capacity(1024),
    };
    let slot: Slot = Arc::new(Mutex::new(None));
    let drain_flag = drain.clone();
    let mut drain = drain;
    let mut draining = std::pin::pin!(WakeGate::new(async move {
        let _ = drain.wait_for(|d| *d).await;
    }));
    let (max_bytes, max_count) = (chain.max_head_bytes, chain.max_headers);
    loop {
        let Some(mut src) = read.take() else {
            return;
        };
        // Idle: a drain closes the connection, unless a request has begun.
        let idle = src.rbuf.is_empty();
        let parsed = {
            let head = std::future::poll_fn(|cx| poll_head(&mut src, max_bytes, max_count, cx));
            tokio::select! {
                biased;
                h = head => h,
                _ = draining.as_mut(), if idle => return,
            }
        };
        let head = match parsed {
            Ok(h) => h,
            Err(HeadError::Closed) => return,
            Err(HeadError::Refuse(status)) => {
                refuse(&mut write, status).await;
                return;
            }
        };
        info.clock.request_started();
        let Head {
            req,
            body: framing,
            mut keep_alive,
            expect_continue,
            trailers_ok,
        } = head;
        let head_request = req.method() == Method::HEAD;
        let http10 = req.version() == Version::HTTP_10;
        if expect_continue {
            write
                .wbuf
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            if flush(&mut write).await.is_err() {
                return;
            }
        }
        let body = if framing == Read::Done {
            read = Some(src);
            RequestBody {
                read: Read::Done,
                src: None,
                slot: None,
            }
        } else {
            RequestBody {
                read: framing,
                src: Some(src),
                slot: Some(slot.clone()),
            }
        };
        let mut req = req.map(|()| DownBody::H1(body));
        let upgrade = if service::is_upgrade(&req) {
            let (tx, rx) = oneshot::channel();
            req.extensions_mut()
                .insert(OnUpgrade(Arc::new(Mutex::new(Some(rx)))));
            Some(tx)
        } else {
            None
        };

        let resp = service::handle(&chain, &info, req).await;

        if *drain_flag.borrow() {
            keep_alive = false;
        }
        let (mut parts, body) = resp.into_parts();
        let mode = encode_head(
            &mut write.wbuf,
            &parts,
            &body,
            head_request,
            http10,
            &mut keep_alive,
        );
        super::header_maps::give_back(std::mem::take(&mut parts.headers));
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            // The pipeline answers 101 only to an upgrade it tunnels: hand
            // it the connection, with whatever the client sent past the head.
            drop(body);
            let (Some(tx), Some(src)) = (upgrade, read.take()) else {
                return;
            };
            if flush(&mut write).await.is_err() {
                return;
            }
            let DownRead { half, rbuf } = *src;
            let Ok(stream) = half.reunite(write.half) else {
                return;
            };
            let mut conn = H1Conn::new(stream, metrics::Gauge::noop());
            conn.put_back(rbuf);
            let _ = tx.send(conn);
            return;
        }
        drop(upgrade);
        let mut out = match mode {
            Some(mode) => Upload::new(Some(body), mode).with_trailers(trailers_ok),
            None => {
                drop(body);
                Upload::new(None, UploadMode::Length(0))
            }
        };
        if std::future::poll_fn(|cx| out.poll(&mut write, cx))
            .await
            .is_err()
        {
            return;
        }
        drop(out);
        info.clock.request_ended();
        // The request body's reader comes back once read to the end; a body
        // left unread leaves the connection unusable.
        if read.is_none() {
            match slot.lock().ok().and_then(|mut s| s.take()) {
                Some((src, true)) => read = Some(src),
                _ => return,
            }
        }
        if !keep_alive {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<Head>, HeadError> {
        let mut b = BytesMut::from(raw.as_bytes());
        parse_request(&mut b, 60 * 1024, 100)
    }

    fn refused(raw: &str) -> Option<StatusCode> {
        match parse(raw) {
            Err(HeadError::Refuse(s)) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn request_framing_is_never_guessed() {
        let bad = Some(StatusCode::BAD_REQUEST);
        for raw in [
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3, 4\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: +3\r\n\r\n",
            "GET / HTTP/1.1\r\nbad header\r\n\r\n",
            "NOT HTTP\r\n\r\n",
        ] {
            assert_eq!(refused(raw), bad, "{raw:?}");
        }
        let body = |raw: &str| parse(raw).ok().flatten().map(|h| h.body);
        assert_eq!(
            body("POST / HTTP/1.1\r\ncontent-length: 3, 3\r\n\r\n"),
            Some(Read::Length(3))
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n"),
            Some(Read::Chunked(Chunk::Size))
        );
        assert_eq!(body("GET / HTTP/1.1\r\n\r\n"), Some(Read::Done));
    }

    #[test]
    fn keep_alive_and_expect() {
        let h = |raw: &str| parse(raw).ok().flatten().unwrap();
        assert!(h("GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!h("GET / HTTP/1.1\r\nconnection: close\r\n\r\n").keep_alive);
        assert!(!h("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(h("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        let e = h("POST / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n");
        assert!(e.expect_continue);
        assert!(e.req.headers().get("expect").is_none());
        assert!(!h("GET / HTTP/1.1\r\nexpect: 100-continue\r\n\r\n").expect_continue);
    }

    #[test]
    fn limits_give_431() {
        let many: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
        assert_eq!(
            refused(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let mut b = BytesMut::from(&b"GET / HTTP/1.1\r\nx: 0123456789\r\n\r\n"[..]);
        assert!(matches!(
            parse_request(&mut b, 20, 100),
            Err(HeadError::Refuse(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            ))
        ));
    }

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(1_795_521_565), b"Tue, 24 Nov 2026 11:59:25 GMT");
        assert_eq!(&http_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
