//! The control plane's input: a mesh description (YAML) of services, their
//! workloads, traffic rules (what Istio's VirtualService says) and
//! destination policies (Istio's DestinationRule), and what it generates
//! for each proxy ([`generate`]).
//!
//! A mesh is one file or a directory of `*.yaml`/`*.yml` files, each with a
//! `services:` list; together they are one mesh. Loading checks it whole:
//! every problem is reported with file, line and field path, and a mesh
//! with any problem is refused whole.

pub mod generate;
mod lines;
pub mod source;

use crate::duration::Dur;
use crate::model::{FaultInjection, HeaderMutation, LbPolicy, RetryPolicy};
use crate::validate::{check_header_name, check_header_value};
use lines::Lines;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The DNS suffix of service names: `<name>.<namespace>.svc.<domain>`.
pub const DOMAIN: &str = "cluster.local";

/// One file of a mesh description.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshFile {
    #[serde(default)]
    pub services: Vec<Service>,
}

/// A service: a name, its ports, and the workloads that serve it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub ports: Vec<ServicePort>,
    /// Static endpoints; registered workloads join these at run time.
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Named groups of workloads by label (DestinationRule subsets).
    #[serde(default)]
    pub subsets: Vec<Subset>,
    /// How callers reach the workloads (DestinationRule traffic policy).
    #[serde(default)]
    pub policy: Policy,
    /// HTTP traffic rules, in order; the first that matches a request
    /// decides where it goes (VirtualService `http`). Without rules, all
    /// traffic goes to every workload of the service.
    #[serde(default)]
    pub routes: Vec<HttpRoute>,
    /// Which services this service's sidecars may call (`name` in the same
    /// namespace or `name.namespace`); absent: every service in the mesh
    /// (Istio's Sidecar `egress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<String>>,
}

fn default_namespace() -> String {
    "default".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    pub port: u16,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1.
    #[default]
    Http,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
    /// gRPC (HTTP/2).
    Grpc,
    /// Opaque TCP.
    Tcp,
}

impl Protocol {
    pub fn is_http(self) -> bool {
        self != Protocol::Tcp
    }
}

/// One workload (an instance of the service).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// `ip:port` (single-port services) or `ip` (the workload serves each
    /// service port on the same port number, or as `ports` says).
    pub address: String,
    /// Service port -> the port this workload serves it on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<u16, u16>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Load-balancing weight.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl Workload {
    /// The `ip:port` serving `service_port` (after validation).
    pub fn endpoint(&self, service_port: u16) -> Option<SocketAddr> {
        if let Ok(sa) = self.address.parse::<SocketAddr>() {
            return Some(sa);
        }
        let ip: IpAddr = self.address.parse().ok()?;
        let port = self
            .ports
            .get(&service_port)
            .copied()
            .unwrap_or(service_port);
        Some(SocketAddr::new(ip, port))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subset {
    pub name: String,
    /// Workloads with all of these labels belong to the subset.
    pub labels: BTreeMap<String, String>,
    /// Overrides of the service's policy for this subset's clusters
    /// (DestinationRule subset `trafficPolicy`), laid over it field by
    /// field (see [`Service::policy_for`]).
    #[serde(default, skip_serializing_if = "SubsetPolicy::is_empty")]
    pub policy: SubsetPolicy,
}

/// How callers reach the service's workloads (DestinationRule
/// `trafficPolicy`, with Istio's field names in snake_case).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub load_balancer: LbPolicy,
    /// The same setting as `connection_pool.tcp.connect_timeout` (give at
    /// most one of them); default 5 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Dur>,
    /// The same setting as `connection_pool.http.idle_timeout` (give at
    /// most one of them): pooled connections idle this long are closed;
    /// default 1 h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Dur>,
    /// Limits on connections and requests (circuit breakers) and pool
    /// settings.
    #[serde(default, skip_serializing_if = "ConnectionPool::is_empty")]
    pub connection_pool: ConnectionPool,
    /// Ejection of workloads that keep failing; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
}

