//! The workload side of registration (`legate run --register`): checks the
//! application's health, registers the sidecar's inbound address once it is
//! listening and the application is healthy, heartbeats while it stays
//! healthy (an unhealthy application stops the heartbeats, so its TTL
//! passes and callers stop sending to it), re-registers when the control
//! plane forgot it, and deregisters on drain.

use crate::wire::legate::registry::v1 as pb;
use pb::registry_client::RegistryClient;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// What to register and how to check it.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The control plane (`host:port`).
    pub server: String,
    pub service: String,
    pub namespace: String,
    /// The service port served (0: the service's first port).
    pub service_port: u16,
    pub labels: BTreeMap<String, String>,
    /// The application, for health checks.
    pub app: SocketAddr,
    /// HTTP path answered 2xx/3xx when healthy; `None`: a TCP connect.
    pub health_path: Option<String>,
    pub ttl: Duration,
    /// How often health is checked and heartbeats sent.
    pub interval: Duration,
}

/// What the agent's task hands back when stopped: the client and the
/// registration to remove, if it registered.
type Held = Option<(RegistryClient<Channel>, String)>;

/// A running agent. Dropping it stops the heartbeats without deregistering
/// (as a crash would).
pub struct Agent {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Held>>,
}

impl Agent {
    /// Starts the agent. `advertise` gives the address callers should use
    /// (the sidecar's inbound listener) once there is one.
    pub fn spawn(
        opts: AgentOptions,
        advertise: impl Fn() -> Option<SocketAddr> + Send + Sync + 'static,
    ) -> Agent {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(opts, advertise, stopped));
        Agent {
            stop,
            task: Some(task),
        }
    }

    /// Stops heartbeating and removes the registration (a drain).
    pub async fn deregister(mut self) {
        let _ = self.stop.send(true);
        let Some(task) = self.task.take() else { return };
        let Ok(Some((mut client, id))) = task.await else {
            return;
        };
        let req = pb::DeregisterRequest { id: id.clone() };
        match tokio::time::timeout(Duration::from_secs(2), client.deregister(req)).await {
            Ok(Ok(_)) => tracing::info!(%id, "deregistered"),
            Ok(Err(e)) => tracing::warn!(%id, "deregistration refused: {}", e.message()),
            Err(_) => tracing::warn!(%id, "deregistration timed out"),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Whether the application answers its health check within `timeout`.
pub async fn check(app: SocketAddr, path: Option<&str>, timeout: Duration) -> bool {
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(app).await.ok()?;
        let Some(path) = path else { return Some(true) };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {app}\r\nUser-Agent: legate-health\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 64];
        let mut n = 0;
        while n < 12 {
            let m = s.read(&mut head[n..]).await.ok()?;
            if m == 0 {
                break;
            }
            n += m;
        }
        // "HTTP/1.1 200 ..."
        let status: u16 = std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()?;
        Some((200..400).contains(&status))
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(true)))
}

async fn run(
    opts: AgentOptions,
    advertise: impl Fn() -> Option<SocketAddr>,
    mut stopped: watch::Receiver<bool>,
) -> Held {
    let mut client: Option<RegistryClient<Channel>> = None;
    let mut id: Option<String> = None;
    let mut was_healthy: Option<bool> = None;
    let mut tick = tokio::time::interval(opts.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => break,
        }
        let Some(addr) = advertise() else {
            continue;
        };
        let healthy = check(
            opts.app,
            opts.health_path.as_deref(),
            opts.interval.min(Duration::from_secs(2)),
        )
        .await;
        if was_healthy != Some(healthy) {
            if healthy {
                tracing::info!(app = %opts.app, "application healthy: registering and heartbeating");
            } else {
                tracing::warn!(app = %opts.app, "application unhealthy: heartbeats stop until it recovers");
            }
            was_healthy = Some(healthy);
        }
        if !healthy {
            continue;
        }
        if client.is_none() {
            match crate::client::endpoint(&opts.server) {
                Ok(e) => client = Some(RegistryClient::new(e.connect_lazy())),
                Err(e) => {
                    tracing::error!("registration: {e}");
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        if let Some(current) = &id {
            match c
                .heartbeat(pb::HeartbeatRequest {
                    id: current.clone(),
                })
                .await
            {
                Ok(_) => continue,
                Err(s) if s.code() == tonic::Code::NotFound => {
                    tracing::info!(id = %current, "the control plane forgot this registration: registering again");
                    id = None;
                }
                Err(s) => {
                    tracing::warn!("heartbeat failed: {}", s.message());
                    continue;
                }
            }
        }
        let req = pb::RegisterRequest {
            workload: Some(pb::Workload {
                service: opts.service.clone(),
                namespace: opts.namespace.clone(),
                address: addr.ip().to_string(),
                port: addr.port().into(),
                service_port: opts.service_port.into(),
                labels: opts.labels.clone().into_iter().collect(),
                weight: 1,
            }),
            ttl: Some(prost_types::Duration {
                seconds: opts.ttl.as_secs() as i64,
                nanos: opts.ttl.subsec_nanos() as i32,
            }),
        };
        match c.register(req).await {
            Ok(r) => {
                let r = r.into_inner();
                tracing::info!(id = %r.id, %addr, "registered with the control plane");
                id = Some(r.id);
            }
            Err(s) => tracing::warn!("registration refused: {}", s.message()),
        }
    }
    Some((client?, id?))
}
