//! Workload registration over gRPC against an in-process control plane:
//! what registrations, heartbeats, TTL expiry, deregistration and reaping
//! do to the endpoints proxies are sent.

use legate_xds::control_plane::{ControlPlane, Options};
use legate_xds::model::HealthStatus;
use legate_xds::server::SnapshotSource;
use legate_xds::translate::{self, ENDPOINT_TYPE, Resource};
use legate_xds::wire::envoy::config::core::v3::Node;
use legate_xds::wire::legate::registry::v1 as pb;
use pb::registry_client::RegistryClient;
use std::time::Duration;
use tonic::transport::Channel;

const MESH: &str = "services:
  - name: reviews
    ports: [{ port: 9080 }]
    workloads: [{ address: \"10.0.0.1:9080\", labels: { version: v1 } }]
    subsets:
      - { name: v1, labels: { version: v1 } }
      - { name: v2, labels: { version: v2 } }
";

const ALL: &str = "outbound|9080||reviews.default.svc.cluster.local";
const V2: &str = "outbound|9080|v2|reviews.default.svc.cluster.local";

async fn start(
    reap_after: Duration,
) -> (ControlPlane, RegistryClient<Channel>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "legate-registry-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mesh.yaml"), MESH).unwrap();
    let (cp, client) = replica(&dir, reap_after, None).await;
    (cp, client, dir)
}

/// A control plane on the mesh in `dir`, with its registry in memory or in
/// etcd.
async fn replica(
    dir: &std::path::Path,
    reap_after: Duration,
    etcd: Option<String>,
) -> (ControlPlane, RegistryClient<Channel>) {
    let cp = ControlPlane::start(
        Options {
            mesh: dir.to_path_buf(),
            listen: "127.0.0.1:0".into(),
            admin: None,
            watch_interval: Duration::from_millis(50),
            reap_after,
            registry: etcd,
        },
        None,
    )
    .await
    .unwrap();
    let client = RegistryClient::connect(format!("http://{}", cp.addr))
        .await
        .unwrap();
    (cp, client)
}

/// The endpoints (address, health) a proxy is sent for `cluster` now.
fn endpoints(cp: &ControlPlane, cluster: &str) -> Vec<(String, HealthStatus)> {
    let snap = cp.source().snapshot(&Node::default());
    let Some(r) = snap
        .get(ENDPOINT_TYPE)
        .and_then(|t| t.resources.get(cluster))
    else {
        return Vec::new();
    };
    match translate::decode(ENDPOINT_TYPE, &r.resource) {
        Ok((_, Resource::Endpoints(la))) => la
            .endpoints
            .into_iter()
            .map(|e| (e.address, e.health_status))
            .collect(),
        other => panic!("{other:?}"),
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn workload(service: &str, port: u32, version: &str) -> pb::Workload {
    pb::Workload {
        service: service.into(),
        address: "127.0.0.1".into(),
        port,
        labels: [("version".to_string(), version.to_string())].into(),
        ..Default::default()
    }
}

fn ttl(ms: u64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: 0,
        nanos: (ms * 1_000_000) as i32,
    })
}

