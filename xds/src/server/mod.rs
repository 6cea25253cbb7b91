//! The ADS server: `AggregatedDiscoveryService` over state of the world and
//! delta on one port, serving each proxy the [`Snapshot`] its
//! [`SnapshotSource`] computes for its `Node`.
//!
//! - State of the world: a type is answered when the client first asks for
//!   it, and whenever the snapshot's version of that type differs from the
//!   version last sent on the stream (or, for named subscriptions, the
//!   names asked for changed). Requests answering an older response are
//!   superseded by the one answering the latest, and a NACK gets no resend
//!   of the version it rejected. Wildcard subscriptions (no names, or `*`)
//!   get every resource, named ones only the names asked for.
//! - Delta: the stream remembers which version of each resource the client
//!   holds (from `initial_resource_versions`, then from what was sent) and
//!   sends only changed resources and `removed_resources`; subscribe,
//!   unsubscribe and `*` are honoured.
//! - The source says when snapshots may have changed ([`SnapshotSource::changes`]);
//!   every stream then asks for its node's snapshot again and pushes what
//!   differs, so a proxy whose resources did not change gets nothing.
//!
//! [`AdsServer::proxies`] lists the connected proxies with what each was
//! sent, ACKed and NACKed (the control plane's `/proxies`); an optional
//! [`Observer`] sees every request and response.

use crate::wire::envoy::config::core::v3::Node;
use crate::wire::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
    aggregated_discovery_service_server::{
        AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
    },
};
use prost_types::Any;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};

/// One resource of a snapshot with its version.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned {
    /// Shared by every snapshot that has it.
    pub resource: Arc<Any>,
    /// The per-resource version (delta): a hash of the encoded resource, so
    /// the same resource has the same version across control-plane restarts.
    pub version: String,
}

/// Every resource of one type in a snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypeResources {
    /// The type's version (state of the world `version_info`, delta
    /// `system_version_info`).
    pub version: String,
    pub resources: BTreeMap<String, Versioned>,
}

/// What one proxy is served: resources by type URL.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    types: BTreeMap<String, TypeResources>,
}

/// FNV-1a: a stable hash (unlike std's), so versions survive restarts.
fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// A type's version: a hash of every resource's name and version, so it
/// changes exactly when some resource of the type does.
fn type_version(resources: &BTreeMap<String, Versioned>) -> String {
    let h = resources.iter().fold(FNV_OFFSET, |h, (n, r)| {
        fnv(fnv(fnv(h, n.as_bytes()), &[0]), r.version.as_bytes())
    });
    format!("{h:016x}")
}

impl Snapshot {
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    /// Sets the resources of `type_url`. The type's version is `version`,
    /// or (`None`) a hash of every resource's name and version, so it
    /// changes exactly when some resource of the type does.
    pub fn set(
        &mut self,
        type_url: &str,
        version: Option<&str>,
        resources: impl IntoIterator<Item = (String, Any)>,
    ) {
        let resources: BTreeMap<String, Versioned> = resources
            .into_iter()
            .map(|(name, resource)| {
                let h = fnv(
                    fnv(FNV_OFFSET, resource.type_url.as_bytes()),
                    &resource.value,
                );
                let version = format!("{h:016x}");
                let resource = Arc::new(resource);
                (name, Versioned { resource, version })
            })
            .collect();
        let version = match version {
            Some(v) => v.to_string(),
            None => type_version(&resources),
        };
        self.types
            .insert(type_url.to_string(), TypeResources { version, resources });
    }

    /// This snapshot with `other`'s resources added (`other` wins on a
    /// name both have); type versions are worked out again.
    pub fn merge(&self, other: &Snapshot) -> Snapshot {
        let mut types = self.types.clone();
        for (url, t) in &other.types {
            let entry = types.entry(url.clone()).or_default();
            entry
                .resources
                .extend(t.resources.iter().map(|(n, r)| (n.clone(), r.clone())));
        }
        for t in types.values_mut() {
            t.version = type_version(&t.resources);
        }
        Snapshot { types }
    }

    pub fn get(&self, type_url: &str) -> Option<&TypeResources> {
        self.types.get(type_url)
    }
}

/// Where the server gets each proxy's resources.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The resources for `node` now.
    fn snapshot(&self, node: &Node) -> Arc<Snapshot>;
    /// Changes whenever any snapshot may have changed.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// A request the server received.
