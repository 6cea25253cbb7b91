//! Starting, updating and stopping a proxy.
//!
//! A configuration (the model) is compiled into runtime objects off the data
//! path and swapped in atomically. An update is all or nothing: it is
//! validated, compiled and its new sockets bound before anything changes;
//! then clusters whose settings did not change keep their objects (pools,
//! endpoint state), route tables are replaced in the slots every connection
//! reads per request, listeners are added, swapped or drained. In-flight
//! requests finish on the objects they started with.

use crate::admin::{self, AdminState};
use crate::cluster::Cluster;
use crate::http::HttpChain;
use crate::listener::{self, ChainKind, DrainControl, FilterChain, ListenerConfig};
use crate::route::{Clusters, CompileError, RouteTable};
use crate::tcp::TcpChain;
use crate::telemetry::{self, ListenerStats};
use arc_swap::ArcSwap;
use legate_xds::model::{self, Config, DiscoveryType};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Why a configuration was not applied, at start or on update. Nothing
/// changes when an update fails; nothing is left running when start fails.
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
    #[error("admin: the admin server's settings cannot change while the proxy runs")]
    AdminChanged,
    #[error("the proxy is draining; configuration updates are refused")]
    Draining,
}

/// The runtime objects of the configuration being served (for the admin
/// server).
pub struct Snapshot {
    pub config: Arc<Config>,
    pub clusters: HashMap<String, Arc<Cluster>>,
    /// Bound address of every listener, by name, in configuration order.
    pub listeners: Vec<(String, SocketAddr)>,
}

struct ListenerEntry {
    /// The configured address (what an update compares) and the bound one.
    address: String,
    addr: SocketAddr,
    config: Arc<ArcSwap<ListenerConfig>>,
    drain: DrainControl,
    stats: Arc<ListenerStats>,
}

/// Which route-table slot an HTTP filter chain reads: the named route
/// configuration it references, or its own inline one.
#[derive(Clone, PartialEq, Eq, Hash)]
enum RouteKey {
    Rds(String),
    Inline { listener: String, chain: usize },
}

/// What is being served, and the handles needed to change it.
struct Live {
    /// The configuration served (shared with the admin snapshot).
    config: Arc<Config>,
    clusters: HashMap<String, Arc<Cluster>>,
    routes: HashMap<RouteKey, Arc<ArcSwap<RouteTable>>>,
    listeners: HashMap<String, ListenerEntry>,
    /// Listeners removed (or moved to another address) whose connections
    /// are still finishing.
    retired: Vec<DrainControl>,
    draining: bool,
}

struct Inner {
    live: Mutex<Live>,
    admin: Arc<AdminState>,
}

/// A handle that applies configuration updates to a running proxy (the xDS
/// client holds one). Cheap to clone.
#[derive(Clone)]
pub struct ProxyHandle {
    inner: Arc<Inner>,
}

pub struct RunningProxy {
    pub admin_addr: SocketAddr,
    /// The ADS client task, when there is a control plane.
    xds: Option<tokio::task::JoinHandle<()>>,
    handle: ProxyHandle,
    drain_timeout: Duration,
    quit: watch::Receiver<bool>,
    admin: Option<admin::AdminHandle>,
}

impl RunningProxy {
    /// The bound address of a listener (useful with port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.handle.listener_addr(name)
    }

    /// Every listener and its bound address, in configuration order.
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.handle.inner.admin.snapshot().listeners.clone()
    }

    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    /// Applies a new configuration (see [`ProxyHandle::update`]).
    pub fn update(&self, config: Config) -> Result<(), StartError> {
        self.handle.update(config)
    }

    /// Resolves when `/quitquitquit` is called on the admin server.
    pub async fn quit_requested(&mut self) {
        let _ = self.quit.wait_for(|q| *q).await;
    }

    /// Serves until SIGTERM, SIGINT or `/quitquitquit`, then drains.
    pub async fn serve_until_stopped(mut self) {
        self.stop_requested().await;
        self.drain_and_log().await;
    }

    /// [`drain`](Self::drain), saying how it went.
    pub async fn drain_and_log(self) {
        tracing::info!("draining");
        if self.drain().await {
            tracing::info!("drained; exiting");
        } else {
            tracing::warn!("drain deadline passed with connections still open; exiting");
        }
    }

    /// Resolves on SIGTERM, SIGINT or `/quitquitquit`.
    pub async fn stop_requested(&mut self) {
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
        self.handle.inner.admin.set_draining();
        if let Some(x) = self.xds.take() {
            x.abort();
        }
        let mut controls = {
            let mut live = lock(&self.handle.inner.live);
            live.draining = true;
            let mut c: Vec<DrainControl> = live.listeners.drain().map(|(_, l)| l.drain).collect();
            c.append(&mut live.retired);
            c
        };
        for c in &controls {
            c.signal();
        }
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        let mut clean = true;
        for c in &mut controls {
            clean &= c.wait_until(deadline).await;
        }
        if let Some(a) = self.admin.take() {
            a.stop();
        }
        clean
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(x) = self.xds.take() {
            x.abort();
        }
        if let Some(a) = self.admin.take() {
            a.stop();
        }
    }
}