/// What a subset may override of its service's policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsetPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LbPolicy>,
    #[serde(default, skip_serializing_if = "ConnectionPool::is_empty")]
    pub connection_pool: ConnectionPool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
}

impl SubsetPolicy {
    pub fn is_empty(&self) -> bool {
        *self == SubsetPolicy::default()
    }
}

/// Istio's `ConnectionPoolSettings`. Unset fields keep Legate's (Envoy's)
/// defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPool {
    #[serde(default, skip_serializing_if = "TcpPool::is_empty")]
    pub tcp: TcpPool,
    #[serde(default, skip_serializing_if = "HttpPool::is_empty")]
    pub http: HttpPool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpPool {
    /// Connections open to all the workloads together (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Default 5 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Dur>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPool {
    /// Requests waiting for a connection or stream (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http1_max_pending_requests: Option<u32>,
    /// Requests in flight, whatever the protocol (Istio's name; default
    /// 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_max_requests: Option<u32>,
    /// Retries in flight (default: a budget of 20 % of the requests in
    /// flight, at least 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Default 1 h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Dur>,
    /// Streams at once on each HTTP/2 connection (`http2` and `grpc`
    /// ports; default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<u32>,
}

impl ConnectionPool {
    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.http.is_empty()
    }

    /// `over` laid on `self`: what `over` sets wins.
    pub fn overridden_by(&self, over: &ConnectionPool) -> ConnectionPool {
        ConnectionPool {
            tcp: TcpPool {
                max_connections: over.tcp.max_connections.or(self.tcp.max_connections),
                connect_timeout: over.tcp.connect_timeout.or(self.tcp.connect_timeout),
            },
            http: HttpPool {
                http1_max_pending_requests: over
                    .http
                    .http1_max_pending_requests
                    .or(self.http.http1_max_pending_requests),
                http2_max_requests: over
                    .http
                    .http2_max_requests
                    .or(self.http.http2_max_requests),
                max_retries: over.http.max_retries.or(self.http.max_retries),
                idle_timeout: over.http.idle_timeout.or(self.http.idle_timeout),
                max_concurrent_streams: over
                    .http
                    .max_concurrent_streams
                    .or(self.http.max_concurrent_streams),
            },
        }
    }
}

impl TcpPool {
    pub fn is_empty(&self) -> bool {
        *self == TcpPool::default()
    }
}

impl HttpPool {
    pub fn is_empty(&self) -> bool {
        *self == HttpPool::default()
    }
}

/// Istio's `OutlierDetection`. Unset fields keep Envoy's defaults, except
/// as Istio does: success-rate ejection is off, and the healthy panic
/// threshold is `min_health_percent` (default 0: off).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    /// 5xx responses in a row (and, without
    /// `split_external_local_origin_errors`, connection failures, resets
    /// and timeouts) that eject a workload; default 5; 0: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx_errors: Option<u32>,
    /// 502, 503 and 504 responses (and local-origin failures) in a row that
    /// eject a workload; default: off; 0: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// Connection failures, resets and timeouts in a row that eject a
    /// workload; only with `split_external_local_origin_errors`; default
    /// 5; 0: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    /// Count local-origin failures apart from responses (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_external_local_origin_errors: Option<bool>,
    /// How often ejections are reviewed (default 10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Dur>,
    /// An ejection lasts this long times the number of ejections of the
    /// workload so far (default 30 s), at most 300 s or this, whichever is
    /// longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Dur>,
    /// At most this percentage of the workloads is ejected at once
    /// (default 10; an ejection that would take more out is not made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
    /// Below this percentage of healthy workloads, all of them take
    /// requests, ejected or not (Envoy's healthy panic threshold; default
    /// 0, as in Istio: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_health_percent: Option<u32>,
}