#[derive(Clone, Debug, Serialize)]
pub struct RequestEvent {
    /// The stream it came on (numbered from 1).
    pub stream: u64,
    pub delta: bool,
    /// The node id of the stream (from its first request that had a node).
    pub node_id: String,
    pub type_url: String,
    /// State of the world: `version_info`. Delta: empty.
    pub version_info: String,
    pub nonce: String,
    /// `error_detail.message` of a NACK.
    pub error: Option<String>,
    /// State of the world: `resource_names`. Delta: `resource_names_subscribe`.
    pub names: Vec<String>,
    /// Delta: `resource_names_unsubscribe`.
    pub unsubscribe: Vec<String>,
    /// Delta: `initial_resource_versions`.
    pub initial_versions: BTreeMap<String, String>,
}

/// A response the server sent.
#[derive(Clone, Debug, Serialize)]
pub struct ResponseEvent {
    pub stream: u64,
    pub delta: bool,
    pub type_url: String,
    /// `version_info` (delta: `system_version_info`).
    pub version: String,
    pub nonce: String,
    /// Names of the resources carried.
    pub names: Vec<String>,
    /// Delta: `removed_resources`.
    pub removed: Vec<String>,
}

/// Sees every request and response (tests, debugging).
pub trait Observer: Send + Sync + 'static {
    fn request(&self, _event: &RequestEvent) {}
    fn response(&self, _event: &ResponseEvent) {}
}

/// One connected proxy, as `/proxies` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ProxyStatus {
    pub stream: u64,
    pub node_id: String,
    /// `sotw` or `delta`.
    pub api: &'static str,
    /// By short type name (`Listener`, `Cluster`, ...).
    pub types: BTreeMap<String, TypeStatus>,
}

/// Where one proxy stands on one type.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TypeStatus {
    /// The version of the latest response sent.
    pub sent: Option<String>,
    /// The version of the latest response the proxy ACKed.
    pub acked: Option<String>,
    /// The error of the proxy's latest NACK, cleared by an ACK.
    pub nack: Option<String>,
    #[serde(skip)]
    pending_nonce: Option<String>,
}

impl TypeStatus {
    /// The proxy holds what it was last sent.
    pub fn in_sync(&self) -> bool {
        self.sent.is_some() && self.sent == self.acked
    }
}

fn short_type(type_url: &str) -> String {
    type_url.rsplit('.').next().unwrap_or(type_url).to_string()
}

struct Inner {
    source: Arc<dyn SnapshotSource>,
    observer: Option<Arc<dyn Observer>>,
    next_nonce: AtomicU64,
    next_stream: AtomicU64,
    proxies: Mutex<BTreeMap<u64, ProxyStatus>>,
    /// Bumped by [`AdsServer::close_streams`]; streams end when it changes.
    epoch: watch::Sender<u64>,
}

impl Inner {
    fn nonce(&self) -> String {
        (self.next_nonce.fetch_add(1, Ordering::Relaxed) + 1).to_string()
    }

    fn proxies(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ProxyStatus>> {
        // A panic elsewhere while holding the lock leaves plain data behind.
        self.proxies.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_request(&self, e: RequestEvent) {
        let acked = {
            let mut proxies = self.proxies();
            let Some(p) = proxies.get_mut(&e.stream) else {
                return;
            };
            if p.node_id.is_empty() {
                p.node_id = e.node_id.clone();
            }
            let t = p.types.entry(short_type(&e.type_url)).or_default();
            let answers_latest =
                !e.nonce.is_empty() && t.pending_nonce.as_deref() == Some(&*e.nonce);
            if answers_latest {
                t.pending_nonce = None;
                match &e.error {
                    None => {
                        t.acked = t.sent.clone();
                        t.nack = None;
                    }
                    Some(err) => t.nack = Some(err.clone()),
                }
            }
            answers_latest.then_some(e.error.is_none())
        };
        match acked {
            Some(true) => {
                metrics::counter!("legate_xds_server_acks_total", "type" => short_type(&e.type_url))
                    .increment(1)
            }
            Some(false) => {
                metrics::counter!("legate_xds_server_nacks_total", "type" => short_type(&e.type_url))
                    .increment(1);
                tracing::warn!(
                    node = %e.node_id,
                    type_url = %e.type_url,
                    error = e.error.as_deref().unwrap_or_default(),
                    "proxy rejected (NACKed) its configuration"
                );
            }
            None => {}
        }
        if let Some(o) = &self.observer {
            o.request(&e);
        }
    }

    fn on_response(&self, e: ResponseEvent) {
        if let Some(p) = self.proxies().get_mut(&e.stream) {
            let t = p.types.entry(short_type(&e.type_url)).or_default();
            t.sent = Some(e.version.clone());
            t.pending_nonce = Some(e.nonce.clone());
        }
        metrics::counter!("legate_xds_server_responses_total", "type" => short_type(&e.type_url))
            .increment(1);
        if let Some(o) = &self.observer {
            o.response(&e);
        }
    }
}

/// The ADS server. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct AdsServer {
    inner: Arc<Inner>,
}

impl AdsServer {
    pub fn new(source: Arc<dyn SnapshotSource>) -> AdsServer {
        AdsServer::build(source, None)
    }

