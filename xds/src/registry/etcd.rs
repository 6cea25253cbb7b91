//! Registrations stored in etcd (v3 gRPC API), so that several control
//! plane replicas serve the same registry.
//!
//! Each registration is one key, `/legate/registry/v1/<id>`, holding JSON
//! with the workload, its TTL and the wall-clock time of its last
//! heartbeat. Every replica writes what its clients tell it and watches
//! the prefix for what others wrote; health (TTL passed or not) is worked
//! out by each replica from the last heartbeat time, so replicas agree as
//! far as their clocks do. Heartbeats are writes (one per workload per
//! heartbeat interval). A replica that reaps a silent registration deletes
//! its key; a heartbeat racing that delete gets NOT_FOUND and the workload
//! registers again.

use crate::wire::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest,
    kv_client::KvClient, watch_client::WatchClient, watch_request::RequestUnion,
};
use crate::wire::mvccpb::event::EventType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// The key prefix of every registration.
pub const PREFIX: &str = "/legate/registry/v1/";

/// A registration as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub service: String,
    pub namespace: String,
    pub address: std::net::SocketAddr,
    pub service_port: u16,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub weight: u32,
    pub ttl_ms: u64,
    /// Milliseconds since the Unix epoch.
    pub last_beat_ms: u64,
}

/// A change another replica (or this one) made.
#[derive(Debug)]
pub enum Change {
    Put(String, Stored),
    Delete(String),
}

/// The etcd connection.
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
    url: String,
}

/// The end of the prefix range: the prefix with its last byte incremented.
fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

fn key(id: &str) -> Vec<u8> {
    format!("{PREFIX}{id}").into_bytes()
}

fn id_of(key: &[u8]) -> Option<String> {
    std::str::from_utf8(key)
        .ok()?
        .strip_prefix(PREFIX)
        .map(str::to_string)
}

/// The request side of the watch stream.
struct Requests(mpsc::Receiver<WatchRequest>);

impl futures_core::Stream for Requests {
    type Item = WatchRequest;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchRequest>> {
        self.0.poll_recv(cx)
    }
}

impl EtcdStore {
    /// `etcd://host:port` (or `http://host:port`). Connects lazily.
    pub fn new(url: &str) -> Result<EtcdStore, String> {
        let addr = url
            .strip_prefix("etcd://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| format!("registry {url:?}: expected etcd://host:port"))?;
        if addr.is_empty() || addr.contains(',') {
            return Err(format!(
                "registry {url:?}: give one etcd endpoint as etcd://host:port"
            ));
        }
        let channel = crate::client::endpoint(addr)
            .map_err(|e| format!("registry {url:?}: {e}"))?
            .connect_lazy();
        Ok(EtcdStore {
            kv: KvClient::new(channel.clone()),
            watch: WatchClient::new(channel),
            url: url.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn put(&self, id: &str, s: &Stored) -> Result<(), String> {
        let value = serde_json::to_vec(s).map_err(|e| e.to_string())?;
        self.kv
            .clone()
            .put(PutRequest {
                key: key(id),
                value,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("etcd put: {}", e.message()))?;
        Ok(())
    }

    pub async fn delete(&self, id: &str) -> Result<(), String> {
        self.kv
            .clone()
            .delete_range(DeleteRangeRequest {
                key: key(id),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("etcd delete: {}", e.message()))?;
        Ok(())
    }

    /// Every registration, and the revision they were read at.
    pub async fn load(&self) -> Result<(BTreeMap<String, Stored>, i64), String> {
        let resp = self
            .kv
            .clone()
            .range(RangeRequest {
                key: PREFIX.as_bytes().to_vec(),
                range_end: range_end(PREFIX),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("etcd range: {}", e.message()))?
            .into_inner();
        let revision = resp.header.map_or(0, |h| h.revision);
        let mut out = BTreeMap::new();
        for kv in resp.kvs {
            let Some(id) = id_of(&kv.key) else { continue };
            match serde_json::from_slice::<Stored>(&kv.value) {
                Ok(s) => {
                    out.insert(id, s);
                }
                Err(e) => tracing::warn!(%id, "ignoring an unreadable registration in etcd: {e}"),
            }
        }
        Ok((out, revision))
    }

    /// Sends every change after `revision` to `changes` until the watch
    /// fails (then returns why) or `changes` is closed (returns `Ok`).
    pub async fn watch(&self, revision: i64, changes: &mpsc::Sender<Change>) -> Result<(), String> {
        let (tx, rx) = mpsc::channel(1);
        tx.send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: PREFIX.as_bytes().to_vec(),
                range_end: range_end(PREFIX),
                start_revision: revision + 1,
                ..Default::default()
            })),
        })
        .await
        .map_err(|_| "watch request not sent".to_string())?;
        let mut stream = self
            .watch
            .clone()
            .watch(Requests(rx))
            .await
            .map_err(|e| format!("etcd watch: {}", e.message()))?
            .into_inner();
        loop {
            let resp = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => return Err("etcd closed the watch".into()),
                Err(e) => return Err(format!("etcd watch: {}", e.message())),
            };
            if resp.canceled {
                return Err(format!("etcd canceled the watch: {}", resp.cancel_reason));
            }
            for ev in resp.events {
                let Some(kv) = ev.kv else { continue };
                let Some(id) = id_of(&kv.key) else { continue };
                let change = if ev.r#type == EventType::Delete as i32 {
                    Change::Delete(id)
                } else {
                    match serde_json::from_slice::<Stored>(&kv.value) {
                        Ok(s) => Change::Put(id, s),
                        Err(e) => {
                            tracing::warn!(%id, "ignoring an unreadable registration in etcd: {e}");
                            continue;
                        }
                    }
                };
                if changes.send(change).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
