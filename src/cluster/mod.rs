//! Clusters: endpoint sets (static or DNS-resolved), load balancing and
//! per-endpoint connection pools.

pub mod breaker;
pub mod h1;
pub mod health;
pub mod lb;
pub mod outlier;
pub mod pool;
pub mod sent;

use crate::telemetry::ClusterStats;
use arc_swap::ArcSwap;
use legate_xds::model::{self, DiscoveryType, HealthStatus, LbPolicy, UpstreamProtocol};
use pool::{Pool, PoolSettings};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Why an endpoint is out of load balancing, besides its EDS health status
/// (bits of [`Endpoint::flags`], named as Envoy's `/clusters` shows them).
pub mod flag {
    /// Active health checking found it unhealthy (or has not yet found it
    /// healthy: a new endpoint of a health-checked cluster starts so).
    pub const FAILED_ACTIVE_HC: u8 = 1;
    /// Not health-checked yet.
    pub const PENDING_ACTIVE_HC: u8 = 2;
    /// Ejected by outlier detection.
    pub const FAILED_OUTLIER_CHECK: u8 = 4;
    /// The bits that take an endpoint out of load balancing.
    pub const UNHEALTHY: u8 = FAILED_ACTIVE_HC | FAILED_OUTLIER_CHECK;
}

/// One upstream endpoint and its connection pool.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub weight: u32,
    pub priority: u32,
    pub health: HealthStatus,
    /// Health-check and outlier state: bits of [`flag`]. Changed only
    /// through [`Cluster::set_flags`], which rebuilds the balancer's set.
    pub flags: AtomicU8,
    /// Requests in flight (least-request balancing, `/clusters`).
    pub active: AtomicUsize,
    pub pool: Pool,
    pub settings: Arc<PoolSettings>,
    pub stats: Arc<ClusterStats>,
    pub breakers: Arc<breaker::Breakers>,
    /// Outlier detection's counters.
    pub outlier: outlier::EndpointState,
}

impl Endpoint {
    pub fn flags(&self) -> u8 {
        self.flags.load(Ordering::Acquire)
    }

    /// Whether the endpoint may take requests: available by its EDS status
    /// and neither failing health checks nor ejected.
    pub fn is_healthy(&self) -> bool {
        self.health.is_available() && self.flags() & flag::UNHEALTHY == 0
    }

    /// What the endpoint was created from.
    pub fn spec(&self) -> EndpointSpec {
        EndpointSpec {
            addr: self.addr,
            weight: self.weight,
            priority: self.priority,
            health: self.health,
        }
    }
}

/// What a cluster is told about one endpoint (by its config, DNS or EDS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    pub addr: SocketAddr,
    pub weight: u32,
    pub priority: u32,
    pub health: HealthStatus,
}

impl EndpointSpec {
    pub fn new(addr: SocketAddr, weight: u32) -> Self {
        EndpointSpec {
            addr,
            weight,
            priority: 0,
            health: HealthStatus::Unknown,
        }
    }
}

/// An immutable set of endpoints plus the load-balancer tables built for it.
pub struct EndpointSet {
    /// The endpoints that take new requests: the healthy ones of the
    /// lowest priority that has any; or, when under the cluster's panic
    /// threshold of them are healthy, all of that priority's (Envoy's
    /// panic mode: better to try them all than to overload a few).
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Every endpoint the cluster knows, in the order given.
    pub all: Vec<Arc<Endpoint>>,
    pub lb: lb::LbTables,
    /// Balancing in panic mode.
    pub panic: bool,
}

impl EndpointSet {
    fn empty() -> Self {
        EndpointSet {
            endpoints: Vec::new(),
            all: Vec::new(),
            lb: lb::LbTables::default(),
            panic: false,
        }
    }
}