impl OutlierDetection {
    /// `over` laid on `self`: what `over` sets wins.
    pub fn overridden_by(&self, over: &OutlierDetection) -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx_errors: over.consecutive_5xx_errors.or(self.consecutive_5xx_errors),
            consecutive_gateway_errors: over
                .consecutive_gateway_errors
                .or(self.consecutive_gateway_errors),
            consecutive_local_origin_failures: over
                .consecutive_local_origin_failures
                .or(self.consecutive_local_origin_failures),
            split_external_local_origin_errors: over
                .split_external_local_origin_errors
                .or(self.split_external_local_origin_errors),
            interval: over.interval.or(self.interval),
            base_ejection_time: over.base_ejection_time.or(self.base_ejection_time),
            max_ejection_percent: over.max_ejection_percent.or(self.max_ejection_percent),
            min_health_percent: over.min_health_percent.or(self.min_health_percent),
        }
    }
}

/// The policy one cluster of a service gets: the service's, with a
/// subset's overrides laid over it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EffectivePolicy {
    pub load_balancer: LbPolicy,
    /// With the service's `connect_timeout` and `idle_timeout` folded in.
    pub connection_pool: ConnectionPool,
    pub outlier_detection: Option<OutlierDetection>,
}

/// The connect timeout when none is given.
pub const DEFAULT_CONNECT_TIMEOUT: Dur = Dur::from_secs(5);
/// The pooled connections' idle timeout when none is given.
pub const DEFAULT_IDLE_TIMEOUT: Dur = Dur::from_secs(3600);

impl EffectivePolicy {
    pub fn connect_timeout(&self) -> Dur {
        self.connection_pool
            .tcp
            .connect_timeout
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    pub fn idle_timeout(&self) -> Dur {
        self.connection_pool
            .http
            .idle_timeout
            .unwrap_or(DEFAULT_IDLE_TIMEOUT)
    }
}

/// One HTTP traffic rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRoute {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The rule applies when any of these matches; empty: always.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<Match>,
    /// Where matching requests go: one destination, or several with
    /// percentage weights summing to 100.
    pub destinations: Vec<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Time allowed for the whole request (default 15 s; 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    #[serde(default, skip_serializing_if = "HeaderMutation::is_empty")]
    pub request_headers: HeaderMutation,
    #[serde(default, skip_serializing_if = "HeaderMutation::is_empty")]
    pub response_headers: HeaderMutation,
    /// Delays and aborts injected into matching requests (as in a static
    /// route: `delay: { fixed, percent }`, `abort: { http_status |
    /// grpc_status, percent }`, `max_active_faults`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultInjection>,
    /// Retries (as in a static route: `retry_on`, `num_retries`,
    /// `per_try_timeout`, back-off, `retry_previous_hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
}

/// A request match: all given conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Path prefix (at most one of `prefix`, `path`, `regex`; none: any path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Exact path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Whole-path regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Header name -> condition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    /// Query parameter name -> condition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, StringMatch>,
}

/// Exactly one of `exact`, `prefix`, `regex`; or `present: true|false`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// `name` (same namespace) or `name.namespace`; default: this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// A subset of the destination service; default: all its workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// The destination service's port; default: the port the request came
    /// for, else the destination's only port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Percentage of matching requests (with several destinations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Replaces the matched path prefix (or the whole path of an exact
    /// match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Replaces `Host`/`:authority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

impl Service {
    pub fn fqdn(&self) -> String {
        format!("{}.{}.svc.{DOMAIN}", self.name, self.namespace)
    }

    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }

    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| s.name == name)
    }

    /// The policy of the service's clusters (`subset: None`) or of a
    /// subset's: the subset's `load_balancer`, and each field of its
    /// `connection_pool` and `outlier_detection` it sets, win; the rest
    /// is the service's. (Istio replaces each of these blocks whole;
    /// merging keeps a subset that tunes one limit from silently losing
    /// the service's others.)
    pub fn policy_for(&self, subset: Option<&str>) -> EffectivePolicy {
        let p = &self.policy;
        let mut pool = p.connection_pool.clone();
        pool.tcp.connect_timeout = pool.tcp.connect_timeout.or(p.connect_timeout);
        pool.http.idle_timeout = pool.http.idle_timeout.or(p.idle_timeout);
        let mut out = EffectivePolicy {
            load_balancer: p.load_balancer,
            connection_pool: pool,
            outlier_detection: p.outlier_detection.clone(),
        };
        if let Some(sub) = subset.and_then(|n| self.subset(n)) {
            let over = &sub.policy;
            if let Some(lb) = over.load_balancer {
                out.load_balancer = lb;
            }
            out.connection_pool = out.connection_pool.overridden_by(&over.connection_pool);
            out.outlier_detection = match (&out.outlier_detection, &over.outlier_detection) {
                (Some(base), Some(o)) => Some(base.overridden_by(o)),
                (base, o) => o.clone().or_else(|| base.clone()),
            };
        }
        out
    }
}