#[tokio::test]
async fn a_registration_lives_while_it_heartbeats() {
    let (cp, mut c, dir) = start(Duration::from_secs(300)).await;
    let id = c
        .register(pb::RegisterRequest {
            workload: Some(workload("reviews", 19082, "v2")),
            ttl: ttl(300),
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let me = ("127.0.0.1:19082".to_string(), HealthStatus::Healthy);
    // In the service's cluster (after the static workload) and its subset.
    assert_eq!(
        endpoints(&cp, ALL),
        [("10.0.0.1:9080".into(), HealthStatus::Unknown), me.clone()]
    );
    assert_eq!(endpoints(&cp, V2), std::slice::from_ref(&me));

    // Heartbeats keep it healthy past several TTLs.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.heartbeat(pb::HeartbeatRequest { id: id.clone() })
            .await
            .unwrap();
    }
    assert_eq!(endpoints(&cp, V2), std::slice::from_ref(&me));

    // Silence: unhealthy after the TTL, still listed.
    eventually("the TTL passes", || {
        endpoints(&cp, V2) == [("127.0.0.1:19082".into(), HealthStatus::Unhealthy)]
    })
    .await;
    let list = c
        .list(pb::ListRequest {})
        .await
        .unwrap()
        .into_inner()
        .registrations;
    assert_eq!(list.len(), 1);
    assert!(!list[0].healthy);
    // A heartbeat brings it back.
    c.heartbeat(pb::HeartbeatRequest { id: id.clone() })
        .await
        .unwrap();
    assert_eq!(endpoints(&cp, V2), std::slice::from_ref(&me));

    // Deregistered: gone.
    c.deregister(pb::DeregisterRequest { id: id.clone() })
        .await
        .unwrap();
    assert_eq!(endpoints(&cp, V2), []);
    let e = c.heartbeat(pb::HeartbeatRequest { id }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(e.message().contains("register again"), "{}", e.message());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn silent_registrations_are_reaped_and_reregistering_is_idempotent() {
    let (cp, mut c, dir) = start(Duration::from_millis(400)).await;
    let req = || pb::RegisterRequest {
        workload: Some(workload("reviews", 19083, "v2")),
        ttl: ttl(150),
    };
    let a = c.register(req()).await.unwrap().into_inner().id;
    let b = c.register(req()).await.unwrap().into_inner().id;
    assert_eq!(a, b, "the same endpoint keeps its id");
    assert_eq!(endpoints(&cp, V2).len(), 1);
    eventually("reaped", || endpoints(&cp, V2).is_empty()).await;
    assert!(
        c.list(pb::ListRequest {})
            .await
            .unwrap()
            .into_inner()
            .registrations
            .is_empty()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn registrations_are_checked_against_the_mesh() {
    let (_cp, mut c, dir) = start(Duration::from_secs(300)).await;
    let refuse = |w: pb::Workload, ttl: Option<prost_types::Duration>| {
        let mut c = c.clone();
        async move {
            c.register(pb::RegisterRequest {
                workload: Some(w),
                ttl,
            })
            .await
            .unwrap_err()
        }
    };
    let e = refuse(workload("nope", 1, "v1"), None).await;
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        e.message(),
        "workload.service: no service \"nope\" in namespace \"default\" of the mesh"
    );
    let e = refuse(
        pb::Workload {
            address: "host".into(),
            ..workload("reviews", 1, "v1")
        },
        None,
    )
    .await;
    assert_eq!(e.message(), "workload.address: invalid IP address \"host\"");
    let e = refuse(workload("reviews", 0, "v1"), None).await;
    assert_eq!(e.message(), "workload.port: invalid port 0");
    let e = refuse(
        pb::Workload {
            service_port: 81,
            ..workload("reviews", 1, "v1")
        },
        None,
    )
    .await;
    assert_eq!(
        e.message(),
        "workload.service_port: service \"reviews\" has no port 81"
    );
    let e = refuse(workload("reviews", 1, "v1"), ttl(0)).await;
    assert_eq!(e.message(), "ttl: must be positive");
    let e = c
        .register(pb::RegisterRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    std::fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------------------
// etcd: replicas sharing one registry.

/// A real etcd on free 127.0.0.1 ports, killed (data removed) on drop.
struct Etcd {
    child: std::process::Child,
    dir: std::path::PathBuf,
    url: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `ETCD_BIN`, else `etcd` on PATH (Debian's etcd-server). None: skip the
/// test, except under CI, where it must be there.
fn etcd_bin() -> Option<std::path::PathBuf> {
    if let Some(b) = std::env::var_os("ETCD_BIN").filter(|b| !b.is_empty()) {
        return Some(b.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but etcd is missing: install etcd-server or set ETCD_BIN"
        );
        eprintln!("note: etcd not found (ETCD_BIN, PATH); skipping the etcd registry test");
    }
    found
}

async fn start_etcd(bin: &std::path::Path) -> Etcd {
    let dir = std::env::temp_dir().join(format!(
        "legate-etcd-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(std::env::temp_dir().join(format!("legate-etcd-{client}.log")))
        .unwrap();
    let child = std::process::Command::new(bin)
        .args(["--name", "test", "--data-dir"])
        .arg(&dir)
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("test={peer_url}")])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("etcd starts");
    let etcd = Etcd {
        child,
        dir,
        url: format!("etcd://127.0.0.1:{client}"),
    };
    let store = legate_xds::registry::etcd::EtcdStore::new(&etcd.url).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store.load().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "etcd not ready after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    etcd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_registry_through_etcd() {
    let Some(bin) = etcd_bin() else { return };
    let etcd = start_etcd(&bin).await;
    let dir = std::env::temp_dir().join(format!("legate-registry-etcd-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mesh.yaml"), MESH).unwrap();
    let (one, mut c1) = replica(&dir, Duration::from_secs(300), Some(etcd.url.clone())).await;
    let (two, mut c2) = replica(&dir, Duration::from_secs(300), Some(etcd.url.clone())).await;

    // Registered on one, served by both.
    let id = c1
        .register(pb::RegisterRequest {
            workload: Some(workload("reviews", 19090, "v2")),
            ttl: ttl(900),
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let me = vec![("127.0.0.1:19090".to_string(), HealthStatus::Healthy)];
    eventually("replica two serves the registration", || {
        endpoints(&two, V2) == me
    })
    .await;
    assert_eq!(endpoints(&one, V2), me);

    // Heartbeats through two keep it healthy on both past several TTLs.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        c2.heartbeat(pb::HeartbeatRequest { id: id.clone() })
            .await
            .unwrap();
    }
    assert_eq!(endpoints(&one, V2), me);
    assert_eq!(endpoints(&two, V2), me);

    // Silence: both mark it unhealthy.
    let sick = vec![("127.0.0.1:19090".to_string(), HealthStatus::Unhealthy)];
    eventually("both replicas see the TTL pass", || {
        endpoints(&one, V2) == sick && endpoints(&two, V2) == sick
    })
    .await;

    // A replica started now loads it.
    let (three, mut c3) = replica(&dir, Duration::from_secs(300), Some(etcd.url.clone())).await;
    assert_eq!(endpoints(&three, V2), sick, "loaded before serving");
    c3.heartbeat(pb::HeartbeatRequest { id: id.clone() })
        .await
        .unwrap();
    eventually("healthy again everywhere", || {
        [&one, &two, &three]
            .iter()
            .all(|cp| endpoints(cp, V2) == me)
    })
    .await;

    // Deregistered through two: gone from all.
    c2.deregister(pb::DeregisterRequest { id: id.clone() })
        .await
        .unwrap();
    eventually("gone everywhere", || {
        [&one, &two, &three]
            .iter()
            .all(|cp| endpoints(cp, V2).is_empty())
    })
    .await;
    assert_eq!(
        c1.heartbeat(pb::HeartbeatRequest { id })
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );

    // etcd down: registration is refused as unavailable, and what is served
    // stays.
    drop(etcd);
    let e = c1
        .register(pb::RegisterRequest {
            workload: Some(workload("reviews", 19091, "v2")),
            ttl: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        e.message()
            .starts_with("the registry store is unavailable: etcd put"),
        "{}",
        e.message()
    );
    assert_eq!(
        endpoints(&one, ALL),
        [("10.0.0.1:9080".to_string(), HealthStatus::Unknown)]
    );
    std::fs::remove_dir_all(dir).unwrap();
}
