//! The upstream HTTP/1.1 client.
//!
//! A pooled connection has no task of its own: the task serving the
//! downstream request writes the upstream request, reads the response head,
//! and (through the response body) the rest of the exchange, including what
//! is left of the upload. A proxied request therefore costs no task switch
//! and no channel between tasks, as in nginx or Pingora. hyper's client runs
//! each connection as a task fed through channels, which cost more than the
//! whole of Legate's own request handling (see the README's benchmark).
//!
//! Framing follows RFC 9112: the response to `HEAD`, a 1xx, 204 or 304 has
//! no body; otherwise `Transfer-Encoding` ending in `chunked` frames it,
//! else `Content-Length`, else the connection's end. A response with both,
//! conflicting lengths, or a malformed head is a protocol error (502, as
//! Envoy answers). 1xx responses other than 101 are skipped.

use crate::http::body::ReqBody;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Largest response head (and trailer block) accepted: Envoy's default
/// `max_response_headers_kb`.
pub const MAX_HEAD: usize = 60 * 1024;
/// Most response headers accepted (Envoy's default `max_headers_count`).
pub const MAX_HEADERS: usize = 100;
// `parse_head` marks dropped headers in a `u128`.
const _: () = assert!(MAX_HEADERS <= 128);
/// Longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
const READ_HEAD: usize = 8 * 1024;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an HTTP/1 exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("upstream closed the connection")]
    Closed,
    #[error("upstream protocol error: {0}")]
    Protocol(&'static str),
    #[error("body: {0}")]
    Body(BoxError),
    #[error("body length differs from its content-length")]
    RequestLength,
}

/// An upstream connection with its buffers, kept in the pool between
/// requests. Boxed once per connection, so checking it out and in moves a
/// pointer.
pub struct H1Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    rbuf: BytesMut,
    /// The request head (and chunk framing) being written.
    wbuf: Vec<u8>,
    active: metrics::Gauge,
    /// Its place under the cluster's connection limit (upstream ones).
    pub(crate) slot: Option<super::breaker::CxSlot>,
    /// The exchange under way leaves the connection fit for another (as
    /// its response head said, and nothing failed since). Kept here, not
    /// in the response body: that makes every proxied response 8 bytes
    /// smaller, 256 in all, which a move copies in half the instructions.
    keep_alive: bool,
}

impl H1Conn {
    pub fn new(stream: TcpStream, active: metrics::Gauge) -> Box<H1Conn> {
        active.increment(1.0);
        Box::new(H1Conn {
            stream,
            rbuf: BytesMut::with_capacity(READ_HEAD),
            wbuf: Vec::with_capacity(1024),
            active,
            slot: None,
            keep_alive: false,
        })
    }

    /// Bytes read past a 101 response's head, to be read first.
    pub fn put_back(&mut self, rbuf: BytesMut) {
        self.rbuf = rbuf;
    }

