//! Mesh + proxy -> the proxy's resources.
//!
//! A proxy says who it is in its `Node` ([`ProxyInfo::from_node`]). It gets:
//! - an **outbound** listener (`outbound`, at its `outbound_address`) whose
//!   route configuration (`outbound`, by RDS) has a virtual host per HTTP
//!   port of every service it may call, answering to the service's names
//!   (`reviews.default.svc.cluster.local[:9080]`, `reviews.default[:9080]`,
//!   and `reviews[:9080]` within its own namespace), with the service's
//!   traffic rules;
//! - a cluster per service port and per subset
//!   (`outbound|9080|v1|reviews.default.svc.cluster.local`, Istio's names),
//!   with endpoints by EDS under the same name;
//! - if it is a workload of a service: an **inbound** listener (`inbound`,
//!   at its `inbound_address`) passing the service's first port's traffic
//!   to its application at `app_address` (cluster `inbound|<port>||`).
//!
//! TCP ports get clusters (and inbound listeners); outbound TCP needs the
//! connection's original destination to tell services apart, which comes
//! with transparent interception.

use super::{
    Destination, EffectivePolicy, HttpRoute, Match, Mesh, OutlierDetection, Protocol, Service,
    StringMatch, Workload,
};
use crate::duration::Dur;
use crate::model::HealthStatus;
use crate::model::{
    self, ClusterWeight, DiscoveryType, Endpoint, FilterChain, HeaderMatcher,
    HttpConnectionManager, QueryParameterMatcher, RouteAction, RouteConfiguration, RouteMatch,
    TcpProxy, UpstreamProtocol, VirtualHost,
};
use crate::registry::Entry;
use crate::server::Snapshot;
use crate::translate::{
    self, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, cluster_to_xds, listener_to_xds,
    route_config_to_xds,
};
use crate::wire::envoy::config::core::v3::Node;
use crate::wire::envoy::config::listener::v3 as xlistener;
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// The outbound listener's and route configuration's name.
pub const OUTBOUND: &str = "outbound";
/// The inbound listener's name.
pub const INBOUND: &str = "inbound";

/// Who a proxy is, from its `Node`:
///
/// | metadata key | meaning | default |
/// |---|---|---|
/// | `service` | the service its workload belongs to | `node.cluster`; none: a client-only proxy |
/// | `namespace` | that service's namespace (and the proxy's) | `default` |
/// | `outbound_address` | where the outbound listener listens | `127.0.0.1:15001` |
/// | `inbound_address` | where the inbound listener listens | `0.0.0.0:15006` |
/// | `app_address` | where its application listens | `127.0.0.1:<the service's first port>` |
/// | `generator` | `grpc`: a proxyless gRPC client | from `user_agent_name` (`gRPC ...`) |
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProxyInfo {
    pub service: Option<String>,
    pub namespace: String,
    pub outbound_address: String,
    pub inbound_address: String,
    pub app_address: Option<String>,
    /// A proxyless gRPC client: it gets API listeners named by target
    /// (`reviews:9080`) instead of listeners with addresses.
    pub proxyless: bool,
}

impl Default for ProxyInfo {
    fn default() -> Self {
        ProxyInfo {
            service: None,
            namespace: "default".into(),
            outbound_address: "127.0.0.1:15001".into(),
            inbound_address: "0.0.0.0:15006".into(),
            app_address: None,
            proxyless: false,
        }
    }
}

