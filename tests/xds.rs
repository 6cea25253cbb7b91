//! The xDS client end to end: an in-process Legate configured only with a
//! `dynamic` section, fed by a test ADS server (`common/ads.rs`) that builds
//! its resources straight from the Envoy v3 wire types (as any foreign
//! control plane would), over state of the world and delta.

#[path = "common/ads.rs"]
mod ads;
mod common;

use ads::{AdsServer, Any, CLUSTER, ENDPOINT, LISTENER, ROUTE, any};
use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use legate::RunningProxy;
use legate_xds::wire::envoy::config::cluster::v3 as cluster;
use legate_xds::wire::envoy::config::core::v3 as core;
use legate_xds::wire::envoy::config::endpoint::v3 as endpoint;
use legate_xds::wire::envoy::config::listener::v3 as listener;
use legate_xds::wire::envoy::config::route::v3 as route;
use legate_xds::wire::envoy::extensions::filters::http::router::v3::Router;
use legate_xds::wire::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Api {
    Sotw,
    Delta,
}

impl Api {
    fn yaml(self) -> &'static str {
        match self {
            Api::Sotw => "sotw",
            Api::Delta => "delta",
        }
    }
}

// ---------------------------------------------------------------------------
// Resources, built from the wire types.

fn ads_source() -> core::ConfigSource {
    core::ConfigSource {
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            core::AggregatedConfigSource {},
        )),
        resource_api_version: core::ApiVersion::V3 as i32,
        ..Default::default()
    }
}

fn socket(addr: &str) -> core::Address {
    let sa: SocketAddr = addr.parse().expect("ip:port");
    socket_raw(&sa.ip().to_string(), u32::from(sa.port()))
}

fn socket_raw(ip: &str, port: u32) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

