//! The mesh as the ADS server's [`SnapshotSource`]: each proxy's snapshot
//! is generated from the current mesh on first use and shared by every
//! proxy with the same identity until the mesh changes; [`watch`] reloads
//! the mesh files when they change.

use super::generate::{OutboundKey, ProxyInfo, local, outbound, snapshot};
use super::{Mesh, MeshError, parse, read};
use crate::registry::Registry;
use crate::server::{Snapshot, SnapshotSource};
use crate::wire::envoy::config::core::v3::Node;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// More distinct proxy identities than this and the cache starts over.
const CACHE_LIMIT: usize = 10_000;

struct State {
    mesh: Arc<Mesh>,
    /// Bumped with every mesh; snapshots generated from an older mesh are
    /// not cached.
    generation: u64,
    /// The registry generation the cache was made from.
    registry_generation: u64,
    cache: HashMap<ProxyInfo, Arc<Snapshot>>,
    /// The part proxies share, by what it depends on.
    outbound: HashMap<OutboundKey, Arc<Snapshot>>,
}

/// Serves snapshots generated from a mesh and the registered workloads.
pub struct MeshSource {
    state: Mutex<State>,
    changes: watch::Sender<u64>,
    registry: Option<Arc<Registry>>,
}

impl MeshSource {
    /// A mesh with no registered workloads.
    pub fn new(mesh: Mesh) -> MeshSource {
        MeshSource::build(mesh, None)
    }

    /// A mesh whose services also take `registry`'s workloads. Call
    /// [`invalidate`](Self::invalidate) when the registry changes.
    pub fn with_registry(mesh: Mesh, registry: Arc<Registry>) -> MeshSource {
        MeshSource::build(mesh, Some(registry))
    }

    fn build(mesh: Mesh, registry: Option<Arc<Registry>>) -> MeshSource {
        describe_metrics();
        metrics::gauge!("legate_xds_mesh_services").set(mesh.services.len() as f64);
        MeshSource {
            state: Mutex::new(State {
                mesh: Arc::new(mesh),
                generation: 0,
                registry_generation: 0,
                cache: HashMap::new(),
                outbound: HashMap::new(),
            }),
            changes: watch::channel(0).0,
            registry,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves `mesh` from now on: every connected proxy is sent what
    /// changed for it.
    pub fn set_mesh(&self, mesh: Mesh) {
        metrics::gauge!("legate_xds_mesh_services").set(mesh.services.len() as f64);
        self.state().mesh = Arc::new(mesh);
        self.invalidate();
    }

    /// Something snapshots are made from changed: every proxy's snapshot is
    /// made again, and connected proxies are sent what changed for them.
    pub fn invalidate(&self) {
        {
            let mut s = self.state();
            s.generation += 1;
            s.cache.clear();
            s.outbound.clear();
        }
        self.changes.send_modify(|g| *g += 1);
    }

    pub fn mesh(&self) -> Arc<Mesh> {
        self.state().mesh.clone()
    }
}

impl SnapshotSource for MeshSource {
    fn snapshot(&self, node: &Node) -> Arc<Snapshot> {
        let (info, warnings) = ProxyInfo::from_node(node);
        let registry_generation = self.registry.as_ref().map_or(0, |r| r.generation());
        let (mesh, generation) = {
            let mut s = self.state();
            if s.registry_generation != registry_generation {
                // Registrations changed since the cache was made (the
                // invalidation may not have run yet).
                s.registry_generation = registry_generation;
                s.generation += 1;
                s.cache.clear();
                s.outbound.clear();
            }
            if let Some(snap) = s.cache.get(&info) {
                return snap.clone();
            }
            (s.mesh.clone(), s.generation)
        };
        let key = OutboundKey::of(&mesh, &info);
        let shared = self.state().outbound.get(&key).cloned();
        let shared = match shared {
            Some(o) => o,
            None => {
                let registered = self.registry.as_ref().map(|r| r.list()).unwrap_or_default();
                let o = Arc::new(snapshot(&outbound(&mesh, &registered, &key)));
                let mut s = self.state();
                if s.generation == generation {
                    s.outbound.insert(key, o.clone());
                }
                o
            }
        };
        let own = local(&mesh, &info);
        for w in warnings.iter().chain(&own.warnings) {
            tracing::warn!(node = %node.id, "{w}");
        }
        let snap = Arc::new(shared.merge(&snapshot(&own)));
        let mut s = self.state();
        if s.generation == generation {
            if s.cache.len() >= CACHE_LIMIT {
                s.cache.clear();
            }
            s.cache.insert(info, snap.clone());
        }
        snap
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

fn describe_metrics() {
    metrics::describe_gauge!(
        "legate_xds_mesh_services",
        "Services in the mesh being served."
    );
    metrics::describe_counter!(
        "legate_xds_mesh_reloads_total",
        "Mesh reloads after a file changed, by result (applied or rejected)."
    );
    metrics::describe_gauge!(
        "legate_xds_mesh_valid",
        "1 if the mesh files on disk are what is served, 0 if the last change was rejected."
    );
}

/// Checks the mesh files every `interval` and serves them when they
/// change; files that fail to load are reported (each problem logged with
/// file, line and field, and `legate_xds_mesh_reloads_total{result="rejected"}`)
/// and the previous mesh keeps being served. `initial` is the text the
/// current mesh was loaded from. Runs until the task is dropped.
pub async fn watch(
    path: PathBuf,
    source: Arc<MeshSource>,
    initial: Vec<(String, String)>,
    interval: Duration,
) {
    let mut last = initial;
    let mut last_errors = None;
    metrics::gauge!("legate_xds_mesh_valid").set(1.0);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let p = path.clone();
        let Ok(texts) = tokio::task::spawn_blocking(move || read(&p)).await else {
            continue;
        };
        let texts = match texts {
            Ok(texts) if texts == last => continue,
            Ok(texts) => texts,
            Err(errors) => {
                reject(&mut last_errors, errors);
                continue;
            }
        };
        match parse(&texts) {
            Ok(mesh) => {
                tracing::info!(
                    services = mesh.services.len(),
                    "mesh changed; pushing to proxies"
                );
                source.set_mesh(mesh);
                last_errors = None;
                metrics::counter!("legate_xds_mesh_reloads_total", "result" => "applied")
                    .increment(1);
                metrics::gauge!("legate_xds_mesh_valid").set(1.0);
            }
            Err(errors) => reject(&mut last_errors, errors),
        }
        last = texts;
    }
}

/// Reports a rejected mesh, once per distinct set of problems.
fn reject(last_errors: &mut Option<Vec<MeshError>>, errors: Vec<MeshError>) {
    if last_errors.as_ref() == Some(&errors) {
        return;
    }
    // Metrics first: whoever reads the log line sees them already.
    metrics::counter!("legate_xds_mesh_reloads_total", "result" => "rejected").increment(1);
    metrics::gauge!("legate_xds_mesh_valid").set(0.0);
    for e in &errors {
        tracing::error!("mesh rejected, previous mesh kept: {e}");
    }
    *last_errors = Some(errors);
}