    /// Whether an idle connection can take a request: the peer has sent
    /// nothing since the last response (no close, no stray bytes). Costs no
    /// system call unless the socket has been signalled readable.
    pub fn is_usable(&self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readable: a close, stray bytes, or readiness left from the
            // last read. Only the last is fine.
            Poll::Ready(Ok(())) => {
                let mut b = [0u8; 1];
                matches!(self.stream.try_read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

impl H1Error {
    /// The message's own body failed (not the connection).
    pub fn is_body_error(&self) -> bool {
        matches!(self, H1Error::Body(_) | H1Error::RequestLength)
    }
}

/// Where an HTTP/1 message is written: a head/framing buffer and a socket.
pub(crate) trait Sink {
    type Io: AsyncWrite + Unpin;
    /// The buffer and the socket, borrowed apart.
    fn parts(&mut self) -> (&mut Vec<u8>, &mut Self::Io);
    fn wbuf_len(&self) -> usize;

    fn wbuf(&mut self) -> &mut Vec<u8> {
        self.parts().0
    }

    /// Writes `wbuf[from..]`, then `data`, then `tail`, as far as it goes.
    fn poll_write_parts(
        &mut self,
        cx: &mut Context<'_>,
        from: usize,
        data: &[u8],
        tail: &[u8],
    ) -> Poll<io::Result<usize>> {
        let (wbuf, io) = self.parts();
        let slices = [
            IoSlice::new(&wbuf[from..]),
            IoSlice::new(data),
            IoSlice::new(tail),
        ];
        Pin::new(io).poll_write_vectored(cx, &slices)
    }
}

/// Where an HTTP/1 message is read from: a buffer filled from a socket.
pub(crate) trait Source {
    fn rbuf(&mut self) -> &mut BytesMut;
    /// Reads more into the buffer; `Ok(0)` is the peer's close.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>>;
}

/// Reads more bytes into `buf` from `io`, growing it by at least `want`
/// when it is nearly full. `Ok(0)` is the peer's close.
pub(crate) fn poll_fill_from<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
    want: usize,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(want.max(1024));
    }
    let read = io.read_buf(buf);
    std::pin::pin!(read).poll(cx)
}

impl Sink for H1Conn {
    type Io = TcpStream;
    fn parts(&mut self) -> (&mut Vec<u8>, &mut TcpStream) {
        (&mut self.wbuf, &mut self.stream)
    }
    fn wbuf_len(&self) -> usize {
        self.wbuf.len()
    }
}

impl Source for H1Conn {
    fn rbuf(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        poll_fill_from(&mut self.stream, &mut self.rbuf, cx, want)
    }
}

impl Drop for H1Conn {
    fn drop(&mut self) {
        self.active.decrement(1.0);
    }
}

/// After a 101, the connection is a byte stream: bytes the upstream sent
/// after its response head come first.
impl AsyncRead for H1Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.rbuf.is_empty() {
            let n = this.rbuf.len().min(buf.remaining());
            buf.put_slice(&this.rbuf[..n]);
            this.rbuf.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for H1Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// How a body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UploadMode {
    /// Exactly this many bytes are still to come.
    Length(u64),
    Chunked,
    /// Unframed: the connection's close ends it (an HTTP/1.0 response of
    /// unknown length).
    Close,
}

/// Writes an HTTP/1 message: the head already in the sink's `wbuf`, then
/// the body as it arrives, framed by `mode`. Used for requests upstream
/// and responses downstream.
pub(crate) struct Upload<B> {
    /// Bytes of the sink's `wbuf` already written.
    pos: usize,
    /// A body chunk being written, and what follows it (`\r\n` when chunked).
    data: Bytes,
    tail: &'static [u8],
    /// The body still to read; `None` once it has ended (or never existed).
    body: Option<B>,
    mode: UploadMode,
    /// Any byte of this message has reached the socket.
    wrote_any: bool,
    /// Trailers are written (chunked only); otherwise dropped.
    trailers: bool,
}

impl<B> Upload<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(body: Option<B>, mode: UploadMode) -> Self {
        Upload {
            pos: 0,
            data: Bytes::new(),
            tail: b"",
            body,
            mode,
            wrote_any: false,
            trailers: true,
        }
    }

    /// Whether trailers are written (a client that did not send `TE:
    /// trailers` gets none, as from hyper).
    pub(crate) fn with_trailers(mut self, yes: bool) -> Self {
        self.trailers = yes;
        self
    }

    fn pending(&self, sink: &impl Sink) -> bool {
        self.pos < sink.wbuf_len() || !self.data.is_empty() || !self.tail.is_empty()
    }

    pub(crate) fn done(&self, sink: &impl Sink) -> bool {
        self.body.is_none() && !self.pending(sink)
    }

    /// Room at the end of `wbuf` for framing, dropping what has been written.
    fn wbuf<'a>(&mut self, sink: &'a mut impl Sink) -> &'a mut Vec<u8> {
        let w = sink.wbuf();
        if self.pos == w.len() {
            w.clear();
            self.pos = 0;
        }
        w
    }

    fn push_frame(&mut self, sink: &mut impl Sink, frame: Frame<Bytes>) -> Result<(), H1Error> {
        match frame.into_data() {
            Ok(data) => {
                if data.is_empty() {
                    return Ok(());
                }
                match &mut self.mode {
                    UploadMode::Length(left) => {
                        *left = left
                            .checked_sub(data.len() as u64)
                            .ok_or(H1Error::RequestLength)?;
                    }
                    UploadMode::Chunked => {
                        let w = self.wbuf(sink);
                        push_hex(w, data.len());
                        w.extend_from_slice(b"\r\n");
                        self.tail = b"\r\n";
                    }
                    UploadMode::Close => {}
                }
                self.data = data;
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    // Trailers end the body. They can only be sent chunked;
                    // with a content-length they are dropped, as hyper and
                    // Envoy drop them.
                    self.end_body(sink, Some(&trailers))?;
                }
            }
        }
        Ok(())
    }

    fn end_body(
        &mut self,
        sink: &mut impl Sink,
        trailers: Option<&HeaderMap>,
    ) -> Result<(), H1Error> {
        self.body = None;
        let trailers = trailers.filter(|_| self.trailers);
        match self.mode {
            UploadMode::Length(0) | UploadMode::Close => Ok(()),
            UploadMode::Length(_) => Err(H1Error::RequestLength),
            UploadMode::Chunked => {
                let w = self.wbuf(sink);
                w.extend_from_slice(b"0\r\n");
                for (name, value) in trailers.into_iter().flatten() {
                    push_header(w, name, value);
                }
                w.extend_from_slice(b"\r\n");
                Ok(())
            }
        }
    }

    /// Writes as much of the message as can go without waiting. `Ready(Ok)`
    /// when all of it is out.
    pub(crate) fn poll(
        &mut self,
        sink: &mut impl Sink,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), H1Error>> {
        loop {
            // Take the next body frame while nothing else is queued, so a
            // small body leaves with its head in one write.
            let mut body_waiting = false;
            if self.data.is_empty()
                && self.tail.is_empty()
                && let Some(body) = self.body.as_mut()
            {
                match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => body_waiting = true,
                    Poll::Ready(None) => self.end_body(sink, None)?,
                    Poll::Ready(Some(Ok(frame))) => self.push_frame(sink, frame)?,
                    Poll::Ready(Some(Err(e))) => {
                        self.body = None;
                        return Poll::Ready(Err(H1Error::Body(e.into())));
                    }
                }
            }
            if !self.pending(sink) {
                if self.body.is_none() {
                    return Poll::Ready(Ok(()));
                }
                if body_waiting {
                    return Poll::Pending;
                }
                continue;
            }
            let n = ready!(sink.poll_write_parts(cx, self.pos, &self.data, self.tail))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
            }
            self.wrote_any = true;
            let mut n = n;
            let head = (sink.wbuf().len() - self.pos).min(n);
            self.pos += head;
            n -= head;
            let data = self.data.len().min(n);
            self.data.advance(data);
            n -= data;
            self.tail = &self.tail[n.min(self.tail.len())..];
        }
    }
}