/// Listener `name` on 127.0.0.1:0 whose HTTP connection manager takes its
/// routes from RDS configuration `rds`.
fn http_listener(name: &str, rds: &str) -> (String, Any) {
    let manager = hcm::HttpConnectionManager {
        stat_prefix: name.to_string(),
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::Rds(
            hcm::Rds {
                config_source: Some(ads_source()),
                route_config_name: rds.to_string(),
            },
        )),
        http_filters: vec![hcm::HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(ads::wire(&any(
                &Router::default(),
            )))),
            ..Default::default()
        }],
        ..Default::default()
    };
    let l = listener::Listener {
        name: name.to_string(),
        address: Some(socket("127.0.0.1:0")),
        filter_chains: vec![listener::FilterChain {
            filters: vec![listener::Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(listener::filter::ConfigType::TypedConfig(ads::wire(&any(
                    &manager,
                )))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    (name.to_string(), any(&l))
}

fn prefix(p: &str) -> Option<route::RouteMatch> {
    Some(route::RouteMatch {
        path_specifier: Some(route::route_match::PathSpecifier::Prefix(p.to_string())),
        ..Default::default()
    })
}

/// A route sending `prefix` to `cluster`.
fn to_cluster(p: &str, cluster: &str) -> route::Route {
    route::Route {
        r#match: prefix(p),
        action: Some(route::route::Action::Route(route::RouteAction {
            cluster_specifier: Some(route::route_action::ClusterSpecifier::Cluster(
                cluster.to_string(),
            )),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A route splitting `prefix` between weighted clusters.
fn weighted(p: &str, clusters: &[(&str, u32)]) -> route::Route {
    route::Route {
        r#match: prefix(p),
        action: Some(route::route::Action::Route(route::RouteAction {
            cluster_specifier: Some(route::route_action::ClusterSpecifier::WeightedClusters(
                route::WeightedCluster {
                    clusters: clusters
                        .iter()
                        .map(|(name, w)| route::weighted_cluster::ClusterWeight {
                            name: name.to_string(),
                            weight: Some(*w),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Route configuration `name`: one virtual host for every domain.
fn route_config(name: &str, routes: Vec<route::Route>) -> (String, Any) {
    let rc = route::RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vec![route::VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    };
    (name.to_string(), any(&rc))
}

fn load_assignment(name: &str, addrs: &[SocketAddr]) -> endpoint::ClusterLoadAssignment {
    endpoint::ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![endpoint::LocalityLbEndpoints {
            lb_endpoints: addrs
                .iter()
                .map(|a| endpoint::LbEndpoint {
                    host_identifier: Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(
                        endpoint::Endpoint {
                            address: Some(socket(&a.to_string())),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// An EDS cluster (endpoints published under its own name).
fn eds_cluster(name: &str) -> (String, Any) {
    let c = cluster::Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::cluster::EdsClusterConfig {
            eds_config: Some(ads_source()),
            service_name: String::new(),
        }),
        ..Default::default()
    };
    (name.to_string(), any(&c))
}

/// A STATIC cluster with its endpoints inline.
fn static_cluster(name: &str, addrs: &[SocketAddr]) -> (String, Any) {
    let c = cluster::Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(load_assignment(name, addrs)),
        ..Default::default()
    };
    (name.to_string(), any(&c))
}

fn endpoints(name: &str, addrs: &[SocketAddr]) -> (String, Any) {
    (name.to_string(), any(&load_assignment(name, addrs)))
}

// ---------------------------------------------------------------------------
// Harness.

/// A proxy whose whole configuration comes from `ads`.
async fn dynamic_proxy(ads: &AdsServer, api: Api) -> RunningProxy {
    let yaml = r#"
admin: { address: "127.0.0.1:0" }
dynamic:
  servers: ["{{ADS}}"]
  node: { id: "sidecar-1", cluster: "test" }
  api: {{API}}
  initial_fetch_timeout: 15s
"#;
    proxy(
        yaml,
        &[
            ("ADS", ads.addr.to_string()),
            ("API", api.yaml().to_string()),
        ],
    )
    .await
}

/// Waits until the client ACKed `version` of `type_url`; panics with the
/// NACK if it rejected it instead.
async fn wait_ack(ads: &AdsServer, type_url: &str, version: &str) {
    within(
        15,
        &format!("ACK of {type_url} version {version}"),
        || async {
            if let Some(n) = ads.nack(type_url, version) {
                panic!("{type_url} version {version} was NACKed: {n:?}");
            }
            ads.acked(type_url, version)
        },
    )
    .await;
}

async fn listener_addr(proxy: &RunningProxy, name: &str) -> SocketAddr {
    within(15, &format!("listener {name} bound"), || async {
        proxy.listener_addr(name).is_some()
    })
    .await;
    proxy.listener_addr(name).unwrap()
}

async fn config_dump(proxy: &RunningProxy) -> serde_json::Value {
    let r = admin_get(proxy, "/config_dump").await;
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).expect("config_dump is JSON")
}

/// Sets the four types: listener "web" (RDS "routes"), `routes`, the
/// `clusters` and the `eds` load assignments, all at version `v`.
fn set_all(
    ads: &AdsServer,
    v: &str,
    routes: Vec<route::Route>,
    clusters: Vec<(String, Any)>,
    eds: Vec<(String, Any)>,
) {
    ads.set(CLUSTER, v, clusters);
    ads.set(ENDPOINT, v, eds);
    ads.set(LISTENER, v, vec![http_listener("web", "routes")]);
    ads.set(ROUTE, v, vec![route_config("routes", routes)]);
}

const ALL: [&str; 4] = [CLUSTER, ENDPOINT, LISTENER, ROUTE];
/// Without EDS clusters there is no EDS subscription.
const NO_EDS: [&str; 3] = [CLUSTER, LISTENER, ROUTE];

async fn wait_acks(ads: &AdsServer, v: &str, types: &[&str]) {
    for t in types {
        wait_ack(ads, t, v).await;
    }
}

// ---------------------------------------------------------------------------
// Initial configuration.

async fn initial_config(api: Api) {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let ads = AdsServer::start().await;
    let proxy = dynamic_proxy(&ads, api).await;

    // Connected, subscribed, but nothing delivered yet: not ready.
    within(15, "the proxy subscribes to CDS", || async {
        ads.requests().iter().any(|r| r.type_url == CLUSTER)
    })
    .await;
    assert_eq!(admin_get(&proxy, "/ready").await.status, 503);
    let first = &ads.requests()[0];
    assert_eq!(first.node_id, "sidecar-1", "{first:?}");
    assert_eq!(first.delta, api == Api::Delta);

    set_all(
        &ads,
        "1",
        vec![to_cluster("/a", "eds-a"), to_cluster("/b", "static-b")],
        vec![eds_cluster("eds-a"), static_cluster("static-b", &[b.addr])],
        vec![endpoints("eds-a", &[a.addr])],
    );
    wait_acks(&ads, "1", &ALL).await;
    within(15, "/ready says 200", || async {
        admin_get(&proxy, "/ready").await.status == 200
    })
    .await;

    let web = listener_addr(&proxy, "web").await;
    let r = get(web, "x", "/a/1", &[]).await;
    assert_eq!((r.status, r.header("x-upstream")), (200, Some("a")));
    let r = get(web, "x", "/b/1", &[]).await;
    assert_eq!((r.status, r.header("x-upstream")), (200, Some("b")));
    assert_eq!(get(web, "x", "/c", &[]).await.status, 404);

    // Subscriptions: LDS and CDS wildcard, RDS and EDS by name.
    let reqs = ads.requests();
    let names = |t: &str| -> Vec<String> {
        reqs.iter()
            .filter(|r| r.type_url == t)
            .flat_map(|r| r.names.clone())
            .collect()
    };
    assert!(names(ROUTE).contains(&"routes".to_string()), "{reqs:#?}");
    assert!(names(ENDPOINT).contains(&"eds-a".to_string()), "{reqs:#?}");
    for t in [CLUSTER, LISTENER] {
        assert!(
            names(t).iter().all(|n| n == "*"),
            "{t} is not a wildcard subscription: {reqs:#?}"
        );
    }
    assert!(reqs.iter().all(|r| r.error.is_none()), "{reqs:#?}");

    // Admin: connected, versions per type and per resource.
    let dump = config_dump(&proxy).await;
    let xds = &dump["xds"];
    assert_eq!(xds["connected"], true, "{xds:#}");
    for t in [CLUSTER, ENDPOINT, LISTENER, ROUTE] {
        assert_eq!(xds["types"][t]["version"], "1", "{t}: {xds:#}");
    }
    assert!(
        xds["types"][CLUSTER]["resources"]["eds-a"]["version"].is_string(),
        "{xds:#}"
    );
    assert!(
        xds["types"][ROUTE]["resources"]["routes"]["version"].is_string(),
        "{xds:#}"
    );
    // (`xds_connected` is one gauge per process, and tests run several
    // proxies in one: the CLI test checks it on a process of its own.)
    assert_eq!(xds["connected"], true, "{xds:#}");
    for t in ["LDS", "RDS", "CDS", "EDS"] {
        let acks = metric(
            &proxy,
            "xds_update_total",
            &[("type", t), ("result", "ack")],
        )
        .await;
        assert!(acks.unwrap_or(0.0) >= 1.0, "{t} acks: {acks:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_config_sotw() {
    initial_config(Api::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_config_delta() {
    initial_config(Api::Delta).await;
}

// ---------------------------------------------------------------------------
// A weighted split moved by RDS under load.

async fn weight_change_under_load(api: Api) {
    let (v1, v2) = (upstream("v1").await, upstream("v2").await);
    let ads = AdsServer::start().await;
    set_all(
        &ads,
        "1",
        vec![weighted("/", &[("v1", 100), ("v2", 0)])],
        vec![eds_cluster("v1"), static_cluster("v2", &[v2.addr])],
        vec![endpoints("v1", &[v1.addr])],
    );
    let proxy = dynamic_proxy(&ads, api).await;
    wait_acks(&ads, "1", &ALL).await;
    let web = listener_addr(&proxy, "web").await;

    let load = Load::start(web, "/x", 8);
    load.more(500).await;
    assert_eq!(v2.requests.load(Ordering::SeqCst), 0, "v2 had weight 0");

    let pushed = tokio::time::Instant::now();
    ads.set(
        ROUTE,
        "2",
        vec![route_config(
            "routes",
            vec![weighted("/", &[("v1", 0), ("v2", 100)])],
        )],
    );
    // From one second after the push, every new request goes to v2 (no
    // waiting for the ACK first: the clock runs from the push).
    tokio::time::sleep_until(pushed + Duration::from_secs(1)).await;
    load.mark.store(true, Ordering::SeqCst);
    load.more(500).await;
    let acked = ads.acked(ROUTE, "2");
    let (ok, failed, after) = load.finish().await;
    assert_eq!(failed, 0, "requests failed during the update ({ok} ok)");
    assert_eq!(
        after.get("v1").copied().unwrap_or(0),
        0,
        "requests started 1 s after the push still went to v1: {after:?} (ACKed by then: {acked})"
    );
    wait_ack(&ads, ROUTE, "2").await;
    // Every request after the mark but those already in flight then.
    assert!(after.get("v2").copied().unwrap_or(0) >= 400, "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weight_change_under_load_sotw() {
    weight_change_under_load(Api::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weight_change_under_load_delta() {
    weight_change_under_load(Api::Delta).await;
}

// ---------------------------------------------------------------------------
// EDS adds and removes endpoints.

async fn endpoint_add_remove(api: Api) {
    let (e1, e2) = (upstream("e1").await, upstream("e2").await);
    let ads = AdsServer::start().await;
    set_all(
        &ads,
        "1",
        vec![to_cluster("/", "svc")],
        vec![eds_cluster("svc")],
        vec![endpoints("svc", &[e1.addr])],
    );
    let proxy = dynamic_proxy(&ads, api).await;
    wait_acks(&ads, "1", &ALL).await;
    let web = listener_addr(&proxy, "web").await;
    for _ in 0..4 {
        assert_eq!(
            get(web, "x", "/", &[]).await.header("x-upstream"),
            Some("e1")
        );
    }

    // Add e2: it gets traffic.
    ads.set(ENDPOINT, "2", vec![endpoints("svc", &[e1.addr, e2.addr])]);
    wait_ack(&ads, ENDPOINT, "2").await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let r = get(web, "x", "/", &[]).await;
        assert_eq!(r.status, 200);
        seen.insert(r.header("x-upstream").unwrap().to_string());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["e1", "e2"],
        "both endpoints serve"
    );

    // Remove e1: it gets no new requests.
    ads.set(ENDPOINT, "3", vec![endpoints("svc", &[e2.addr])]);
    wait_ack(&ads, ENDPOINT, "3").await;
    let e1_before = e1.requests.load(Ordering::SeqCst);
    for _ in 0..20 {
        let r = get(web, "x", "/", &[]).await;
        assert_eq!((r.status, r.header("x-upstream")), (200, Some("e2")));
    }
    assert_eq!(e1.requests.load(Ordering::SeqCst), e1_before);

    if api == Api::Delta {
        // EDS carried only the changed assignment each time.
        let sent: Vec<_> = ads
            .sent()
            .into_iter()
            .filter(|s| s.type_url == ENDPOINT && s.version == "3")
            .collect();
        assert!(sent.iter().all(|s| s.names == ["svc"]), "{sent:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_add_remove_sotw() {
    endpoint_add_remove(Api::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_add_remove_delta() {
    endpoint_add_remove(Api::Delta).await;
}

// ---------------------------------------------------------------------------
// RDS removes a route; CDS removes a cluster.

async fn route_removal(api: Api) {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let ads = AdsServer::start().await;
    set_all(
        &ads,
        "1",
        vec![
            to_cluster("/gone", "a"),
            to_cluster("/fall", "a"),
            to_cluster("/", "b"),
        ],
        vec![
            static_cluster("a", &[a.addr]),
            static_cluster("b", &[b.addr]),
        ],
        vec![],
    );
    let proxy = dynamic_proxy(&ads, api).await;
    wait_acks(&ads, "1", &NO_EDS).await;
    let web = listener_addr(&proxy, "web").await;
    assert_eq!(
        get(web, "x", "/gone", &[]).await.header("x-upstream"),
        Some("a")
    );
    assert_eq!(
        get(web, "x", "/fall", &[]).await.header("x-upstream"),
        Some("a")
    );

    // "/fall" falls to the catch-all route.
    ads.set(
        ROUTE,
        "2",
        vec![route_config(
            "routes",
            vec![to_cluster("/gone", "a"), to_cluster("/", "b")],
        )],
    );
    wait_ack(&ads, ROUTE, "2").await;
    assert_eq!(
        get(web, "x", "/fall", &[]).await.header("x-upstream"),
        Some("b")
    );
    assert_eq!(
        get(web, "x", "/gone", &[]).await.header("x-upstream"),
        Some("a")
    );

    // Without a catch-all, "/gone" no longer matches anything: 404.
    ads.set(
        ROUTE,
        "3",
        vec![route_config("routes", vec![to_cluster("/b", "b")])],
    );
    wait_ack(&ads, ROUTE, "3").await;
    assert_eq!(get(web, "x", "/gone", &[]).await.status, 404);
    assert_eq!(
        get(web, "x", "/b", &[]).await.header("x-upstream"),
        Some("b")
    );

    // Cluster "a" removed by CDS (delta: as a removed resource).
    ads.set(CLUSTER, "2", vec![static_cluster("b", &[b.addr])]);
    wait_ack(&ads, CLUSTER, "2").await;
    if api == Api::Delta {
        assert!(
            ads.sent()
                .iter()
                .any(|s| s.type_url == CLUSTER && s.version == "2" && s.removed == ["a"]),
            "{:?}",
            ads.sent()
        );
    }
    within(15, "cluster a gone from /clusters", || async {
        let text = admin_get(&proxy, "/clusters").await.text();
        !text.contains(&format!("a::{}", a.addr))
    })
    .await;
    assert_eq!(
        get(web, "x", "/b", &[]).await.header("x-upstream"),
        Some("b")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_removal_sotw() {
    route_removal(Api::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_removal_delta() {
    route_removal(Api::Delta).await;
}

// ---------------------------------------------------------------------------
// Invalid updates are NACKed; the last good configuration keeps serving.

async fn invalid_updates_are_nacked(api: Api) {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let ads = AdsServer::start().await;
    set_all(
        &ads,
        "1",
        vec![to_cluster("/", "a")],
        vec![
            static_cluster("a", &[a.addr]),
            static_cluster("b", &[b.addr]),
        ],
        vec![],
    );
    let proxy = dynamic_proxy(&ads, api).await;
    wait_acks(&ads, "1", &NO_EDS).await;
    let web = listener_addr(&proxy, "web").await;
    assert_eq!(
        get(web, "x", "/", &[]).await.header("x-upstream"),
        Some("a")
    );

    // A route with a retry policy Legate does not support (a retry
    // priority plugin).
    let mut bad = to_cluster("/", "b");
    if let Some(route::route::Action::Route(action)) = &mut bad.action {
        action.retry_policy = Some(route::RetryPolicy {
            retry_on: "5xx".into(),
            num_retries: Some(3),
            retry_priority: Some(Default::default()),
            ..Default::default()
        });
    }
    ads.set(ROUTE, "2", vec![route_config("routes", vec![bad])]);
    within(15, "RDS version 2 NACKed", || async {
        ads.nack(ROUTE, "2").is_some()
    })
    .await;
    let nack = ads.nack(ROUTE, "2").unwrap();
    let error = nack.error.clone().unwrap();
    assert!(
        error.contains("retry_policy"),
        "NACK does not name the field: {nack:?}"
    );
    if api == Api::Sotw {
        assert_eq!(nack.version_info, "1", "NACK carries the last good version");
    }
    assert!(!ads.acked(ROUTE, "2"));
    assert_eq!(
        get(web, "x", "/", &[]).await.header("x-upstream"),
        Some("a")
    );

    let dump = config_dump(&proxy).await;
    let rds = &dump["xds"]["types"][ROUTE];
    assert_eq!(rds["version"], "1", "{rds:#}");
    assert!(
        rds["last_nack"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("retry_policy")),
        "{rds:#}"
    );
    let nacks = metric(
        &proxy,
        "xds_update_total",
        &[("type", "RDS"), ("result", "nack")],
    )
    .await;
    assert!(nacks.unwrap_or(0.0) >= 1.0, "RDS nacks: {nacks:?}");

    // A cluster with an endpoint address that is not an IP.
    let mut broken = cluster::Cluster {
        name: "b".into(),
        cluster_discovery_type: Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(load_assignment("b", &[b.addr])),
        ..Default::default()
    };
    if let Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(e)) =
        &mut broken.load_assignment.as_mut().unwrap().endpoints[0].lb_endpoints[0].host_identifier
    {
        e.address = Some(socket_raw("not an address", 80));
    }
    ads.set(
        CLUSTER,
        "2",
        vec![static_cluster("a", &[a.addr]), ("b".into(), any(&broken))],
    );
    within(15, "CDS version 2 NACKed", || async {
        ads.nack(CLUSTER, "2").is_some()
    })
    .await;
    let nack = ads.nack(CLUSTER, "2").unwrap();
    assert!(
        nack.error.as_deref().unwrap().contains("address"),
        "NACK does not name the field: {nack:?}"
    );
    if api == Api::Sotw {
        assert_eq!(nack.version_info, "1", "NACK carries the last good version");
    }
    assert_eq!(
        get(web, "x", "/", &[]).await.header("x-upstream"),
        Some("a")
    );

    // Later valid versions are ACKed and applied.
    ads.set(
        CLUSTER,
        "3",
        vec![
            static_cluster("a", &[a.addr]),
            static_cluster("b", &[b.addr]),
        ],
    );
    wait_ack(&ads, CLUSTER, "3").await;
    ads.set(
        ROUTE,
        "3",
        vec![route_config("routes", vec![to_cluster("/", "b")])],
    );
    wait_ack(&ads, ROUTE, "3").await;
    assert_eq!(
        get(web, "x", "/", &[]).await.header("x-upstream"),
        Some("b")
    );
    let dump = config_dump(&proxy).await;
    assert_eq!(dump["xds"]["types"][ROUTE]["version"], "3", "{dump:#}");
    assert_eq!(dump["xds"]["types"][CLUSTER]["version"], "3", "{dump:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_updates_are_nacked_sotw() {
    invalid_updates_are_nacked(Api::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_updates_are_nacked_delta() {
    invalid_updates_are_nacked(Api::Delta).await;
}

// ---------------------------------------------------------------------------
// The control plane restarts under load.

async fn control_plane_restart(api: Api) {
    let (v1, v2) = (upstream("v1").await, upstream("v2").await);
    let ads = AdsServer::start().await;
    set_all(
        &ads,
        "1",
        vec![to_cluster("/", "v1")],
        vec![eds_cluster("v1"), static_cluster("v2", &[v2.addr])],
        vec![endpoints("v1", &[v1.addr])],
    );
    let proxy = dynamic_proxy(&ads, api).await;
    wait_acks(&ads, "1", &ALL).await;
    let web = listener_addr(&proxy, "web").await;
    let load = Load::start(web, "/x", 4);
    load.more(200).await;

    ads.stop();
    within(
        15,
        "the proxy notices the control plane is gone",
        || async { config_dump(&proxy).await["xds"]["connected"] == false },
    )
    .await;
    // The last configuration keeps serving.
    load.more(300).await;
    assert_eq!(admin_get(&proxy, "/ready").await.status, 200);

    let streams = ads.streams_opened();
    ads.restart().await;
    within(60, "the proxy reconnects", || async {
        ads.streams_opened() > streams && config_dump(&proxy).await["xds"]["connected"] == true
    })
    .await;
    // The stream can be up before the server has read its first request.
    within(10, "a request on the new stream", || async {
        ads.requests().iter().any(|r| r.stream > streams)
    })
    .await;
    let reconnected = ads.requests().into_iter().find(|r| r.stream > streams);
    assert_eq!(reconnected.expect("a request").node_id, "sidecar-1");

    // A push after the restart applies.
    ads.set(
        ROUTE,
        "2",
        vec![route_config("routes", vec![to_cluster("/", "v2")])],
    );
    wait_ack(&ads, ROUTE, "2").await;
    load.mark.store(true, Ordering::SeqCst);
    load.more(200).await;
    let (ok, failed, after) = load.finish().await;
    assert_eq!(failed, 0, "requests failed across the restart ({ok} ok)");
    assert_eq!(after.get("v1").copied().unwrap_or(0), 0, "{after:?}");
    assert!(after.get("v2").copied().unwrap_or(0) > 0, "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_plane_restart_sotw() {
    control_plane_restart(Api::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_plane_restart_delta() {
    control_plane_restart(Api::Delta).await;
}

// ---------------------------------------------------------------------------
// What a reconnecting client says it has.

/// Delta: the first request of each type on the new stream carries
/// `initial_resource_versions` with every resource the proxy holds, at the
/// versions the server sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_reconnect_sends_initial_resource_versions() {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let ads = AdsServer::start().await;
    set_all(
        &ads,
        "1",
        vec![to_cluster("/a", "eds-a"), to_cluster("/b", "static-b")],
        vec![eds_cluster("eds-a"), static_cluster("static-b", &[b.addr])],
        vec![endpoints("eds-a", &[a.addr])],
    );
    let proxy = dynamic_proxy(&ads, Api::Delta).await;
    wait_acks(&ads, "1", &ALL).await;
    let web = listener_addr(&proxy, "web").await;
    assert_eq!(
        get(web, "x", "/a", &[]).await.header("x-upstream"),
        Some("a")
    );

    ads.stop();
    let streams = ads.streams_opened();
    ads.restart().await;
    let expected: Vec<(&str, Vec<&str>)> = vec![
        (CLUSTER, vec!["eds-a", "static-b"]),
        (ENDPOINT, vec!["eds-a"]),
        (LISTENER, vec!["web"]),
        (ROUTE, vec!["routes"]),
    ];
    for (t, names) in &expected {
        within(60, &format!("{t} requested on the new stream"), || async {
            ads.requests()
                .iter()
                .any(|r| r.stream > streams && r.type_url == *t)
        })
        .await;
        let reqs = ads.requests();
        let first = reqs
            .iter()
            .find(|r| r.stream > streams && r.type_url == *t)
            .unwrap();
        let want: std::collections::BTreeMap<String, String> = names
            .iter()
            .map(|n| (n.to_string(), ads.resource_version(t, n).unwrap()))
            .collect();
        assert_eq!(first.initial_versions, want, "{t}: {first:?}");
        assert!(first.nonce.is_empty(), "{first:?}");
    }
    // Nothing changed, so nothing was resent; a change still applies.
    ads.set(
        ROUTE,
        "2",
        vec![route_config("routes", vec![to_cluster("/", "static-b")])],
    );
    wait_ack(&ads, ROUTE, "2").await;
    assert_eq!(
        get(web, "x", "/a", &[]).await.header("x-upstream"),
        Some("b")
    );
    let resent: Vec<_> = ads
        .sent()
        .into_iter()
        .filter(|s| s.stream > streams && s.type_url != ROUTE && !s.names.is_empty())
        .collect();
    assert!(resent.is_empty(), "unchanged resources resent: {resent:?}");
}

/// State of the world: the first request of each type on the new stream
/// carries the version the proxy holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_reconnect_sends_held_versions() {
    let a = upstream("a").await;
    let ads = AdsServer::start().await;
    set_all(
        &ads,
        "1",
        vec![to_cluster("/", "eds-a")],
        vec![eds_cluster("eds-a")],
        vec![endpoints("eds-a", &[a.addr])],
    );
    let proxy = dynamic_proxy(&ads, Api::Sotw).await;
    wait_acks(&ads, "1", &ALL).await;
    ads.set(
        ROUTE,
        "2",
        vec![route_config("routes", vec![to_cluster("/a", "eds-a")])],
    );
    wait_ack(&ads, ROUTE, "2").await;
    let web = listener_addr(&proxy, "web").await;

    ads.stop();
    let streams = ads.streams_opened();
    ads.restart().await;
    for (t, v) in [
        (CLUSTER, "1"),
        (ENDPOINT, "1"),
        (LISTENER, "1"),
        (ROUTE, "2"),
    ] {
        within(60, &format!("{t} requested on the new stream"), || async {
            ads.requests()
                .iter()
                .any(|r| r.stream > streams && r.type_url == t)
        })
        .await;
        let reqs = ads.requests();
        let first = reqs
            .iter()
            .find(|r| r.stream > streams && r.type_url == t)
            .unwrap();
        assert_eq!(first.version_info, v, "{t}: {first:?}");
        assert!(first.nonce.is_empty(), "{first:?}");
    }
    assert_eq!(
        get(web, "x", "/a", &[]).await.header("x-upstream"),
        Some("a")
    );
}

// ---------------------------------------------------------------------------
// The test control plane itself, driven by a plain tonic client: the
// protocol behaviour the tests above rely on.

mod harness {
    use super::ads::{AdsServer, Any, CLUSTER, ENDPOINT, any};
    use super::cluster::Cluster;
    use legate_xds::wire::envoy::config::core::v3::Node;
    use legate_xds::wire::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient as Client;
    use legate_xds::wire::envoy::service::discovery::v3::{
        DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    };
    use legate_xds::wire::google::rpc;
    use std::time::Duration;
    use tokio::sync::mpsc;
    use tokio_stream::StreamExt;
    use tokio_stream::wrappers::ReceiverStream;

    /// A distinct resource per (name, tag).
    fn res(name: &str, tag: &str) -> (String, Any) {
        let c = Cluster {
            name: name.into(),
            alt_stat_name: tag.into(),
            ..Default::default()
        };
        (name.into(), any(&c))
    }

    async fn next<T>(s: &mut tonic::Streaming<T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("a response")
            .expect("stream open")
            .expect("not an error")
    }

    async fn nothing<T: std::fmt::Debug>(s: &mut tonic::Streaming<T>) {
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(200), s.next()).await {
            panic!("unexpected response: {m:?}");
        }
    }

    /// Waits until the server has recorded `n` requests.
    async fn recorded(ads: &AdsServer, n: usize) {
        crate::common::within(5, "request recorded", || async {
            ads.requests().len() >= n
        })
        .await;
    }

    #[tokio::test]
    async fn sotw_semantics() {
        let ads = AdsServer::start().await;
        ads.set(CLUSTER, "1", vec![res("a", "1"), res("b", "1")]);
        let mut c = Client::connect(format!("http://{}", ads.addr))
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(8);
        let send = |r: DiscoveryRequest| {
            let tx = tx.clone();
            async move { tx.send(r).await.unwrap() }
        };
        send(DiscoveryRequest {
            node: Some(Node {
                id: "n1".into(),
                ..Default::default()
            }),
            type_url: CLUSTER.into(),
            ..Default::default()
        })
        .await;
        let mut s = c
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let r: DiscoveryResponse = next(&mut s).await;
        assert_eq!((r.version_info.as_str(), r.resources.len()), ("1", 2));
        let ack = |version: &str, nonce: &str| DiscoveryRequest {
            type_url: CLUSTER.into(),
            version_info: version.into(),
            response_nonce: nonce.into(),
            ..Default::default()
        };
        send(ack("1", &r.nonce)).await;
        recorded(&ads, 2).await;
        assert!(ads.acked(CLUSTER, "1"));
        assert_eq!(ads.requests()[1].node_id, "n1");

        // A new version is pushed; its NACK gets no resend.
        ads.set(CLUSTER, "2", vec![res("a", "2")]);
        let r = next(&mut s).await;
        assert_eq!((r.version_info.as_str(), r.resources.len()), ("2", 1));
        send(DiscoveryRequest {
            error_detail: Some(rpc::Status {
                code: 3,
                message: "bad".into(),
                ..Default::default()
            }),
            ..ack("1", &r.nonce)
        })
        .await;
        nothing(&mut s).await;
        assert_eq!(
            ads.nack(CLUSTER, "2").unwrap().error.as_deref(),
            Some("bad")
        );

        // Named subscriptions get only the names asked for.
        ads.set(ENDPOINT, "1", vec![res("x", "1"), res("y", "1")]);
        send(DiscoveryRequest {
            type_url: ENDPOINT.into(),
            resource_names: vec!["x".into()],
            ..Default::default()
        })
        .await;
        let r = next(&mut s).await;
        assert_eq!((r.type_url.as_str(), r.resources.len()), (ENDPOINT, 1));

        // Stopped: the stream ends and the port is closed. Restarted: a
        // client holding the current version gets nothing until a change.
        ads.stop();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), s.next())
                .await
                .expect("stream ends")
                .is_none_or(|r| r.is_err())
        );
        assert!(tokio::net::TcpStream::connect(ads.addr).await.is_err());
        ads.restart().await;
        let mut c = Client::connect(format!("http://{}", ads.addr))
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(8);
        tx.send(ack("2", "")).await.unwrap();
        let mut s = c
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        nothing(&mut s).await;
        ads.set(CLUSTER, "3", vec![res("a", "3")]);
        assert_eq!(next(&mut s).await.version_info, "3");
        assert_eq!((ads.streams_opened(), ads.streams_open()), (2, 1));
    }

    #[tokio::test]
    async fn delta_semantics() {
        let ads = AdsServer::start().await;
        ads.set(CLUSTER, "1", vec![res("a", "1"), res("b", "1")]);
        let mut c = Client::connect(format!("http://{}", ads.addr))
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(8);
        let held_a = ads.resource_version(CLUSTER, "a").unwrap();
        tx.send(DeltaDiscoveryRequest {
            type_url: CLUSTER.into(),
            initial_resource_versions: [("a".to_string(), held_a), ("gone".into(), "x".into())]
                .into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut s = c
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let names = |r: &DeltaDiscoveryResponse| -> Vec<String> {
            r.resources.iter().map(|r| r.name.clone()).collect()
        };
        // Only what the client lacks, and the removal of what is gone.
        let r = next(&mut s).await;
        assert_eq!(
            (names(&r), r.removed_resources.clone()),
            (vec!["b".into()], vec!["gone".into()])
        );
        tx.send(DeltaDiscoveryRequest {
            type_url: CLUSTER.into(),
            response_nonce: r.nonce.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        ads.set(CLUSTER, "2", vec![res("a", "2"), res("b", "1")]);
        let r = next(&mut s).await;
        assert_eq!(
            (names(&r), r.removed_resources.len()),
            (vec!["a".into()], 0)
        );
        ads.set(CLUSTER, "3", vec![res("a", "2")]);
        let r = next(&mut s).await;
        assert_eq!(
            (names(&r).len(), r.removed_resources.clone()),
            (0, vec!["b".into()])
        );
        recorded(&ads, 2).await;
        assert!(ads.acked(CLUSTER, "1"));

        // Subscribe and unsubscribe by name.
        ads.set(ENDPOINT, "1", vec![res("x", "1"), res("y", "1")]);
        let sub = |add: &[&str], remove: &[&str], nonce: &str| DeltaDiscoveryRequest {
            type_url: ENDPOINT.into(),
            resource_names_subscribe: add.iter().map(|s| s.to_string()).collect(),
            resource_names_unsubscribe: remove.iter().map(|s| s.to_string()).collect(),
            response_nonce: nonce.into(),
            ..Default::default()
        };
        tx.send(sub(&["x"], &[], "")).await.unwrap();
        let r = next(&mut s).await;
        assert_eq!(names(&r), ["x"]);
        tx.send(sub(&["y"], &[], &r.nonce)).await.unwrap();
        let r = next(&mut s).await;
        assert_eq!(names(&r), ["y"]);
        tx.send(sub(&[], &["x"], &r.nonce)).await.unwrap();
        recorded(&ads, 5).await;
        ads.set(ENDPOINT, "2", vec![res("x", "2"), res("y", "2")]);
        assert_eq!(names(&next(&mut s).await), ["y"]);
    }
}

/// `legate run --config FILE --xds ADDR --node-id ID --xds-api delta`: the
/// binary connects with the node id given, over the API given, and reports
/// `/ready` 503 until the control plane has delivered a configuration.
#[tokio::test]
async fn run_flags_connect_the_binary_to_a_control_plane() {
    use std::io::BufRead;
    let ads = AdsServer::start().await;
    let dir = std::env::temp_dir().join(format!("legate-xds-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bootstrap.yaml");
    std::fs::write(&cfg, "admin: { address: \"127.0.0.1:0\" }\n").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_legate"))
        .args(["run", "--config"])
        .arg(&cfg)
        .args(["--xds", &ads.addr.to_string(), "--node-id", "cli-node"])
        .args(["--xds-api", "delta"])
        .env("LEGATE_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let child = Kill(child);
    let mut lines = std::io::BufReader::new(stderr).lines();
    let started = loop {
        let line = lines
            .next()
            .expect("legate exited before starting")
            .unwrap();
        if line.contains("legate started") {
            break line;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let at = started.find("admin=").unwrap() + "admin=".len();
    let rest = &started[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .unwrap_or(rest.len());
    let admin: SocketAddr = rest[..end].parse().unwrap();

    within(15, "a delta request from cli-node", || async {
        ads.requests()
            .iter()
            .any(|r| r.delta && r.node_id == "cli-node" && r.type_url == CLUSTER)
    })
    .await;
    let ready = |admin: SocketAddr| async move {
        let req = Request::get(format!("http://{admin}/ready"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(&h1_client(), req).await.status
    };
    assert_eq!(ready(admin).await, 503, "ready before any configuration");
    ads.set(CLUSTER, "1", Vec::new());
    ads.set(LISTENER, "1", Vec::new());
    within(15, "ready once the control plane answered", || async {
        ready(admin).await == 200
    })
    .await;
    // `xds_connected` follows the stream (this process has one proxy).
    let gauge = |admin: SocketAddr| async move {
        let req = Request::get(format!("http://{admin}/stats/prometheus"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let text = send(&h1_client(), req).await.text();
        text.lines()
            .find_map(|l| l.strip_prefix("xds_connected ")?.trim().parse::<f64>().ok())
    };
    assert_eq!(gauge(admin).await, Some(1.0));
    ads.stop();
    within(15, "xds_connected drops to 0", || async {
        gauge(admin).await == Some(0.0)
    })
    .await;
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A resource defined statically cannot be replaced by the control plane
/// (as in Envoy): the update is NACKed and the static one keeps serving.
#[tokio::test]
async fn static_resources_cannot_be_replaced_by_xds() {
    let (up, other) = (upstream("static").await, upstream("other").await);
    let ads = AdsServer::start().await;
    let yaml = r#"
admin: { address: "127.0.0.1:0" }
dynamic:
  servers: ["{{ADS}}"]
  node: { id: "sidecar-1" }
listeners:
  - name: web
    address: "127.0.0.1:0"
    http:
      route_config:
        virtual_hosts:
          - { name: all, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: svc } }] }
clusters:
  - name: svc
    endpoints: [{ address: "{{UP}}" }]
"#;
    let proxy = proxy(
        yaml,
        &[("ADS", ads.addr.to_string()), ("UP", up.addr.to_string())],
    )
    .await;
    ads.set(CLUSTER, "1", vec![static_cluster("svc", &[other.addr])]);
    within(15, "NACK of the CDS update", || async {
        ads.nack(CLUSTER, "1").is_some()
    })
    .await;
    let nack = ads.nack(CLUSTER, "1").unwrap();
    let error = nack.error.unwrap_or_default();
    assert!(
        error.contains("\"svc\" is defined statically"),
        "NACK does not say why: {error}"
    );
    let web = proxy.listener_addr("web").unwrap();
    assert_eq!(
        get(web, "x", "/", &[]).await.header("x-upstream"),
        Some("static")
    );
}

/// Faults and rate limits configured the way Istio writes them: per route
/// (`typed_per_filter_config`), in Envoy's own messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_route_faults_and_rate_limits_from_xds() {
    use legate_xds::wire::envoy::extensions::filters::http::fault::v3 as fault;
    use legate_xds::wire::envoy::extensions::filters::http::local_ratelimit::v3 as lrl;
    use legate_xds::wire::envoy::r#type::v3 as ty;
    let up = upstream("up").await;
    let hundred = || ty::FractionalPercent {
        numerator: 100,
        denominator: ty::fractional_percent::DenominatorType::Hundred as i32,
    };
    let mut aborting = to_cluster("/abort", "up");
    aborting.typed_per_filter_config.insert(
        "envoy.filters.http.fault".into(),
        ads::wire(&any(&fault::HttpFault {
            abort: Some(fault::FaultAbort {
                error_type: Some(fault::fault_abort::ErrorType::HttpStatus(418)),
                percentage: Some(hundred()),
                ..Default::default()
            }),
            ..Default::default()
        })),
    );
    let mut limited = to_cluster("/limited", "up");
    limited.typed_per_filter_config.insert(
        "envoy.filters.http.local_ratelimit".into(),
        ads::wire(&any(&lrl::LocalRateLimit {
            stat_prefix: "http_local_rate_limiter".into(),
            token_bucket: Some(ty::TokenBucket {
                max_tokens: 2,
                tokens_per_fill: Some(2),
                fill_interval: Some(prost_types_duration(3600)),
            }),
            filter_enabled: Some(core::RuntimeFractionalPercent {
                default_value: Some(hundred()),
                runtime_key: "local_rate_limit_enabled".into(),
            }),
            filter_enforced: Some(core::RuntimeFractionalPercent {
                default_value: Some(hundred()),
                runtime_key: "local_rate_limit_enforced".into(),
            }),
            ..Default::default()
        })),
    );
    let ads = AdsServer::start().await;
    set_all(
        &ads,
        "1",
        vec![aborting, limited, to_cluster("/", "up")],
        vec![static_cluster("up", &[up.addr])],
        vec![],
    );
    let proxy = dynamic_proxy(&ads, Api::Delta).await;
    wait_acks(&ads, "1", &[LISTENER, ROUTE, CLUSTER]).await;
    let web = listener_addr(&proxy, "web").await;
    assert_eq!(get(web, "x", "/abort", &[]).await.status, 418);
    let mut s = Vec::new();
    for _ in 0..3 {
        s.push(get(web, "x", "/limited", &[]).await.status);
    }
    assert_eq!(s, [200, 200, 429]);
    assert_eq!(get(web, "x", "/other", &[]).await.status, 200);
}

fn prost_types_duration(secs: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: secs,
        nanos: 0,
    }
}
