//! `legate-xds` end to end: the control plane (in process) serves a mesh
//! directory to Legate sidecars and to a real Envoy, over state of the
//! world and delta, and pushes live changes when a file is saved.

mod common;
#[path = "common/envoy.rs"]
mod envoy;

use common::*;
use legate::RunningProxy;
use legate_xds::control_plane::{ControlPlane, Options};
use legate_xds::model::{Admin, Config, Dynamic, XdsApi};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The mesh: `frontend` (the caller) and `reviews` with three versions,
/// an A/B rule by header, a rewrite, a v1/v2 split, and a destination
/// policy (circuit breakers and outlier detection, never reached).
fn mesh_yaml(v: &[SocketAddr; 3], split: (u32, u32)) -> String {
    format!(
        r#"services:
  - name: frontend
    ports: [{{ port: 8080 }}]
  - name: reviews
    ports: [{{ port: 9080, protocol: http }}]
    workloads:
      - {{ address: "{}", labels: {{ version: v1 }} }}
      - {{ address: "{}", labels: {{ version: v2 }} }}
      - {{ address: "{}", labels: {{ version: v3 }} }}
    policy:
      connection_pool:
        tcp: {{ max_connections: 500 }}
        http: {{ http1_max_pending_requests: 400, http2_max_requests: 1000, max_retries: 50 }}
      outlier_detection: {{ consecutive_5xx_errors: 1000, interval: 30s, base_ejection_time: 30s, max_ejection_percent: 50 }}
    subsets:
      - {{ name: v1, labels: {{ version: v1 }} }}
      - {{ name: v2, labels: {{ version: v2 }} }}
      - {{ name: v3, labels: {{ version: v3 }} }}
    routes:
      - name: chaos
        match: [{{ headers: {{ x-chaos: {{ exact: abort }} }} }}]
        destinations: [{{ subset: v1 }}]
        fault: {{ abort: {{ http_status: 503, percent: 100 }} }}
      - name: testers
        match: [{{ headers: {{ end-user: {{ exact: jason }} }} }}]
        destinations: [{{ subset: v3 }}]
      - name: api
        match: [{{ prefix: /api/ }}]
        rewrite: {{ prefix: /api/v1/ }}
        destinations: [{{ subset: v1 }}]
      - name: split
        destinations:
          - {{ subset: v1, weight: {} }}
          - {{ subset: v2, weight: {} }}
        retries: {{ retry_on: [gateway-error, connect-failure], num_retries: 2, per_try_timeout: 2s }}
"#,
        v[0], v[1], v[2], split.0, split.1
    )
}

struct Mesh {
    dir: PathBuf,
}

