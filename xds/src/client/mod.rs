//! The proxy's ADS client: one gRPC stream to the control plane carrying
//! CDS, EDS, LDS and RDS, state of the world or delta, with Envoy's
//! semantics.
//!
//! - Subscriptions: CDS and LDS are wildcard; RDS follows the route
//!   configuration names listeners reference, EDS the service names of
//!   `eds` clusters.
//! - Every response is translated and validated whole, then the complete
//!   configuration (static resources plus everything received) is handed to
//!   [`Apply`]; only if that succeeds is it ACKed. Otherwise it is NACKed
//!   with the error, and the last good configuration keeps serving.
//! - Warming: a new cluster is not used before its endpoints arrive, a new
//!   listener (or a new version of one) not before its routes, each at most
//!   `initial_fetch_timeout`; LDS is requested once CDS has warmed.
//! - The stream is re-established with jittered exponential backoff; the
//!   proxy serves its last configuration meanwhile. Delta reconnects carry
//!   `initial_resource_versions`.

mod status;

pub use status::Status;

use crate::model::{self, Config, DiscoveryType, Dynamic, XdsApi};
use crate::translate::{self, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, Resource};
use crate::wire::envoy::config::core::v3 as core;
use crate::wire::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
};
use crate::wire::google::rpc;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Where the client delivers configurations (the proxy).
pub trait Apply: Send + Sync + 'static {
    /// Serve `config` from now on, or say why not (the update is NACKed).
    fn apply(&self, config: Config) -> Result<(), String>;
    /// The first complete configuration is being served (`/ready`).
    fn initialized(&self);
}

/// The four resource types, in warming order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Cluster,
    Endpoint,
    Listener,
    Route,
}

const KINDS: [Kind; 4] = [Kind::Cluster, Kind::Endpoint, Kind::Listener, Kind::Route];

impl Kind {
    fn type_url(self) -> &'static str {
        match self {
            Kind::Cluster => CLUSTER_TYPE,
            Kind::Endpoint => ENDPOINT_TYPE,
            Kind::Listener => LISTENER_TYPE,
            Kind::Route => ROUTE_TYPE,
        }
    }

    fn from_type_url(url: &str) -> Option<Kind> {
        KINDS.into_iter().find(|k| k.type_url() == url)
    }

    /// Short name for logs and metrics.
    fn short(self) -> &'static str {
        match self {
            Kind::Cluster => "CDS",
            Kind::Endpoint => "EDS",
            Kind::Listener => "LDS",
            Kind::Route => "RDS",
        }
    }

    fn wildcard(self) -> bool {
        matches!(self, Kind::Cluster | Kind::Listener)
    }
}

/// What the client holds for one resource type.
#[derive(Clone, Default)]
struct TypeState {
    /// Accepted resources: name -> (version, resource).
    resources: BTreeMap<String, (String, Resource)>,
    /// Last accepted `version_info` (SotW) / `system_version_info` (delta).
    version: String,
    /// Last nonce received on the current stream.
    nonce: String,
    /// Names subscribed (RDS, EDS); empty for wildcard types.
    names: BTreeSet<String>,
    /// A request for this type went out on the current stream.
    requested: bool,
    /// A response for this type arrived on the current stream.
    answered: bool,
}

struct State {
    types: HashMap<Kind, TypeState>,
    /// When each dynamic cluster / listener (version) was first seen, for
    /// warming deadlines.
    first_seen: HashMap<(Kind, String), Instant>,
    /// The listener versions and clusters last applied.
    active_listeners: HashMap<String, model::Listener>,
    active_clusters: BTreeSet<String>,
    initialized: bool,
    /// When the client started: the warming clock of static resources.
    started: Instant,
    /// `initial_fetch_timeout`; zero waits forever.
    fetch_timeout: Duration,
}

