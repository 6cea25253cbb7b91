//! Simulated proxies: each one ADS stream (state of the world or delta)
//! that subscribes the way Envoy does and ACKs every response:
//!
//! 1. CDS, wildcard, with the node;
//! 2. after a CDS response: EDS for the EDS clusters it holds (each
//!    cluster's `eds_cluster_config.service_name`, or its name);
//! 3. once clusters are warm (the first EDS response, or a CDS response
//!    without EDS clusters): LDS, wildcard;
//! 4. after an LDS response: RDS for the route configurations its
//!    listeners' HTTP connection managers name.
//!
//! Subscriptions follow what is held (names added or gone are subscribed
//! or unsubscribed). Nothing is validated: every response is ACKed.
//!
//! A proxy is a task and a handle ([`SimProxy`]) that tells what it ACKed
//! and when. Many share a few HTTP/2 connections ([`connect`]), so a
//! thousand of them are cheap. Used by `tests/fanout.rs` and
//! `benches/fanout.rs`.

#![allow(dead_code)]

use legate_xds::translate::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE};
use legate_xds::wire::envoy::config::cluster::v3::Cluster;
use legate_xds::wire::envoy::config::core::v3::Node;
use legate_xds::wire::envoy::config::listener::v3::{Listener, filter::ConfigType};
use legate_xds::wire::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use legate_xds::wire::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

/// The four types a sidecar holds, in the order it subscribes to them.
pub const TYPES: [&str; 4] = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE];

/// `Cluster`, `ClusterLoadAssignment`, ... (what `/proxies` calls them).
pub fn short(type_url: &str) -> &str {
    type_url.rsplit('.').next().unwrap_or(type_url)
}

/// Which ADS flavour a proxy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    /// `StreamAggregatedResources`.
    Sotw,
    /// `DeltaAggregatedResources`.
    Delta,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::Sotw => "sotw",
            Api::Delta => "delta",
        }
    }
}

/// Opens `n` HTTP/2 connections to an ADS server; proxies started on clones
/// of one [`Channel`] multiplex their streams over its connection.
pub async fn connect(addr: SocketAddr, n: usize) -> Result<Vec<Channel>, tonic::transport::Error> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let ch = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        channels.push(ch);
    }
    Ok(channels)
}

/// A node as a sidecar of `service` in `namespace` sends it.
pub fn node(id: &str, service: &str, namespace: &str) -> Node {
    use prost_types::{Struct, Value, value::Kind};
    let s = |v: &str| Value {
        kind: Some(Kind::StringValue(v.to_string())),
    };
    Node {
        id: id.to_string(),
        metadata: Some(Struct {
            fields: [
                ("service".to_string(), s(service)),
                ("namespace".to_string(), s(namespace)),
            ]
            .into_iter()
            .collect(),
        }),
        ..Default::default()
    }
}

/// Where a proxy stands on one type.
#[derive(Clone, Debug, Default)]
pub struct TypeState {
    /// Responses received.
    pub responses: u64,
    /// Their encoded size, bytes.
    pub bytes: u64,
    /// ACKs sent (one per response).
    pub acks: u64,
    /// Every ACK: the version ACKed (SotW `version_info`, delta
    /// `system_version_info`) and when the ACK was handed to the stream.
    pub history: Vec<(String, Instant)>,
    /// Names of the resources held.
    pub held: BTreeSet<String>,
}

impl TypeState {
    /// The version last ACKed.
    pub fn version(&self) -> Option<&str> {
        self.history.last().map(|(v, _)| v.as_str())
    }

    /// When the last ACK was sent.
    pub fn last_ack(&self) -> Option<Instant> {
        self.history.last().map(|(_, t)| *t)
    }

    /// When a version other than `old` was first ACKed after `old` last
    /// was (None: not yet).
    pub fn acked_after(&self, old: &str) -> Option<Instant> {
        let from = self
            .history
            .iter()
            .rposition(|(v, _)| v == old)
            .map_or(0, |i| i + 1);
        self.history[from..]
            .iter()
            .find(|(v, _)| v != old)
            .map(|(_, t)| *t)
    }
}