pub(crate) fn push_hex(w: &mut Vec<u8>, mut n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    w.extend_from_slice(&digits[i..]);
}

pub(crate) fn push_decimal(w: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    w.extend_from_slice(&digits[i..]);
}

pub(crate) fn push_header(w: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    w.extend_from_slice(name.as_str().as_bytes());
    w.extend_from_slice(b": ");
    w.extend_from_slice(value.as_bytes());
    w.extend_from_slice(b"\r\n");
}

/// Methods a client may resend after a connection failure (RFC 9110 §9.2.2).
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// One request/response exchange on a connection, up to the response head.
pub struct Exchange {
    conn: Box<H1Conn>,
    reused: bool,
    upload: Upload<ReqBody>,
    /// The request had no body and may be resent (see [`Exchange::retryable`]).
    replayable: bool,
    head_request: bool,
    upgrade: bool,
    /// The response head may stay raw (see [`RawHead`]).
    raw: bool,
    /// Any response byte has arrived.
    read_any: bool,
    /// Writing failed: the response may still come, but the connection is spent.
    write_failed: bool,
}

impl Exchange {
    /// Encodes the request head into the connection's write buffer. The
    /// headers are sent as given: the caller has removed hop-by-hop ones.
    pub fn new(
        mut conn: Box<H1Conn>,
        reused: bool,
        parts: &http::request::Parts,
        body: ReqBody,
        upgrade: bool,
        raw: bool,
    ) -> Exchange {
        let w = &mut conn.wbuf;
        w.clear();
        w.extend_from_slice(parts.method.as_str().as_bytes());
        w.push(b' ');
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        w.extend_from_slice(target.as_bytes());
        w.extend_from_slice(b" HTTP/1.1\r\n");
        let empty = body.is_end_stream();
        let mut length = None;
        for (name, value) in &parts.headers {
            if name == header::CONTENT_LENGTH {
                // One valid length is sent. An unparsable one (impossible
                // from hyper's or h2's checked input) is dropped and the
                // body sent chunked.
                if length.is_some() {
                    continue;
                }
                match parse_length(value.as_bytes()) {
                    Some(n) => length = Some(n),
                    None => continue,
                }
            }
            push_header(w, name, value);
        }
        let mode = if empty {
            if length.is_none()
                && matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
            {
                w.extend_from_slice(b"content-length: 0\r\n");
            }
            UploadMode::Length(0)
        } else if let Some(n) = length {
            UploadMode::Length(n)
        } else {
            w.extend_from_slice(b"transfer-encoding: chunked\r\n");
            UploadMode::Chunked
        };
        w.extend_from_slice(b"\r\n");
        Exchange {
            conn,
            reused,
            upload: Upload::new((!empty).then_some(body), mode),
            replayable: empty && idempotent(&parts.method),
            head_request: parts.method == Method::HEAD,
            upgrade,
            raw,
            read_any: false,
            write_failed: false,
        }
    }

    /// Whether failing with `e` lets this exchange go once more on a new
    /// connection: only on a reused connection (the server may have closed
    /// it while idle), before any response byte, only if nothing was sent
    /// or the request is a bodiless idempotent one (as Go's client), and
    /// never when the request's own body failed (it is gone).
    pub fn retryable(&self, e: &H1Error) -> bool {
        !e.is_body_error()
            && self.reused
            && !self.read_any
            && (!self.upload.wrote_any || self.replayable)
    }

    /// Moves the untouched request to a fresh connection.
    pub fn retry_on(&mut self, mut conn: Box<H1Conn>) {
        std::mem::swap(&mut conn.wbuf, &mut self.conn.wbuf);
        self.conn = conn;
        self.reused = false;
        self.upload.pos = 0;
        self.upload.wrote_any = false;
        self.write_failed = false;
    }

