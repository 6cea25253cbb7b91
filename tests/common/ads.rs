//! A test ADS control plane: a tonic `AggregatedDiscoveryService` on
//! 127.0.0.1 serving a snapshot the test sets, over state-of-the-world and
//! delta streams, recording every request it receives and every response
//! it sends so tests can assert ACKs and NACKs.
//!
//! - State of the world: on a request (one whose nonce is empty or the
//!   latest sent for its type), and whenever the snapshot changes, a type is
//!   answered if its snapshot version differs from the version last sent on
//!   that stream (or, for named subscriptions, the names changed). A NACK
//!   therefore gets no resend of the version it rejected. Wildcard
//!   subscriptions (no names, or `*`) get every resource, named ones only
//!   the names asked for.
//! - Delta: the stream remembers which version of each resource the client
//!   holds (from `initial_resource_versions`, then from what was sent) and
//!   sends changed resources and `removed_resources`; subscribe and
//!   unsubscribe (and `*`) are honoured. Per-resource versions are a hash of
//!   the resource's bytes.
//!
//! [`AdsServer::stop`] drops every stream and connection and closes the
//! port; [`AdsServer::restart`] serves again on the same port with the same
//! snapshot and records.
#![allow(dead_code)]

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use legate_xds::wire::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
    aggregated_discovery_service_server::{
        AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
    },
};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// `google.protobuf.Any`, wire-identical to the one in the generated types
/// (the test crate does not depend on `prost-types`; see [`wire`]).
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// Packs a message into an [`Any`] with its `type.googleapis.com` URL.
pub fn any<M: prost::Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// Re-decodes a message as another wire-identical type: turns our [`Any`]
/// into the generated code's `prost_types::Any` wherever the target type is
/// inferred (a field, a `Vec` element).
pub fn wire<T: Message + Default>(m: &impl Message) -> T {
    T::decode(m.encode_to_vec().as_slice()).expect("wire-identical types")
}

