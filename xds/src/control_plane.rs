//! `legate-xds serve`: the mesh served over ADS, reloaded when its files
//! change, with an admin port (`/metrics`, `/proxies`, `/ready`). Usable in
//! process (tests) as well as from the binary.

use crate::mesh::{self, MeshError, source::MeshSource};
use crate::registry::{Registry, RegistryService, etcd::EtcdStore};
use crate::server::{AdsServer, describe_metrics};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How to run the control plane.
#[derive(Clone, Debug)]
pub struct Options {
    /// A mesh file or a directory of them.
    pub mesh: PathBuf,
    /// ADS address (`ip:port`; port 0 picks one).
    pub listen: String,
    /// Admin address, if any.
    pub admin: Option<String>,
    /// How often the mesh files are checked for changes.
    pub watch_interval: Duration,
    /// How long a registered workload that stopped heartbeating is kept
    /// (unhealthy) before it is removed.
    pub reap_after: Duration,
    /// Where registrations are kept: `None` in memory, or
    /// `etcd://host:port` (shared by control-plane replicas).
    pub registry: Option<String>,
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the mesh is invalid:\n{}", lines(.0))]
    Mesh(Vec<MeshError>),
    #[error("{0}")]
    Registry(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

fn lines(errors: &[MeshError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A running control plane. Dropping it stops it.
pub struct ControlPlane {
    /// Where ADS is served.
    pub addr: SocketAddr,
    /// Where the admin port is, if any.
    pub admin_addr: Option<SocketAddr>,
    source: Arc<MeshSource>,
    server: AdsServer,
    registry: Arc<Registry>,
    stop: Option<oneshot::Sender<()>>,
    /// The gRPC server (ADS and registration), ended by `stop`.
    grpc: Option<JoinHandle<()>>,
    /// Everything else, aborted on shutdown.
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.to_string(),
            source,
        })
}

impl ControlPlane {
    /// Loads the mesh (refusing to start on an invalid one), binds, and
    /// serves. `metrics` renders `/metrics` when given.
    pub async fn start(
        opts: Options,
        metrics: Option<PrometheusHandle>,
    ) -> Result<ControlPlane, StartError> {
        describe_metrics();
        let texts = mesh::read(&opts.mesh).map_err(StartError::Mesh)?;
        let mesh = mesh::parse(&texts).map_err(StartError::Mesh)?;
        let registry = Arc::new(match &opts.registry {
            None => Registry::new(opts.reap_after),
            Some(url) => Registry::with_etcd(
                opts.reap_after,
                EtcdStore::new(url).map_err(StartError::Registry)?,
            ),
        });
        let sync = tokio::spawn(registry.clone().sync());
        if !registry.wait_loaded(Duration::from_secs(5)).await {
            tracing::warn!(
                "registry {}: not loaded after 5 s; serving without registered workloads until it is",
                opts.registry.as_deref().unwrap_or_default()
            );
        }
        let source = Arc::new(MeshSource::with_registry(mesh, registry.clone()));
        let server = AdsServer::new(source.clone());
        let listener = bind(&opts.listen).await?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: opts.listen.clone(),
            source,
        })?;
        let admin = match &opts.admin {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        let (stop, stopped) = oneshot::channel::<()>();
        let mut tasks = vec![sync];
        let router = server
            .router()
            .add_service(RegistryService::new(registry.clone(), source.clone()));
        let ads = server.clone();
        let grpc = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            if let Err(e) = ads.serve_router(router, listener, stopped).await {
                tracing::error!("gRPC server failed: {e}");
            }
        });
        tasks.push(tokio::spawn(
            registry.clone().run_expiry(Duration::from_millis(100)),
        ));
        let (reg, src) = (registry.clone(), source.clone());
        tasks.push(tokio::spawn(async move {
            let mut changes = reg.changes();
            while changes.changed().await.is_ok() {
                src.invalidate();
            }
        }));
        tasks.push(tokio::spawn(mesh::source::watch(
            opts.mesh.clone(),
            source.clone(),
            texts,
            opts.watch_interval,
        )));
        if let Some(l) = admin {
            tasks.push(tokio::spawn(serve_admin(l, server.clone(), metrics)));
        }
        tracing::info!(%addr, mesh = %opts.mesh.display(), "serving ADS (state of the world and delta) and workload registration");
        Ok(ControlPlane {
            addr,
            admin_addr,
            source,
            server,
            registry,
            stop: Some(stop),
            grpc: Some(grpc),
            tasks,
        })
    }

    pub fn source(&self) -> &Arc<MeshSource> {
        &self.source
    }

    pub fn server(&self) -> &AdsServer {
        &self.server
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Ends every stream and stops serving; waits for the ADS server to
    /// finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.close_streams();
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
        }
        if let Some(grpc) = self.grpc.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), grpc).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.close_streams();
        for t in self.tasks.iter().chain(&self.grpc) {
            t.abort();
        }
    }
}

async fn serve_admin(listener: TcpListener, server: AdsServer, metrics: Option<PrometheusHandle>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let server = server.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = admin(req.uri().path(), &server, metrics.as_ref());
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn admin(
    path: &str,
    server: &AdsServer,
    metrics: Option<&PrometheusHandle>,
) -> Response<Full<Bytes>> {
    match path {
        "/ready" => respond(StatusCode::OK, "text/plain", "LIVE\n".into()),
        "/proxies" => {
            let body = serde_json::to_string_pretty(&server.proxies()).unwrap_or_default();
            respond(StatusCode::OK, "application/json", body + "\n")
        }
        "/metrics" => match metrics {
            Some(h) => respond(StatusCode::OK, "text/plain; version=0.0.4", h.render()),
            None => respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "metrics are not recorded in this process\n".into(),
            ),
        },
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "legate-xds admin: /proxies (connected proxies and what they hold), /metrics, /ready\n"
                .into(),
        ),
    }
}