    /// Drives the upload and reads the response head.
    pub fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<ResponseHead, H1Error>> {
        if !self.write_failed && !self.upload.done(&*self.conn) {
            match self.upload.poll(&mut *self.conn, cx) {
                Poll::Ready(Err(e @ H1Error::Io(_))) => {
                    // A request that can go again on a new connection does.
                    // Otherwise the upstream may have answered and stopped
                    // reading (a 413, say): read on; the connection is spent.
                    if self.retryable(&e) {
                        return Poll::Ready(Err(e));
                    }
                    self.write_failed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) | Poll::Pending => {}
            }
        }
        loop {
            if !self.conn.rbuf.is_empty() {
                if let Some(head) = parse_head(&mut self.conn.rbuf, self.head_request, self.raw)? {
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS
                    {
                        continue;
                    }
                    return Poll::Ready(Ok(head));
                }
                if self.conn.rbuf.len() >= MAX_HEAD {
                    return Poll::Ready(Err(H1Error::Protocol("response head too large")));
                }
            }
            let n = ready!(self.conn.poll_fill(cx, READ_HEAD))?;
            if n == 0 {
                return Poll::Ready(Err(H1Error::Closed));
            }
            self.read_any = true;
        }
    }

    /// Turns the exchange, with the head just read, into the response whose
    /// body reads the rest (and finishes the upload).
    pub fn into_response(self, head: ResponseHead) -> Result<Response<H1Body>, H1Error> {
        let upgraded = head.status == StatusCode::SWITCHING_PROTOCOLS;
        if upgraded && !self.upgrade {
            return Err(H1Error::Protocol(
                "101 to a request that did not ask to upgrade",
            ));
        }
        let read = if upgraded {
            Read::Upgraded
        } else {
            match head.framing {
                Framing::Empty => Read::Done,
                Framing::Length(n) => Read::Length(n),
                Framing::Chunked => Read::Chunked(Chunk::Size),
                Framing::Close => Read::Close,
            }
        };
        // Boxed: only a response that overtakes its upload carries one.
        let upload =
            (!self.write_failed && !self.upload.done(&*self.conn)).then(|| Box::new(self.upload));
        let mut conn = self.conn;
        conn.keep_alive = head.keep_alive && !self.write_failed && !matches!(read, Read::Close);
        let mut resp = Response::new(H1Body {
            conn: Some(conn),
            raw: head.raw,
            upload,
            read,
        });
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers;
        Ok(resp)
    }
}

/// How the response body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    Close,
}

/// A parsed response head.
pub struct ResponseHead {
    pub status: StatusCode,
    /// The forwarded headers, unless `raw` carries them.
    pub headers: HeaderMap,
    pub raw: Option<RawHead>,
    pub framing: Framing,
    pub keep_alive: bool,
}

/// Most runs of forwarded lines a raw head holds (hop-by-hop lines between
/// them split runs); more, and the head is parsed into a map instead.
const RAW_RUNS: usize = 4;

/// A response head forwarded as received: its header lines (whole, with
/// their CRLFs) minus the hop-by-hop ones, as runs of bytes of the head.
/// httparse has checked every line, so nothing can be smuggled through;
/// skipping the `HeaderMap` (and building it again on the way out) saves
/// a seventh of the work of a proxied request.
pub struct RawHead {
    head: Bytes,
    runs: [(u16, u16); RAW_RUNS],
    n: u8,
    /// The upstream sent a `Date`, a `Content-Length`.
    pub has_date: bool,
    pub has_length: bool,
}

impl RawHead {
    /// The header lines to forward, in runs.
    pub fn runs(&self) -> impl Iterator<Item = &[u8]> {
        self.runs[..self.n as usize]
            .iter()
            .map(|&(a, b)| &self.head[a as usize..b as usize])
    }
}

/// What a message's framing headers say.
#[derive(Default)]
pub(crate) struct FramingHeaders {
    pub length: Option<u64>,
    /// A `Transfer-Encoding` is present, and its last coding is `chunked`.
    pub encoded: bool,
    pub chunked: bool,
}

impl FramingHeaders {
    /// Takes note of `name: value` if it frames the message (and says so).
    /// `Err` for an invalid length, or lengths that disagree: repeated or
    /// listed values must be equal (RFC 9110 §8.6).
    /// Called for every header of every head: when LLVM stopped inlining it
    /// (callers grew), requests cost ~150 instructions more.
    #[inline(always)]
    pub(crate) fn note(&mut self, name: &[u8], value: &[u8]) -> Result<bool, ()> {
        if name.eq_ignore_ascii_case(b"content-length") {
            for v in value.split(|&b| b == b',') {
                let n = parse_length(v.trim_ascii()).ok_or(())?;
                if self.length.is_some_and(|l| l != n) {
                    return Err(());
                }
                self.length = Some(n);
            }
            Ok(true)
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.encoded = true;
            // Only the last coding decides (RFC 9112 §6.3).
            self.chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            Ok(true)
        } else {
            Ok(false)
        }
    }
}

/// Where a parsed header's name and value sit in the buffer at `base`:
/// (name start, name end, value start, value end). Request heads may be
/// up to 8 MiB (`max_request_headers_kb`), so the offsets are `u32`.
pub(crate) type Span = (u32, u32, u32, u32);