/// Runs the ADS client until the process ends. `base` holds the static
/// resources and the `dynamic` section.
pub async fn run(mut base: Config, apply: Arc<dyn Apply>, status: Arc<Status>) {
    let Some(dynamic) = base.dynamic.clone() else {
        return;
    };
    for l in &mut base.listeners {
        l.normalize();
    }
    let fetch_timeout = dynamic.initial_fetch_timeout.get();
    let mut state = State {
        types: KINDS.iter().map(|k| (*k, TypeState::default())).collect(),
        first_seen: HashMap::new(),
        active_listeners: HashMap::new(),
        active_clusters: BTreeSet::new(),
        initialized: false,
        started: Instant::now(),
        fetch_timeout,
    };
    // Envoy's init manager gives up waiting after the initial fetch timeout
    // and serves what it has (the static resources at least).
    // (A task of its own, as the stream may never come up; it ends with
    // the client.)
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _init_deadline = (!fetch_timeout.is_zero()).then(|| {
        let apply = apply.clone();
        AbortOnDrop(tokio::spawn(async move {
            tokio::time::sleep(fetch_timeout).await;
            apply.initialized();
        }))
    });
    let mut attempt: u32 = 0;
    let mut server = 0usize;
    loop {
        let addr = &dynamic.servers[server % dynamic.servers.len()];
        let (answered, err) = match connect(addr).await {
            Ok(client) => {
                status.set_connected(addr, true);
                metrics::gauge!("xds_connected").set(1.0);
                tracing::info!(server = %addr, api = ?dynamic.api, "connected to the control plane");
                let r = stream(client, &base, &dynamic, &mut state, &*apply, &status).await;
                status.set_connected(addr, false);
                metrics::gauge!("xds_connected").set(0.0);
                r
            }
            Err(e) => (false, e),
        };
        tracing::warn!(server = %addr, error = %err, "control plane stream ended; serving the last configuration");
        if answered {
            attempt = 0;
        } else {
            server += 1;
        }
        // Full jitter over an exponential ceiling: 250 ms doubling to 30 s.
        let ceiling = Duration::from_millis(250)
            .saturating_mul(1u32 << attempt.min(7))
            .min(Duration::from_secs(30));
        attempt = attempt.saturating_add(1);
        let wait = ceiling.mul_f64(fastrand::f64().max(0.1));
        tokio::time::sleep(wait).await;
    }
}

async fn connect(
    addr: &str,
) -> Result<AggregatedDiscoveryServiceClient<tonic::transport::Channel>, String> {
    let channel = endpoint(addr)?
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    Ok(AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(256 << 20))
}