/// Everything a proxy observed.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// By type URL.
    pub types: HashMap<String, TypeState>,
    /// Why the stream ended, once it has.
    pub ended: Option<String>,
}

impl Status {
    pub fn get(&self, type_url: &str) -> Option<&TypeState> {
        self.types.get(type_url)
    }

    /// Every one of [`TYPES`] has been ACKed at least once.
    pub fn synced(&self) -> bool {
        TYPES
            .iter()
            .all(|t| self.types.get(*t).is_some_and(|s| s.acks > 0))
    }
}

struct Shared {
    status: Mutex<Status>,
    /// Bumped whenever `status` changes.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status());
        self.changed.send_modify(|g| *g += 1);
    }

    fn response(&self, type_url: &str, bytes: usize) {
        self.update(|s| {
            let t = s.types.entry(type_url.to_string()).or_default();
            t.responses += 1;
            t.bytes += bytes as u64;
        });
    }

    fn acked(&self, type_url: &str, version: String, held: &BTreeSet<String>) {
        let at = Instant::now();
        self.update(|s| {
            let t = s.types.entry(type_url.to_string()).or_default();
            t.acks += 1;
            t.history.push((version, at));
            t.held.clone_from(held);
        });
    }

    fn ended(&self, why: String) {
        self.update(|s| {
            s.ended.get_or_insert(why);
        });
    }
}

