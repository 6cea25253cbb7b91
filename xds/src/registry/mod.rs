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

use crate::mesh::source::MeshSource;
use crate::wire::legate::registry::v1 as pb;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
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
    pub last_beat: Instant,
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegistryError {
    #[error("no registration {0:?} (the control plane restarted or reaped it): register again")]
    NotFound(String),
}

struct State {
    entries: BTreeMap<String, Entry>,
}

/// The registrations, in memory.
pub struct Registry {
    state: Mutex<State>,
    changes: watch::Sender<u64>,
    reap_after: Duration,
}

impl Registry {
    /// `reap_after`: how long an unhealthy registration is kept before it
    /// is removed.
    pub fn new(reap_after: Duration) -> Registry {
        describe_metrics();
        Registry {
            state: Mutex::new(State {
                entries: BTreeMap::new(),
            }),
            changes: watch::channel(0).0,
            reap_after,
        }
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

    /// Registers (or renews and updates) an endpoint, healthy.
    pub fn register(&self, mut e: Entry) -> Entry {
        e.id = Registry::id_for(&e.service, &e.namespace, e.address, e.service_port);
        e.ttl = e.ttl.max(MIN_TTL);
        e.healthy = true;
        e.last_beat = Instant::now();
        let mut s = self.state();
        let before = s.entries.insert(e.id.clone(), e.clone());
        let visible = |x: &Entry| (x.labels.clone(), x.weight, x.healthy);
        if before.as_ref().map(visible) != Some(visible(&e)) {
            tracing::info!(id = %e.id, "workload registered");
            self.changed(&s);
        }
        e
    }

    /// Renews a registration's TTL; makes it healthy again.
    pub fn heartbeat(&self, id: &str) -> Result<(), RegistryError> {
        let mut s = self.state();
        let e = s
            .entries
            .get_mut(id)
            .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
        e.last_beat = Instant::now();
        if !e.healthy {
            e.healthy = true;
            tracing::info!(%id, "workload healthy again");
            self.changed(&s);
        }
        Ok(())
    }

    pub fn deregister(&self, id: &str) -> Result<(), RegistryError> {
        let mut s = self.state();
        if s.entries.remove(id).is_none() {
            return Err(RegistryError::NotFound(id.to_string()));
        }
        tracing::info!(%id, "workload deregistered");
        self.changed(&s);
        Ok(())
    }

    /// Every registration, by id.
    pub fn list(&self) -> Vec<Entry> {
        self.state().entries.values().cloned().collect()
    }

    /// Marks registrations whose TTL passed unhealthy and removes those
    /// silent for `reap_after`. Returns whether anything changed.
    pub fn expire(&self, now: Instant) -> bool {
        let mut s = self.state();
        let mut changed = false;
        let reap_after = self.reap_after;
        s.entries.retain(|id, e| {
            let silent = now.saturating_duration_since(e.last_beat);
            if silent > e.ttl.max(reap_after) {
                tracing::warn!(%id, ?silent, "workload reaped: no heartbeat");
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
        changed
    }

    /// Runs [`expire`](Self::expire) every `tick` until the task is dropped.
    pub async fn run_expiry(self: Arc<Self>, tick: Duration) {
        let mut t = tokio::time::interval(tick);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            t.tick().await;
            self.expire(Instant::now());
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
            last_beat: Instant::now(),
        })
    }
}

fn to_status(e: RegistryError) -> Status {
    match e {
        RegistryError::NotFound(_) => Status::not_found(e.to_string()),
    }
}

#[tonic::async_trait]
impl pb::registry_server::Registry for RegistryService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let e = self.registry.register(self.entry(request.into_inner())?);
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
            .map_err(to_status)?;
        Ok(Response::new(pb::HeartbeatResponse {}))
    }

    async fn deregister(
        &self,
        request: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::DeregisterResponse>, Status> {
        self.registry
            .deregister(&request.into_inner().id)
            .map_err(to_status)?;
        Ok(Response::new(pb::DeregisterResponse {}))
    }

    async fn list(
        &self,
        _request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let now = Instant::now();
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
                since_heartbeat: Some(duration_to(now.saturating_duration_since(e.last_beat))),
            })
            .collect();
        Ok(Response::new(pb::ListResponse { registrations }))
    }
}