/// A whole mesh, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mesh {
    pub services: Vec<Service>,
    by_name: HashMap<(String, String), usize>,
}

impl Mesh {
    /// Builds and checks a mesh from parsed files (`(file name, text,
    /// contents)`).
    fn build(files: Vec<(String, String, MeshFile)>) -> Result<Mesh, Vec<MeshError>> {
        let mut errors = Vec::new();
        let mut mesh = Mesh::default();
        // Where each service came from: (file index, index in file).
        let mut origin = Vec::new();
        let indexes: Vec<Lines> = files
            .iter()
            .map(|(_, text, _)| Lines::index(text))
            .collect();
        for (fi, (_, _, f)) in files.iter().enumerate() {
            for (si, s) in f.services.iter().enumerate() {
                let key = (s.name.clone(), s.namespace.clone());
                if let Some(&other) = mesh.by_name.get(&key) {
                    let (ofi, osi): (usize, usize) = origin[other];
                    let where_ = match indexes[ofi].line(&format!("services[{osi}]")) {
                        Some(l) => format!("{}:{l}", files[ofi].0),
                        None => files[ofi].0.clone(),
                    };
                    errors.push(MeshError::at(
                        &files[fi].0,
                        &indexes[fi],
                        format!("services[{si}].name"),
                        format!(
                            "service {:?} in namespace {:?} is already defined at {where_}",
                            s.name, s.namespace
                        ),
                    ));
                    continue;
                }
                mesh.by_name.insert(key, mesh.services.len());
                mesh.services.push(s.clone());
                origin.push((fi, si));
            }
        }
        for (i, s) in mesh.services.iter().enumerate() {
            let (fi, si) = origin[i];
            let mut e = Check { errors: Vec::new() };
            mesh.check_service(&mut e, &format!("services[{si}]"), s);
            errors.extend(
                e.errors.into_iter().map(|(path, message)| {
                    MeshError::at(&files[fi].0, &indexes[fi], path, message)
                }),
            );
        }
        if errors.is_empty() {
            Ok(mesh)
        } else {
            Err(errors)
        }
    }

    pub fn service(&self, name: &str, namespace: &str) -> Option<&Service> {
        self.by_name
            .get(&(name.to_string(), namespace.to_string()))
            .map(|i| &self.services[*i])
    }

    /// Resolves a reference written in a service of `namespace`: `name`
    /// (same namespace) or `name.namespace`.
    pub fn resolve(&self, reference: &str, namespace: &str) -> Option<&Service> {
        if let Some(s) = self.service(reference, namespace) {
            return Some(s);
        }
        let (name, ns) = reference.split_once('.')?;
        self.service(name, ns)
    }