pub struct Cluster {
    pub name: Arc<str>,
    pub lb_policy: LbPolicy,
    pub protocol: UpstreamProtocol,
    pub stats: Arc<ClusterStats>,
    settings: Arc<PoolSettings>,
    ring_size: u32,
    /// Percentage of healthy endpoints under which balancing panics.
    panic_threshold: f64,
    /// Flags a new endpoint starts with (pending its first health check
    /// when the cluster has health checks).
    pub initial_flags: u8,
    rr: AtomicUsize,
    endpoints: ArcSwap<EndpointSet>,
    /// Serialises rebuilds of the endpoint set (endpoint updates, health
    /// and outlier changes); never held across an `.await`.
    rebuild: Mutex<()>,
    /// Counts changes of the endpoint list (not of their health), for the
    /// health checker to follow; its receivers see the cluster go.
    membership: tokio::sync::watch::Sender<u64>,
    /// Limits on connections, pending requests, requests and retries.
    pub breakers: Arc<breaker::Breakers>,
    /// Outlier detection, when configured.
    pub outlier: Option<Arc<outlier::Detector>>,
}

impl Cluster {
    /// Builds a cluster from its model. DNS clusters start empty and fill in
    /// when [`Cluster::start_background_tasks`] has resolved them.
    pub fn new(m: &model::Cluster) -> Arc<Cluster> {
        let settings = Arc::new(PoolSettings {
            connect_timeout: m.connect_timeout.get(),
            idle_timeout: m.idle_timeout.get(),
            max_idle: m.max_idle_connections_per_endpoint as usize,
            h2_max_streams: m.http2_max_concurrent_streams as usize,
        });
        let stats = Arc::new(ClusterStats::new(&m.name));
        let cluster = Arc::new(Cluster {
            name: m.name.as_str().into(),
            lb_policy: m.lb_policy,
            protocol: m.protocol,
            stats,
            settings,
            ring_size: m.ring_size,
            panic_threshold: m.healthy_panic_threshold,
            initial_flags: if m.health_checks.is_empty() {
                0
            } else {
                flag::FAILED_ACTIVE_HC | flag::PENDING_ACTIVE_HC
            },
            rr: AtomicUsize::new(0),
            breakers: breaker::Breakers::new(&m.name, &m.circuit_breakers),
            outlier: m
                .outlier_detection
                .as_ref()
                .map(|o| outlier::Detector::new(&m.name, o)),
            endpoints: ArcSwap::from_pointee(EndpointSet::empty()),
            rebuild: Mutex::new(()),
            membership: tokio::sync::watch::Sender::new(0),
        });
        if m.discovery != DiscoveryType::StrictDns {
            cluster.set_endpoints(&Cluster::specs(m));
        }
        cluster
    }

    /// The endpoints a static or EDS cluster's model lists.
    pub fn specs(m: &model::Cluster) -> Vec<EndpointSpec> {
        m.endpoints
            .iter()
            .filter_map(|e| {
                Some(EndpointSpec {
                    addr: e.address.parse().ok()?,
                    weight: e.weight,
                    priority: e.priority,
                    health: e.health_status,
                })
            })
            .collect()
    }

    /// Replaces the endpoint set, keeping the endpoints that stay (same
    /// address, weight, priority and health status) with their pools and
    /// health state.
    pub fn set_endpoints(&self, specs: &[EndpointSpec]) {
        let _serial = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.endpoints.load();
        let all: Vec<Arc<Endpoint>> = specs
            .iter()
            .map(|s| {
                current
                    .all
                    .iter()
                    .find(|e| e.spec() == *s)
                    .cloned()
                    .unwrap_or_else(|| {
                        // An address the cluster had (its weight, priority
                        // or EDS status changed) keeps its health-check
                        // state until its checks run again; an outlier
                        // ejection ends with the old endpoint.
                        let flags = current
                            .all
                            .iter()
                            .find(|e| e.addr == s.addr)
                            .map_or(self.initial_flags, |e| {
                                e.flags() & !flag::FAILED_OUTLIER_CHECK
                            });
                        Arc::new(Endpoint {
                            addr: s.addr,
                            weight: s.weight,
                            priority: s.priority,
                            health: s.health,
                            flags: AtomicU8::new(flags),
                            active: AtomicUsize::new(0),
                            pool: Pool::new(&self.settings),
                            settings: self.settings.clone(),
                            stats: self.stats.clone(),
                            breakers: self.breakers.clone(),
                            outlier: Default::default(),
                        })
                    })
            })
            .collect();
        self.stats.membership.set(all.len() as f64);
        self.store(all);
        self.membership.send_modify(|n| *n += 1);
    }

    /// Follows changes of the endpoint list; `changed()` fails once the
    /// cluster is gone.
    pub fn watch_membership(&self) -> tokio::sync::watch::Receiver<u64> {
        self.membership.subscribe()
    }