impl ProxyInfo {
    /// Reads a node; also returns what was wrong with it (those fields
    /// take their defaults).
    pub fn from_node(node: &Node) -> (ProxyInfo, Vec<String>) {
        let mut info = ProxyInfo::default();
        let mut warnings = Vec::new();
        let meta = |key: &str| -> Option<String> {
            use prost_types::value::Kind;
            let v = node.metadata.as_ref()?.fields.get(key)?;
            match &v.kind {
                Some(Kind::StringValue(s)) => Some(s.clone()),
                Some(Kind::NumberValue(n)) => Some(n.to_string()),
                _ => None,
            }
        };
        info.service =
            meta("service").or_else(|| (!node.cluster.is_empty()).then(|| node.cluster.clone()));
        if let Some(ns) = meta("namespace") {
            info.namespace = ns;
        }
        info.proxyless = match meta("generator").as_deref() {
            Some(g) => g.eq_ignore_ascii_case("grpc"),
            None => node.user_agent_name.starts_with("gRPC"),
        };
        for (key, field) in [
            ("outbound_address", &mut info.outbound_address),
            ("inbound_address", &mut info.inbound_address),
        ] {
            if let Some(v) = meta(key) {
                if v.parse::<SocketAddr>().is_ok() {
                    *field = v;
                } else {
                    warnings.push(format!(
                        "node metadata {key}: invalid socket address {v:?}; using {field}"
                    ));
                }
            }
        }
        if let Some(v) = meta("app_address") {
            if v.parse::<SocketAddr>().is_ok() {
                info.app_address = Some(v);
            } else {
                warnings.push(format!(
                    "node metadata app_address: invalid socket address {v:?}; ignored"
                ));
            }
        }
        (info, warnings)
    }
}

/// One proxy's resources, as the model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Generated {
    pub listeners: Vec<model::Listener>,
    /// Proxyless clients: API listener names, each routed by the outbound
    /// route configuration.
    pub api_listeners: Vec<String>,
    pub route_configs: Vec<RouteConfiguration>,
    pub clusters: Vec<model::Cluster>,
    /// Problems with the proxy's identity (an unknown service, ...).
    pub warnings: Vec<String>,
}

/// `outbound|<port>|<subset>|<fqdn>`.
pub fn outbound_cluster(s: &Service, port: u16, subset: Option<&str>) -> String {
    format!("outbound|{port}|{}|{}", subset.unwrap_or(""), s.fqdn())
}

fn upstream_protocol(p: Protocol) -> UpstreamProtocol {
    match p {
        Protocol::Http | Protocol::Tcp => UpstreamProtocol::Http1,
        Protocol::Http2 | Protocol::Grpc => UpstreamProtocol::Http2,
    }
}

/// What a proxy's outbound configuration depends on: proxies with the same
/// key share it (generated once).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OutboundKey {
    /// Short names resolve in this namespace.
    pub namespace: String,
    /// The own service's egress list and its namespace, if it has one.
    pub egress: Option<(Vec<String>, String)>,
    pub proxyless: bool,
}

/// The proxy's own service, if the mesh has it.
fn own_service<'m>(mesh: &'m Mesh, proxy: &ProxyInfo) -> Option<&'m Service> {
    proxy
        .service
        .as_deref()
        .and_then(|name| mesh.service(name, &proxy.namespace))
}

impl OutboundKey {
    pub fn of(mesh: &Mesh, proxy: &ProxyInfo) -> OutboundKey {
        let own = own_service(mesh, proxy);
        OutboundKey {
            namespace: proxy.namespace.clone(),
            egress: own.and_then(|s| s.egress.clone().map(|e| (e, s.namespace.clone()))),
            proxyless: proxy.proxyless,
        }
    }
}

/// The resources for `proxy`: [`outbound`] plus [`local`].
pub fn generate(mesh: &Mesh, registered: &[Entry], proxy: &ProxyInfo) -> Generated {
    let mut g = outbound(mesh, registered, &OutboundKey::of(mesh, proxy));
    let local = local(mesh, proxy);
    g.listeners.extend(local.listeners);
    g.clusters.extend(local.clusters);
    g.warnings.extend(local.warnings);
    g
}

