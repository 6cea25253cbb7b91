//! A test ADS control plane: Legate's own ADS server
//! ([`legate_xds::server`]) on 127.0.0.1, serving one snapshot the test
//! sets to every node, over state-of-the-world and delta streams, and
//! recording every request it receives and every response it sends so
//! tests can assert ACKs and NACKs. (The server's push semantics are
//! documented there.)
//!
//! [`AdsServer::stop`] ends every stream and closes the port;
//! [`AdsServer::restart`] serves again on the same port with the same
//! snapshot and records.
#![allow(dead_code)]

use legate_xds::server::{self, Observer, RequestEvent, ResponseEvent, Snapshot, StaticSource};
use prost::Message;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

pub type Req = RequestEvent;
pub type Sent = ResponseEvent;

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

#[derive(Default)]
struct Records {
    requests: Mutex<Vec<Req>>,
    sent: Mutex<Vec<Sent>>,
}

impl Observer for Records {
    fn request(&self, e: &RequestEvent) {
        self.requests.lock().unwrap().push(e.clone());
    }

    fn response(&self, e: &ResponseEvent) {
        self.sent.lock().unwrap().push(e.clone());
    }
}

/// The test control plane. Dropping it stops it.
pub struct AdsServer {
    pub addr: SocketAddr,
    source: Arc<StaticSource>,
    records: Arc<Records>,
    server: server::AdsServer,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl AdsServer {
    /// Serves on a free 127.0.0.1 port.
    pub async fn start() -> AdsServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let source = Arc::new(StaticSource::default());
        let records = Arc::new(Records::default());
        let server = server::AdsServer::with_observer(source.clone(), records.clone());
        let s = AdsServer {
            addr,
            source,
            records,
            server,
            stop: Mutex::new(None),
        };
        s.serve(listener);
        s
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (tx, rx) = oneshot::channel();
        *self.stop.lock().unwrap() = Some(tx);
        let server = self.server.clone();
        tokio::spawn(async move {
            let _ = server
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await;
        });
    }

    /// Replaces the resources of one type (and pushes to every stream
    /// subscribed to it).
    pub fn set(&self, type_url: &str, version: &str, resources: Vec<(String, Any)>) {
        self.source.update(|s: &mut Snapshot| {
            s.set(
                type_url,
                Some(version),
                resources.iter().map(|(n, a)| (n.clone(), wire(a))),
            )
        });
    }

    /// The per-resource version the server gives `name` of `type_url` now.
    pub fn resource_version(&self, type_url: &str, name: &str) -> Option<String> {
        let snap = self.source.current();
        snap.get(type_url)
            .and_then(|t| t.resources.get(name).map(|r| r.version.clone()))
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Req> {
        self.records.requests.lock().unwrap().clone()
    }

    /// Every response sent so far, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.records.sent.lock().unwrap().clone()
    }

    /// Streams opened so far (across restarts).
    pub fn streams_opened(&self) -> u64 {
        self.server.streams_opened()
    }

    /// Streams open right now.
    pub fn streams_open(&self) -> u64 {
        self.server.proxies().len() as u64
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

    /// Ends every stream and closes the port.
    pub fn stop(&self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
        self.server.close_streams();
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