/// One simulated proxy. Dropping it ends its stream.
pub struct SimProxy {
    pub node_id: String,
    pub service: String,
    pub api: Api,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for SimProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SimProxy {
    /// Starts a sidecar of `service` (in `namespace`) on `channel`.
    pub fn start(
        channel: Channel,
        api: Api,
        node_id: &str,
        service: &str,
        namespace: &str,
    ) -> SimProxy {
        let shared = Arc::new(Shared {
            status: Mutex::new(Status::default()),
            changed: watch::channel(0).0,
        });
        let node = node(node_id, service, namespace);
        let s = shared.clone();
        let task = tokio::spawn(async move {
            let why = match api {
                Api::Sotw => run_sotw(channel, node, &s).await,
                Api::Delta => run_delta(channel, node, &s).await,
            };
            s.ended(why);
        });
        SimProxy {
            node_id: node_id.to_string(),
            service: service.to_string(),
            api,
            shared,
            task,
        }
    }

    /// A copy of everything observed so far.
    pub fn status(&self) -> Status {
        self.shared.status().clone()
    }

    /// Looks at the status without copying it.
    pub fn with_status<R>(&self, f: impl FnOnce(&Status) -> R) -> R {
        f(&self.shared.status())
    }

    /// The version last ACKed, by type URL.
    pub fn acked_versions(&self) -> HashMap<String, String> {
        self.with_status(|s| {
            s.types
                .iter()
                .filter_map(|(t, st)| Some((t.clone(), st.version()?.to_string())))
                .collect()
        })
    }

    /// ACKs sent for `type_url`.
    pub fn acks(&self, type_url: &str) -> u64 {
        self.with_status(|s| s.get(type_url).map_or(0, |t| t.acks))
    }

    /// Responses received for `type_url`.
    pub fn responses(&self, type_url: &str) -> u64 {
        self.with_status(|s| s.get(type_url).map_or(0, |t| t.responses))
    }

    /// Bytes of responses received, over every type.
    pub fn bytes(&self) -> u64 {
        self.with_status(|s| s.types.values().map(|t| t.bytes).sum())
    }

    /// When `type_url` was last ACKed.
    pub fn last_ack(&self, type_url: &str) -> Option<Instant> {
        self.with_status(|s| s.get(type_url)?.last_ack())
    }

    /// Waits until `pred` holds. Fails if the stream ends first.
    pub async fn until(&self, pred: impl Fn(&Status) -> bool) -> Result<(), String> {
        let mut changed = self.shared.changed.subscribe();
        loop {
            {
                let s = self.shared.status();
                if pred(&s) {
                    return Ok(());
                }
                if let Some(why) = &s.ended {
                    return Err(format!("{}: stream ended: {why}", self.node_id));
                }
            }
            if changed.changed().await.is_err() {
                return Err(format!("{}: proxy gone", self.node_id));
            }
        }
    }

    /// Waits until every type has been ACKed once.
    pub async fn synced(&self) -> Result<(), String> {
        self.until(Status::synced).await
    }

    /// Waits until a version of `type_url` other than `old` is ACKed;
    /// returns when that ACK was sent.
    pub async fn acked_other_than(&self, type_url: &str, old: &str) -> Result<Instant, String> {
        self.until(|s| s.get(type_url).and_then(|t| t.acked_after(old)).is_some())
            .await?;
        Ok(self
            .with_status(|s| s.get(type_url).and_then(|t| t.acked_after(old)))
            .expect("just seen"))
    }
}

/// A request stream fed by a channel.
struct RxStream<T>(mpsc::Receiver<T>);

impl<T> futures_core::Stream for RxStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// Just the name (field 1) of a ClusterLoadAssignment or RouteConfiguration.
#[derive(Clone, PartialEq, Message)]
struct Named {
    #[prost(string, tag = "1")]
    name: String,
}

fn name_of(any: &prost_types::Any) -> String {
    Named::decode(any.value.as_slice())
        .map(|n| n.name)
        .unwrap_or_default()
}

/// A cluster's name and, for an EDS cluster, the name of its endpoints.
fn cluster_of(any: &prost_types::Any) -> (String, Option<String>) {
    let Ok(c) = Cluster::decode(any.value.as_slice()) else {
        return (String::new(), None);
    };
    let eds = c.eds_cluster_config.as_ref().map(|e| {
        if e.service_name.is_empty() {
            c.name.clone()
        } else {
            e.service_name.clone()
        }
    });
    (c.name, eds)
}

/// A listener's name and the route configurations it takes by RDS.
fn listener_of(any: &prost_types::Any) -> (String, Vec<String>) {
    let Ok(l) = Listener::decode(any.value.as_slice()) else {
        return (String::new(), Vec::new());
    };
    let rds = l
        .filter_chains
        .iter()
        .chain(l.default_filter_chain.as_ref())
        .flat_map(|fc| &fc.filters)
        .filter_map(|f| match &f.config_type {
            Some(ConfigType::TypedConfig(a)) if a.type_url.ends_with(".HttpConnectionManager") => {
                HttpConnectionManager::decode(a.value.as_slice()).ok()
            }
            _ => None,
        })
        .filter_map(|hcm| match hcm.route_specifier {
            Some(RouteSpecifier::Rds(r)) => Some(r.route_config_name),
            _ => None,
        })
        .collect();
    (l.name, rds)
}

/// What the proxy holds, by type, and what that makes it want.
#[derive(Default)]
struct Held {
    /// Cluster name -> EDS name.
    clusters: BTreeMap<String, Option<String>>,
    /// Listener name -> RDS names.
    listeners: BTreeMap<String, Vec<String>>,
    endpoints: BTreeSet<String>,
    routes: BTreeSet<String>,
}

impl Held {
    fn eds_names(&self) -> BTreeSet<String> {
        self.clusters.values().flatten().cloned().collect()
    }

    fn rds_names(&self) -> BTreeSet<String> {
        self.listeners.values().flatten().cloned().collect()
    }

    fn names(&self, type_url: &str) -> BTreeSet<String> {
        match type_url {
            CLUSTER_TYPE => self.clusters.keys().cloned().collect(),
            LISTENER_TYPE => self.listeners.keys().cloned().collect(),
            ENDPOINT_TYPE => self.endpoints.clone(),
            _ => self.routes.clone(),
        }
    }

