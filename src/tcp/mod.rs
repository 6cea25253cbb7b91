//! Opaque TCP proxying: byte for byte, both directions, with half-close
//! (one side's FIN is passed on while the other direction keeps flowing)
//! and an idle timeout.

use crate::cluster::Cluster;
use crate::cluster::outlier::Outcome;
use legate_xds::model::{LbPolicy, RoutingPriority};
use pin_project::pin_project;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub struct TcpChain {
    pub cluster: Arc<Cluster>,
    pub idle_timeout: Option<Duration>,
}

/// Last activity on a proxied connection, in milliseconds since `epoch`.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

#[pin_project]
struct Tracked<S> {
    #[pin]
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r
            && *n > 0
        {
            this.activity.touch();
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// Proxies one downstream connection to an endpoint of the chain's cluster.
pub async fn proxy(downstream: TcpStream, peer: SocketAddr, chain: Arc<TcpChain>) {
    let cluster = &chain.cluster;
    // Only ring hash uses a key: the client IP, hashed as HTTP's
    // `source_ip` hash policy hashes it.
    let hash = (cluster.lb_policy == LbPolicy::RingHash)
        .then(|| crate::cluster::lb::hash_bytes(peer.ip().to_string().as_bytes()));
    let Some(endpoint) = cluster.pick(hash) else {
        cluster.stats.none_healthy.increment(1);
        tracing::debug!(cluster = %cluster.name, "tcp: no healthy upstream");
        return;
    };
    // The circuit breaker's connection limit: over it, the downstream
    // connection is closed at once (flag UO).
    let Some(_slot) =
        cluster
            .breakers
            .try_connection(RoutingPriority::Default, &endpoint.pool.open, true)
    else {
        tracing::debug!(cluster = %cluster.name, "tcp: connection limit reached; closing (UO)");
        return;
    };
    let connect = tokio::time::timeout(
        endpoint.settings.connect_timeout,
        TcpStream::connect(endpoint.addr),
    );
    let report = |o: Outcome| {
        if let Some(d) = &cluster.outlier {
            d.report(cluster, &endpoint, o);
        }
    };
    let upstream = match connect.await {
        Ok(Ok(s)) => {
            // A connection made is a success to outlier detection.
            report(Outcome::Status(200));
            s
        }
        Ok(Err(e)) => {
            report(Outcome::LocalFailure);
            cluster.stats.cx_connect_fail.increment(1);
            tracing::debug!(cluster = %cluster.name, endpoint = %endpoint.addr, error = %e, "tcp: upstream connect failed");
            return;
        }
        Err(_) => {
            report(Outcome::LocalFailure);
            cluster.stats.cx_connect_fail.increment(1);
            tracing::debug!(cluster = %cluster.name, endpoint = %endpoint.addr, "tcp: upstream connect timed out");
            return;
        }
    };
    cluster.stats.cx_total.increment(1);
    cluster.stats.cx_active.increment(1.0);
    let result = splice(downstream, upstream, chain.idle_timeout, peer).await;
    cluster.stats.cx_active.decrement(1.0);
    match result {
        Ok((received, sent)) => {
            cluster.stats.tcp_received.increment(received);
            cluster.stats.tcp_sent.increment(sent);
        }
        Err(e) => tracing::debug!(%peer, error = %e, "tcp: connection ended with an error"),
    }
}

/// Copies both ways between `downstream` and `upstream` until both ends
/// close, or until neither has sent a byte for `idle`; returns the bytes
/// received from downstream and sent to it.
async fn splice(
    downstream: TcpStream,
    upstream: TcpStream,
    idle_timeout: Option<Duration>,
    peer: SocketAddr,
) -> io::Result<(u64, u64)> {
    let _ = upstream.set_nodelay(true);
    let activity = Arc::new(Activity {
        epoch: Instant::now(),
        last_ms: AtomicU64::new(0),
    });
    let mut down = Tracked {
        inner: downstream,
        activity: activity.clone(),
    };
    let mut up = Tracked {
        inner: upstream,
        activity: activity.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut down, &mut up);
    match idle_timeout {
        None => copy.await,
        Some(idle) => {
            tokio::pin!(copy);
            loop {
                let deadline = activity.last() + idle;
                tokio::select! {
                    r = copy.as_mut() => break r,
                    _ = tokio::time::sleep_until(deadline) => {
                        if activity.last() + idle <= Instant::now() {
                            tracing::debug!(%peer, "tcp: idle timeout");
                            break Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"));
                        }
                    }
                }
            }
        }
    }
}

/// How long a passthrough connection may take to connect, and stay idle
/// (Istio's PassthroughCluster: 10 s to connect; Envoy's TCP proxy: an
/// hour idle).
const PASSTHROUGH_CONNECT: Duration = Duration::from_secs(10);
const PASSTHROUGH_IDLE: Duration = Duration::from_secs(3600);

/// Whether `ip` is an address of this host (it can be bound).
fn is_local(ip: std::net::IpAddr) -> bool {
    std::net::TcpListener::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Connects to `dest`; to an address of this host (an inbound connection
/// for the application) from 127.0.0.6 (`::6`), the source the iptables
/// rules let through, so the connection is not intercepted again.
async fn connect_passthrough(dest: SocketAddr, local: SocketAddr) -> io::Result<TcpStream> {
    if dest.ip() != local.ip() && !is_local(dest.ip()) {
        return TcpStream::connect(dest).await;
    }
    let (socket, source) = match dest {
        SocketAddr::V4(_) => (
            tokio::net::TcpSocket::new_v4()?,
            SocketAddr::from(([127, 0, 0, 6], 0)),
        ),
        SocketAddr::V6(_) => (
            tokio::net::TcpSocket::new_v6()?,
            SocketAddr::from((std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6), 0)),
        ),
    };
    socket.bind(source)?;
    socket.connect(dest).await
}

/// Passes a connection through to its original destination as it is (an
/// intercepted connection no listener or filter chain matches, under
/// `outbound_traffic_policy: allow_any`). `local` is the address it was
/// accepted on.
pub async fn passthrough(
    downstream: TcpStream,
    peer: SocketAddr,
    dest: SocketAddr,
    local: SocketAddr,
) {
    let connect = connect_passthrough(dest, local);
    let upstream = match tokio::time::timeout(PASSTHROUGH_CONNECT, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, %dest, error = %e, "passthrough: connect failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, %dest, "passthrough: connect timed out");
            return;
        }
    };
    if let Err(e) = splice(downstream, upstream, Some(PASSTHROUGH_IDLE), peer).await {
        tracing::debug!(%peer, %dest, error = %e, "passthrough: connection ended with an error");
    }
}