#[inline]
pub(crate) fn header_span(h: &httparse::Header<'_>, base: usize) -> Span {
    let n0 = h.name.as_ptr() as usize - base;
    let v0 = h.value.as_ptr() as usize - base;
    (
        n0 as u32,
        (n0 + h.name.len()) as u32,
        v0 as u32,
        (v0 + h.value.len()) as u32,
    )
}

/// A `Content-Length` value: digits only (RFC 9110 §8.6), no overflow.
pub(crate) fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// Whether a response header describes the connection rather than the
/// message (RFC 9110 §7.6.1), so is never forwarded. `Upgrade` is kept on
/// a 101, where the tunnel needs it.
pub(crate) fn hop_by_hop(name: &[u8], switching: bool) -> bool {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 => is(b"te"),
        7 => is(b"trailer") || (!switching && is(b"upgrade")),
        10 => is(b"connection") || is(b"keep-alive"),
        16 => is(b"proxy-connection"),
        17 => is(b"transfer-encoding"),
        18 => is(b"proxy-authenticate"),
        _ => false,
    }
}

/// Parses a response head at the start of `buf`, consuming it. `None`
/// until the head is complete. Hop-by-hop headers (and those `Connection`
/// names) are read for framing and dropped here, so the response is ready
/// to forward; a 101 keeps its `Connection` and `Upgrade`.
pub fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
    raw: bool,
) -> Result<Option<ResponseHead>, H1Error> {
    // Where each header's name and value sit in the head, and which are
    // not forwarded (bit i: header i is hop-by-hop, or `Connection` names it).
    let mut spans: [Span; MAX_HEADERS] = [(0, 0, 0, 0); MAX_HEADERS];
    let mut dropped: u128 = 0;
    let mut has_date = false;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) => {
            return Err(H1Error::Protocol("response head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(H1Error::Protocol("too many response headers"));
        }
        Err(_) => return Err(H1Error::Protocol("malformed response head")),
    };
    let code = parsed.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| H1Error::Protocol("invalid status code"))?;
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let http10 = parsed.version == Some(0);
    let base = buf.as_ptr() as usize;
    let mut framing_headers = FramingHeaders::default();
    let mut close = false;
    let mut keep_alive_token = false;
    // `Connection` names a header other than the usual tokens: drop it too.
    let mut names_others = false;
    let count = parsed.headers.len();
    for (i, (h, span)) in parsed.headers.iter().zip(spans.iter_mut()).enumerate() {
        let name = h.name.as_bytes();
        *span = header_span(h, base);
        if name.eq_ignore_ascii_case(b"date") {
            has_date = true;
        } else if framing_headers
            .note(name, h.value)
            .map_err(|()| H1Error::Protocol("invalid or conflicting content-length"))?
        {
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive_token = true;
                } else if !token.is_empty() && !hop_by_hop(token, false) {
                    names_others = true;
                }
            }
        }
        if !switching && hop_by_hop(name, false) {
            dropped |= 1 << i;
        }
    }
    if names_others && !switching {
        // The rare response whose `Connection` names other headers.
        let named: Vec<&[u8]> = parsed
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .collect();
        for (i, h) in parsed.headers.iter().enumerate() {
            if named
                .iter()
                .any(|t| h.name.as_bytes().eq_ignore_ascii_case(t))
            {
                dropped |= 1 << i;
            }
        }
    }
    let FramingHeaders {
        length,
        encoded,
        chunked,
    } = framing_headers;
    let head = buf.split_to(len).freeze();
    let raw = if raw && !switching {
        raw_runs(&head, &spans[..count], dropped).map(|(runs, n)| RawHead {
            head: head.clone(),
            runs,
            n,
            has_date,
            has_length: length.is_some(),
        })
    } else {
        None
    };
    let mut map = HeaderMap::with_capacity(if raw.is_some() { 0 } else { count });
    for (i, &(n0, n1, v0, v1)) in spans[..count].iter().enumerate() {
        if raw.is_some() || dropped & (1 << i) != 0 {
            continue;
        }
        let name = HeaderName::from_bytes(&head[n0 as usize..n1 as usize])
            .map_err(|_| H1Error::Protocol("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(v0 as usize..v1 as usize))
            .map_err(|_| H1Error::Protocol("invalid header value"))?;
        map.append(name, value);
    }
    let no_body = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        Framing::Empty
    } else if encoded {
        if length.is_some() {
            // Both: a smuggling vector; Envoy refuses it too.
            return Err(H1Error::Protocol(
                "both transfer-encoding and content-length",
            ));
        }
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    let keep_alive = if http10 {
        keep_alive_token && !close
    } else {
        !close
    };
    Ok(Some(ResponseHead {
        status,
        headers: map,
        raw,
        framing,
        keep_alive: keep_alive && framing != Framing::Close,
    }))
}

/// The runs of whole header lines to forward: every line not marked in
/// `dropped`. `None` when a line does not end in CRLF (bare LF is accepted
/// on input, never passed on) or the kept lines fall into more than
/// [`RAW_RUNS`] runs. Response heads are at most [`MAX_HEAD`], so `u16`.
fn raw_runs(head: &[u8], spans: &[Span], dropped: u128) -> Option<([(u16, u16); RAW_RUNS], u8)> {
    if !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let mut runs = [(0u16, 0u16); RAW_RUNS];
    let mut n = 0usize;
    for (i, span) in spans.iter().enumerate() {
        let start = span.0 as u16;
        // A line runs to the next one's start, the last to the final CRLF.
        let end = spans
            .get(i + 1)
            .map_or(head.len() - 2, |next| next.0 as usize) as u16;
        if !head[..end as usize].ends_with(b"\r\n") {
            return None;
        }
        if dropped & (1 << i) != 0 {
            continue;
        }
        if n > 0 && runs[n - 1].1 == start {
            runs[n - 1].1 = end;
        } else if n < RAW_RUNS {
            runs[n] = (start, end);
            n += 1;
        } else {
            return None;
        }
    }
    Some((runs, n as u8))
}

/// Where reading a chunked body stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Where reading a message body stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    Length(u64),
    Chunked(Chunk),
    Close,
    Upgraded,
    Done,
}