impl Mesh {
    fn new(text: &str) -> Mesh {
        let dir = std::env::temp_dir().join(format!(
            "legate-cp-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let m = Mesh { dir };
        m.save(text);
        m
    }

    /// Saves the mesh as editors do: a new file renamed over the old one.
    fn save(&self, text: &str) {
        let tmp = self.dir.join(".mesh.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.join("mesh.yaml")).unwrap();
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn control_plane(mesh: &Path) -> ControlPlane {
    ControlPlane::start(
        Options {
            mesh: mesh.to_path_buf(),
            listen: "127.0.0.1:0".into(),
            admin: None,
            watch_interval: Duration::from_millis(50),
            reap_after: Duration::from_secs(300),
            registry: None,
        },
        None,
    )
    .await
    .expect("control plane starts")
}

/// A Legate sidecar whose whole configuration comes from the control plane.
async fn sidecar(
    cp: &ControlPlane,
    id: &str,
    api: XdsApi,
    meta: &[(&str, String)],
) -> RunningProxy {
    let mut dynamic = Dynamic::new(&cp.addr.to_string(), id, api);
    for (k, v) in meta {
        dynamic
            .node
            .metadata
            .insert(k.to_string(), serde_json::Value::String(v.clone()));
    }
    let config = Config {
        admin: Admin {
            address: "127.0.0.1:0".into(),
            ..Default::default()
        },
        dynamic: Some(dynamic),
        ..Default::default()
    };
    legate::start(config).await.expect("sidecar starts")
}

fn frontend_meta() -> Vec<(&'static str, String)> {
    vec![
        ("service", "frontend".into()),
        ("outbound_address", "127.0.0.1:0".into()),
        ("inbound_address", "127.0.0.1:0".into()),
    ]
}

async fn outbound_ready(proxy: &RunningProxy) -> SocketAddr {
    let mut addr = None;
    eventually("the outbound listener routes to reviews", || {
        let found = proxy.listener_addr("outbound");
        addr = found;
        async move {
            match found {
                Some(a) => get(a, "reviews:9080", "/", &[]).await.status == 200,
                None => false,
            }
        }
    })
    .await;
    addr.expect("outbound listener")
}

/// Answers per upstream for `n` requests.
async fn tally(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let r = get(addr, host, path, headers).await;
        let who = r
            .header("x-upstream")
            .map_or_else(|| r.status.to_string(), str::to_string);
        *counts.entry(who).or_default() += 1;
    }
    counts
}

fn share(counts: &BTreeMap<String, usize>, who: &str) -> f64 {
    let total: usize = counts.values().sum();
    counts.get(who).copied().unwrap_or(0) as f64 / total as f64
}

/// The mesh's three rules, through one proxy listening on `addr`.
async fn check_rules(addr: SocketAddr, who: &str) {
    // 90/10 split, measured over 2,000 requests: within 3 points.
    let counts = tally(addr, "reviews:9080", "/", &[], 2000).await;
    println!("{who}: 90/10 split over 2,000 requests: {counts:?}");
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        ["v1", "v2"],
        "{who}: {counts:?}"
    );
    assert!(
        (share(&counts, "v2") - 0.10).abs() <= 0.03,
        "{who}: {counts:?}"
    );
    // A/B by header.
    let counts = tally(addr, "reviews", "/", &[("end-user", "jason")], 20).await;
    assert_eq!(counts, BTreeMap::from([("v3".to_string(), 20)]), "{who}");
    // Rewrite.
    let r = get(
        addr,
        "reviews.default.svc.cluster.local:9080",
        "/api/ratings?x=1",
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{who}");
    assert_eq!(r.seen()["name"], "v1", "{who}");
    assert_eq!(r.seen()["path"], "/api/v1/ratings?x=1", "{who}");
}

/// Every proxy connected to the control plane holds what it was sent, and
/// has NACKed nothing.
fn all_in_sync(cp: &ControlPlane, node: &str) -> bool {
    let proxies = cp.server().proxies();
    let Some(p) = proxies.iter().find(|p| p.node_id == node) else {
        return false;
    };
    p.types.len() == 4 && p.types.values().all(|t| t.in_sync() && t.nack.is_none())
}

/// Whether, over the next 300 requests of each load, only `version` of
/// v1/v2 answered.
async fn all_to(loads: &[Load], v: &[Upstream; 3], version: &str) -> bool {
    for l in loads {
        l.more(100).await;
    }
    let count = || {
        [
            v[0].requests.load(Ordering::SeqCst),
            v[1].requests.load(Ordering::SeqCst),
        ]
    };
    let before = count();
    for l in loads {
        l.more(300).await;
    }
    let after = count();
    let (to_v1, to_v2) = (after[0] - before[0], after[1] - before[1]);
    match version {
        "v1" => to_v2 == 0 && to_v1 > 0,
        _ => to_v1 == 0 && to_v2 > 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legate_sidecars_follow_the_mesh_live_without_failing_a_request() {
    let v = [
        upstream("v1").await,
        upstream("v2").await,
        upstream("v3").await,
    ];
    let addrs = [v[0].addr, v[1].addr, v[2].addr];
    let mesh = Mesh::new(&mesh_yaml(&addrs, (90, 10)));
    let cp = control_plane(&mesh.dir).await;
    let sotw = sidecar(&cp, "frontend-sotw", XdsApi::Sotw, &frontend_meta()).await;
    let delta = sidecar(&cp, "frontend-delta", XdsApi::Delta, &frontend_meta()).await;
    let sotw_addr = outbound_ready(&sotw).await;
    let delta_addr = outbound_ready(&delta).await;
    eventually("both sidecars ACKed everything", || async {
        all_in_sync(&cp, "frontend-sotw") && all_in_sync(&cp, "frontend-delta")
    })
    .await;
    check_rules(sotw_addr, "legate (sotw)").await;
    check_rules(delta_addr, "legate (delta)").await;

    // Continuous load on both while the split moves 90/10 -> 0/100 -> 100/0,
    // with a broken save in between that must change nothing.
    let loads = [
        Load::start_with_host(sotw_addr, Some("reviews:9080"), "/", 4),
        Load::start_with_host(delta_addr, Some("reviews:9080"), "/", 4),
    ];
    for l in &loads {
        l.more(200).await;
    }
    let saved = Instant::now();
    mesh.save(&mesh_yaml(&addrs, (0, 100)));
    let v2_before = v[1].requests.load(Ordering::SeqCst);
    within(10, "the new split reaches the sidecars", || async {
        // v2 taking (nearly) everything shows the push arrived.
        v[1].requests.load(Ordering::SeqCst) > v2_before + 200
    })
    .await;
    println!("save -> both sidecars sending to v2: {:?}", saved.elapsed());
    within(10, "all traffic on v2", || all_to(&loads, &v, "v2")).await;

    mesh.save("services:\n  - name: reviews\n    ports: [{ port: 9080 }]\n    routes: [{ destinations: [{ subset: v9 }] }]\n");
    for l in &loads {
        l.more(500).await;
    }
    assert!(
        all_to(&loads, &v, "v2").await,
        "a rejected mesh changes nothing"
    );

    mesh.save(&mesh_yaml(&addrs, (100, 0)));
    within(10, "all traffic back on v1", || all_to(&loads, &v, "v1")).await;

    for (l, who) in loads.into_iter().zip(["sotw", "delta"]) {
        let (ok, failed, _) = l.finish().await;
        println!("{who}: {ok} requests, {failed} failed");
        assert!(ok > 1000, "{who}: {ok}");
        assert_eq!(
            failed, 0,
            "{who}: no request may fail while the mesh changes"
        );
    }
    assert!(all_in_sync(&cp, "frontend-sotw") && all_in_sync(&cp, "frontend-delta"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_sidecar_passes_inbound_traffic_to_its_app() {
    let app = upstream("reviews-app").await;
    let other = [upstream("v2").await, upstream("v3").await];
    let mesh = Mesh::new(&mesh_yaml(
        &[other[0].addr, other[0].addr, other[1].addr],
        (100, 0),
    ));
    let cp = control_plane(&mesh.dir).await;
    // The reviews workload's sidecar: inbound to its app.
    let reviews = sidecar(
        &cp,
        "reviews-1",
        XdsApi::Delta,
        &[
            ("service", "reviews".into()),
            ("outbound_address", "127.0.0.1:0".into()),
            ("inbound_address", "127.0.0.1:0".into()),
            ("app_address", app.addr.to_string()),
        ],
    )
    .await;
    let mut inbound = None;
    eventually("the inbound listener reaches the app", || {
        let found = reviews.listener_addr("inbound");
        inbound = found;
        async move {
            match found {
                Some(a) => {
                    get(a, "anything", "/x", &[]).await.header("x-upstream") == Some("reviews-app")
                }
                None => false,
            }
        }
    })
    .await;
    let inbound = inbound.expect("inbound listener");
    // Publish that sidecar as reviews v1: frontend -> its sidecar -> the
    // reviews sidecar's inbound -> the app.
    mesh.save(&mesh_yaml(
        &[inbound, other[0].addr, other[1].addr],
        (100, 0),
    ));
    let frontend = sidecar(&cp, "frontend-1", XdsApi::Sotw, &frontend_meta()).await;
    let out = outbound_ready(&frontend).await;
    within(
        10,
        "frontend reaches the app through both sidecars",
        || async {
            let r = get(out, "reviews:9080", "/hello", &[]).await;
            r.header("x-upstream") == Some("reviews-app") && r.seen()["path"] == "/hello"
        },
    )
    .await;
    // The app sees the caller's address appended by the inbound sidecar.
    let r = get(out, "reviews:9080", "/hello", &[]).await;
    assert!(
        r.seen()["headers"]["x-forwarded-for"]
            .as_str()
            .is_some_and(|x| x.contains("127.0.0.1"))
    );
}

// ---------------------------------------------------------------------------
// Envoy as a foreign client.

fn envoy_bootstrap(
    cp: SocketAddr,
    api: &str,
    outbound: SocketAddr,
    inbound: SocketAddr,
    admin: SocketAddr,
) -> String {
    format!(
        r#"node:
  id: envoy-{api}
  cluster: frontend
  metadata:
    service: frontend
    outbound_address: "{outbound}"
    inbound_address: "{inbound}"
dynamic_resources:
  ads_config:
    api_type: {api}
    transport_api_version: V3
    grpc_services: [{{ envoy_grpc: {{ cluster_name: xds }} }}]
  cds_config: {{ ads: {{}}, resource_api_version: V3 }}
  lds_config: {{ ads: {{}}, resource_api_version: V3 }}
static_resources:
  clusters:
    - name: xds
      type: STATIC
      connect_timeout: 1s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {{ http2_protocol_options: {{}} }}
      load_assignment:
        cluster_name: xds
        endpoints:
          - lb_endpoints:
              - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }}
"#,
        cp.port(),
        admin.port()
    )
}

async fn envoy_stats(admin: SocketAddr, filter: &str) -> Vec<(String, u64)> {
    let r = get(admin, "admin", &format!("/stats?filter={filter}"), &[]).await;
    r.text()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

async fn envoy_follows_the_mesh(api: &str) {
    let Some(bin) = envoy::find_or_skip("the Envoy control-plane test") else {
        return;
    };
    let v = [
        upstream("v1").await,
        upstream("v2").await,
        upstream("v3").await,
    ];
    let mesh = Mesh::new(&mesh_yaml(&[v[0].addr, v[1].addr, v[2].addr], (90, 10)));
    let cp = control_plane(&mesh.dir).await;
    let (outbound, admin) = envoy::free_ports();
    let (inbound, _) = envoy::free_ports();
    let mut e = envoy::start(
        &bin,
        &envoy_bootstrap(cp.addr, api, outbound, inbound, admin),
        outbound,
        admin,
    );
    envoy::wait_ready(&mut e).await;
    let node = format!("envoy-{api}");
    eventually("Envoy ACKed every type", || async {
        all_in_sync(&cp, &node)
    })
    .await;
    within(20, "Envoy routes to reviews", || async {
        get(outbound, "reviews:9080", "/", &[]).await.status == 200
    })
    .await;
    check_rules(outbound, &format!("envoy ({api})")).await;

    // Nothing rejected, and every xDS subscription updated.
    let rejected = envoy_stats(admin, "update_rejected").await;
    assert!(!rejected.is_empty());
    assert!(
        rejected.iter().all(|(_, n)| *n == 0),
        "{rejected:?}\n{}",
        e.log()
    );
    let success = envoy_stats(admin, "update_success").await;
    for kind in [".cds.", ".lds.", ".rds."] {
        assert!(
            success.iter().any(|(k, n)| k.contains(kind) && *n > 0),
            "no successful {kind} update: {success:?}"
        );
    }
    let dump = get(admin, "admin", "/config_dump", &[]).await.text();
    assert!(dump.contains("outbound|9080|v3|reviews.default.svc.cluster.local"));
    // The destination policy arrived as circuit breakers and outlier
    // detection Envoy accepted.
    assert!(dump.contains("\"max_pending_requests\": 400"), "{dump}");
    assert!(dump.contains("\"consecutive_5xx\": 1000"), "{dump}");

    // A live change reaches Envoy too.
    mesh.save(&mesh_yaml(&[v[0].addr, v[1].addr, v[2].addr], (0, 100)));
    within(10, "Envoy sends everything to v2", || async {
        tally(outbound, "reviews:9080", "/", &[], 20).await
            == BTreeMap::from([("v2".to_string(), 20)])
    })
    .await;
    eventually("Envoy ACKed the change", || async {
        all_in_sync(&cp, &node)
    })
    .await;
    let rejected = envoy_stats(admin, "update_rejected").await;
    assert!(rejected.iter().all(|(_, n)| *n == 0), "{rejected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_state_of_the_world_routes_as_the_mesh_says() {
    envoy_follows_the_mesh("GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_delta_routes_as_the_mesh_says() {
    envoy_follows_the_mesh("DELTA_GRPC").await;
}

// ---------------------------------------------------------------------------
// Workload registration: `legate run --register` processes.

/// A `legate run --register reviews` process in front of `app`.
struct Registered {
    child: std::process::Child,
    dir: PathBuf,
}

impl Registered {
    fn spawn(cp: &ControlPlane, id: &str, app: SocketAddr, version: &str) -> Registered {
        let dir = std::env::temp_dir().join(format!(
            "legate-reg-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("legate.yaml");
        std::fs::write(
            &config,
            "admin: { address: \"127.0.0.1:0\", drain_timeout: 1s }\n",
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("legate.log")).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_legate"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args([
                "--xds",
                &cp.addr.to_string(),
                "--node-id",
                id,
                "--xds-api",
                "delta",
            ])
            .args([
                "--register",
                "reviews",
                "--app-port",
                &app.port().to_string(),
            ])
            .args(["--health-path", "/healthz", "--register-ttl", "1s"])
            .args(["--label", &format!("version={version}")])
            .args(["--node-meta", "inbound_address=127.0.0.1:0"])
            .args(["--node-meta", "outbound_address=127.0.0.1:0"])
            .stderr(log)
            .spawn()
            .unwrap();
        Registered { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("legate.log")).unwrap_or_default()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn registered(cp: &ControlPlane) -> Vec<(String, bool)> {
    cp.registry()
        .list()
        .into_iter()
        .map(|e| {
            (
                e.labels.get("version").cloned().unwrap_or_default(),
                e.healthy,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_workloads_come_and_go_with_their_sidecars() {
    let (app_a, app_b) = (upstream("app-a").await, upstream("app-b").await);
    // reviews has no static workloads: only registered ones.
    let mesh = Mesh::new(
        "services:\n  - name: frontend\n    ports: [{ port: 8080 }]\n  - name: reviews\n    ports: [{ port: 9080 }]\n",
    );
    let cp = control_plane(&mesh.dir).await;
    let a = Registered::spawn(&cp, "reviews-a", app_a.addr, "v1");
    let mut b = Registered::spawn(&cp, "reviews-b", app_b.addr, "v2");
    within(20, "both workloads registered healthy", || async {
        let mut r = registered(&cp);
        r.sort();
        r == [("v1".to_string(), true), ("v2".to_string(), true)]
    })
    .await;
    // Health checks reached the apps.
    assert!(app_a.requests.load(Ordering::SeqCst) > 0);

    let frontend = sidecar(&cp, "frontend-1", XdsApi::Sotw, &frontend_meta()).await;
    let out = outbound_ready(&frontend).await;
    within(
        10,
        "traffic reaches both apps through their sidecars",
        || async {
            let t = tally(out, "reviews:9080", "/", &[], 10).await;
            t.contains_key("app-a") && t.contains_key("app-b")
        },
    )
    .await;

    // Killed without deregistering: after its TTL (1 s) it is unhealthy in
    // EDS and traffic stops going to it.
    let mut a = a;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = Instant::now();
    within(10, "the killed workload is marked unhealthy", || async {
        registered(&cp).contains(&("v1".to_string(), false))
    })
    .await;
    within(10, "traffic stops going to the killed workload", || async {
        tally(out, "reviews:9080", "/", &[], 50).await
            == BTreeMap::from([("app-b".to_string(), 50)])
    })
    .await;
    println!(
        "killed -> traffic only to the live workload after {:?}",
        killed.elapsed()
    );
    let before = app_b.requests.load(Ordering::SeqCst);
    assert_eq!(
        tally(out, "reviews:9080", "/", &[], 200).await,
        BTreeMap::from([("app-b".to_string(), 200)])
    );
    assert!(app_b.requests.load(Ordering::SeqCst) >= before + 200);

    // SIGTERM: the sidecar deregisters before it drains.
    let pid = b.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = b.child.wait().unwrap();
    assert!(status.success(), "{status}\n{}", b.log());
    assert!(b.log().contains("deregistered"), "{}", b.log());
    assert!(
        !registered(&cp).iter().any(|(v, _)| v == "v2"),
        "{:?}",
        registered(&cp)
    );
}

// ---------------------------------------------------------------------------
// A proxyless gRPC client (grpcio, its own xDS resolver) as a foreign client.

/// Python with grpcio: `$GRPC_VENV/bin/python` (default /opt/grpc-venv, as
/// `.ci/run` makes it). None: skip, except under CI.
fn grpc_python() -> Option<PathBuf> {
    let venv = std::env::var_os("GRPC_VENV")
        .map_or_else(|| PathBuf::from("/opt/grpc-venv"), PathBuf::from);
    let python = venv.join("bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import grpc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {} cannot import grpc: pip install grpcio xds-protos into {}",
        python.display(),
        venv.display()
    );
    eprintln!(
        "note: no grpcio venv at {}; skipping the proxyless gRPC test",
        venv.display()
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxyless_grpc_client_completes_xds_and_calls_the_service() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let Some(python) = grpc_python() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_xds_client.py");
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .arg("xds:///echo:7070")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the gRPC client answers within 60 s")
            .unwrap()
            .expect("a line")
    };
    let listening = next_line().await;
    let port = listening
        .strip_prefix("listening ")
        .expect("listening <port>");
    let mesh = Mesh::new(&format!(
        "services:\n  - name: echo\n    ports: [{{ port: 7070, protocol: grpc }}]\n    workloads: [{{ address: \"127.0.0.1:{port}\" }}]\n"
    ));
    let cp = control_plane(&mesh.dir).await;
    let bootstrap = mesh.dir.join("grpc-bootstrap.json");
    let node = serde_json::json!({
        "xds_servers": [{
            "server_uri": cp.addr.to_string(),
            "channel_creds": [{ "type": "insecure" }],
            "server_features": ["xds_v3"],
        }],
        "node": { "id": "grpc-client", "metadata": { "namespace": "default" } },
    });
    std::fs::write(&bootstrap, node.to_string()).unwrap();
    stdin
        .write_all(format!("{}\n", bootstrap.display()).as_bytes())
        .await
        .unwrap();
    assert_eq!(next_line().await, "reply echo:hello");
    // It holds every type it was sent, and rejected nothing.
    eventually("the gRPC client ACKed every type", || async {
        all_in_sync(&cp, "grpc-client")
    })
    .await;
    stdin.write_all(b"done\n").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