fn lock(m: &Mutex<Live>) -> std::sync::MutexGuard<'_, Live> {
    // A panic while holding the lock leaves `Live` as it was before the
    // update (updates mutate only after every fallible step).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ProxyHandle {
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.inner
            .admin
            .snapshot()
            .listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// Applies a new configuration, whole or not at all. Listeners are
    /// matched by name: new ones are bound, removed ones stop accepting and
    /// drain, others get their new filter chains for new connections.
    /// Clusters are matched by name: one whose settings are unchanged keeps
    /// its connection pools and endpoints (only endpoint changes apply).
    /// Route tables change for every request from now on, on every
    /// connection. Must be called on the proxy's tokio runtime.
    pub fn update(&self, mut config: Config) -> Result<(), StartError> {
        for l in &mut config.listeners {
            l.normalize();
        }
        let errors = legate_xds::validate(&config);
        if !errors.is_empty() {
            return Err(StartError::Invalid(errors));
        }
        let mut live = lock(&self.inner.live);
        if live.draining {
            return Err(StartError::Draining);
        }
        if config.admin != live.config.admin {
            return Err(StartError::AdminChanged);
        }
        let plan = Plan::build(&config, Some(&live))?;
        plan.commit(&mut live, config);
        self.inner.admin.set_snapshot(snapshot(&live));
        Ok(())
    }

    /// Marks the proxy ready (`/ready` answers 200): at once for a static
    /// configuration, once the first complete one is applied with xDS.
    pub fn set_initialized(&self) {
        self.inner.admin.set_initialized();
    }
}

/// Delivers the ADS client's configurations to the proxy.
struct XdsSink(ProxyHandle);

impl legate_xds::client::Apply for XdsSink {
    fn apply(&self, config: Config) -> Result<(), String> {
        self.0.update(config).map_err(|e| e.to_string())
    }

    fn initialized(&self) {
        self.0.set_initialized();
    }
}

/// Everything an update needs, built and checked before anything changes.
struct Plan {
    clusters: HashMap<String, Arc<Cluster>>,
    /// Clusters new in this update, by index in the configuration (their
    /// tasks start at commit).
    fresh: Vec<usize>,
    /// Reused clusters whose endpoints change at commit.
    endpoint_updates: Vec<(Arc<Cluster>, Vec<crate::cluster::EndpointSpec>)>,
    routes: HashMap<RouteKey, (Arc<ArcSwap<RouteTable>>, RouteTable)>,
    listeners: Vec<PlannedListener>,
}

struct PlannedListener {
    name: String,
    address: String,
    config: Arc<ListenerConfig>,
    stats: Arc<ListenerStats>,
    /// A socket for a listener that is new or moved to another address.
    bound: Option<(SocketAddr, std::net::TcpListener)>,
    /// Binds no port (`bind_to_port: false`): served through a
    /// `use_original_dst` listener.
    serve_only: bool,
}

/// Whether two cluster models differ only in endpoints that can be updated
/// in place (not for `strict_dns`, whose endpoints are the names resolved).
fn same_settings(a: &model::Cluster, b: &model::Cluster) -> bool {
    if a.discovery == DiscoveryType::StrictDns || b.discovery == DiscoveryType::StrictDns {
        return a == b;
    }
    let strip = |c: &model::Cluster| model::Cluster {
        endpoints: Vec::new(),
        ..c.clone()
    };
    strip(a) == strip(b)
}

fn bind(what: String, address: &str) -> Result<(SocketAddr, std::net::TcpListener), StartError> {
    let addr: SocketAddr = address.parse().map_err(|_| {
        StartError::Compile(CompileError {
            path: what.clone(),
            message: format!("invalid address {address:?}"),
        })
    })?;
    let bound = listener::bind(addr).and_then(|l| Ok((l.local_addr()?, l)));
    bound.map_err(|source| StartError::Bind { what, addr, source })
}