/// What every proxy with this key gets: clusters of the services it may
/// call (and their routes' destinations), the outbound route
/// configuration, and for proxyless clients their API listeners.
pub fn outbound(mesh: &Mesh, registered: &[Entry], key: &OutboundKey) -> Generated {
    let mut g = Generated::default();
    let callable: Vec<&Service> = match &key.egress {
        Some((egress, ns)) => egress.iter().filter_map(|n| mesh.resolve(n, ns)).collect(),
        None => mesh.services.iter().collect(),
    };
    // Clusters: every port and subset of every callable service, and of
    // every service their routes send to.
    let mut wanted: Vec<&Service> = Vec::new();
    let mut seen = BTreeSet::new();
    for s in &callable {
        let targets = std::iter::once(*s).chain(
            s.routes
                .iter()
                .flat_map(|r| r.destinations.iter())
                .filter_map(|d| target(mesh, s, d)),
        );
        for t in targets {
            if seen.insert(t.fqdn()) {
                wanted.push(t);
            }
        }
    }
    for s in &wanted {
        let first = s.ports.first().map_or(0, |p| p.port);
        for port in &s.ports {
            // Registered endpoints of this service port.
            let joined: Vec<&Entry> = registered
                .iter()
                .filter(|e| e.service == s.name && e.namespace == s.namespace)
                .filter(|e| {
                    port.port
                        == if e.service_port == 0 {
                            first
                        } else {
                            e.service_port
                        }
                })
                .collect();
            g.clusters
                .push(eds_cluster(s, &joined, port.port, port.protocol, None));
            for sub in &s.subsets {
                g.clusters.push(eds_cluster(
                    s,
                    &joined,
                    port.port,
                    port.protocol,
                    Some(&sub.name),
                ));
            }
        }
    }

    // Outbound HTTP.
    let mut vhosts = Vec::new();
    for s in &callable {
        let mut first_http = true;
        for port in s.ports.iter().filter(|p| p.protocol.is_http()) {
            vhosts.push(virtual_host(mesh, s, port.port, first_http, &key.namespace));
            first_http = false;
        }
    }
    g.route_configs.push(RouteConfiguration {
        name: OUTBOUND.into(),
        virtual_hosts: vhosts,
    });
    if key.proxyless {
        for s in &callable {
            let mut first_http = true;
            for port in s.ports.iter().filter(|p| p.protocol.is_http()) {
                g.api_listeners
                    .extend(domains(s, port.port, first_http, &key.namespace));
                first_http = false;
            }
        }
    }
    g
}