    fn check_service(&self, e: &mut Check, p: &str, s: &Service) {
        e.dns_label(&format!("{p}.name"), &s.name);
        e.dns_label(&format!("{p}.namespace"), &s.namespace);
        if s.ports.is_empty() {
            e.push(format!("{p}.ports"), "a service needs at least one port");
        }
        let mut ports = HashSet::new();
        for (i, port) in s.ports.iter().enumerate() {
            if port.port == 0 {
                e.push(format!("{p}.ports[{i}].port"), "port 0 is not a port");
            }
            if !ports.insert(port.port) {
                e.push(
                    format!("{p}.ports[{i}].port"),
                    format!("port {} is listed twice", port.port),
                );
            }
        }
        for (i, w) in s.workloads.iter().enumerate() {
            let wp = format!("{p}.workloads[{i}]");
            match (w.address.parse::<SocketAddr>(), w.address.parse::<IpAddr>()) {
                (Ok(_), _) if s.ports.len() > 1 => e.push(
                    format!("{wp}.address"),
                    format!(
                        "{:?}: a service with several ports takes an IP address here, with `ports` \
                         mapping service ports to the workload's ports where they differ",
                        w.address
                    ),
                ),
                (Ok(_), _) if !w.ports.is_empty() => e.push(
                    format!("{wp}.ports"),
                    "give either `address: ip:port` or `address: ip` with `ports`, not both",
                ),
                (Ok(_), _) | (_, Ok(_)) => {}
                _ => e.push(
                    format!("{wp}.address"),
                    format!("invalid address {:?} (expected ip or ip:port)", w.address),
                ),
            }
            for (sp, wport) in &w.ports {
                if !ports.contains(sp) {
                    e.push(
                        format!("{wp}.ports"),
                        format!("the service has no port {sp}"),
                    );
                }
                if *wport == 0 {
                    e.push(format!("{wp}.ports"), "port 0 is not a port");
                }
            }
            if w.weight == 0 {
                e.push(format!("{wp}.weight"), "weight must be at least 1");
            }
        }
        let mut subsets = HashSet::new();
        for (i, sub) in s.subsets.iter().enumerate() {
            e.dns_label(&format!("{p}.subsets[{i}].name"), &sub.name);
            if !subsets.insert(&sub.name) {
                e.push(
                    format!("{p}.subsets[{i}].name"),
                    format!("subset {:?} is defined twice", sub.name),
                );
            }
        }
        check_policy(e, p, s);
        if !s.routes.is_empty() && !s.ports.iter().any(|p| p.protocol.is_http()) {
            e.push(
                format!("{p}.routes"),
                "routes apply to http, http2 and grpc ports, and this service has none",
            );
        }
        for (i, r) in s.routes.iter().enumerate() {
            self.check_route(e, &format!("{p}.routes[{i}]"), s, r);
        }
        if let Some(egress) = &s.egress {
            for (i, name) in egress.iter().enumerate() {
                if self.resolve(name, &s.namespace).is_none() {
                    e.push(
                        format!("{p}.egress[{i}]"),
                        format!("no service {name:?} in the mesh"),
                    );
                }
            }
        }
    }