/// The body of an upstream HTTP/1 response, read straight from the
/// connection by whoever polls it; it also finishes the upload. When it
/// ends cleanly, [`H1Body::take_reusable`] hands the connection back for
/// the pool; dropped early, the connection closes.
pub struct H1Body {
    conn: Option<Box<H1Conn>>,
    raw: Option<RawHead>,
    upload: Option<Box<Upload<ReqBody>>>,
    read: Read,
}

impl H1Body {
    /// The response head as received, when it is forwarded raw.
    pub fn raw_head(&self) -> Option<&RawHead> {
        self.raw.as_ref()
    }

    /// The connection, if the exchange ended cleanly and it can serve
    /// another request. Takes it: a second call returns `None`.
    pub fn take_reusable(&mut self) -> Option<Box<H1Conn>> {
        let conn = self.conn.as_ref()?;
        if self.read != Read::Done || !conn.keep_alive {
            return None;
        }
        if self.upload.as_ref().is_some_and(|u| !u.done(&**conn)) || !conn.rbuf.is_empty() {
            return None;
        }
        self.conn.take()
    }

    /// After a 101: the connection, now a byte stream.
    pub fn take_upgraded(&mut self) -> Option<Box<H1Conn>> {
        if self.read == Read::Upgraded {
            self.conn.take()
        } else {
            None
        }
    }
}