    pub fn with_observer(
        source: Arc<dyn SnapshotSource>,
        observer: Arc<dyn Observer>,
    ) -> AdsServer {
        AdsServer::build(source, Some(observer))
    }

    fn build(source: Arc<dyn SnapshotSource>, observer: Option<Arc<dyn Observer>>) -> AdsServer {
        AdsServer {
            inner: Arc::new(Inner {
                source,
                observer,
                next_nonce: AtomicU64::new(0),
                next_stream: AtomicU64::new(0),
                proxies: Mutex::new(BTreeMap::new()),
                epoch: watch::channel(0).0,
            }),
        }
    }

    /// The tonic service, to add to a `tonic::transport::Server`.
    pub fn service(&self) -> AggregatedDiscoveryServiceServer<AdsServer> {
        AggregatedDiscoveryServiceServer::new(self.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(usize::MAX)
    }

    /// A gRPC server carrying the ADS service; more services may be added
    /// (the control plane adds registration).
    pub fn router(&self) -> tonic::transport::server::Router {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .add_service(self.service())
    }

    /// Serves ADS alone on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        self.serve_router(self.router(), listener, shutdown).await
    }

    /// Serves `router` (from [`AdsServer::router`]) on `listener` until
    /// `shutdown` completes; then ends every stream (clients reconnect
    /// elsewhere or later) and returns.
    pub async fn serve_router(
        &self,
        router: tonic::transport::server::Router,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let this = self.clone();
        let shutdown = async move {
            shutdown.await;
            this.close_streams();
        };
        router
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                shutdown,
            )
            .await
    }

    /// Ends every open stream.
    pub fn close_streams(&self) {
        self.inner.epoch.send_modify(|e| *e += 1);
    }

    /// The proxies connected now, by stream.
    pub fn proxies(&self) -> Vec<ProxyStatus> {
        self.inner.proxies().values().cloned().collect()
    }

    /// Streams opened so far.
    pub fn streams_opened(&self) -> u64 {
        self.inner.next_stream.load(Ordering::SeqCst)
    }

    fn open(&self, delta: bool) -> StreamBase {
        let id = self.inner.next_stream.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.proxies().insert(
            id,
            ProxyStatus {
                stream: id,
                node_id: String::new(),
                api: if delta { "delta" } else { "sotw" },
                types: BTreeMap::new(),
            },
        );
        metrics::gauge!("legate_xds_server_connected_proxies").increment(1.0);
        StreamBase {
            id,
            inner: self.inner.clone(),
            node: None,
            snapshot: Arc::new(Snapshot::new()),
        }
    }
}

/// Registers the server's metric descriptions.
pub fn describe_metrics() {
    metrics::describe_gauge!(
        "legate_xds_server_connected_proxies",
        "ADS streams open now."
    );
    metrics::describe_counter!(
        "legate_xds_server_responses_total",
        "Discovery responses sent, by resource type."
    );
    metrics::describe_counter!(
        "legate_xds_server_acks_total",
        "Discovery responses proxies accepted (ACKed), by resource type."
    );
    metrics::describe_counter!(
        "legate_xds_server_nacks_total",
        "Discovery responses proxies rejected (NACKed), by resource type."
    );
}

/// A response stream fed by a channel.
pub struct RxStream<T>(mpsc::Receiver<T>);