    fn check_route(&self, e: &mut Check, p: &str, s: &Service, r: &HttpRoute) {
        for (i, m) in r.matches.iter().enumerate() {
            let mp = format!("{p}.match[{i}]");
            let set = [&m.prefix, &m.path, &m.regex]
                .iter()
                .filter(|x| x.is_some())
                .count();
            if set > 1 {
                e.push(mp.clone(), "give at most one of prefix, path and regex");
            }
            for (field, v) in [("prefix", &m.prefix), ("path", &m.path)] {
                if let Some(v) = v
                    && !v.starts_with('/')
                {
                    e.push(format!("{mp}.{field}"), format!("{v:?} must start with /"));
                }
            }
            e.regex(&format!("{mp}.regex"), &m.regex);
            for (name, sm) in &m.headers {
                let hp = format!("{mp}.headers.{name}");
                if let Err(msg) = check_header_name(name) {
                    e.push(hp.clone(), msg);
                }
                e.string_match(&hp, sm);
            }
            for (name, sm) in &m.query {
                e.string_match(&format!("{mp}.query.{name}"), sm);
            }
        }
        if r.destinations.is_empty() {
            e.push(
                format!("{p}.destinations"),
                "a route needs at least one destination",
            );
        }
        let several = r.destinations.len() > 1;
        let mut total = 0u64;
        for (i, d) in r.destinations.iter().enumerate() {
            let dp = format!("{p}.destinations[{i}]");
            match (d.weight, several) {
                (None, true) => e.push(
                    format!("{dp}.weight"),
                    "with several destinations each needs a weight (percentages summing to 100)",
                ),
                (Some(w), true) => total += u64::from(w),
                (Some(w), false) if w != 100 => e.push(
                    format!("{dp}.weight"),
                    format!(
                        "a single destination takes all traffic: weight {w} must be 100 or left out"
                    ),
                ),
                _ => {}
            }
            let target = match &d.service {
                None => Some(s),
                Some(name) => {
                    let t = self.resolve(name, &s.namespace);
                    if t.is_none() {
                        e.push(
                            format!("{dp}.service"),
                            format!("no service {name:?} in the mesh"),
                        );
                    }
                    t
                }
            };
            let Some(t) = target else { continue };
            if let Some(sub) = &d.subset
                && t.subset(sub).is_none()
            {
                e.push(
                    format!("{dp}.subset"),
                    format!("service {:?} has no subset {sub:?}", t.name),
                );
            }
            match d.port {
                Some(port) => match t.port(port) {
                    None => e.push(
                        format!("{dp}.port"),
                        format!("service {:?} has no port {port}", t.name),
                    ),
                    Some(tp) if !tp.protocol.is_http() => e.push(
                        format!("{dp}.port"),
                        format!("port {port} of service {:?} is tcp, not http", t.name),
                    ),
                    Some(_) => {}
                },
                None if !std::ptr::eq(t, s) => {
                    // Resolved per request port: every http port of this
                    // service must exist on the target, or it must have one.
                    let http: Vec<u16> = t
                        .ports
                        .iter()
                        .filter(|p| p.protocol.is_http())
                        .map(|p| p.port)
                        .collect();
                    let missing = s
                        .ports
                        .iter()
                        .filter(|p| p.protocol.is_http())
                        .any(|p| !http.contains(&p.port));
                    if http.is_empty() || (missing && http.len() > 1) {
                        e.push(
                            format!("{dp}.port"),
                            format!(
                                "say which port of service {:?} to use (it has {:?})",
                                t.name,
                                t.ports.iter().map(|p| p.port).collect::<Vec<_>>()
                            ),
                        );
                    }
                }
                None => {}
            }
        }
        if several && total != 100 {
            e.push(
                format!("{p}.destinations"),
                format!("weights are percentages and must sum to 100, not {total}"),
            );
        }
        if let Some(f) = &r.fault {
            for fe in crate::validate::fault_errors(&format!("{p}.fault"), f) {
                e.push(fe.path, fe.message);
            }
        }
        if let Some(retry) = &r.retries {
            for fe in crate::validate::retry_errors(&format!("{p}.retries"), retry) {
                e.push(fe.path, fe.message);
            }
        }
        if let Some(rw) = &r.rewrite {
            if let Some(pre) = &rw.prefix
                && !pre.starts_with('/')
            {
                e.push(
                    format!("{p}.rewrite.prefix"),
                    format!("{pre:?} must start with /"),
                );
            }
            if let Some(a) = &rw.authority
                && (a.is_empty() || check_header_value(a).is_err() || a.contains(' '))
            {
                e.push(
                    format!("{p}.rewrite.authority"),
                    format!("invalid authority {a:?}"),
                );
            }
        }
        for (field, hm) in [
            ("request_headers", &r.request_headers),
            ("response_headers", &r.response_headers),
        ] {
            for (i, h) in hm.add.iter().enumerate() {
                if let Err(msg) =
                    check_header_name(&h.name).and_then(|_| check_header_value(&h.value))
                {
                    e.push(format!("{p}.{field}.add[{i}]"), msg);
                }
            }
            for (i, h) in hm.remove.iter().enumerate() {
                if let Err(msg) = check_header_name(h) {
                    e.push(format!("{p}.{field}.remove[{i}]"), msg);
                }
            }
        }
    }
}