/// Reads the next frame of a response body.
pub(crate) fn poll_body(
    read: &mut Read,
    conn: &mut impl Source,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
    loop {
        match *read {
            Read::Done | Read::Upgraded => return Poll::Ready(None),
            Read::Length(left) => {
                if conn.rbuf().is_empty() {
                    let want = left.clamp(4096, 64 * 1024) as usize;
                    if ready!(conn.poll_fill(cx, want))? == 0 {
                        return Poll::Ready(Some(Err(H1Error::Closed)));
                    }
                    continue;
                }
                let n = (conn.rbuf().len() as u64).min(left);
                let data = conn.rbuf().split_to(n as usize).freeze();
                *read = if n == left {
                    Read::Done
                } else {
                    Read::Length(left - n)
                };
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            Read::Close => {
                if conn.rbuf().is_empty() {
                    if ready!(conn.poll_fill(cx, 16 * 1024))? == 0 {
                        *read = Read::Done;
                        return Poll::Ready(None);
                    }
                    continue;
                }
                let data = conn.rbuf().split().freeze();
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            Read::Chunked(state) => match decode_chunk(conn.rbuf(), state)? {
                Decoded::Frame(frame, next) => {
                    *read = next;
                    return Poll::Ready(Some(Ok(frame)));
                }
                Decoded::Next(next) => {
                    *read = next;
                    if next == Read::Done {
                        return Poll::Ready(None);
                    }
                }
                Decoded::NeedMore => {
                    if ready!(conn.poll_fill(cx, 16 * 1024))? == 0 {
                        return Poll::Ready(Some(Err(H1Error::Closed)));
                    }
                }
            },
        }
    }
}

enum Decoded {
    Frame(Frame<Bytes>, Read),
    Next(Read),
    NeedMore,
}

/// One step of the chunked decoder (RFC 9112 §7.1) over the bytes in `buf`.
fn decode_chunk(buf: &mut BytesMut, state: Chunk) -> Result<Decoded, H1Error> {
    match state {
        Chunk::Size => {
            let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                if buf.len() > MAX_CHUNK_LINE {
                    return Err(H1Error::Protocol("chunk size line too long"));
                }
                return Ok(Decoded::NeedMore);
            };
            let line = &buf[..end];
            let line = line
                .strip_suffix(b"\r")
                .ok_or(H1Error::Protocol("chunk size line not ended by CRLF"))?;
            let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            if digits == 0 || digits > 16 {
                return Err(H1Error::Protocol("invalid chunk size"));
            }
            // After the size: optional whitespace, then extensions (ignored).
            let rest = line[digits..].trim_ascii_start();
            if !rest.is_empty() && rest[0] != b';' {
                return Err(H1Error::Protocol("invalid chunk size"));
            }
            let mut size: u64 = 0;
            for &b in &line[..digits] {
                let d = (b as char).to_digit(16).unwrap_or(0);
                size = size << 4 | u64::from(d);
            }
            buf.advance(end + 1);
            Ok(Decoded::Next(Read::Chunked(if size == 0 {
                Chunk::Trailers
            } else {
                Chunk::Data(size)
            })))
        }
        Chunk::Data(left) => {
            if buf.is_empty() {
                return Ok(Decoded::NeedMore);
            }
            let n = (buf.len() as u64).min(left);
            let data = buf.split_to(n as usize).freeze();
            let next = if n == left {
                Chunk::DataEnd
            } else {
                Chunk::Data(left - n)
            };
            Ok(Decoded::Frame(Frame::data(data), Read::Chunked(next)))
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok(Decoded::NeedMore);
            }
            if &buf[..2] != b"\r\n" {
                return Err(H1Error::Protocol("chunk data not ended by CRLF"));
            }
            buf.advance(2);
            Ok(Decoded::Next(Read::Chunked(Chunk::Size)))
        }
        Chunk::Trailers => {
            if buf.starts_with(b"\r\n") {
                buf.advance(2);
                return Ok(Decoded::Next(Read::Done));
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::parse_headers(buf, &mut headers) {
                Ok(httparse::Status::Complete((len, parsed))) => {
                    let mut map = HeaderMap::with_capacity(parsed.len());
                    for h in parsed {
                        let (Ok(name), Ok(value)) = (
                            HeaderName::from_bytes(h.name.as_bytes()),
                            HeaderValue::from_bytes(h.value),
                        ) else {
                            return Err(H1Error::Protocol("invalid trailer"));
                        };
                        map.append(name, value);
                    }
                    buf.advance(len);
                    Ok(Decoded::Frame(Frame::trailers(map), Read::Done))
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => Ok(Decoded::NeedMore),
                Ok(httparse::Status::Partial) => Err(H1Error::Protocol("trailers too large")),
                Err(_) => Err(H1Error::Protocol("malformed trailers")),
            }
        }
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        // Keep the upload going while the response streams (full duplex).
        if let Some(upload) = this.upload.as_mut()
            && !upload.done(&**conn)
        {
            match upload.poll(&mut **conn, cx) {
                Poll::Ready(Err(H1Error::Body(e))) => {
                    return Poll::Ready(Some(Err(H1Error::Body(e))));
                }
                // The upstream stopped reading; the response may still end
                // well, but the connection is not reused.
                Poll::Ready(Err(_)) => {
                    conn.keep_alive = false;
                    this.upload = None;
                }
                Poll::Ready(Ok(())) | Poll::Pending => {}
            }
        }
        let polled = poll_body(&mut this.read, &mut **conn, cx);
        // Only read bytes can end a response; a closed read side means the
        // connection is spent, whatever the framing said.
        if let Poll::Ready(Some(Err(_))) = polled {
            conn.keep_alive = false;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.read, Read::Done | Read::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.read {
            Read::Done | Read::Upgraded => SizeHint::with_exact(0),
            Read::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str, head_request: bool) -> Result<Option<ResponseHead>, H1Error> {
        let mut b = BytesMut::from(raw.as_bytes());
        parse_head(&mut b, head_request, false)
    }

    fn raw_lines(raw: &str) -> Option<String> {
        let mut b = BytesMut::from(raw.as_bytes());
        let h = parse_head(&mut b, false, true).unwrap().unwrap();
        assert!(h.headers.is_empty() || h.raw.is_none());
        h.raw.map(|r| {
            r.runs()
                .map(|x| String::from_utf8_lossy(x).into_owned())
                .collect()
        })
    }

    #[test]
    fn raw_heads_forward_lines_as_received_minus_hop_by_hop() {
        assert_eq!(
            raw_lines("HTTP/1.1 200 OK\r\nServer: x\r\nConnection: keep-alive, X-Private\r\nContent-Length: 2\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: y\r\n\r\nok")
                .as_deref(),
            Some("Server: x\r\nContent-Length: 2\r\nX-Kept: y\r\n")
        );
        let mut b =
            BytesMut::from(&b"HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 2\r\n\r\nok"[..]);
        let raw = parse_head(&mut b, false, true)
            .unwrap()
            .unwrap()
            .raw
            .unwrap();
        assert!(raw.has_date && raw.has_length);
        // Bare LF line ends are read, not passed on: parsed into a map.
        assert_eq!(
            raw_lines("HTTP/1.1 200 OK\nServer: x\nContent-Length: 2\n\nok"),
            None
        );
        // Too many separate runs: a map too.
        assert_eq!(
            raw_lines(
                "HTTP/1.1 200 OK\r\na: 1\r\nte: x\r\nb: 1\r\nte: x\r\nc: 1\r\nte: x\r\nd: 1\r\nte: x\r\ne: 1\r\ncontent-length: 0\r\n\r\n"
            ),
            None
        );
        // A 101 keeps its map (the tunnel needs Upgrade and Connection).
        let mut b = BytesMut::from(
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\nConnection: upgrade\r\n\r\n"[..],
        );
        let h = parse_head(&mut b, false, true).unwrap().unwrap();
        assert!(h.raw.is_none() && h.headers["upgrade"] == "ws");
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f = |raw: &str| head(raw, false).unwrap().unwrap().framing;
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            Framing::Empty
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"),
            Framing::Chunked
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n"),
            Framing::Close
        );
        assert_eq!(f("HTTP/1.1 200 OK\r\n\r\n"), Framing::Close);
        assert_eq!(
            f("HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"),
            Framing::Empty
        );
        assert_eq!(f("HTTP/1.1 304 Not Modified\r\n\r\n"), Framing::Empty);
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true)
                .unwrap()
                .unwrap()
                .framing,
            Framing::Empty
        );
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let k = |raw: &str| head(raw, false).unwrap().unwrap().keep_alive;
        assert!(k("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n"));
        assert!(!k(
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: close\r\n\r\n"
        ));
        assert!(!k("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n"));
        assert!(k(
            "HTTP/1.0 200 OK\r\ncontent-length: 1\r\nConnection: Keep-Alive\r\n\r\n"
        ));
        assert!(!k("HTTP/1.1 200 OK\r\n\r\n"), "close-delimited");
    }

    #[test]
    fn bad_heads_are_protocol_errors() {
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            "SMTP ready\r\n\r\n",
        ] {
            assert!(
                matches!(head(raw, false), Err(H1Error::Protocol(_))),
                "{raw:?} must be refused"
            );
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        assert!(matches!(
            head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), false),
            Err(H1Error::Protocol("too many response headers"))
        ));
    }

    #[test]
    fn head_is_consumed_and_headers_kept() {
        let mut b = BytesMut::from(&b"HTTP/1.1 201 Created\r\nX-A: 1\r\nx-a: 2\r\nServer: t\r\ncontent-length: 3\r\n\r\nabcHTTP"[..]);
        let h = parse_head(&mut b, false, false).unwrap().unwrap();
        assert_eq!(h.status, StatusCode::CREATED);
        assert_eq!(
            h.headers.get_all("x-a").iter().collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert_eq!(h.headers["server"], "t");
        assert_eq!(&b[..], b"abcHTTP");
        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\nx: 1\r\n"[..]);
        assert!(parse_head(&mut partial, false, false).unwrap().is_none());
        assert_eq!(partial.len(), 23, "a partial head is left in place");
    }

    fn decode_all(raw: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>), H1Error> {
        let mut buf = BytesMut::from(raw);
        let mut state = Read::Chunked(Chunk::Size);
        let mut body = Vec::new();
        let mut trailers = None;
        while let Read::Chunked(c) = state {
            match decode_chunk(&mut buf, c)? {
                Decoded::Frame(f, next) => {
                    state = next;
                    match f.into_data() {
                        Ok(d) => body.extend_from_slice(&d),
                        Err(f) => trailers = f.into_trailers().ok(),
                    }
                }
                Decoded::Next(next) => state = next,
                Decoded::NeedMore => return Err(H1Error::Closed),
            }
        }
        Ok((body, trailers))
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let (body, t) =
            decode_all(b"5\r\nhello\r\n6;ext=1\r\n world\r\nA \r\n0123456789\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!(body, b"hello world0123456789");
        assert!(t.is_none());
        let (body, t) = decode_all(b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\nx-t: y\r\n\r\n").unwrap();
        assert_eq!(body, b"abc");
        let t = t.unwrap();
        assert_eq!(t["grpc-status"], "0");
        assert_eq!(t["x-t"], "y");
    }

    #[test]
    fn bad_chunks_are_refused() {
        for raw in [
            &b"z\r\nabc\r\n0\r\n\r\n"[..],
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabcd\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"-3\r\nabc\r\n0\r\n\r\n",
            b"3 x\r\nabc\r\n0\r\n\r\n",
        ] {
            assert!(
                matches!(decode_all(raw), Err(H1Error::Protocol(_))),
                "{:?} must be refused",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(
            matches!(decode_all(b"5\r\nab"), Err(H1Error::Closed)),
            "short body waits for more"
        );
    }

    #[test]
    fn hex_lengths() {
        for n in [0usize, 1, 15, 16, 255, 4096, 1 << 20] {
            let mut w = Vec::new();
            push_hex(&mut w, n);
            assert_eq!(String::from_utf8(w).unwrap(), format!("{n:x}"));
            let mut w = Vec::new();
            push_decimal(&mut w, n as u64);
            assert_eq!(String::from_utf8(w).unwrap(), n.to_string());
        }
        let mut w = Vec::new();
        push_decimal(&mut w, u64::MAX);
        assert_eq!(String::from_utf8(w).unwrap(), u64::MAX.to_string());
    }
}