    /// Sets the `on` bits and clears the `off` bits of `ep`'s flags;
    /// rebuilds the balancer's set when that changes whether it is
    /// healthy. Returns whether the flags changed.
    pub fn set_flags(&self, ep: &Endpoint, on: u8, off: u8) -> bool {
        let _serial = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let was = ep.flags.load(Ordering::Acquire);
        let now = (was | on) & !off;
        if now == was {
            return false;
        }
        ep.flags.store(now, Ordering::Release);
        if (was & flag::UNHEALTHY == 0) != (now & flag::UNHEALTHY == 0) {
            let all = self.endpoints.load().all.clone();
            self.store(all);
        }
        true
    }

    /// Builds the balancer's set for `all` and swaps it in (the caller
    /// holds `rebuild`). The lowest priority with a healthy endpoint
    /// serves; below the panic threshold, all of its endpoints do.
    fn store(&self, all: Vec<Arc<Endpoint>>) {
        let healthy_level = all
            .iter()
            .filter(|e| e.is_healthy())
            .map(|e| e.priority)
            .min();
        // Nothing healthy anywhere: the lowest priority panics.
        let level = healthy_level.or_else(|| all.iter().map(|e| e.priority).min());
        let in_level = all.iter().filter(|e| Some(e.priority) == level);
        let total = in_level.clone().count();
        let healthy = in_level.clone().filter(|e| e.is_healthy()).count();
        let panic = total > 0 && (healthy as f64) * 100.0 < self.panic_threshold * total as f64;
        let endpoints: Vec<Arc<Endpoint>> = in_level
            .filter(|e| panic || e.is_healthy())
            .cloned()
            .collect();
        if panic {
            // Endpoints waiting for their first health check are not news.
            if all.iter().any(|e| e.flags() & flag::PENDING_ACTIVE_HC != 0) {
                tracing::debug!(cluster = %self.name, healthy, total, "endpoints not yet health-checked: balancing across all of them");
            } else {
                tracing::warn!(cluster = %self.name, healthy, total, threshold = self.panic_threshold, "under the healthy panic threshold: balancing across all endpoints");
            }
        }
        self.stats.healthy.set(healthy as f64);
        let lb = lb::LbTables::build(self.lb_policy, &endpoints, self.ring_size);
        self.endpoints.store(Arc::new(EndpointSet {
            endpoints,
            all,
            lb,
            panic,
        }));
    }

    /// Whether `specs` are this cluster's endpoints exactly (so an update
    /// need not touch them).
    pub fn has_endpoints(&self, specs: &[EndpointSpec]) -> bool {
        let set = self.endpoints.load();
        set.all.len() == specs.len() && set.all.iter().zip(specs).all(|(e, s)| e.spec() == *s)
    }

    pub fn endpoints(&self) -> arc_swap::Guard<Arc<EndpointSet>> {
        self.endpoints.load()
    }

    /// Picks an endpoint; `hash` feeds ring hash (random without one).
    pub fn pick(&self, hash: Option<u64>) -> Option<Arc<Endpoint>> {
        let set = self.endpoints.load();
        if set.panic {
            self.stats.lb_healthy_panic.increment(1);
        }
        lb::pick(self.lb_policy, &set, &self.rr, hash).cloned()
    }

    /// A pick that avoids `avoid` when it can (a few tries, as Envoy's
    /// host selection retries): a retry with `retry_previous_hosts`.
    pub fn pick_avoiding(
        &self,
        hash: Option<u64>,
        avoid: &[Arc<Endpoint>],
    ) -> Option<Arc<Endpoint>> {
        let set = self.endpoints.load();
        if set.panic {
            self.stats.lb_healthy_panic.increment(1);
        }
        let mut last = None;
        for _ in 0..(set.endpoints.len().clamp(1, 4)) {
            let ep = lb::pick(self.lb_policy, &set, &self.rr, hash).cloned();
            match ep {
                Some(e) if avoid.iter().any(|a| Arc::ptr_eq(a, &e)) => last = Some(e),
                other => return other,
            }
        }
        last
    }