impl Plan {
    fn build(config: &Config, live: Option<&Live>) -> Result<Plan, StartError> {
        // Clusters: reuse unchanged ones.
        let old_models: HashMap<&str, &model::Cluster> = live
            .map(|l| {
                l.config
                    .clusters
                    .iter()
                    .map(|c| (c.name.as_str(), c))
                    .collect()
            })
            .unwrap_or_default();
        let mut clusters = HashMap::new();
        let mut fresh = Vec::new();
        let mut endpoint_updates = Vec::new();
        for (i, m) in config.clusters.iter().enumerate() {
            let old = live.and_then(|l| {
                let cluster = l.clusters.get(&m.name)?;
                let model = old_models.get(m.name.as_str())?;
                Some((cluster, model))
            });
            let cluster = match old {
                Some((old, old_model)) if same_settings(old_model, m) => {
                    let specs = Cluster::specs(m);
                    if m.discovery != DiscoveryType::StrictDns && !old.has_endpoints(&specs) {
                        endpoint_updates.push((old.clone(), specs));
                    }
                    old.clone()
                }
                _ => {
                    fresh.push(i);
                    Cluster::new(m)
                }
            };
            clusters.insert(m.name.clone(), cluster);
        }
        let lookup = Clusters {
            map: &clusters,
            allow_missing: config.dynamic.is_some(),
        };

        // Route tables: named ones, then each HTTP chain's.
        let slot = |key: &RouteKey| {
            live.and_then(|l| l.routes.get(key).cloned())
                .unwrap_or_else(|| Arc::new(ArcSwap::from_pointee(RouteTable::empty())))
        };
        let mut routes = HashMap::new();
        for (i, rc) in config.route_configs.iter().enumerate() {
            let key = RouteKey::Rds(rc.name.clone());
            let table = RouteTable::compile(&format!("route_configs[{i}]"), rc, false, &lookup)?;
            routes.insert(key.clone(), (slot(&key), table));
        }
        let mut listeners = Vec::new();
        let mut compiled = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let old = live.and_then(|lv| lv.listeners.get(&l.name));
            let stats = match old {
                Some(o) => o.stats.clone(),
                None => Arc::new(ListenerStats::new(&l.name)),
            };
            let mut chains = Vec::new();
            for (j, fc) in l.filter_chains.iter().enumerate() {
                let path = format!("listeners[{i}].filter_chains[{j}]");
                let kind = if let Some(h) = &fc.http {
                    let key = match (&h.route_config, &h.rds) {
                        (_, Some(name)) => RouteKey::Rds(name.clone()),
                        _ => RouteKey::Inline {
                            listener: l.name.clone(),
                            chain: j,
                        },
                    };
                    let table_slot = match &h.route_config {
                        Some(rc) => {
                            let table = RouteTable::compile(
                                &format!("{path}.http.route_config"),
                                rc,
                                h.strip_any_host_port,
                                &lookup,
                            )?;
                            let s = slot(&key);
                            routes.insert(key, (s.clone(), table));
                            s
                        }
                        // An `rds` name not (yet) delivered: 404 until it is.
                        None => routes
                            .entry(key.clone())
                            .or_insert_with(|| (slot(&key), RouteTable::empty()))
                            .0
                            .clone(),
                    };
                    ChainKind::Http(Arc::new(HttpChain::new(h, table_slot, stats.clone())))
                } else if let Some(t) = &fc.tcp {
                    match lookup.get(&t.cluster, format!("{path}.tcp.cluster"))? {
                        Some(cluster) => ChainKind::Tcp(Arc::new(TcpChain {
                            cluster,
                            idle_timeout: (!t.idle_timeout.is_zero()).then(|| t.idle_timeout.get()),
                        })),
                        None => ChainKind::MissingCluster(t.cluster.as_str().into()),
                    }
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
            let bound = match old {
                _ if !l.bind_to_port => None,
                Some(o) if o.address == l.address => None,
                _ => Some(bind(format!("listener {:?}", l.name), &l.address)?),
            };
            compiled.push((i, chains, stats, bound));
        }
        // Listeners that bind no port serve what a `use_original_dst`
        // listener hands them: compiled first, so those can hold them.
        let mut handoff = HashMap::new();
        let mut rest = Vec::new();
        for (i, chains, stats, bound) in compiled {
            let l = &config.listeners[i];
            if l.bind_to_port {
                rest.push((i, chains, stats, bound));
                continue;
            }
            let addr: SocketAddr = l.address.parse().map_err(|_| CompileError {
                path: format!("listeners[{i}].address"),
                message: format!("invalid socket address {:?}", l.address),
            })?;
            let cfg = Arc::new(ListenerConfig {
                name: l.name.as_str().into(),
                chains,
                stats: stats.clone(),
                original_dst: None,
            });
            handoff.insert(addr, cfg.clone());
            listeners.push(PlannedListener {
                name: l.name.clone(),
                address: l.address.clone(),
                config: cfg,
                stats,
                bound: None,
                serve_only: true,
            });
        }
        for (i, chains, stats, bound) in rest {
            let l = &config.listeners[i];
            let original_dst = l.use_original_dst.then(|| listener::OriginalDst {
                handoff: handoff.clone(),
                policy: l.outbound_traffic_policy.unwrap_or_default(),
            });
            listeners.push(PlannedListener {
                name: l.name.clone(),
                address: l.address.clone(),
                config: Arc::new(ListenerConfig {
                    name: l.name.as_str().into(),
                    chains,
                    stats: stats.clone(),
                    original_dst,
                }),
                stats,
                bound,
                serve_only: false,
            });
        }
        Ok(Plan {
            clusters,
            fresh,
            endpoint_updates,
            routes,
            listeners,
        })
    }

    /// Applies the plan. Nothing here can fail.
    fn commit(self, live: &mut Live, config: Config) {
        for &i in &self.fresh {
            if let Some(m) = config.clusters.get(i)
                && let Some(c) = self.clusters.get(&m.name)
            {
                c.start_background_tasks(m);
            }
        }
        for (cluster, specs) in &self.endpoint_updates {
            cluster.set_endpoints(specs);
        }
        let mut routes = HashMap::new();
        for (key, (slot, table)) in self.routes {
            slot.store(Arc::new(table));
            routes.insert(key, slot);
        }
        let mut old = std::mem::take(&mut live.listeners);
        for p in self.listeners {
            let name = p.name;
            if p.serve_only {
                // Served through the listeners that hand it connections;
                // one that used to bind its port stops accepting.
                if let Some(prev) = old.remove(&name) {
                    prev.drain.signal();
                    live.retired.push(prev.drain);
                }
                continue;
            }
            let entry = match (p.bound, old.remove(&name)) {
                (None, Some(o)) => {
                    o.config.store(p.config);
                    ListenerEntry {
                        address: p.address,
                        ..o
                    }
                }
                (Some((addr, socket)), prev) => {
                    if let Some(prev) = prev {
                        tracing::info!(listener = %name, from = %prev.addr, to = %addr, "listener moved; draining the old address");
                        prev.drain.signal();
                        live.retired.push(prev.drain);
                    }
                    let drain = DrainControl::new();
                    let shared = Arc::new(ArcSwap::new(p.config));
                    match (tokio::net::TcpListener::from_std(socket), drain.watcher()) {
                        (Ok(l), Some(w)) => {
                            tokio::spawn(listener::accept_loop(l, shared.clone(), w));
                        }
                        (Err(e), _) => {
                            tracing::error!(listener = %name, error = %e, "cannot register the listening socket");
                        }
                        (_, None) => {}
                    }
                    ListenerEntry {
                        address: p.address,
                        addr,
                        config: shared,
                        drain,
                        stats: p.stats,
                    }
                }
                (None, None) => continue,
            };
            live.listeners.insert(name, entry);
        }
        for (name, gone) in old {
            tracing::info!(listener = %name, addr = %gone.addr, "listener removed; draining");
            gone.drain.signal();
            live.retired.push(gone.drain);
        }
        live.retired.retain(|d| !d.is_finished());
        live.clusters = self.clusters;
        live.routes = routes;
        live.config = Arc::new(config);
    }
}

fn snapshot(live: &Live) -> Snapshot {
    let listeners = live
        .config
        .listeners
        .iter()
        .filter_map(|l| Some((l.name.clone(), live.listeners.get(&l.name)?.addr)))
        .collect();
    Snapshot {
        config: live.config.clone(),
        clusters: live.clusters.clone(),
        listeners,
    }
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
    // Compiles and binds everything before starting anything.
    let plan = Plan::build(&config, None)?;
    let (admin_local, admin_listener) = bind("admin server".into(), &config.admin.address)?;

    let mut live = Live {
        config: Arc::default(),
        clusters: HashMap::new(),
        routes: HashMap::new(),
        listeners: HashMap::new(),
        retired: Vec::new(),
        draining: false,
    };
    let drain_timeout = config.admin.drain_timeout.get();
    let dynamic = config.dynamic.is_some();
    let base = config.clone();
    plan.commit(&mut live, config);
    let (quit_tx, quit_rx) = watch::channel(false);
    let state = Arc::new(AdminState::new(snapshot(&live), prometheus, quit_tx));
    if !dynamic {
        state.set_initialized();
    }
    let admin = admin::spawn(admin_listener, state.clone()).map_err(StartError::Admin)?;
    let listeners = state.snapshot().listeners.clone();
    tracing::info!(admin = %admin_local, ?listeners, "legate started");
    let handle = ProxyHandle {
        inner: Arc::new(Inner {
            live: Mutex::new(live),
            admin: state.clone(),
        }),
    };
    let xds = dynamic.then(|| {
        let status = Arc::new(legate_xds::client::Status::default());
        state.set_xds_status(status.clone());
        legate_xds::client::describe_metrics();
        tokio::spawn(legate_xds::client::run(
            base,
            Arc::new(XdsSink(handle.clone())),
            status,
        ))
    });
    Ok(RunningProxy {
        admin_addr: admin_local,
        xds,
        handle,
        drain_timeout,
        quit: quit_rx,
        admin: Some(admin),
    })
}