fn resource_version(a: &Any) -> String {
    let mut h = std::hash::DefaultHasher::new();
    a.type_url.hash(&mut h);
    a.value.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Req {
    /// The stream it came on (numbered from 1, across restarts).
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
#[derive(Clone, Debug)]
pub struct Sent {
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

#[derive(Clone, Default)]
struct TypeSnapshot {
    version: String,
    /// name -> (resource, per-resource version)
    resources: BTreeMap<String, (Any, String)>,
}

#[derive(Default)]
struct Shared {
    snapshot: Mutex<HashMap<String, TypeSnapshot>>,
    requests: Mutex<Vec<Req>>,
    sent: Mutex<Vec<Sent>>,
    next_nonce: AtomicU64,
    next_stream: AtomicU64,
    /// Streams open right now.
    open_streams: AtomicU64,
    /// Bumped on every `set`; stream tasks watch it.
    generation: Mutex<Option<watch::Sender<u64>>>,
    /// Every task of the current incarnation: accept loop, connections,
    /// streams. `stop` aborts them all.
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Shared {
    fn nonce(&self) -> String {
        format!(
            "nonce-{}",
            self.next_nonce.fetch_add(1, Ordering::SeqCst) + 1
        )
    }

    fn type_snapshot(&self, type_url: &str) -> Option<TypeSnapshot> {
        self.snapshot.lock().unwrap().get(type_url).cloned()
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.generation
            .lock()
            .unwrap()
            .get_or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn track(&self, h: AbortHandle) {
        self.tasks.lock().unwrap().push(h);
    }

    fn record(&self, r: Req) {
        self.requests.lock().unwrap().push(r);
    }

    fn record_sent(&self, s: Sent) {
        self.sent.lock().unwrap().push(s);
    }
}

/// The test control plane. Dropping it stops it.
pub struct AdsServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl AdsServer {
    /// Serves on a free 127.0.0.1 port.
    pub async fn start() -> AdsServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = AdsServer {
            addr,
            shared: Arc::default(),
        };
        server.serve(listener);
        server
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let shared = self.shared.clone();
        let svc = AggregatedDiscoveryServiceServer::new(Ads {
            shared: shared.clone(),
        });
        let accept = tokio::spawn({
            let shared = shared.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let svc = svc.clone();
                    let conn = tokio::spawn(async move {
                        let service =
                            hyper::service::service_fn(move |req: http::Request<Incoming>| {
                                let mut svc = svc.clone();
                                async move { tonic::codegen::Service::call(&mut svc, req).await }
                            });
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                    shared.track(conn.abort_handle());
                }
            }
        });
        shared.track(accept.abort_handle());
    }

    /// Replaces the resources of one type (and pushes to every stream
    /// subscribed to it).
    pub fn set(&self, type_url: &str, version: &str, resources: Vec<(String, Any)>) {
        let resources = resources
            .into_iter()
            .map(|(name, a)| {
                let v = resource_version(&a);
                (name, (a, v))
            })
            .collect();
        self.shared.snapshot.lock().unwrap().insert(
            type_url.to_string(),
            TypeSnapshot {
                version: version.to_string(),
                resources,
            },
        );
        if let Some(tx) = self.shared.generation.lock().unwrap().as_ref() {
            tx.send_modify(|g| *g += 1);
        }
    }

    /// The per-resource version the server gives `name` of `type_url` now.
    pub fn resource_version(&self, type_url: &str, name: &str) -> Option<String> {
        self.shared
            .type_snapshot(type_url)
            .and_then(|t| t.resources.get(name).map(|(_, v)| v.clone()))
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Req> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every response sent so far, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.shared.sent.lock().unwrap().clone()
    }

    /// Streams opened so far (across restarts).
    pub fn streams_opened(&self) -> u64 {
        self.shared.next_stream.load(Ordering::SeqCst)
    }

    /// Streams open right now.
    pub fn streams_open(&self) -> u64 {
        self.shared.open_streams.load(Ordering::SeqCst)
    }

    /// Requests that answered a response carrying `version` of `type_url`
    /// (by nonce), with the response.
    fn replies_to(&self, type_url: &str, version: &str) -> Vec<Req> {
        let nonces: BTreeSet<String> = self
            .sent()
            .into_iter()
            .filter(|s| s.type_url == type_url && s.version == version)
            .map(|s| s.nonce)
            .collect();
        self.requests()
            .into_iter()
            .filter(|r| r.type_url == type_url && nonces.contains(&r.nonce))
            .collect()
    }

    /// Whether the client ACKed a response carrying `version` of `type_url`.
    pub fn acked(&self, type_url: &str, version: &str) -> bool {
        self.replies_to(type_url, version)
            .iter()
            .any(|r| r.error.is_none())
    }

    /// The NACK of a response carrying `version` of `type_url`, if any.
    pub fn nack(&self, type_url: &str, version: &str) -> Option<Req> {
        self.replies_to(type_url, version)
            .into_iter()
            .find(|r| r.error.is_some())
    }

    /// Drops every stream and connection and closes the port.
    pub fn stop(&self) {
        for t in self.shared.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Serves again on the same port (after [`stop`](Self::stop)).
    pub async fn restart(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("rebinding {}: {e}; retrying", self.addr);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot rebind the ADS port {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

impl Drop for AdsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Ads {
    shared: Arc<Shared>,
}

/// Decrements the open-stream count when a stream task ends (or is aborted).
struct OpenStream(Arc<Shared>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ads {
    fn open_stream(&self) -> (u64, OpenStream) {
        let id = self.shared.next_stream.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.open_streams.fetch_add(1, Ordering::SeqCst);
        (id, OpenStream(self.shared.clone()))
    }
}

#[tonic::codegen::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: tonic::Request<Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (id, open) = self.open_stream();
        let (tx, rx) = mpsc::channel(64);
        let mut stream = SotwStream {
            id,
            shared: self.shared.clone(),
            tx,
            node_id: String::new(),
            types: BTreeMap::new(),
        };
        let inbound = request.into_inner();
        let task = tokio::spawn(async move {
            let _open = open;
            stream.run(inbound).await;
        });
        self.shared.track(task.abort_handle());
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let (id, open) = self.open_stream();
        let (tx, rx) = mpsc::channel(64);
        let mut stream = DeltaStream {
            id,
            shared: self.shared.clone(),
            tx,
            node_id: String::new(),
            types: BTreeMap::new(),
        };
        let inbound = request.into_inner();
        let task = tokio::spawn(async move {
            let _open = open;
            stream.run(inbound).await;
        });
        self.shared.track(task.abort_handle());
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

fn is_wildcard(names: &[String]) -> bool {
    names.is_empty() || names.iter().any(|n| n == "*")
}

/// One state-of-the-world stream's view of one type.
#[derive(Default)]
struct SotwType {
    /// The names the client asks for now.
    names: Vec<String>,
    /// The nonce of the latest response sent.
    nonce: Option<String>,
    /// The version the client holds or was last sent.
    version: Option<String>,
    /// The names asked for when the latest response was sent.
    sent_names: Option<Vec<String>>,
}

struct SotwStream {
    id: u64,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    node_id: String,
    types: BTreeMap<String, SotwType>,
}

impl SotwStream {
    async fn run(&mut self, mut inbound: Streaming<DiscoveryRequest>) {
        let mut generation = self.shared.watch();
        loop {
            tokio::select! {
                msg = inbound.next() => match msg {
                    Some(Ok(req)) => {
                        if !self.on_request(req).await {
                            return;
                        }
                    }
                    _ => return,
                },
                changed = generation.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let urls: Vec<String> = self.types.keys().cloned().collect();
                    for url in urls {
                        if !self.respond_if_needed(&url).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    async fn on_request(&mut self, req: DiscoveryRequest) -> bool {
        if let Some(node) = &req.node
            && self.node_id.is_empty()
        {
            self.node_id = node.id.clone();
        }
        self.shared.record(Req {
            stream: self.id,
            delta: false,
            node_id: self.node_id.clone(),
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
        t.names = req.resource_names.clone();
        if first && !req.version_info.is_empty() {
            // A new stream: the client already holds this version.
            t.version = Some(req.version_info.clone());
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

    /// Sends the type if the snapshot version changed since the client's
    /// version, or (named subscriptions) the names asked for changed.
    /// Returns false once the stream is gone.
    async fn respond_if_needed(&mut self, type_url: &str) -> bool {
        let Some(snap) = self.shared.type_snapshot(type_url) else {
            return true;
        };
        let t = self.types.get_mut(type_url).expect("subscribed");
        let wildcard = is_wildcard(&t.names);
        let version_changed = t.version.as_deref() != Some(snap.version.as_str());
        let names_changed = !wildcard && t.sent_names.as_ref() != Some(&t.names);
        if !wildcard && t.names.is_empty() {
            return true;
        }
        if !(version_changed || names_changed) {
            return true;
        }
        let nonce = self.shared.nonce();
        let chosen: Vec<(&String, &(Any, String))> = snap
            .resources
            .iter()
            .filter(|(n, _)| wildcard || t.names.contains(n))
            .collect();
        let resp = DiscoveryResponse {
            version_info: snap.version.clone(),
            resources: chosen.iter().map(|(_, (a, _))| wire(a)).collect(),
            type_url: type_url.to_string(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        t.nonce = Some(nonce.clone());
        t.version = Some(snap.version.clone());
        t.sent_names = Some(t.names.clone());
        self.shared.record_sent(Sent {
            stream: self.id,
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
    id: u64,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
    node_id: String,
    types: BTreeMap<String, DeltaType>,
}

impl DeltaStream {
    async fn run(&mut self, mut inbound: Streaming<DeltaDiscoveryRequest>) {
        let mut generation = self.shared.watch();
        loop {
            tokio::select! {
                msg = inbound.next() => match msg {
                    Some(Ok(req)) => {
                        if !self.on_request(req).await {
                            return;
                        }
                    }
                    _ => return,
                },
                changed = generation.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let urls: Vec<String> = self.types.keys().cloned().collect();
                    for url in urls {
                        if !self.respond_if_needed(&url).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    async fn on_request(&mut self, req: DeltaDiscoveryRequest) -> bool {
        if let Some(node) = &req.node
            && self.node_id.is_empty()
        {
            self.node_id = node.id.clone();
        }
        self.shared.record(Req {
            stream: self.id,
            delta: true,
            node_id: self.node_id.clone(),
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
        let t = self.types.entry(req.type_url.clone()).or_default();
        if first {
            t.held = req
                .initial_resource_versions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            // Legacy wildcard: a first request subscribing to nothing.
            if req.resource_names_subscribe.is_empty() {
                t.wildcard = true;
            }
        }
        for n in &req.resource_names_subscribe {
            if n == "*" {
                t.wildcard = true;
            } else {
                t.names.insert(n.clone());
            }
        }
        for n in &req.resource_names_unsubscribe {
            if n == "*" {
                t.wildcard = false;
            } else {
                t.names.remove(n);
            }
        }
        if !t.wildcard {
            let names = t.names.clone();
            t.held.retain(|n, _| names.contains(n));
        }
        self.respond_if_needed(&req.type_url).await
    }

    /// Sends what the client lacks or holds stale, and what it holds that is
    /// gone. Returns false once the stream is gone.
    async fn respond_if_needed(&mut self, type_url: &str) -> bool {
        let Some(snap) = self.shared.type_snapshot(type_url) else {
            return true;
        };
        let t = self.types.get_mut(type_url).expect("subscribed");
        let wanted = |n: &String| t.wildcard || t.names.contains(n);
        let changed: Vec<(String, Any, String)> = snap
            .resources
            .iter()
            .filter(|(n, (_, v))| wanted(n) && t.held.get(*n) != Some(v))
            .map(|(n, (a, v))| (n.clone(), a.clone(), v.clone()))
            .collect();
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
        for (n, _, v) in &changed {
            t.held.insert(n.clone(), v.clone());
        }
        for n in &removed {
            t.held.remove(n);
        }
        let nonce = self.shared.nonce();
        let resp = DeltaDiscoveryResponse {
            system_version_info: snap.version.clone(),
            resources: changed
                .iter()
                .map(|(n, a, v)| Resource {
                    name: n.clone(),
                    version: v.clone(),
                    resource: Some(wire(a)),
                    ..Default::default()
                })
                .collect(),
            type_url: type_url.to_string(),
            removed_resources: removed.clone(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        self.shared.record_sent(Sent {
            stream: self.id,
            delta: true,
            type_url: type_url.to_string(),
            version: snap.version.clone(),
            nonce,
            names: changed.into_iter().map(|(n, _, _)| n).collect(),
            removed,
        });
        self.tx.send(Ok(resp)).await.is_ok()
    }
}
