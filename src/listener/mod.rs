//! Listeners: bind, accept, choose the filter chain, hand the connection to
//! the HTTP connection manager or the TCP proxy. Drain stops the accept
//! loops and tells every connection to finish.

use crate::http::{self, HttpChain};
use crate::tcp::{self, TcpChain};
use crate::telemetry::ListenerStats;
use arc_swap::ArcSwap;
use legate_xds::model::OutboundTrafficPolicy;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

pub enum ChainKind {
    Http(Arc<HttpChain>),
    Tcp(Arc<TcpChain>),
    /// A TCP proxy whose cluster the configuration does not have (yet):
    /// connections are closed (Envoy's NC).
    MissingCluster(Arc<str>),
}

pub struct FilterChain {
    pub destination_port: Option<u16>,
    pub kind: ChainKind,
}

/// A listener's compiled filter chains; swapped whole on config change.
pub struct ListenerConfig {
    pub name: Arc<str>,
    pub chains: Vec<FilterChain>,
    pub stats: Arc<ListenerStats>,
    /// For a `use_original_dst` listener: where intercepted connections go.
    pub original_dst: Option<OriginalDst>,
}

/// What a `use_original_dst` listener does with an intercepted connection.
pub struct OriginalDst {
    /// The listeners that bind no port, by address: served here.
    pub handoff: HashMap<SocketAddr, Arc<ListenerConfig>>,
    pub policy: OutboundTrafficPolicy,
}

/// Where an intercepted connection went (`legate_listener_original_dst_total`'s
/// `result` label): to the listener at its destination, to a filter chain
/// of the intercepting listener, passed through, or refused.
#[derive(Clone, Copy)]
pub enum Routed {
    Listener = 0,
    FilterChain = 1,
    Passthrough = 2,
    Blocked = 3,
}

/// The destination a connection had before an iptables REDIRECT (the
/// local address when it was not redirected).
fn original_dst(stream: &TcpStream, local: SocketAddr) -> SocketAddr {
    let sock = socket2::SockRef::from(stream);
    let got = if local.is_ipv4() {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    match got.ok().and_then(|a| a.as_socket()) {
        Some(a) => a,
        None => local,
    }
}

/// The wildcard address of `addr`'s family, with its port.
fn unspecified(addr: SocketAddr) -> SocketAddr {
    let ip = match addr {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, addr.port())
}

impl ListenerConfig {
    fn choose(&self, destination: SocketAddr) -> Option<&FilterChain> {
        self.chains
            .iter()
            .find(|c| c.destination_port.is_none_or(|p| p == destination.port()))
    }
}

/// A drain signal plus a token whose clones count live connections: when
/// every clone is dropped, everything has finished.
#[derive(Clone)]
pub struct Drain {
    pub signal: watch::Receiver<bool>,
    _token: mpsc::Sender<()>,
}

pub struct DrainControl {
    signal: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
    token: Option<mpsc::Sender<()>>,
}

impl DrainControl {
    pub fn new() -> Self {
        let (signal, _) = watch::channel(false);
        let (token, done) = mpsc::channel(1);
        DrainControl {
            signal,
            done,
            token: Some(token),
        }
    }

    pub fn watcher(&self) -> Option<Drain> {
        Some(Drain {
            signal: self.signal.subscribe(),
            _token: self.token.clone()?,
        })
    }

    pub fn is_draining(&self) -> bool {
        *self.signal.borrow()
    }

    /// Tells the accept loop to stop and every connection to finish.
    pub fn signal(&self) {
        self.signal.send_replace(true);
    }

    /// After [`DrainControl::signal`]: waits until every connection has
    /// finished or the deadline passes. Returns true when all finished.
    pub async fn wait_until(&mut self, deadline: tokio::time::Instant) -> bool {
        self.token = None;
        tokio::time::timeout_at(deadline, self.done.recv())
            .await
            .is_ok()
    }

    /// Whether drain was signalled and every connection has finished.
    pub fn is_finished(&self) -> bool {
        self.is_draining() && self.signal.receiver_count() == 0
    }
}

impl Default for DrainControl {
    fn default() -> Self {
        Self::new()
    }
}

/// Binds `addr` with SO_REUSEADDR and a large backlog.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Accepts connections until drain is signalled.
pub async fn accept_loop(
    listener: TcpListener,
    config: Arc<ArcSwap<ListenerConfig>>,
    drain: Drain,
) {
    let mut signal = drain.signal.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = async { let _ = signal.wait_for(|d| *d).await; } => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let cfg = config.load_full();
                let conn_drain = drain.clone();
                tokio::spawn(serve_connection(stream, peer, cfg, conn_drain));
            }
            Err(e) => {
                // Out of descriptors and similar: back off briefly rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    cfg: Arc<ListenerConfig>,
    drain: Drain,
) {
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let (cfg, local) = match &cfg.original_dst {
        None => (cfg, local),
        Some(od) => {
            let dest = original_dst(&stream, local);
            let stats = cfg.stats.clone();
            let count = |r: Routed| stats.count_original_dst(r as usize);
            if let Some(target) = (dest != local)
                .then(|| {
                    od.handoff
                        .get(&dest)
                        .or_else(|| od.handoff.get(&unspecified(dest)))
                })
                .flatten()
            {
                count(Routed::Listener);
                (target.clone(), dest)
            } else if cfg.choose(dest).is_some() {
                count(Routed::FilterChain);
                (cfg.clone(), dest)
            } else if dest == local {
                // Not redirected, and nothing here serves it: passing it
                // through would connect back to this listener.
                tracing::debug!(listener = %cfg.name, %peer, "a direct connection no filter chain matches; closing");
                return;
            } else {
                match od.policy {
                    OutboundTrafficPolicy::AllowAny => {
                        count(Routed::Passthrough);
                        tcp::passthrough(stream, peer, dest, local).await;
                    }
                    OutboundTrafficPolicy::RegistryOnly => {
                        count(Routed::Blocked);
                        tracing::debug!(listener = %cfg.name, %peer, %dest, "outbound_traffic_policy registry_only: no listener for the destination; closing");
                    }
                }
                return;
            }
        }
    };
    let Some(chain) = cfg.choose(local) else {
        tracing::debug!(listener = %cfg.name, %peer, "no filter chain matches; closing");
        return;
    };
    cfg.stats.cx_total.increment(1);
    cfg.stats.cx_active.increment(1.0);
    match &chain.kind {
        ChainKind::Http(h) => http::serve(stream, peer, h.clone(), drain.signal.clone()).await,
        ChainKind::Tcp(t) => tcp::proxy(stream, peer, t.clone()).await,
        ChainKind::MissingCluster(name) => {
            tracing::debug!(listener = %cfg.name, %peer, cluster = %name, "TCP proxy cluster does not exist; closing");
        }
    }
    cfg.stats.cx_active.decrement(1.0);
    drop(drain);
}
