//! Workload registration (`proto/legate/registry/v1`): endpoints that
//! workloads register at run time, beside the mesh's static ones.
//!
//! A registration lives while heartbeats arrive within its TTL. When the
//! TTL passes without one it is kept but marked unhealthy (proxies get it
//! with EDS `health_status: UNHEALTHY` and stop sending to it); a heartbeat
//! makes it healthy again. Silent for `reap_after`, or deregistered, it is
//! removed. Every change of what proxies should see is announced on
//! [`Registry::changes`]; heartbeats that change nothing are not.
//!
//! [`agent`] is the workload side (`legate run --register`).

pub mod agent;
pub mod etcd;

use crate::mesh::source::MeshSource;
use crate::wire::legate::registry::v1 as pb;
use etcd::{Change, EtcdStore, Stored};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

/// TTL when a registration asks for none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Shortest TTL accepted (shorter ones are raised to it).
pub const MIN_TTL: Duration = Duration::from_millis(100);

/// One registered endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: String,
    pub service: String,
    pub namespace: String,
    pub address: SocketAddr,
    /// The service port it serves (0: the service's first port).
    pub service_port: u16,
    pub labels: BTreeMap<String, String>,
    pub weight: u32,
    pub ttl: Duration,
    pub healthy: bool,
    /// Wall-clock time of the last register or heartbeat (shared with other
    /// replicas through etcd).
    pub last_beat: SystemTime,
}

impl Entry {
    /// What proxies see of it: a change here is pushed.
    fn visible(&self) -> (&BTreeMap<String, String>, u32, bool) {
        (&self.labels, self.weight, self.healthy)
    }

