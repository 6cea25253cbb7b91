//! The admin server. It runs on its own thread with its own single-threaded
//! runtime, so rendering metrics or dumping config never runs on (or
//! stalls) the proxy's worker threads.

use crate::cluster::{Endpoint, flag};
use crate::proxy::Snapshot;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use legate_xds::model::HealthStatus;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

pub struct AdminState {
    snapshot: ArcSwap<Snapshot>,
    prometheus: Option<PrometheusHandle>,
    quit: watch::Sender<bool>,
    draining: AtomicBool,
    /// A complete configuration is being served (with xDS: once the first
    /// one has arrived and warmed).
    initialized: AtomicBool,
    /// The ADS client's state, when there is a control plane.
    xds: std::sync::OnceLock<Arc<legate_xds::client::Status>>,
}

impl AdminState {
    pub fn new(
        snapshot: Snapshot,
        prometheus: Option<PrometheusHandle>,
        quit: watch::Sender<bool>,
    ) -> Self {
        AdminState {
            snapshot: ArcSwap::from_pointee(snapshot),
            prometheus,
            quit,
            draining: AtomicBool::new(false),
            initialized: AtomicBool::new(false),
            xds: std::sync::OnceLock::new(),
        }
    }

    pub fn set_xds_status(&self, status: Arc<legate_xds::client::Status>) {
        let _ = self.xds.set(status);
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn set_snapshot(&self, s: Snapshot) {
        self.snapshot.store(Arc::new(s));
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn set_initialized(&self) {
        self.initialized.store(true, Ordering::SeqCst);
    }
}

pub struct AdminHandle {
    pub state: Arc<AdminState>,
    stop: Option<oneshot::Sender<()>>,
}

impl AdminHandle {
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts the admin server on its own thread.
pub fn spawn(
    listener: std::net::TcpListener,
    state: Arc<AdminState>,
) -> std::io::Result<AdminHandle> {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread_state = state.clone();
    std::thread::Builder::new()
        .name("legate-admin".into())
        .spawn(move || rt.block_on(run(listener, thread_state, stop_rx)))?;
    Ok(AdminHandle {
        state,
        stop: Some(stop_tx),
    })
}

async fn run(
    listener: std::net::TcpListener,
    state: Arc<AdminState>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin server failed to start");
            return;
        }
    };
    // Histograms accumulate samples until drained; keep them bounded even
    // when nobody scrapes.
    let mut upkeep = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = upkeep.tick() => {
                if let Some(p) = &state.prometheus {
                    p.run_upkeep();
                }
            }
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

const HELP: &str = "admin commands:\n  /ready            200 LIVE while serving, 503 INITIALIZING before the first complete config, 503 DRAINING while draining\n  /stats/prometheus metrics in Prometheus text format\n  /config_dump      the live configuration (JSON)\n  /clusters         endpoints and their state (?format=json)\n  /listeners        listeners and their bound addresses (JSON)\n  /quitquitquit     POST: drain and exit\n";

fn handle(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let json_format = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "format=json"));
    match (req.method(), path) {
        (&Method::GET | &Method::HEAD, "/ready") => {
            if state.draining.load(Ordering::SeqCst) {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "DRAINING\n")
            } else if !state.initialized.load(Ordering::SeqCst) {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "INITIALIZING\n",
                )
            } else {
                reply(StatusCode::OK, "text/plain", "LIVE\n")
            }
        }
        (&Method::GET, "/stats/prometheus") => match &state.prometheus {
            Some(p) => {
                // Gauges read from the data path's counters, set here so
                // requests never pay for them.
                for c in state.snapshot().clusters.values() {
                    c.breakers.publish();
                }
                reply(StatusCode::OK, "text/plain; version=0.0.4", p.render())
            }
            None => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "metrics recorder unavailable: another recorder was installed in this process\n",
            ),
        },
        (&Method::GET, "/config_dump") => {
            let mut dump = serde_json::to_value(&*state.snapshot().config).unwrap_or_default();
            if let (Some(x), Some(obj)) = (state.xds.get(), dump.as_object_mut()) {
                obj.insert("xds".into(), x.to_json());
            }
            match serde_json::to_vec_pretty(&dump) {
                Ok(body) => reply(StatusCode::OK, "application/json", body),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("{e}\n"),
                ),
            }
        }
        (&Method::GET, "/clusters") => clusters(state, json_format),
        (&Method::GET, "/listeners") => {
            let list: Vec<_> = state
                .snapshot()
                .listeners
                .iter()
                .map(|(n, a)| json!({"name": n, "address": a.to_string()}))
                .collect();
            reply(StatusCode::OK, "application/json", json!(list).to_string())
        }
        (&Method::POST, "/quitquitquit") => {
            state.set_draining();
            state.quit.send_replace(true);
            reply(StatusCode::OK, "text/plain", "OK\n")
        }
        (_, "/quitquitquit") => reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use POST\n"),
        (&Method::GET, "/") => reply(StatusCode::OK, "text/plain", HELP),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", HELP),
    }
}