/// A service's policy and its subsets' overrides.
fn check_policy(e: &mut Check, p: &str, s: &Service) {
    let pp = format!("{p}.policy");
    let policy = &s.policy;
    e.positive(&format!("{pp}.connect_timeout"), policy.connect_timeout);
    let pool = &policy.connection_pool;
    for (field, top, pooled, pooled_path) in [
        (
            "connect_timeout",
            policy.connect_timeout,
            pool.tcp.connect_timeout,
            "connection_pool.tcp.connect_timeout",
        ),
        (
            "idle_timeout",
            policy.idle_timeout,
            pool.http.idle_timeout,
            "connection_pool.http.idle_timeout",
        ),
    ] {
        if top.is_some() && pooled.is_some() {
            e.push(
                format!("{pp}.{pooled_path}"),
                format!(
                    "policy.{field} and policy.{pooled_path} are the same setting: give only one of them"
                ),
            );
        }
    }
    let h2 = s
        .ports
        .iter()
        .any(|port| matches!(port.protocol, Protocol::Http2 | Protocol::Grpc));
    e.connection_pool(&format!("{pp}.connection_pool"), pool, h2);
    if let Some(o) = &policy.outlier_detection {
        e.outlier_detection(&format!("{pp}.outlier_detection"), o, o);
    }
    for (i, sub) in s.subsets.iter().enumerate() {
        let sp = format!("{p}.subsets[{i}].policy");
        e.connection_pool(
            &format!("{sp}.connection_pool"),
            &sub.policy.connection_pool,
            h2,
        );
        if let Some(o) = &sub.policy.outlier_detection {
            let merged = match &policy.outlier_detection {
                Some(base) => base.overridden_by(o),
                None => o.clone(),
            };
            e.outlier_detection(&format!("{sp}.outlier_detection"), o, &merged);
        }
    }
}

/// Collects `(path, message)` problems.
struct Check {
    errors: Vec<(String, String)>,
}

impl Check {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push((path.into(), message.into()));
    }

    fn dns_label(&mut self, path: &str, v: &str) {
        let ok = !v.is_empty()
            && v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !v.starts_with('-')
            && !v.ends_with('-');
        if !ok {
            self.push(
                path,
                format!("{v:?} must be a DNS label: 1-63 of a-z, 0-9 and '-', not starting or ending with '-'"),
            );
        }
    }

    fn positive(&mut self, path: &str, d: Option<Dur>) {
        if d.is_some_and(Dur::is_zero) {
            self.push(path, "must be greater than 0");
        }
    }

    fn percent(&mut self, path: &str, v: Option<u32>) {
        if let Some(v) = v
            && v > 100
        {
            self.push(path, format!("{v} is not a percentage (between 0 and 100)"));
        }
    }

    /// Limits where 0 would refuse everything (Istio reads 0 as unset).
    fn limit(&mut self, path: &str, v: Option<u32>) {
        if v == Some(0) {
            self.push(
                path,
                "must be at least 1 (0 would refuse every request; leave it out for the default)",
            );
        }
    }

    /// `h2`: the service has an HTTP/2 (`http2` or `grpc`) port.
    fn connection_pool(&mut self, p: &str, pool: &ConnectionPool, h2: bool) {
        self.limit(
            &format!("{p}.tcp.max_connections"),
            pool.tcp.max_connections,
        );
        self.positive(
            &format!("{p}.tcp.connect_timeout"),
            pool.tcp.connect_timeout,
        );
        let h = &pool.http;
        self.limit(
            &format!("{p}.http.http1_max_pending_requests"),
            h.http1_max_pending_requests,
        );
        self.limit(
            &format!("{p}.http.http2_max_requests"),
            h.http2_max_requests,
        );
        self.limit(
            &format!("{p}.http.max_concurrent_streams"),
            h.max_concurrent_streams,
        );
        if h.max_concurrent_streams.is_some() && !h2 {
            self.push(
                format!("{p}.http.max_concurrent_streams"),
                "limits streams on HTTP/2 connections, and this service has no http2 or grpc port",
            );
        }
    }

    /// `written` as given at `p`; `effective` with what it inherits.
    fn outlier_detection(
        &mut self,
        p: &str,
        written: &OutlierDetection,
        effective: &OutlierDetection,
    ) {
        self.positive(&format!("{p}.interval"), written.interval);
        self.positive(
            &format!("{p}.base_ejection_time"),
            written.base_ejection_time,
        );
        self.percent(
            &format!("{p}.max_ejection_percent"),
            written.max_ejection_percent,
        );
        self.percent(
            &format!("{p}.min_health_percent"),
            written.min_health_percent,
        );
        if effective.consecutive_local_origin_failures.is_some()
            && effective.split_external_local_origin_errors != Some(true)
        {
            let field = if written.consecutive_local_origin_failures.is_some() {
                Some("consecutive_local_origin_failures")
            } else if written.split_external_local_origin_errors.is_some() {
                Some("split_external_local_origin_errors")
            } else {
                None
            };
            if let Some(field) = field {
                self.push(
                    format!("{p}.{field}"),
                    "consecutive_local_origin_failures needs split_external_local_origin_errors: \
                     true (without it, local-origin failures count toward consecutive_5xx_errors)",
                );
            }
        }
    }

    fn regex(&mut self, path: &str, re: &Option<String>) {
        if let Some(re) = re
            && let Err(err) = regex::Regex::new(re)
        {
            self.push(path, format!("invalid regex: {err}"));
        }
    }

    fn string_match(&mut self, path: &str, m: &StringMatch) {
        let set = [
            m.exact.is_some(),
            m.prefix.is_some(),
            m.regex.is_some(),
            m.present.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            self.push(path, "give exactly one of exact, prefix, regex and present");
        }
        self.regex(&format!("{path}.regex"), &m.regex);
    }
}