    fn stored(&self) -> Stored {
        Stored {
            service: self.service.clone(),
            namespace: self.namespace.clone(),
            address: self.address,
            service_port: self.service_port,
            labels: self.labels.clone(),
            weight: self.weight,
            ttl_ms: self.ttl.as_millis() as u64,
            last_beat_ms: self
                .last_beat
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    fn from_stored(id: String, s: Stored, now: SystemTime) -> Entry {
        let last_beat = UNIX_EPOCH + Duration::from_millis(s.last_beat_ms);
        let ttl = Duration::from_millis(s.ttl_ms).max(MIN_TTL);
        Entry {
            id,
            service: s.service,
            namespace: s.namespace,
            address: s.address,
            service_port: s.service_port,
            labels: s.labels,
            weight: s.weight.max(1),
            ttl,
            healthy: silence(now, last_beat) <= ttl,
            last_beat,
        }
    }
}

/// How long since `last_beat` (zero if it is in the future: clock skew).
fn silence(now: SystemTime, last_beat: SystemTime) -> Duration {
    now.duration_since(last_beat).unwrap_or_default()
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegistryError {
    #[error("no registration {0:?} (the control plane restarted or reaped it): register again")]
    NotFound(String),
    #[error("the registry store is unavailable: {0}")]
    Unavailable(String),
}

struct State {
    entries: BTreeMap<String, Entry>,
}

/// The registrations: in memory, or also in etcd (shared by replicas).
pub struct Registry {
    state: Mutex<State>,
    changes: watch::Sender<u64>,
    reap_after: Duration,
    store: Option<EtcdStore>,
    /// Set once the store was first loaded (at once without a store).
    loaded: watch::Sender<bool>,
}

impl Registry {
    /// An in-memory registry. `reap_after`: how long an unhealthy
    /// registration is kept before it is removed.
    pub fn new(reap_after: Duration) -> Registry {
        Registry::build(reap_after, None)
    }

    /// A registry kept in etcd; run [`sync`](Self::sync) to follow what
    /// other replicas write.
    pub fn with_etcd(reap_after: Duration, store: EtcdStore) -> Registry {
        Registry::build(reap_after, Some(store))
    }

    fn build(reap_after: Duration, store: Option<EtcdStore>) -> Registry {
        describe_metrics();
        Registry {
            state: Mutex::new(State {
                entries: BTreeMap::new(),
            }),
            changes: watch::channel(0).0,
            reap_after,
            loaded: watch::channel(store.is_none()).0,
            store,
        }
    }

    /// Waits until the registrations were first read from the store (at
    /// most `limit`); returns whether they were.
    pub async fn wait_loaded(&self, limit: Duration) -> bool {
        let mut rx = self.loaded.subscribe();
        matches!(
            tokio::time::timeout(limit, rx.wait_for(|l| *l)).await,
            Ok(Ok(_))
        )
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self, s: &State) {
        let healthy = s.entries.values().filter(|e| e.healthy).count();
        metrics::gauge!("legate_xds_registry_endpoints", "health" => "healthy").set(healthy as f64);
        metrics::gauge!("legate_xds_registry_endpoints", "health" => "unhealthy")
            .set((s.entries.len() - healthy) as f64);
        self.changes.send_modify(|g| *g += 1);
    }

    /// Bumped whenever what proxies should see changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The number of changes so far.
    pub fn generation(&self) -> u64 {
        *self.changes.borrow()
    }

    /// The id an endpoint is registered under: stable, so a workload that
    /// re-registers (after a control-plane restart) keeps it.
    pub fn id_for(
        service: &str,
        namespace: &str,
        address: SocketAddr,
        service_port: u16,
    ) -> String {
        format!("{service}.{namespace}/{address}/{service_port}")
    }

    /// Inserts or replaces an entry; announces it if proxies see a change.
    fn apply(&self, e: Entry) {
        let mut s = self.state();
        let before = s.entries.insert(e.id.clone(), e.clone());
        if before.as_ref().map(Entry::visible) != Some(e.visible()) {
            if before.is_none() {
                tracing::info!(id = %e.id, "workload registered");
            }
            self.changed(&s);
        }
    }

    fn remove(&self, id: &str) -> bool {
        let mut s = self.state();
        let removed = s.entries.remove(id).is_some();
        if removed {
            self.changed(&s);
        }
        removed
    }

    /// Registers (or renews and updates) an endpoint, healthy.
    pub async fn register(&self, mut e: Entry) -> Result<Entry, RegistryError> {
        e.id = Registry::id_for(&e.service, &e.namespace, e.address, e.service_port);
        e.ttl = e.ttl.max(MIN_TTL);
        e.healthy = true;
        e.last_beat = SystemTime::now();
        if let Some(store) = &self.store {
            store
                .put(&e.id, &e.stored())
                .await
                .map_err(RegistryError::Unavailable)?;
        }
        self.apply(e.clone());
        Ok(e)
    }

    /// Renews a registration's TTL; makes it healthy again.
    pub async fn heartbeat(&self, id: &str) -> Result<(), RegistryError> {
        let mut e = self
            .state()
            .entries
            .get(id)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
        e.last_beat = SystemTime::now();
        e.healthy = true;
        if let Some(store) = &self.store {
            store
                .put(id, &e.stored())
                .await
                .map_err(RegistryError::Unavailable)?;
        }
        if !self.state().entries.get(id).is_some_and(|old| old.healthy) {
            tracing::info!(%id, "workload healthy again");
        }
        self.apply(e);
        Ok(())
    }

    pub async fn deregister(&self, id: &str) -> Result<(), RegistryError> {
        if !self.state().entries.contains_key(id) {
            return Err(RegistryError::NotFound(id.to_string()));
        }
        if let Some(store) = &self.store {
            store.delete(id).await.map_err(RegistryError::Unavailable)?;
        }
        if self.remove(id) {
            tracing::info!(%id, "workload deregistered");
        }
        Ok(())
    }

    /// Every registration, by id.
    pub fn list(&self) -> Vec<Entry> {
        self.state().entries.values().cloned().collect()
    }

    /// Marks registrations whose TTL passed unhealthy and removes those
    /// silent for `reap_after`. Returns the ids reaped.
    pub fn expire(&self, now: SystemTime) -> Vec<String> {
        let mut s = self.state();
        let mut changed = false;
        let mut reaped = Vec::new();
        let reap_after = self.reap_after;
        s.entries.retain(|id, e| {
            let silent = silence(now, e.last_beat);
            if silent > e.ttl.max(reap_after) {
                tracing::warn!(%id, ?silent, "workload reaped: no heartbeat");
                reaped.push(id.clone());
                changed = true;
                return false;
            }
            if e.healthy && silent > e.ttl {
                tracing::warn!(%id, ttl = ?e.ttl, "workload missed its TTL: marked unhealthy");
                metrics::counter!("legate_xds_registry_expired_total").increment(1);
                e.healthy = false;
                changed = true;
            }
            true
        });
        if changed {
            self.changed(&s);
        }
        reaped
    }

    /// Runs [`expire`](Self::expire) every `tick` until the task is dropped
    /// (with etcd, reaped registrations are deleted there too).
    pub async fn run_expiry(self: Arc<Self>, tick: Duration) {
        let mut t = tokio::time::interval(tick);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            t.tick().await;
            for id in self.expire(SystemTime::now()) {
                if let Some(store) = &self.store
                    && let Err(e) = store.delete(&id).await
                {
                    tracing::warn!(%id, "could not delete the reaped registration from etcd: {e}");
                }
            }
        }
    }

    /// With etcd: loads every registration, then follows changes, reloading
    /// after a failure (with backoff). Returns at once without etcd.
    pub async fn sync(self: Arc<Self>) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let mut backoff = Duration::from_millis(250);
        loop {
            match store.load().await {
                Ok((all, revision)) => {
                    backoff = Duration::from_millis(250);
                    metrics::gauge!("legate_xds_registry_store_connected").set(1.0);
                    self.replace_all(all);
                    self.loaded.send_replace(true);
                    let (tx, mut rx) = mpsc::channel(256);
                    let watch = store.watch(revision, &tx);
                    let apply = async {
                        while let Some(c) = rx.recv().await {
                            self.apply_change(c);
                        }
                    };
                    tokio::select! {
                        r = watch => if let Err(e) = r {
                            tracing::warn!("registry watch on {} ended: {e}; reloading", store.url());
                        },
                        _ = apply => {}
                    }
                }
                Err(e) => tracing::warn!(
                    "registry store {}: {e}; retrying in {backoff:?}",
                    store.url()
                ),
            }
            metrics::gauge!("legate_xds_registry_store_connected").set(0.0);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    fn replace_all(&self, all: BTreeMap<String, Stored>) {
        let now = SystemTime::now();
        let fresh: BTreeMap<String, Entry> = all
            .into_iter()
            .map(|(id, st)| (id.clone(), Entry::from_stored(id, st, now)))
            .collect();
        let mut s = self.state();
        let same = s.entries.len() == fresh.len()
            && s.entries
                .iter()
                .zip(&fresh)
                .all(|((a, x), (b, y))| a == b && x.visible() == y.visible());
        s.entries = fresh;
        if !same {
            self.changed(&s);
        }
    }

    fn apply_change(&self, c: Change) {
        match c {
            Change::Put(id, st) => self.apply(Entry::from_stored(id, st, SystemTime::now())),
            Change::Delete(id) => {
                if self.remove(&id) {
                    tracing::info!(%id, "workload deregistered (by another replica)");
                }
            }
        }
    }
}

fn describe_metrics() {
    metrics::describe_gauge!(
        "legate_xds_registry_endpoints",
        "Registered workload endpoints, by health."
    );
    metrics::describe_counter!(
        "legate_xds_registry_expired_total",
        "Registrations marked unhealthy because their TTL passed without a heartbeat."
    );
    metrics::describe_gauge!(
        "legate_xds_registry_store_connected",
        "1 while the etcd registry store is loaded and watched."
    );
}

fn duration_to(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn duration_from(d: &prost_types::Duration) -> Option<Duration> {
    let secs = u64::try_from(d.seconds).ok()?;
    let nanos = u32::try_from(d.nanos).ok()?;
    Some(Duration::new(secs, nanos))
}

/// The gRPC service: checks registrations against the mesh.
pub struct RegistryService {
    registry: Arc<Registry>,
    mesh: Arc<MeshSource>,
}

impl RegistryService {
    pub fn new(
        registry: Arc<Registry>,
        mesh: Arc<MeshSource>,
    ) -> pb::registry_server::RegistryServer<RegistryService> {
        pb::registry_server::RegistryServer::new(RegistryService { registry, mesh })
    }

    fn entry(&self, req: pb::RegisterRequest) -> Result<Entry, Status> {
        let w = req
            .workload
            .ok_or_else(|| Status::invalid_argument("workload: missing"))?;
        let namespace = if w.namespace.is_empty() {
            "default".to_string()
        } else {
            w.namespace.clone()
        };
        let mesh = self.mesh.mesh();
        let Some(service) = mesh.service(&w.service, &namespace) else {
            return Err(Status::failed_precondition(format!(
                "workload.service: no service {:?} in namespace {namespace:?} of the mesh",
                w.service
            )));
        };
        let ip: std::net::IpAddr = w.address.parse().map_err(|_| {
            Status::invalid_argument(format!(
                "workload.address: invalid IP address {:?}",
                w.address
            ))
        })?;
        let port = u16::try_from(w.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                Status::invalid_argument(format!("workload.port: invalid port {}", w.port))
            })?;
        let service_port = u16::try_from(w.service_port).unwrap_or(u16::MAX);
        if service_port != 0 && service.port(service_port).is_none() {
            return Err(Status::invalid_argument(format!(
                "workload.service_port: service {:?} has no port {}",
                w.service, w.service_port
            )));
        }
        let ttl = match &req.ttl {
            None => DEFAULT_TTL,
            Some(d) => duration_from(d)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| Status::invalid_argument("ttl: must be positive"))?,
        };
        Ok(Entry {
            id: String::new(),
            service: w.service,
            namespace,
            address: SocketAddr::new(ip, port),
            service_port,
            labels: w.labels.into_iter().collect(),
            weight: w.weight.max(1),
            ttl,
            healthy: true,
            last_beat: SystemTime::now(),
        })
    }
}

fn to_status(e: RegistryError) -> Status {
    match e {
        RegistryError::NotFound(_) => Status::not_found(e.to_string()),
        RegistryError::Unavailable(_) => Status::unavailable(e.to_string()),
    }
}

#[tonic::async_trait]
impl pb::registry_server::Registry for RegistryService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let e = self
            .registry
            .register(self.entry(request.into_inner())?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RegisterResponse {
            id: e.id,
            ttl: Some(duration_to(e.ttl)),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        self.registry
            .heartbeat(&request.into_inner().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::HeartbeatResponse {}))
    }

    async fn deregister(
        &self,
        request: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::DeregisterResponse>, Status> {
        self.registry
            .deregister(&request.into_inner().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeregisterResponse {}))
    }

    async fn list(
        &self,
        _request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let now = SystemTime::now();
        let registrations = self
            .registry
            .list()
            .into_iter()
            .map(|e| pb::Registration {
                id: e.id,
                workload: Some(pb::Workload {
                    service: e.service,
                    namespace: e.namespace,
                    address: e.address.ip().to_string(),
                    port: e.address.port().into(),
                    service_port: e.service_port.into(),
                    labels: e.labels.into_iter().collect(),
                    weight: e.weight,
                }),
                ttl: Some(duration_to(e.ttl)),
                healthy: e.healthy,
                since_heartbeat: Some(duration_to(silence(now, e.last_beat))),
            })
            .collect();
        Ok(Response::new(pb::ListResponse { registrations }))
    }
}
