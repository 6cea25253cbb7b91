//! The control plane pushing a mesh change to many connected proxies (the
//! machinery of `benches/fanout.rs`, small): 100 simulated sidecars, half
//! over state of the world and half over delta, sharing a few HTTP/2
//! connections; each ACKs everything; a change reaches exactly the proxies
//! it concerns, and only in the types it changes.

mod common;

use common::sim::{self, Api, SimProxy, TYPES};
use legate_xds::control_plane::{ControlPlane, Options};
use legate_xds::translate::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PROXIES: usize = 100;
const CONNECTIONS: usize = 5;
/// Services whose sidecars may call every service.
const CALLERS: [&str; 5] = ["s0", "s1", "s2", "s3", "s4"];
/// A service whose sidecars may call only `s0`.
const EDGE: &str = "edge";
const DEADLINE: Duration = Duration::from_secs(10);

/// The mesh: `CALLERS` with a v1/v2 split each (`split[i]` is s{i}'s v1
/// weight), and `edge`, whose egress is `s0` only.
fn mesh(split: [u32; 5]) -> String {
    let mut y = String::from("services:\n");
    for (i, name) in CALLERS.iter().enumerate() {
        y += &format!(
            "  - name: {name}
    ports:
      - {{ port: 8080, protocol: http }}
    workloads:
      - {{ address: 10.0.{i}.1:8080, labels: {{ version: v1 }} }}
      - {{ address: 10.0.{i}.2:8080, labels: {{ version: v2 }} }}
    subsets:
      - {{ name: v1, labels: {{ version: v1 }} }}
      - {{ name: v2, labels: {{ version: v2 }} }}
    routes:
      - name: canary
        destinations:
          - {{ subset: v1, weight: {v1} }}
          - {{ subset: v2, weight: {v2} }}
",
            v1 = split[i],
            v2 = 100 - split[i],
        );
    }
    y += &format!(
        "  - name: {EDGE}
    ports:
      - {{ port: 8080, protocol: http }}
    workloads:
      - {{ address: 10.1.0.1:8080 }}
    egress: [s0]
"
    );
    y
}

