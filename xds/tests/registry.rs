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
    let cp = ControlPlane::start(
        Options {
            mesh: dir.clone(),
            listen: "127.0.0.1:0".into(),
            admin: None,
            watch_interval: Duration::from_millis(50),
            reap_after,
        },
        None,
    )
    .await
    .unwrap();
    let client = RegistryClient::connect(format!("http://{}", cp.addr))
        .await
        .unwrap();
    (cp, client, dir)
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