    /// Replaces (SotW) the resources of a type.
    fn clear(&mut self, type_url: &str) {
        match type_url {
            CLUSTER_TYPE => self.clusters.clear(),
            LISTENER_TYPE => self.listeners.clear(),
            ENDPOINT_TYPE => self.endpoints.clear(),
            _ => self.routes.clear(),
        }
    }

    fn add(&mut self, type_url: &str, any: &prost_types::Any, name: Option<&str>) {
        match type_url {
            CLUSTER_TYPE => {
                let (n, eds) = cluster_of(any);
                self.clusters.insert(name.map_or(n, str::to_string), eds);
            }
            LISTENER_TYPE => {
                let (n, rds) = listener_of(any);
                self.listeners.insert(name.map_or(n, str::to_string), rds);
            }
            ENDPOINT_TYPE => {
                self.endpoints
                    .insert(name.map_or_else(|| name_of(any), str::to_string));
            }
            _ => {
                self.routes
                    .insert(name.map_or_else(|| name_of(any), str::to_string));
            }
        }
    }

    fn remove(&mut self, type_url: &str, name: &str) {
        match type_url {
            CLUSTER_TYPE => {
                self.clusters.remove(name);
            }
            LISTENER_TYPE => {
                self.listeners.remove(name);
            }
            ENDPOINT_TYPE => {
                self.endpoints.remove(name);
            }
            _ => {
                self.routes.remove(name);
            }
        }
    }
}

async fn run_sotw(channel: Channel, node: Node, shared: &Shared) -> String {
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(16);
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let first = DiscoveryRequest {
        node: Some(node),
        type_url: CLUSTER_TYPE.into(),
        ..Default::default()
    };
    if tx.send(first).await.is_err() {
        return "request channel closed".into();
    }
    let mut inbound = match client.stream_aggregated_resources(RxStream(rx)).await {
        Ok(r) => r.into_inner(),
        Err(e) => return format!("cannot open the stream: {e}"),
    };
    let mut held = Held::default();
    // Names subscribed (empty: wildcard) and the latest version and nonce,
    // by type.
    let mut subscribed: HashMap<&'static str, Vec<String>> = HashMap::new();
    let mut last: HashMap<&'static str, (String, String)> = HashMap::new();
    let mut lds_requested = false;
    loop {
        let resp: DiscoveryResponse = match inbound.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return "the server ended the stream".into(),
            Err(e) => return format!("stream error: {e}"),
        };
        let Some(type_url) = TYPES.into_iter().find(|t| *t == resp.type_url) else {
            continue;
        };
        shared.response(type_url, resp.encoded_len());
        held.clear(type_url);
        for r in &resp.resources {
            held.add(type_url, r, None);
        }
        last.insert(type_url, (resp.version_info.clone(), resp.nonce.clone()));
        let mut out = vec![DiscoveryRequest {
            type_url: type_url.into(),
            version_info: resp.version_info.clone(),
            response_nonce: resp.nonce.clone(),
            resource_names: subscribed.get(type_url).cloned().unwrap_or_default(),
            ..Default::default()
        }];
        // Follow-up subscriptions: (type, names) when they changed.
        let mut follow = Vec::new();
        match type_url {
            CLUSTER_TYPE => {
                let eds: Vec<String> = held.eds_names().into_iter().collect();
                if eds.is_empty() && !lds_requested {
                    follow.push((LISTENER_TYPE, Vec::new()));
                } else if subscribed.get(ENDPOINT_TYPE) != Some(&eds) && !eds.is_empty() {
                    follow.push((ENDPOINT_TYPE, eds));
                }
            }
            ENDPOINT_TYPE if !lds_requested => follow.push((LISTENER_TYPE, Vec::new())),
            LISTENER_TYPE => {
                let rds: Vec<String> = held.rds_names().into_iter().collect();
                if subscribed.get(ROUTE_TYPE) != Some(&rds) && !rds.is_empty() {
                    follow.push((ROUTE_TYPE, rds));
                }
            }
            _ => {}
        }
        for (t, names) in follow {
            if t == LISTENER_TYPE {
                lds_requested = true;
            }
            let (version, nonce) = last.get(t).cloned().unwrap_or_default();
            subscribed.insert(t, names.clone());
            out.push(DiscoveryRequest {
                type_url: t.into(),
                version_info: version,
                response_nonce: nonce,
                resource_names: names,
                ..Default::default()
            });
        }
        let mut out = out.into_iter();
        let ack = out.next().expect("the ACK");
        if tx.send(ack).await.is_err() {
            return "request channel closed".into();
        }
        shared.acked(type_url, resp.version_info, &held.names(type_url));
        for req in out {
            if tx.send(req).await.is_err() {
                return "request channel closed".into();
            }
        }
    }
}

