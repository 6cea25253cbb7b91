//! Starting and stopping a proxy: compile the model into runtime objects,
//! bind every socket (all or nothing), start accept loops and the admin
//! server, and drain on request.

use crate::admin::{self, AdminState};
use crate::cluster::Cluster;
use crate::http::HttpChain;
use crate::listener::{self, ChainKind, DrainControl, FilterChain, ListenerConfig};
use crate::route::{CompileError, RouteTable};
use crate::tcp::TcpChain;
use crate::telemetry::{self, ListenerStats};
use arc_swap::ArcSwap;
use legate_xds::model::Config;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Why a proxy did not start. Nothing is left running when start fails.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration:\n{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<legate_xds::FieldError>),
    #[error("invalid configuration: {0}")]
    Compile(#[from] CompileError),
    #[error("{what}: cannot listen on {addr}: {source}")]
    Bind {
        what: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin server: {0}")]
    Admin(std::io::Error),
}

/// The runtime objects compiled from one configuration.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub clusters: HashMap<String, Arc<Cluster>>,
}

pub struct RunningProxy {
    /// Bound address of every listener, by name (useful with port 0).
    pub listeners: Vec<(String, SocketAddr)>,
    pub admin_addr: SocketAddr,
    drain: DrainControl,
    drain_timeout: Duration,
    quit: watch::Receiver<bool>,
    admin: Option<admin::AdminHandle>,
    _snapshot: Arc<Snapshot>,
}

impl RunningProxy {
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// Resolves when `/quitquitquit` is called on the admin server.
    pub async fn quit_requested(&mut self) {
        let _ = self.quit.wait_for(|q| *q).await;
    }

    /// Serves until SIGTERM, SIGINT or `/quitquitquit`, then drains.
    pub async fn serve_until_stopped(mut self) {
        self.stop_requested().await;
        tracing::info!("draining");
        if self.drain().await {
            tracing::info!("drained; exiting");
        } else {
            tracing::warn!("drain deadline passed with connections still open; exiting");
        }
    }

    /// Resolves on SIGTERM, SIGINT or `/quitquitquit`.
    async fn stop_requested(&mut self) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGTERM");
                self.quit_requested().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = self.quit_requested() => {}
        }
    }

    /// Stops accepting, lets in-flight requests finish within the drain
    /// timeout, then stops the admin server. Returns true when every
    /// connection finished in time.
    pub async fn drain(mut self) -> bool {
        if let Some(a) = &self.admin {
            a.state.set_draining();
        }
        let clean = self.drain.drain(self.drain_timeout).await;
        if let Some(a) = self.admin.take() {
            a.stop();
        }
        clean
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(a) = self.admin.take() {
            a.stop();
        }
    }
}

/// Compiles the model's clusters and listeners.
fn compile(config: &Config) -> Result<(Snapshot, Vec<Arc<ListenerConfig>>), StartError> {
    let mut clusters = HashMap::new();
    for m in &config.clusters {
        let c = Cluster::new(m);
        c.start_background_tasks(m);
        clusters.insert(m.name.clone(), c);
    }
    let mut listeners = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let stats = Arc::new(ListenerStats::new(&l.name));
        let mut chains = Vec::new();
        for (j, fc) in l.filter_chains.iter().enumerate() {
            let path = format!("listeners[{i}].filter_chains[{j}]");
            let kind = if let Some(h) = &fc.http {
                let routes = RouteTable::compile(
                    &format!("{path}.http.route_config"),
                    &h.route_config,
                    h.strip_any_host_port,
                    &clusters,
                )?;
                ChainKind::Http(Arc::new(HttpChain::new(h, routes, stats.clone())))
            } else if let Some(t) = &fc.tcp {
                let cluster = clusters
                    .get(&t.cluster)
                    .cloned()
                    .ok_or_else(|| CompileError {
                        path: format!("{path}.tcp.cluster"),
                        message: format!("unknown cluster {:?}", t.cluster),
                    })?;
                ChainKind::Tcp(Arc::new(TcpChain {
                    cluster,
                    idle_timeout: (!t.idle_timeout.is_zero()).then(|| t.idle_timeout.get()),
                }))
            } else {
                return Err(CompileError {
                    path,
                    message: "set exactly one of `http` or `tcp`".into(),
                }
                .into());
            };
            chains.push(FilterChain {
                destination_port: fc.filter_chain_match.destination_port,
                kind,
            });
        }
        listeners.push(Arc::new(ListenerConfig {
            name: l.name.as_str().into(),
            chains,
            stats,
        }));
    }
    Ok((
        Snapshot {
            config: Arc::new(config.clone()),
            clusters,
        },
        listeners,
    ))
}

/// Starts a proxy on the current tokio runtime. The configuration is
/// validated again here, so no caller can start a half-valid one.
pub async fn start(mut config: Config) -> Result<RunningProxy, StartError> {
    for l in &mut config.listeners {
        l.normalize();
    }
    let errors = legate_xds::validate(&config);
    if !errors.is_empty() {
        return Err(StartError::Invalid(errors));
    }
    let prometheus = telemetry::install();
    let (snapshot, listener_configs) = compile(&config)?;

    // Bind everything before starting anything.
    let mut bound = Vec::new();
    for (l, cfg) in config.listeners.iter().zip(listener_configs) {
        let addr: SocketAddr = l.address.parse().map_err(|_| {
            StartError::Compile(CompileError {
                path: "listeners".into(),
                message: format!("invalid address {:?}", l.address),
            })
        })?;
        let std_listener = listener::bind(addr).map_err(|source| StartError::Bind {
            what: format!("listener {:?}", l.name),
            addr,
            source,
        })?;
        bound.push((l.name.clone(), std_listener, cfg));
    }
    let admin_addr: SocketAddr = config
        .admin
        .address
        .parse()
        .map_err(|_| StartError::Admin(std::io::Error::other("invalid admin address")))?;
    let admin_listener = listener::bind(admin_addr).map_err(|source| StartError::Bind {
        what: "admin server".into(),
        addr: admin_addr,
        source,
    })?;

    let snapshot = Arc::new(snapshot);
    let drain = DrainControl::new();
    let mut addrs = Vec::new();
    for (name, std_listener, cfg) in bound {
        let local = std_listener.local_addr().map_err(StartError::Admin)?;
        let tokio_listener =
            tokio::net::TcpListener::from_std(std_listener).map_err(|source| StartError::Bind {
                what: format!("listener {name:?}"),
                addr: local,
                source,
            })?;
        addrs.push((name.clone(), local));
        if let Some(w) = drain.watcher() {
            tokio::spawn(listener::accept_loop(
                tokio_listener,
                Arc::new(ArcSwap::new(cfg)),
                w,
            ));
        }
    }
    let (quit_tx, quit_rx) = watch::channel(false);
    let state = Arc::new(AdminState::new(
        snapshot.clone(),
        addrs.clone(),
        prometheus,
        quit_tx,
    ));
    let admin_local = admin_listener.local_addr().map_err(StartError::Admin)?;
    let admin = admin::spawn(admin_listener, state).map_err(StartError::Admin)?;
    tracing::info!(admin = %admin_local, listeners = ?addrs, "legate started");
    Ok(RunningProxy {
        listeners: addrs,
        admin_addr: admin_local,
        drain,
        drain_timeout: config.admin.drain_timeout.get(),
        quit: quit_rx,
        admin: Some(admin),
        _snapshot: snapshot,
    })
}