/// Replaces the mesh file the way editors and `kubectl`-style tools do:
/// a new file renamed over the old one.
fn save(dir: &Path, text: &str) {
    let tmp = dir.join("mesh.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("mesh.yaml")).unwrap();
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir =
        std::env::temp_dir().join(format!("legate-xds-fanout-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// Awaits `fut`, failing the test if it fails or `deadline` passes first.
async fn within<T>(
    deadline: tokio::time::Instant,
    what: &str,
    fut: impl Future<Output = Result<T, String>>,
) -> T {
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: not within {DEADLINE:?}"),
    }
}

/// Polls `check` until it passes (at most `DEADLINE`).
async fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not within {DEADLINE:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Every connected stream is in sync on every type, with no NACK.
fn server_in_sync(cp: &ControlPlane) -> Result<(), String> {
    let proxies = cp.server().proxies();
    if proxies.len() != PROXIES {
        return Err(format!("{} streams, not {PROXIES}", proxies.len()));
    }
    for p in &proxies {
        for t in TYPES {
            let s = p
                .types
                .get(sim::short(t))
                .ok_or_else(|| format!("{}: nothing of {t}", p.node_id))?;
            if let Some(e) = &s.nack {
                return Err(format!("{}: NACK of {t}: {e}", p.node_id));
            }
            if !s.in_sync() {
                return Err(format!("{}: {t} not in sync: {s:?}", p.node_id));
            }
        }
    }
    Ok(())
}

/// Responses received so far, by proxy and type.
fn responses(proxies: &[SimProxy]) -> Vec<HashMap<&'static str, u64>> {
    proxies
        .iter()
        .map(|p| TYPES.iter().map(|t| (*t, p.responses(t))).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_change_reaches_every_proxy_it_concerns_and_only_those() {
    let dir = temp_dir();
    save(&dir.0, &mesh([90; 5]));
    let cp = ControlPlane::start(
        Options {
            mesh: dir.0.clone(),
            listen: "127.0.0.1:0".into(),
            admin: None,
            watch_interval: Duration::from_millis(50),
            reap_after: Duration::from_secs(300),
            registry: None,
        },
        None,
    )
    .await
    .expect("control plane starts");

    // 100 sidecars over 5 connections: even ones SotW, odd ones delta;
    // services round robin, so every service has both kinds.
    let channels = sim::connect(cp.addr, CONNECTIONS).await.unwrap();
    let services: Vec<&str> = CALLERS.iter().copied().chain([EDGE]).collect();
    let proxies: Vec<SimProxy> = (0..PROXIES)
        .map(|i| {
            let api = if i % 2 == 0 { Api::Sotw } else { Api::Delta };
            let service = services[(i / 2) % services.len()];
            SimProxy::start(
                channels[i % CONNECTIONS].clone(),
                api,
                &format!("{service}-{i}.{}", api.name()),
                service,
                "default",
            )
        })
        .collect();
    let is_edge = |p: &SimProxy| p.service == EDGE;

    let deadline = tokio::time::Instant::now() + DEADLINE;
    for p in &proxies {
        within(deadline, &format!("{} synced", p.node_id), p.synced()).await;
    }
    eventually("the server sees every proxy in sync", || {
        server_in_sync(&cp)
    })
    .await;
    let before: Vec<HashMap<String, String>> = proxies.iter().map(|p| p.acked_versions()).collect();
    // Both APIs ACK the same versions for the same identity; the edge
    // proxies hold less (only s0's clusters and routes).
    for (p, v) in proxies.iter().zip(&before) {
        let twin = proxies
            .iter()
            .position(|q| q.service == p.service && q.api != p.api)
            .unwrap();
        assert_eq!(
            v, &before[twin],
            "{} vs {}",
            p.node_id, proxies[twin].node_id
        );
        let held = |t: &str| p.with_status(|s| s.get(t).unwrap().held.clone());
        // 3 clusters (all, v1, v2) per callable service with subsets, 1
        // for edge (none), plus inbound.
        let expect = if is_edge(p) { 3 } else { 3 * CALLERS.len() + 1 };
        assert_eq!(
            (held(CLUSTER_TYPE).len(), held(ENDPOINT_TYPE).len()),
            (expect + 1, expect),
            "{}",
            p.node_id
        );
        assert_eq!(held(LISTENER_TYPE).len(), 2, "{}", p.node_id);
        assert_eq!(
            held(ROUTE_TYPE).into_iter().collect::<Vec<_>>(),
            ["outbound"]
        );
    }

    // s1..s4 go 50/50: every sidecar but edge's gets a new route
    // configuration, and nothing else.
    let counts = responses(&proxies);
    save(&dir.0, &mesh([90, 50, 50, 50, 50]));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for (p, old) in proxies.iter().zip(&before).filter(|(p, _)| !is_edge(p)) {
        let what = format!("{}: new routes ACKed", p.node_id);
        within(
            deadline,
            &what,
            p.acked_other_than(ROUTE_TYPE, &old[ROUTE_TYPE]),
        )
        .await;
    }
    let mut s1_routes = None;
    for (i, p) in proxies.iter().enumerate().filter(|(_, p)| !is_edge(p)) {
        let now = p.acked_versions();
        for t in [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE] {
            assert_eq!(now[t], before[i][t], "{}: {t} version changed", p.node_id);
            assert_eq!(
                p.responses(t),
                counts[i][t],
                "{}: sent {t} although it did not change",
                p.node_id
            );
        }
        assert_eq!(
            p.responses(ROUTE_TYPE),
            counts[i][ROUTE_TYPE] + 1,
            "{}",
            p.node_id
        );
        // Proxies of the same service, either API, share the new version.
        if p.service == "s1" {
            let v = now[ROUTE_TYPE].clone();
            assert_eq!(s1_routes.get_or_insert_with(|| v.clone()), &v);
        }
    }
    let middle: Vec<HashMap<String, String>> = proxies.iter().map(|p| p.acked_versions()).collect();

    // Then s0 goes 50/50 too: now edge's routes change (and everyone
    // else's). Edge's sidecars got nothing from the first change, so each
    // has exactly one more route configuration than before it.
    save(&dir.0, &mesh([50; 5]));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for (p, old) in proxies.iter().zip(&middle) {
        let what = format!("{}: second routes ACKed", p.node_id);
        within(
            deadline,
            &what,
            p.acked_other_than(ROUTE_TYPE, &old[ROUTE_TYPE]),
        )
        .await;
    }
    for (i, p) in proxies.iter().enumerate() {
        let now = p.acked_versions();
        for t in [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE] {
            assert_eq!(now[t], before[i][t], "{}: {t} version changed", p.node_id);
            assert_eq!(p.responses(t), counts[i][t], "{}: sent {t}", p.node_id);
        }
        let pushes = if is_edge(p) { 1 } else { 2 };
        assert_eq!(
            p.responses(ROUTE_TYPE),
            counts[i][ROUTE_TYPE] + pushes,
            "{}: route configurations pushed",
            p.node_id
        );
        assert!(p.with_status(|s| s.ended.is_none()), "{} ended", p.node_id);
    }

    // The server agrees: every stream in sync, no NACK.
    eventually(
        "the server sees every proxy in sync after the changes",
        || server_in_sync(&cp),
    )
    .await;
    drop(proxies);
    cp.shutdown().await;
}