/// Envoy's `/clusters` health flags: the EDS status, active health
/// checking and outlier detection (`healthy` when none applies).
fn health_flags(e: &Endpoint) -> String {
    let mut out = String::new();
    match e.health {
        HealthStatus::Unknown | HealthStatus::Healthy => {}
        HealthStatus::Unhealthy | HealthStatus::Timeout => out.push_str("/failed_eds_health"),
        HealthStatus::Draining => out.push_str("/eds_status_draining"),
        HealthStatus::Degraded => out.push_str("/degraded_eds_health"),
    }
    let f = e.flags();
    if f & flag::FAILED_ACTIVE_HC != 0 {
        out.push_str("/failed_active_hc");
    }
    if f & flag::PENDING_ACTIVE_HC != 0 {
        out.push_str("/pending_active_hc");
    }
    if f & flag::FAILED_OUTLIER_CHECK != 0 {
        out.push_str("/failed_outlier_check");
    }
    if out.is_empty() {
        out.push_str("healthy");
    }
    out
}

fn clusters(state: &AdminState, as_json: bool) -> Response<Full<Bytes>> {
    let snapshot = state.snapshot();
    let mut names: Vec<&String> = snapshot.clusters.keys().collect();
    names.sort();
    if as_json {
        let list: Vec<_> = names
            .iter()
            .map(|n| {
                let c = &snapshot.clusters[*n];
                let eps: Vec<_> = c
                    .endpoints()
                    .all
                    .iter()
                    .map(|e| {
                        let (idle, h2) = e.pool.idle_counts();
                        json!({
                            "address": e.addr.to_string(),
                            "weight": e.weight,
                            "active_requests": e.active.load(Ordering::Relaxed),
                            "idle_connections": idle,
                            "http2_connected": h2,
                            "priority": e.priority,
                            "health": e.health,
                            "health_flags": health_flags(e),
                        })
                    })
                    .collect();
                json!({"name": n, "lb_policy": c.lb_policy, "protocol": c.protocol, "panic": c.endpoints().panic, "endpoints": eps})
            })
            .collect();
        return reply(
            StatusCode::OK,
            "application/json",
            json!({"clusters": list}).to_string(),
        );
    }
    let mut out = String::new();
    for n in names {
        let c = &snapshot.clusters[n];
        for e in &c.endpoints().all {
            let (idle, h2) = e.pool.idle_counts();
            let a = e.addr;
            let _ = writeln!(out, "{n}::{a}::weight::{}", e.weight);
            let _ = writeln!(
                out,
                "{n}::{a}::rq_active::{}",
                e.active.load(Ordering::Relaxed)
            );
            let _ = writeln!(out, "{n}::{a}::cx_idle::{idle}");
            let _ = writeln!(out, "{n}::{a}::http2_connected::{h2}");
            let _ = writeln!(out, "{n}::{a}::priority::{}", e.priority);
            let _ = writeln!(out, "{n}::{a}::health_flags::{}", health_flags(e));
        }
    }
    reply(StatusCode::OK, "text/plain", out)
}