/// A gRPC endpoint for a control plane address (`host:port` or a URI).
pub(crate) fn endpoint(addr: &str) -> Result<tonic::transport::Endpoint, String> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Ok(tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| format!("invalid control plane address {addr:?}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10)))
}

/// The request side of a gRPC stream, fed through a channel.
struct Outbox<T>(mpsc::UnboundedReceiver<T>);

impl<T> futures_core::Stream for Outbox<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

fn node(d: &Dynamic) -> core::Node {
    let metadata = (!d.node.metadata.is_empty()).then(|| prost_types::Struct {
        fields: d
            .node
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    });
    core::Node {
        id: d.node.id.clone(),
        cluster: d.node.cluster.clone(),
        metadata,
        user_agent_name: "legate".into(),
        user_agent_version_type: Some(core::node::UserAgentVersionType::UserAgentVersion(
            env!("CARGO_PKG_VERSION").into(),
        )),
        client_features: vec!["envoy.lb.does_not_support_overprovisioning".into()],
        ..Default::default()
    }
}

fn json_to_value(v: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind as K;
    let kind = match v {
        serde_json::Value::Null => K::NullValue(0),
        serde_json::Value::Bool(b) => K::BoolValue(*b),
        serde_json::Value::Number(n) => K::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => K::StringValue(s.clone()),
        serde_json::Value::Array(a) => K::ListValue(prost_types::ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(o) => K::StructValue(prost_types::Struct {
            fields: o
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// One request or response of either protocol variant, reduced to what the
/// state machine needs.
struct Update {
    kind: Kind,
    nonce: String,
    /// SotW `version_info` / delta `system_version_info`.
    version: String,
    /// (name, version, resource)
    resources: Vec<(String, String, prost_types::Any)>,
    removed: Vec<String>,
    /// SotW LDS/CDS: the response is the complete set.
    complete: bool,
}

enum Sender {
    Sotw(mpsc::UnboundedSender<DiscoveryRequest>, core::Node),
    Delta(mpsc::UnboundedSender<DeltaDiscoveryRequest>, core::Node),
}

impl Sender {
    /// A SotW request carrying the accepted version and current names.
    fn sotw(&self, kind: Kind, t: &TypeState, nonce: &str, error_detail: Option<rpc::Status>) {
        if let Sender::Sotw(tx, node) = self {
            let _ = tx.send(DiscoveryRequest {
                version_info: t.version.clone(),
                node: Some(node.clone()),
                resource_names: t.names.iter().cloned().collect(),
                type_url: kind.type_url().into(),
                response_nonce: nonce.into(),
                error_detail,
            });
        }
    }

    /// Subscribes to `kind` (first request on a stream, or a change of names).
    fn request(&self, kind: Kind, t: &TypeState, previous: &BTreeSet<String>, first: bool) {
        match self {
            Sender::Sotw(..) => {
                let nonce = if first { "" } else { t.nonce.as_str() };
                self.sotw(kind, t, nonce, None);
            }
            Sender::Delta(tx, node) => {
                let (subscribe, unsubscribe, initial) = if first {
                    let initial = t
                        .resources
                        .iter()
                        .map(|(n, (v, _))| (n.clone(), v.clone()))
                        .collect();
                    (t.names.iter().cloned().collect(), Vec::new(), initial)
                } else {
                    (
                        t.names.difference(previous).cloned().collect(),
                        previous.difference(&t.names).cloned().collect(),
                        HashMap::new(),
                    )
                };
                let _ = tx.send(DeltaDiscoveryRequest {
                    node: Some(node.clone()),
                    type_url: kind.type_url().into(),
                    resource_names_subscribe: subscribe,
                    resource_names_unsubscribe: unsubscribe,
                    initial_resource_versions: initial,
                    response_nonce: String::new(),
                    error_detail: None,
                });
            }
        }
    }

    /// ACK (`error` None) or NACK a response.
    fn answer(&self, kind: Kind, t: &TypeState, nonce: &str, error: Option<String>) {
        let error_detail = error.map(|message| rpc::Status {
            code: 3, // INVALID_ARGUMENT
            message,
            details: Vec::new(),
        });
        match self {
            Sender::Sotw(..) => self.sotw(kind, t, nonce, error_detail),
            Sender::Delta(tx, node) => {
                let _ = tx.send(DeltaDiscoveryRequest {
                    node: Some(node.clone()),
                    type_url: kind.type_url().into(),
                    response_nonce: nonce.into(),
                    error_detail,
                    ..Default::default()
                });
            }
        }
    }
}

fn from_sotw(r: DiscoveryResponse) -> Result<Update, String> {
    let kind = Kind::from_type_url(&r.type_url)
        .ok_or_else(|| format!("unexpected resource type {:?}", r.type_url))?;
    let mut resources = Vec::with_capacity(r.resources.len());
    for any in r.resources {
        // The name is only known after decoding; `handle` checks it.
        resources.push((String::new(), r.version_info.clone(), any));
    }
    Ok(Update {
        kind,
        nonce: r.nonce,
        version: r.version_info,
        resources,
        removed: Vec::new(),
        complete: kind.wildcard(),
    })
}

fn from_delta(r: DeltaDiscoveryResponse) -> Result<Update, String> {
    let kind = Kind::from_type_url(&r.type_url)
        .ok_or_else(|| format!("unexpected resource type {:?}", r.type_url))?;
    let mut resources = Vec::with_capacity(r.resources.len());
    for res in r.resources {
        // A resource without a body (only a name, e.g. a heartbeat for a
        // TTL) changes nothing we hold.
        if let Some(any) = res.resource {
            resources.push((res.name, res.version, any));
        }
    }
    Ok(Update {
        kind,
        nonce: r.nonce,
        version: r.system_version_info,
        resources,
        removed: r.removed_resources,
        complete: false,
    })
}

/// Drives one stream until it fails. Returns whether any response arrived,
/// and why it ended.
async fn stream(
    mut client: AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    base: &Config,
    dynamic: &Dynamic,
    state: &mut State,
    apply: &dyn Apply,
    status: &Status,
) -> (bool, String) {
    let node = node(dynamic);
    for t in state.types.values_mut() {
        t.requested = false;
        t.answered = false;
        t.nonce.clear();
    }
    let (sender, mut responses): (Sender, ResponseStream) = match dynamic.api {
        XdsApi::Sotw => {
            let (tx, rx) = mpsc::unbounded_channel();
            let sender = Sender::Sotw(tx, node);
            let sent = client.stream_aggregated_resources(Outbox(rx));
            // Requests must be queued before the call resolves (the server may
            // wait for the first one): subscribe first.
            subscribe(&sender, state, base);
            match sent.await {
                Ok(r) => (sender, ResponseStream::Sotw(r.into_inner())),
                Err(e) => return (false, format!("StreamAggregatedResources: {e}")),
            }
        }
        XdsApi::Delta => {
            let (tx, rx) = mpsc::unbounded_channel();
            let sender = Sender::Delta(tx, node);
            let sent = client.delta_aggregated_resources(Outbox(rx));
            subscribe(&sender, state, base);
            match sent.await {
                Ok(r) => (sender, ResponseStream::Delta(r.into_inner())),
                Err(e) => return (false, format!("DeltaAggregatedResources: {e}")),
            }
        }
    };
    let mut answered = false;
    loop {
        let deadline = next_deadline(state);
        let next = tokio::select! {
            r = responses.next() => r,
            _ = sleep_until(deadline) => {
                // A warming deadline passed: serve what there is.
                if let Err(e) = refresh(base, state, apply) {
                    tracing::warn!(error = %e, "configuration after a warming timeout was refused");
                }
                subscribe(&sender, state, base);
                check_initialized(state, base, apply);
                continue;
            }
        };
        let update = match next {
            Ok(Some(u)) => u,
            Ok(None) => return (answered, "the control plane closed the stream".into()),
            Err(e) => return (answered, e),
        };
        answered = true;
        handle(update, &sender, base, state, apply, status);
        subscribe(&sender, state, base);
        check_initialized(state, base, apply);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

enum ResponseStream {
    Sotw(tonic::Streaming<DiscoveryResponse>),
    Delta(tonic::Streaming<DeltaDiscoveryResponse>),
}

impl ResponseStream {
    /// The next response of a type the client asked for; responses of
    /// other types are logged and skipped (nothing subscribed to them).
    async fn next(&mut self) -> Result<Option<Update>, String> {
        loop {
            let r = match self {
                ResponseStream::Sotw(s) => s.message().await.map(|m| m.map(from_sotw)),
                ResponseStream::Delta(s) => s.message().await.map(|m| m.map(from_delta)),
            };
            match r {
                Ok(None) => return Ok(None),
                Ok(Some(Ok(u))) => return Ok(Some(u)),
                Ok(Some(Err(e))) => tracing::warn!(error = %e, "ignoring an xDS response"),
                Err(status) => return Err(format!("stream error: {status}")),
            }
        }
    }
}

/// Sends the requests the current state calls for: CDS at once, LDS once
/// clusters have warmed, RDS and EDS whenever their names change.
fn subscribe(sender: &Sender, state: &mut State, base: &Config) {
    let (routes, services) = referenced_names(base, state);
    let names_for = |k: Kind| match k {
        Kind::Route => routes.clone(),
        Kind::Endpoint => services.clone(),
        _ => BTreeSet::new(),
    };
    let timeout = state.fetch_timeout;
    // CDS -> EDS -> LDS: listeners are asked for once clusters have warmed
    // (or could not in time); after the first complete configuration, at
    // once (a reconnect).
    let cds_warm = (state.types[&Kind::Cluster].answered
        && warming_clusters(base, state).is_empty())
        || (!timeout.is_zero() && state.started.elapsed() >= timeout)
        || state.initialized;
    for kind in KINDS {
        if kind == Kind::Listener && !cds_warm {
            continue;
        }
        let names = names_for(kind);
        let Some(t) = state.types.get_mut(&kind) else {
            continue;
        };
        if !t.requested {
            if !kind.wildcard() && names.is_empty() && t.resources.is_empty() {
                continue;
            }
            let previous = std::mem::replace(&mut t.names, names);
            sender.request(kind, t, &previous, true);
            t.requested = true;
        } else if !kind.wildcard() && t.names != names {
            let previous = std::mem::replace(&mut t.names, names);
            // Unsubscribed resources are forgotten (Envoy drops them).
            t.resources.retain(|n, _| t.names.contains(n));
            sender.request(kind, t, &previous, false);
        }
    }
}

/// Route configuration names referenced by listeners, and EDS service
/// names of `eds` clusters, static and dynamic (listeners normalized).
fn referenced_names(base: &Config, state: &State) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut routes = BTreeSet::new();
    let mut services = BTreeSet::new();
    let dyn_listeners =
        state.types[&Kind::Listener]
            .resources
            .values()
            .filter_map(|(_, r)| match r {
                Resource::Listener(l) => Some(l),
                _ => None,
            });
    for l in base.listeners.iter().chain(dyn_listeners) {
        for fc in l.filter_chains.iter() {
            if let Some(name) = fc.http.as_ref().and_then(|h| h.rds.as_ref()) {
                routes.insert(name.clone());
            }
        }
    }
    for c in clusters(base, state) {
        if c.discovery == DiscoveryType::Eds {
            services.insert(service_name(c).to_string());
        }
    }
    // Named route configurations defined statically need no RDS.
    for rc in &base.route_configs {
        routes.remove(&rc.name);
    }
    (routes, services)
}

fn service_name(c: &model::Cluster) -> &str {
    c.eds_service_name.as_deref().unwrap_or(&c.name)
}

/// Static clusters, then dynamic ones (none shares a static one's name:
/// `handle` refuses those).
fn clusters<'a>(base: &'a Config, state: &'a State) -> impl Iterator<Item = &'a model::Cluster> {
    let dynamic = state.types[&Kind::Cluster]
        .resources
        .values()
        .filter_map(|(_, r)| match r {
            Resource::Cluster(c) => Some(c),
            _ => None,
        });
    base.clusters.iter().chain(dynamic)
}

/// `eds` clusters never applied whose endpoints have not arrived and whose
/// warming time has not passed.
fn warming_clusters(base: &Config, state: &State) -> Vec<String> {
    let eds = &state.types[&Kind::Endpoint].resources;
    clusters(base, state)
        .filter(|c| {
            c.discovery == DiscoveryType::Eds
                && !state.active_clusters.contains(&c.name)
                && !eds.contains_key(service_name(c))
                && !expired(state, Kind::Cluster, &c.name)
        })
        .map(|c| c.name.clone())
        .collect()
}

/// Whether a resource (or, never seen, the client itself) has waited past
/// the warming limit.
fn expired(state: &State, kind: Kind, name: &str) -> bool {
    !state.fetch_timeout.is_zero()
        && state
            .first_seen
            .get(&(kind, name.to_string()))
            .unwrap_or(&state.started)
            .elapsed()
            >= state.fetch_timeout
}

/// Whether all route configurations a listener references are available.
fn listener_warm(l: &model::Listener, base: &Config, state: &State) -> bool {
    let routes = &state.types[&Kind::Route].resources;
    l.filter_chains
        .iter()
        .filter_map(|fc| fc.http.as_ref()?.rds.as_ref())
        .all(|n| routes.contains_key(n) || base.route_configs.iter().any(|r| &r.name == n))
}

/// The configuration to serve: static resources, then the dynamic ones
/// that are warm (or whose warming time has passed); a listener whose new
/// version is still warming keeps its previous version.
fn assemble(base: &Config, state: &State) -> (Config, Vec<String>, Vec<model::Listener>) {
    let mut config = base.clone();
    let eds = &state.types[&Kind::Endpoint].resources;
    let warming = warming_clusters(base, state);
    let mut applied_clusters = Vec::new();
    let mut out_clusters = Vec::new();
    for c in clusters(base, state) {
        if warming.contains(&c.name) {
            continue;
        }
        let mut c = c.clone();
        if c.discovery == DiscoveryType::Eds
            && let Some((_, Resource::Endpoints(la))) = eds.get(service_name(&c))
        {
            c.endpoints = la.endpoints.clone();
        }
        applied_clusters.push(c.name.clone());
        out_clusters.push(c);
    }
    config.clusters = out_clusters;
    let mut listeners = Vec::new();
    for (_, r) in state.types[&Kind::Listener].resources.values() {
        let Resource::Listener(l) = r else { continue };
        if listener_warm(l, base, state) || expired(state, Kind::Listener, &l.name) {
            listeners.push(l.clone());
        } else if let Some(previous) = state.active_listeners.get(&l.name) {
            listeners.push(previous.clone());
        }
    }
    config.listeners.extend(listeners.iter().cloned());
    for (_, r) in state.types[&Kind::Route].resources.values() {
        if let Resource::Route(rc) = r {
            config.route_configs.push(rc.clone());
        }
    }
    (config, applied_clusters, listeners)
}

/// Applies the assembled configuration and records what is active.
fn refresh(base: &Config, state: &mut State, apply: &dyn Apply) -> Result<(), String> {
    let (config, clusters, listeners) = assemble(base, state);
    apply.apply(config)?;
    state.active_clusters = clusters.into_iter().collect();
    state.active_listeners = listeners.into_iter().map(|l| (l.name.clone(), l)).collect();
    Ok(())
}

fn next_deadline(state: &State) -> Option<Instant> {
    let timeout = state.fetch_timeout;
    if timeout.is_zero() {
        return None;
    }
    let now = Instant::now();
    state
        .first_seen
        .values()
        .chain(std::iter::once(&state.started))
        .map(|t| *t + timeout)
        .filter(|d| *d > now)
        .min()
}

fn check_initialized(state: &mut State, base: &Config, apply: &dyn Apply) {
    if state.initialized {
        return;
    }
    let lds = &state.types[&Kind::Listener];
    let listeners_warm = lds.resources.values().all(|(_, r)| match r {
        Resource::Listener(l) => {
            listener_warm(l, base, state) || expired(state, Kind::Listener, &l.name)
        }
        _ => true,
    });
    if lds.answered && listeners_warm && warming_clusters(base, state).is_empty() {
        state.initialized = true;
        apply.initialized();
    }
}

/// Whether a static resource of the same kind and name exists.
fn is_static(base: &Config, r: &Resource) -> bool {
    match r {
        Resource::Listener(l) => base.listeners.iter().any(|s| s.name == l.name),
        Resource::Cluster(c) => base.clusters.iter().any(|s| s.name == c.name),
        Resource::Route(rc) => base.route_configs.iter().any(|s| s.name == rc.name),
        Resource::Endpoints(_) => false,
    }
}

/// Translates, applies and answers one response.
fn handle(
    update: Update,
    sender: &Sender,
    base: &Config,
    state: &mut State,
    apply: &dyn Apply,
    status: &Status,
) {
    let kind = update.kind;
    let Some(current) = state.types.get(&kind) else {
        return;
    };
    // Decode and translate everything first: one bad resource refuses the
    // whole response.
    let mut errors = Vec::new();
    let mut decoded = Vec::with_capacity(update.resources.len());
    for (name, version, any) in &update.resources {
        match translate::decode(kind.type_url(), any) {
            Ok((decoded_name, resource)) => {
                if !name.is_empty() && *name != decoded_name {
                    errors.push(format!(
                        "resource named {name:?} holds a {} named {decoded_name:?}",
                        kind.short()
                    ));
                } else if is_static(base, &resource) {
                    // As Envoy: static resources cannot be replaced by xDS.
                    errors.push(format!(
                        "{} {decoded_name:?} is defined statically and cannot be changed by {}",
                        kind.short(),
                        kind.short()
                    ));
                } else {
                    decoded.push((decoded_name, version.clone(), resource));
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    // What the type holds if the response is refused: the last accepted
    // state, answered with this nonce.
    let mut rejected = current.clone();
    rejected.nonce = update.nonce.clone();
    rejected.answered = true;
    if errors.is_empty() {
        let mut candidate = rejected.clone();
        if update.complete {
            let keep: BTreeSet<&String> = decoded.iter().map(|(n, _, _)| n).collect();
            candidate.resources.retain(|n, _| keep.contains(n));
        }
        for n in &update.removed {
            candidate.resources.remove(n);
        }
        for (name, version, resource) in decoded {
            let changed = candidate
                .resources
                .get(&name)
                .is_none_or(|(_, old)| *old != resource);
            if changed && matches!(kind, Kind::Cluster | Kind::Listener) {
                state
                    .first_seen
                    .insert((kind, name.clone()), Instant::now());
            }
            candidate.resources.insert(name, (version, resource));
        }
        if !kind.wildcard() {
            // SotW answers for RDS/EDS may carry names we did not ask for.
            candidate
                .resources
                .retain(|n, _| candidate.names.contains(n));
        }
        candidate.version = update.version.clone();
        state.types.insert(kind, candidate);
        match refresh(base, state, apply) {
            Ok(()) => {
                if let Some(t) = state.types.get(&kind) {
                    tracing::info!(r#type = kind.short(), version = %t.version, resources = t.resources.len(), "xDS update applied");
                    status.applied(
                        kind.type_url(),
                        t.version.as_str(),
                        t.resources
                            .iter()
                            .map(|(n, (v, _))| (n.as_str(), v.as_str())),
                    );
                    sender.answer(kind, t, &update.nonce, None);
                }
                metrics::counter!("xds_update_total", "type" => kind.short(), "result" => "ack")
                    .increment(1);
                return;
            }
            Err(e) => errors.push(e),
        }
    }
    state.types.insert(kind, rejected);
    let message = errors.join("; ");
    tracing::warn!(r#type = kind.short(), version = %update.version, error = %message, "xDS update rejected (NACK); keeping the last good configuration");
    status.rejected(kind.type_url(), &update.version, &update.nonce, &message);
    metrics::counter!("xds_update_total", "type" => kind.short(), "result" => "nack").increment(1);
    if let Some(t) = state.types.get(&kind) {
        sender.answer(kind, t, &update.nonce, Some(message));
    }
}

/// Describes the metrics the client records.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "xds_update_total",
        "xDS responses handled, by resource type (CDS, EDS, LDS, RDS) and result (ack, nack)."
    );
    metrics::describe_gauge!(
        "xds_connected",
        "1 while the ADS stream to the control plane is up, else 0."
    );
}