/// What is particular to one proxy: its outbound listener's address, and
/// for a workload of a known service its inbound listener and cluster.
pub fn local(mesh: &Mesh, proxy: &ProxyInfo) -> Generated {
    let mut g = Generated::default();
    let own = own_service(mesh, proxy);
    if let (Some(name), None) = (&proxy.service, own) {
        g.warnings.push(format!(
            "service {name:?} is not in namespace {:?} of the mesh; the proxy gets outbound configuration only",
            proxy.namespace
        ));
    }
    if proxy.proxyless {
        return g;
    }
    g.listeners.push(model::Listener {
        name: OUTBOUND.into(),
        address: proxy.outbound_address.clone(),
        filter_chains: vec![FilterChain {
            http: Some(HttpConnectionManager {
                route_config: None,
                rds: Some(OUTBOUND.into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    });

    // Inbound, for a workload of a known service.
    if let Some(s) = own
        && let Some(port) = s.ports.first()
    {
        let cluster = format!("inbound|{}||", port.port);
        let app = proxy
            .app_address
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{}", port.port));
        g.clusters.push(model::Cluster {
            name: cluster.clone(),
            discovery: DiscoveryType::Static,
            endpoints: vec![Endpoint {
                address: app,
                ..Default::default()
            }],
            protocol: upstream_protocol(port.protocol),
            connect_timeout: s.policy_for(None).connect_timeout(),
            ..Default::default()
        });
        let chain = if port.protocol.is_http() {
            FilterChain {
                http: Some(HttpConnectionManager {
                    route_config: Some(RouteConfiguration {
                        name: cluster.clone(),
                        virtual_hosts: vec![VirtualHost {
                            name: "inbound".into(),
                            domains: vec!["*".into()],
                            routes: vec![model::Route {
                                route_match: prefix_all(),
                                route: Some(RouteAction {
                                    cluster: Some(cluster.clone()),
                                    // Inbound does not time out: the
                                    // caller's sidecar owns the timeout.
                                    timeout: Dur::from_secs(0),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }
        } else {
            FilterChain {
                tcp: Some(TcpProxy {
                    cluster: cluster.clone(),
                    idle_timeout: Dur::from_secs(3600),
                }),
                ..Default::default()
            }
        };
        g.listeners.push(model::Listener {
            name: INBOUND.into(),
            address: proxy.inbound_address.clone(),
            filter_chains: vec![chain],
            ..Default::default()
        });
    }
    g
}

/// The service a destination of `s`'s route points at.
fn target<'m>(mesh: &'m Mesh, s: &'m Service, d: &Destination) -> Option<&'m Service> {
    match &d.service {
        None => Some(s),
        Some(name) => mesh.resolve(name, &s.namespace),
    }
}

/// A service port's (or subset's) cluster: its static workloads, then
/// its registered ones (unhealthy once their TTL passed).
fn eds_cluster(
    s: &Service,
    registered: &[&Entry],
    port: u16,
    protocol: Protocol,
    subset: Option<&str>,
) -> model::Cluster {
    let labels = subset.and_then(|n| s.subset(n)).map(|sub| &sub.labels);
    let in_subset = |have: &std::collections::BTreeMap<String, String>| {
        labels.is_none_or(|l| l.iter().all(|(k, v)| have.get(k) == Some(v)))
    };
    let mut endpoints: Vec<Endpoint> = s
        .workloads
        .iter()
        .filter(|w| in_subset(&w.labels))
        .filter_map(|w| endpoint(w, port))
        .collect();
    endpoints.extend(
        registered
            .iter()
            .filter(|e| in_subset(&e.labels))
            .map(|e| Endpoint {
                address: e.address.to_string(),
                weight: e.weight,
                health_status: if e.healthy {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Unhealthy
                },
                ..Default::default()
            }),
    );
    let name = outbound_cluster(s, port, subset);
    let mut c = model::Cluster {
        name,
        discovery: DiscoveryType::Eds,
        eds_service_name: None,
        endpoints,
        protocol: upstream_protocol(protocol),
        ..Default::default()
    };
    apply_policy(&mut c, &s.policy_for(subset));
    c
}

/// A destination policy onto a cluster:
///
/// | policy | cluster |
/// |---|---|
/// | `load_balancer` | `lb_policy` |
/// | `connection_pool.tcp.max_connections` | `circuit_breakers.default.max_connections` |
/// | `connection_pool.tcp.connect_timeout` | `connect_timeout` |
/// | `connection_pool.http.http1_max_pending_requests` | `circuit_breakers.default.max_pending_requests` |
/// | `connection_pool.http.http2_max_requests` | `circuit_breakers.default.max_requests` |
/// | `connection_pool.http.max_retries` | `circuit_breakers.default.max_retries` |
/// | `connection_pool.http.idle_timeout` | `idle_timeout` |
/// | `connection_pool.http.max_concurrent_streams` | `http2_max_concurrent_streams` (HTTP/2 ports) |
/// | `outlier_detection` | `outlier_detection` ([`outlier_detection`]) |
/// | `outlier_detection.min_health_percent` | `healthy_panic_threshold` |
///
/// Requests from the mesh's routes have the default priority, so the
/// high-priority thresholds keep their defaults (as Istio does).
fn apply_policy(c: &mut model::Cluster, p: &EffectivePolicy) {
    let (tcp, http) = (&p.connection_pool.tcp, &p.connection_pool.http);
    c.lb_policy = p.load_balancer;
    c.connect_timeout = p.connect_timeout();
    c.idle_timeout = p.idle_timeout();
    let limits = &mut c.circuit_breakers.default;
    if let Some(n) = tcp.max_connections {
        limits.max_connections = n;
    }
    if let Some(n) = http.http1_max_pending_requests {
        limits.max_pending_requests = n;
    }
    if let Some(n) = http.http2_max_requests {
        limits.max_requests = n;
    }
    if let Some(n) = http.max_retries {
        limits.max_retries = Some(n);
    }
    // Only HTTP/2 clusters have streams (and carry the setting in xDS).
    if let Some(n) = http.max_concurrent_streams
        && c.protocol == UpstreamProtocol::Http2
    {
        c.http2_max_concurrent_streams = n;
    }
    if let Some(o) = &p.outlier_detection {
        c.outlier_detection = Some(outlier_detection(o));
        // Istio's mapping: no panic mode unless asked for.
        c.healthy_panic_threshold = f64::from(o.min_health_percent.unwrap_or(0));
    }
}

/// Istio's outlier detection as Envoy's, the way istiod maps it: a
/// consecutive-errors threshold that is set ejects (its `enforcing_*` is
/// 100; 0 turns that detection off), unset ones keep Envoy's defaults
/// (5xx and local-origin failures eject after 5, gateway errors do not),
/// and success-rate ejection, which the mesh does not configure, is off.
fn outlier_detection(o: &OutlierDetection) -> model::OutlierDetection {
    let enforcing = |n: u32| if n > 0 { 100 } else { 0 };
    let mut m = model::OutlierDetection {
        enforcing_success_rate: 0,
        enforcing_local_origin_success_rate: 0,
        split_external_local_origin_errors: o.split_external_local_origin_errors == Some(true),
        ..Default::default()
    };
    if let Some(n) = o.consecutive_5xx_errors {
        m.consecutive_5xx = n;
        m.enforcing_consecutive_5xx = enforcing(n);
    }
    if let Some(n) = o.consecutive_gateway_errors {
        m.consecutive_gateway_failure = n;
        m.enforcing_consecutive_gateway_failure = enforcing(n);
    }
    if let Some(n) = o.consecutive_local_origin_failures {
        m.consecutive_local_origin_failure = n;
        m.enforcing_consecutive_local_origin_failure = enforcing(n);
    }
    if let Some(d) = o.interval {
        m.interval = d;
    }
    if let Some(d) = o.base_ejection_time {
        m.base_ejection_time = d;
        // Envoy: max_ejection_time defaults to 300 s or
        // base_ejection_time, whichever is longer.
        m.max_ejection_time = m.max_ejection_time.max(d);
    }
    if let Some(n) = o.max_ejection_percent {
        m.max_ejection_percent = n;
    }
    m
}

fn endpoint(w: &Workload, port: u16) -> Option<Endpoint> {
    Some(Endpoint {
        address: w.endpoint(port)?.to_string(),
        weight: w.weight,
        ..Default::default()
    })
}

fn prefix_all() -> RouteMatch {
    RouteMatch {
        prefix: Some("/".into()),
        case_sensitive: true,
        ..Default::default()
    }
}

/// The names a service's port answers to, from a proxy in `namespace`.
fn domains(s: &Service, port: u16, bare: bool, namespace: &str) -> Vec<String> {
    let mut names = vec![s.fqdn(), format!("{}.{}", s.name, s.namespace)];
    if s.namespace == namespace {
        names.push(s.name.clone());
    }
    let mut out = Vec::new();
    for n in names {
        if bare {
            out.push(n.clone());
        }
        out.push(format!("{n}:{port}"));
    }
    out
}

fn virtual_host(mesh: &Mesh, s: &Service, port: u16, bare: bool, namespace: &str) -> VirtualHost {
    let mut routes = Vec::new();
    for (i, r) in s.routes.iter().enumerate() {
        let action = route_action(mesh, s, port, r);
        let matches: Vec<RouteMatch> = if r.matches.is_empty() {
            vec![prefix_all()]
        } else {
            r.matches.iter().map(route_match).collect()
        };
        for m in matches {
            routes.push(model::Route {
                name: Some(r.name.clone().unwrap_or_else(|| format!("{}-{i}", s.name))),
                route_match: m,
                route: Some(action.clone()),
                request_headers: r.request_headers.clone(),
                response_headers: r.response_headers.clone(),
                fault: r.fault.clone(),
                ..Default::default()
            });
        }
    }
    if s.routes.is_empty() {
        routes.push(model::Route {
            name: Some(format!("{}-default", s.name)),
            route_match: prefix_all(),
            route: Some(RouteAction {
                cluster: Some(outbound_cluster(s, port, None)),
                timeout: Dur::from_secs(15),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    VirtualHost {
        name: format!("{}:{port}", s.fqdn()),
        domains: domains(s, port, bare, namespace),
        routes,
        ..Default::default()
    }
}

/// The cluster a destination resolves to for requests on `port` of `s`.
fn destination_cluster(mesh: &Mesh, s: &Service, port: u16, d: &Destination) -> String {
    let t = target(mesh, s, d).unwrap_or(s);
    let tport = d.port.unwrap_or_else(|| {
        if t.port(port).is_some() {
            port
        } else {
            t.ports
                .iter()
                .find(|p| p.protocol.is_http())
                .map_or(port, |p| p.port)
        }
    });
    outbound_cluster(t, tport, d.subset.as_deref())
}

fn route_action(mesh: &Mesh, s: &Service, port: u16, r: &HttpRoute) -> RouteAction {
    let mut a = RouteAction {
        timeout: r.timeout.unwrap_or(Dur::from_secs(15)),
        retry: r.retries.clone(),
        ..Default::default()
    };
    match r.destinations.as_slice() {
        [d] => a.cluster = Some(destination_cluster(mesh, s, port, d)),
        ds => {
            a.weighted_clusters = ds
                .iter()
                .map(|d| ClusterWeight {
                    name: destination_cluster(mesh, s, port, d),
                    weight: d.weight.unwrap_or(0),
                })
                .filter(|w| w.weight > 0)
                .collect()
        }
    }
    if let Some(rw) = &r.rewrite {
        a.prefix_rewrite = rw.prefix.clone();
        a.host_rewrite = rw.authority.clone();
    }
    a
}

fn route_match(m: &Match) -> RouteMatch {
    let mut rm = RouteMatch {
        prefix: m.prefix.clone(),
        path: m.path.clone(),
        regex: m.regex.clone(),
        case_sensitive: true,
        ..Default::default()
    };
    if rm.prefix.is_none() && rm.path.is_none() && rm.regex.is_none() {
        rm.prefix = Some("/".into());
    }
    rm.headers = m
        .headers
        .iter()
        .map(|(name, sm)| {
            let mut h = HeaderMatcher {
                name: name.clone(),
                exact: sm.exact.clone(),
                prefix: sm.prefix.clone(),
                regex: sm.regex.clone(),
                present: sm.present.filter(|p| *p),
                ..Default::default()
            };
            if sm.present == Some(false) {
                h.present = Some(true);
                h.invert = true;
            }
            h
        })
        .collect();
    rm.query_parameters = m
        .query
        .iter()
        .map(|(name, sm)| query_match(name, sm))
        .collect();
    rm
}

fn query_match(name: &str, sm: &StringMatch) -> QueryParameterMatcher {
    QueryParameterMatcher {
        name: name.to_string(),
        exact: sm.exact.clone(),
        regex: sm.regex.clone().or_else(|| {
            sm.prefix
                .as_ref()
                .map(|p| format!("{}.*", regex::escape(p)))
        }),
        present: sm.present,
    }
}

/// The resources as xDS, every type present (possibly empty) so wildcard
/// subscriptions are always answered.
pub fn snapshot(g: &Generated) -> Snapshot {
    let mut snap = Snapshot::new();
    let mut clusters = Vec::new();
    let mut endpoints = Vec::new();
    for c in &g.clusters {
        let (xc, cla) = cluster_to_xds(c);
        clusters.push((c.name.clone(), translate::to_any(&xc)));
        if let Some(cla) = cla {
            endpoints.push((cla.cluster_name.clone(), translate::to_any(&cla)));
        }
    }
    snap.set(CLUSTER_TYPE, None, clusters);
    snap.set(ENDPOINT_TYPE, None, endpoints);
    let api = api_listener(OUTBOUND);
    snap.set(
        LISTENER_TYPE,
        None,
        g.listeners
            .iter()
            .map(|l| (l.name.clone(), translate::to_any(&listener_to_xds(l))))
            .chain(g.api_listeners.iter().map(|name| {
                let l = xlistener::Listener {
                    name: name.clone(),
                    api_listener: Some(xlistener::ApiListener {
                        api_listener: Some(api.clone()),
                    }),
                    ..Default::default()
                };
                (name.clone(), translate::to_any(&l))
            })),
    );
    snap.set(
        ROUTE_TYPE,
        None,
        g.route_configs
            .iter()
            .map(|r| (r.name.clone(), translate::to_any(&route_config_to_xds(r)))),
    );
    snap
}

/// The HTTP connection manager of a proxyless client's API listener: RDS
/// over ADS, and the router filter (gRPC requires it last).
fn api_listener(route_config: &str) -> prost_types::Any {
    let listener = listener_to_xds(&model::Listener {
        name: String::new(),
        address: "0.0.0.0:0".into(),
        filter_chains: vec![FilterChain {
            http: Some(HttpConnectionManager {
                route_config: None,
                rds: Some(route_config.into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    // The connection manager is the first filter of the one chain.
    listener
        .filter_chains
        .into_iter()
        .flat_map(|c| c.filters)
        .find_map(|f| match f.config_type {
            Some(xlistener::filter::ConfigType::TypedConfig(any)) => Some(any),
            _ => None,
        })
        .unwrap_or_default()
}