    /// Starts the cluster's tasks: the idle-connection sweep, and for
    /// `strict_dns` clusters DNS resolution (now, then every
    /// `dns_refresh_rate`). They end when the cluster is dropped.
    pub fn start_background_tasks(self: &Arc<Self>, m: &model::Cluster) {
        tokio::spawn(reap_idle(Arc::downgrade(self), self.settings.idle_timeout));
        health::start(self, &m.health_checks);
        if let Some(d) = &self.outlier {
            tokio::spawn(outlier::run(Arc::downgrade(self), d.clone()));
        }
        if m.discovery != DiscoveryType::StrictDns {
            return;
        }
        let targets: Vec<(String, u32)> = m
            .endpoints
            .iter()
            .map(|e| (e.address.clone(), e.weight))
            .collect();
        let weak: Weak<Cluster> = Arc::downgrade(self);
        let every = m.dns_refresh_rate.get();
        tokio::spawn(dns_loop(weak, targets, every));
    }
}

/// Closes pooled connections idle past the cluster's idle timeout, even on
/// an endpoint nobody calls any more. Ends when the cluster is dropped.
async fn reap_idle(weak: Weak<Cluster>, idle_timeout: Duration) {
    let every = (idle_timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(30));
    loop {
        tokio::time::sleep(every).await;
        let Some(cluster) = weak.upgrade() else {
            return;
        };
        for ep in &cluster.endpoints().endpoints {
            ep.pool.reap(idle_timeout);
        }
    }
}

async fn dns_loop(weak: Weak<Cluster>, targets: Vec<(String, u32)>, every: Duration) {
    // The last good answer per name: a name whose lookup fails keeps its
    // endpoints (as Envoy does), whatever the other names do.
    let mut answers: Vec<Option<Vec<SocketAddr>>> = vec![None; targets.len()];
    let mut current: Option<Vec<EndpointSpec>> = None;
    loop {
        for (i, (target, _)) in targets.iter().enumerate() {
            match tokio::net::lookup_host(target.as_str()).await {
                Ok(resolved) => {
                    let mut found: Vec<SocketAddr> = resolved.collect();
                    // Servers rotate record order; only the set matters.
                    found.sort_unstable();
                    found.dedup();
                    answers[i] = Some(found);
                }
                Err(e) => {
                    tracing::warn!(target = %target, error = %e, "DNS resolution failed; keeping the last answer");
                }
            }
        }
        let mut addrs: Vec<EndpointSpec> = Vec::new();
        for ((_, weight), answer) in targets.iter().zip(&answers) {
            for a in answer.iter().flatten() {
                if !addrs.iter().any(|x| x.addr == *a) {
                    addrs.push(EndpointSpec::new(*a, *weight));
                }
            }
        }
        let Some(cluster) = weak.upgrade() else {
            return;
        };
        if current.as_ref() != Some(&addrs) {
            tracing::info!(cluster = %cluster.name, endpoints = addrs.len(), "DNS endpoints updated");
            cluster.set_endpoints(&addrs);
            current = Some(addrs);
        }
        drop(cluster);
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_that_stays_keeps_its_health_check_state() {
        let c = Cluster::new(&model::Cluster {
            name: "keep".into(),
            ..Default::default()
        });
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        // As a health-checked cluster's endpoints start.
        let pending = flag::FAILED_ACTIVE_HC | flag::PENDING_ACTIVE_HC;
        let c = Arc::new(Cluster {
            initial_flags: pending,
            ..Arc::try_unwrap(c).ok().unwrap()
        });
        c.set_endpoints(&[EndpointSpec::new(a, 1)]);
        let ep = c.endpoints().all[0].clone();
        assert_eq!(ep.flags(), pending);
        // Its checks pass; then it is ejected.
        c.set_flags(&ep, flag::FAILED_OUTLIER_CHECK, pending);
        assert!(c.endpoints().endpoints.is_empty() || c.endpoints().panic);
        // A weight change makes a new endpoint for the same address: it
        // keeps the passing checks, not the ejection; a new address waits.
        c.set_endpoints(&[EndpointSpec::new(a, 5), EndpointSpec::new(b, 1)]);
        let set = c.endpoints();
        assert_eq!(set.all[0].flags(), 0);
        assert_eq!(set.all[1].flags(), pending);
        assert_eq!(set.endpoints.len(), 1);
        assert_eq!(set.endpoints[0].addr, a);
    }
}