async fn run_delta(channel: Channel, node: Node, shared: &Shared) -> String {
    let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(16);
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let first = DeltaDiscoveryRequest {
        node: Some(node),
        type_url: CLUSTER_TYPE.into(),
        ..Default::default()
    };
    if tx.send(first).await.is_err() {
        return "request channel closed".into();
    }
    let mut inbound = match client.delta_aggregated_resources(RxStream(rx)).await {
        Ok(r) => r.into_inner(),
        Err(e) => return format!("cannot open the stream: {e}"),
    };
    let mut held = Held::default();
    // Names subscribed, for the named types (EDS, RDS).
    let mut subscribed: HashMap<&'static str, BTreeSet<String>> = HashMap::new();
    let mut lds_requested = false;
    loop {
        let resp: DeltaDiscoveryResponse = match inbound.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return "the server ended the stream".into(),
            Err(e) => return format!("stream error: {e}"),
        };
        let Some(type_url) = TYPES.into_iter().find(|t| *t == resp.type_url) else {
            continue;
        };
        shared.response(type_url, resp.encoded_len());
        for r in &resp.resources {
            if let Some(any) = &r.resource {
                held.add(type_url, any, Some(&r.name));
            }
        }
        for n in &resp.removed_resources {
            held.remove(type_url, n);
        }
        let mut out = vec![DeltaDiscoveryRequest {
            type_url: type_url.into(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        }];
        let mut follow: Vec<(&'static str, BTreeSet<String>)> = Vec::new();
        match type_url {
            CLUSTER_TYPE => {
                let eds = held.eds_names();
                if eds.is_empty() && !lds_requested {
                    follow.push((LISTENER_TYPE, BTreeSet::new()));
                } else {
                    follow.push((ENDPOINT_TYPE, eds));
                }
            }
            ENDPOINT_TYPE if !lds_requested => follow.push((LISTENER_TYPE, BTreeSet::new())),
            LISTENER_TYPE => follow.push((ROUTE_TYPE, held.rds_names())),
            _ => {}
        }
        for (t, want) in follow {
            if t == LISTENER_TYPE {
                // Wildcard: a first request subscribing to nothing.
                lds_requested = true;
                out.push(DeltaDiscoveryRequest {
                    type_url: t.into(),
                    ..Default::default()
                });
                continue;
            }
            let have = subscribed.get(t);
            let add: Vec<String> = want
                .iter()
                .filter(|n| !have.is_some_and(|h| h.contains(*n)))
                .cloned()
                .collect();
            let drop: Vec<String> = have
                .map(|h| h.difference(&want).cloned().collect())
                .unwrap_or_default();
            // A first request naming nothing would be a wildcard: wait
            // until there is something to ask for.
            if add.is_empty() && (drop.is_empty() || have.is_none()) {
                continue;
            }
            subscribed.insert(t, want);
            out.push(DeltaDiscoveryRequest {
                type_url: t.into(),
                resource_names_subscribe: add,
                resource_names_unsubscribe: drop,
                ..Default::default()
            });
        }
        let mut out = out.into_iter();
        let ack = out.next().expect("the ACK");
        if tx.send(ack).await.is_err() {
            return "request channel closed".into();
        }
        shared.acked(type_url, resp.system_version_info, &held.names(type_url));
        for req in out {
            if tx.send(req).await.is_err() {
                return "request channel closed".into();
            }
        }
    }
}