impl<T> futures_core::Stream for RxStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = RxStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = RxStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: tonic::Request<Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let mut stream = SotwStream {
            base: self.open(false),
            tx,
            types: BTreeMap::new(),
        };
        let inbound = request.into_inner();
        tokio::spawn(async move { run(&mut stream, inbound).await });
        Ok(tonic::Response::new(RxStream(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let mut stream = DeltaStream {
            base: self.open(true),
            tx,
            types: BTreeMap::new(),
        };
        let inbound = request.into_inner();
        tokio::spawn(async move { run(&mut stream, inbound).await });
        Ok(tonic::Response::new(RxStream(rx)))
    }
}

/// What both stream kinds share: identity, node, current snapshot.
struct StreamBase {
    id: u64,
    inner: Arc<Inner>,
    node: Option<Node>,
    snapshot: Arc<Snapshot>,
}

impl Drop for StreamBase {
    fn drop(&mut self) {
        self.inner.proxies().remove(&self.id);
        metrics::gauge!("legate_xds_server_connected_proxies").decrement(1.0);
    }
}

impl StreamBase {
    /// Takes the node from the stream's first request (which must carry
    /// it; one that does not is served as an empty node).
    fn learn_node(&mut self, node: &Option<Node>) {
        if self.node.is_none() {
            self.node = Some(node.clone().unwrap_or_default());
            self.refresh();
        }
    }

    fn refresh(&mut self) {
        if let Some(n) = &self.node {
            self.snapshot = self.inner.source.snapshot(n);
        }
    }

    fn node_id(&self) -> String {
        self.node.as_ref().map(|n| n.id.clone()).unwrap_or_default()
    }
}

/// What a stream's loop waits for.
enum Wake<T> {
    Request(T),
    Changed,
    End,
}

async fn next_wake<T>(
    inbound: &mut Streaming<T>,
    changes: &mut watch::Receiver<u64>,
    epoch: &mut watch::Receiver<u64>,
) -> Wake<T> {
    tokio::select! {
        msg = inbound.message() => match msg {
            Ok(Some(req)) => Wake::Request(req),
            _ => Wake::End,
        },
        changed = changes.changed() => match changed {
            Ok(()) => Wake::Changed,
            Err(_) => Wake::End,
        },
        _ = epoch.changed() => Wake::End,
    }
}

fn is_wildcard(names: &BTreeSet<String>) -> bool {
    names.is_empty() || names.contains("*")
}

/// What the two stream kinds do with a request and with a push.
trait AdsStream {
    type Request: Send + 'static;
    fn base(&mut self) -> &mut StreamBase;
    fn type_urls(&self) -> Vec<String>;
    /// Handles a request; false once the stream is gone.
    fn on_request(&mut self, req: Self::Request) -> impl Future<Output = bool> + Send;
    /// Pushes the type if the client needs it; false once the stream is
    /// gone.
    fn respond_if_needed(&mut self, type_url: &str) -> impl Future<Output = bool> + Send;
}

/// Serves one stream: its requests, and every change of its snapshot,
/// until the client leaves or the server closes the streams.
async fn run<S: AdsStream>(stream: &mut S, mut inbound: Streaming<S::Request>)
where
    Streaming<S::Request>: Send,
{
    let (mut changes, mut epoch) = {
        let inner = &stream.base().inner;
        (inner.source.changes(), inner.epoch.subscribe())
    };
    loop {
        match next_wake(&mut inbound, &mut changes, &mut epoch).await {
            Wake::Request(req) => {
                if !stream.on_request(req).await {
                    return;
                }
            }
            Wake::Changed => {
                stream.base().refresh();
                for url in stream.type_urls() {
                    if !stream.respond_if_needed(&url).await {
                        return;
                    }
                }
            }
            Wake::End => return,
        }
    }
}

/// One state-of-the-world stream's view of one type.
#[derive(Default)]
struct SotwType {
    /// The names the client asks for now.
    names: BTreeSet<String>,
    /// The nonce of the latest response sent.
    nonce: Option<String>,
    /// The version the client holds or was last sent.
    version: Option<String>,
    /// The names asked for when the latest response was sent.
    sent_names: Option<BTreeSet<String>>,
}

struct SotwStream {
    base: StreamBase,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    types: BTreeMap<String, SotwType>,
}

impl AdsStream for SotwStream {
    type Request = DiscoveryRequest;

    fn base(&mut self) -> &mut StreamBase {
        &mut self.base
    }

    fn type_urls(&self) -> Vec<String> {
        self.types.keys().cloned().collect()
    }

    async fn on_request(&mut self, req: DiscoveryRequest) -> bool {
        self.base.learn_node(&req.node);
        self.base.inner.on_request(RequestEvent {
            stream: self.base.id,
            delta: false,
            node_id: self.base.node_id(),
            type_url: req.type_url.clone(),
            version_info: req.version_info.clone(),
            nonce: req.response_nonce.clone(),
            error: req.error_detail.as_ref().map(|e| e.message.clone()),
            names: req.resource_names.clone(),
            unsubscribe: Vec::new(),
            initial_versions: BTreeMap::new(),
        });
        let first = !self.types.contains_key(&req.type_url);
        let t = self.types.entry(req.type_url.clone()).or_default();
        t.names = req.resource_names.into_iter().collect();
        if first && !req.version_info.is_empty() {
            // A new stream: the client already holds this version.
            t.version = Some(req.version_info);
        }
        // Requests answering an older response are superseded by the one
        // that will answer the latest.
        let stale = match &t.nonce {
            Some(n) => !req.response_nonce.is_empty() && req.response_nonce != *n,
            None => false,
        };
        if stale {
            return true;
        }
        self.respond_if_needed(&req.type_url).await
    }

    /// Sends the type if its version changed since the client's, or (named
    /// subscriptions) the names asked for changed. Returns false once the
    /// stream is gone.
    async fn respond_if_needed(&mut self, type_url: &str) -> bool {
        let snapshot = self.base.snapshot.clone();
        let Some(snap) = snapshot.get(type_url) else {
            return true;
        };
        let Some(t) = self.types.get_mut(type_url) else {
            return true;
        };
        let wildcard = is_wildcard(&t.names);
        let version_changed = t.version.as_deref() != Some(snap.version.as_str());
        let names_changed = !wildcard && t.sent_names.as_ref() != Some(&t.names);
        if !(version_changed || names_changed) {
            return true;
        }
        let chosen: Vec<(&String, &Versioned)> = if wildcard {
            snap.resources.iter().collect()
        } else {
            t.names
                .iter()
                .filter_map(|n| snap.resources.get_key_value(n))
                .collect()
        };
        let nonce = self.base.inner.nonce();
        let resp = DiscoveryResponse {
            version_info: snap.version.clone(),
            resources: chosen
                .iter()
                .map(|(_, r)| Any::clone(&r.resource))
                .collect(),
            type_url: type_url.to_string(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        t.nonce = Some(nonce.clone());
        t.version = Some(snap.version.clone());
        t.sent_names = Some(t.names.clone());
        self.base.inner.on_response(ResponseEvent {
            stream: self.base.id,
            delta: false,
            type_url: type_url.to_string(),
            version: snap.version.clone(),
            nonce,
            names: chosen.iter().map(|(n, _)| (*n).clone()).collect(),
            removed: Vec::new(),
        });
        self.tx.send(Ok(resp)).await.is_ok()
    }
}

/// One delta stream's view of one type.
#[derive(Default)]
struct DeltaType {
    wildcard: bool,
    names: BTreeSet<String>,
    /// name -> version the client holds (as far as the server knows).
    held: BTreeMap<String, String>,
    /// Whether anything was sent for this type on this stream yet.
    answered: bool,
}

struct DeltaStream {
    base: StreamBase,
    tx: mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
    types: BTreeMap<String, DeltaType>,
}

impl AdsStream for DeltaStream {
    type Request = DeltaDiscoveryRequest;

    fn base(&mut self) -> &mut StreamBase {
        &mut self.base
    }

    fn type_urls(&self) -> Vec<String> {
        self.types.keys().cloned().collect()
    }

    async fn on_request(&mut self, req: DeltaDiscoveryRequest) -> bool {
        self.base.learn_node(&req.node);
        self.base.inner.on_request(RequestEvent {
            stream: self.base.id,
            delta: true,
            node_id: self.base.node_id(),
            type_url: req.type_url.clone(),
            version_info: String::new(),
            nonce: req.response_nonce.clone(),
            error: req.error_detail.as_ref().map(|e| e.message.clone()),
            names: req.resource_names_subscribe.clone(),
            unsubscribe: req.resource_names_unsubscribe.clone(),
            initial_versions: req
                .initial_resource_versions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
        let first = !self.types.contains_key(&req.type_url);
        // An ACK or NACK changes no subscription: nothing new to send (a
        // NACKed version is not sent again; a new snapshot is pushed when
        // it comes).
        let answer_only = !first
            && req.resource_names_subscribe.is_empty()
            && req.resource_names_unsubscribe.is_empty();
        let t = self.types.entry(req.type_url.clone()).or_default();
        if first {
            t.held = req.initial_resource_versions.into_iter().collect();
            // Legacy wildcard: a first request subscribing to nothing.
            if req.resource_names_subscribe.is_empty() {
                t.wildcard = true;
            }
        }
        for n in req.resource_names_subscribe {
            if n == "*" {
                t.wildcard = true;
            } else {
                t.names.insert(n);
            }
        }
        for n in &req.resource_names_unsubscribe {
            if n == "*" {
                t.wildcard = false;
            } else {
                t.names.remove(n);
            }
        }
        if answer_only {
            return true;
        }
        if !t.wildcard {
            let names = &t.names;
            t.held.retain(|n, _| names.contains(n));
        }
        self.respond_if_needed(&req.type_url).await
    }

    /// Sends what the client lacks or holds stale, and what it holds that is
    /// gone. Returns false once the stream is gone.
    async fn respond_if_needed(&mut self, type_url: &str) -> bool {
        let snapshot = self.base.snapshot.clone();
        // A type the source has nothing for (not even an empty set) is not
        // answered yet, as in state of the world.
        let Some(snap) = snapshot.get(type_url) else {
            return true;
        };
        let Some(t) = self.types.get_mut(type_url) else {
            return true;
        };
        let stale = |(n, r): &(&String, &Versioned)| t.held.get(*n) != Some(&r.version);
        let changed: Vec<(&String, &Versioned)> = if t.wildcard {
            snap.resources.iter().filter(stale).collect()
        } else {
            t.names
                .iter()
                .filter_map(|n| snap.resources.get_key_value(n))
                .filter(stale)
                .collect()
        };
        let removed: Vec<String> = t
            .held
            .keys()
            .filter(|n| !snap.resources.contains_key(*n))
            .cloned()
            .collect();
        // A first wildcard request is answered even when there is nothing
        // new, so the client knows it has everything.
        let initial = t.wildcard && !t.answered;
        if changed.is_empty() && removed.is_empty() && !initial {
            return true;
        }
        t.answered = true;
        for (n, r) in &changed {
            t.held.insert((*n).clone(), r.version.clone());
        }
        for n in &removed {
            t.held.remove(n);
        }
        let nonce = self.base.inner.nonce();
        let resp = DeltaDiscoveryResponse {
            system_version_info: snap.version.clone(),
            resources: changed
                .iter()
                .map(|(n, r)| Resource {
                    name: (*n).clone(),
                    version: r.version.clone(),
                    resource: Some(Any::clone(&r.resource)),
                    ..Default::default()
                })
                .collect(),
            type_url: type_url.to_string(),
            removed_resources: removed.clone(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        self.base.inner.on_response(ResponseEvent {
            stream: self.base.id,
            delta: true,
            type_url: type_url.to_string(),
            version: snap.version.clone(),
            nonce,
            names: changed.into_iter().map(|(n, _)| n.clone()).collect(),
            removed,
        });
        self.tx.send(Ok(resp)).await.is_ok()
    }
}

/// A [`SnapshotSource`] serving the same snapshot to every node, replaced
/// whole with [`StaticSource::set`] (tests, simple setups).
pub struct StaticSource {
    snapshot: Mutex<Arc<Snapshot>>,
    changes: watch::Sender<u64>,
}

impl Default for StaticSource {
    fn default() -> Self {
        StaticSource {
            snapshot: Mutex::new(Arc::new(Snapshot::new())),
            changes: watch::channel(0).0,
        }
    }
}

impl StaticSource {
    /// Changes one type of the snapshot.
    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut guard = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = Snapshot::clone(&guard);
        f(&mut next);
        *guard = Arc::new(next);
        drop(guard);
        self.changes.send_modify(|g| *g += 1);
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl SnapshotSource for StaticSource {
    fn snapshot(&self, _node: &Node) -> Arc<Snapshot> {
        self.current()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