/// One problem in a mesh description.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct MeshError {
    pub file: String,
    pub line: Option<usize>,
    /// The field at fault (empty: the file as a whole).
    pub path: String,
    pub message: String,
}

impl fmt::Display for MeshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl MeshError {
    fn at(file: &str, lines: &Lines, path: String, message: String) -> MeshError {
        MeshError {
            file: file.to_string(),
            line: lines.line(&path),
            path,
            message,
        }
    }

    fn file(file: &str, message: String) -> MeshError {
        MeshError {
            file: file.to_string(),
            line: None,
            path: String::new(),
            message,
        }
    }
}

/// Parses one file's text.
fn parse_file(name: &str, text: &str) -> Result<MeshFile, MeshError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, MeshFile>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.location().map(|l| l.line());
        let mut message = inner.to_string();
        // serde_yaml_ng appends " at line L column C"; the line is ours.
        if let Some(cut) = message.find(" at line ") {
            message.truncate(cut);
        }
        if let Some((head, rest)) = message.split_once(": ")
            && !head.contains(' ')
        {
            message = rest.to_string();
        }
        MeshError {
            file: name.to_string(),
            line,
            path: if path == "." { String::new() } else { path },
            message,
        }
    })
}

/// Parses and checks a mesh given as texts (`(file name, text)`).
pub fn parse(files: &[(String, String)]) -> Result<Mesh, Vec<MeshError>> {
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in files {
        match parse_file(name, text) {
            Ok(f) => parsed.push((name.clone(), text.clone(), f)),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Mesh::build(parsed)
}

/// The files a mesh path stands for: the file itself, or a directory's
/// `*.yaml` and `*.yml` files (not recursive), sorted by name.
pub fn mesh_files(path: &Path) -> Result<Vec<PathBuf>, MeshError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| MeshError::file(&shown, format!("cannot read: {e}")))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| MeshError::file(&shown, format!("cannot read directory: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads a mesh file or directory: its files' names and texts.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, Vec<MeshError>> {
    let files = mesh_files(path).map_err(|e| vec![e])?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let name = f.display().to_string();
        match std::fs::read_to_string(&f) {
            Ok(text) => out.push((name, text)),
            Err(e) => errors.push(MeshError::file(&name, format!("cannot read: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Reads, parses and checks a mesh file or directory.
pub fn load(path: &Path) -> Result<Mesh, Vec<MeshError>> {
    parse(&read(path)?)
}
