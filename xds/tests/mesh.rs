//! The mesh description: loading and checking (errors name file, line and
//! field), and what it generates for each proxy.

use legate_xds::duration::Dur;
use legate_xds::mesh::generate::{self, Generated, ProxyInfo};
use legate_xds::mesh::{self, Mesh};
use legate_xds::model::{self, RouteAction};
use legate_xds::translate::{self, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE};
use legate_xds::wire::envoy::config::core::v3::Node;
use std::path::Path;

fn example() -> Mesh {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh/bookinfo.yaml");
    mesh::load(&path).unwrap_or_else(|e| panic!("example mesh: {e:?}"))
}

fn one(text: &str) -> Result<Mesh, Vec<String>> {
    mesh::parse(&[("mesh.yaml".to_string(), text.to_string())])
        .map_err(|es| es.iter().map(|e| e.to_string()).collect())
}

fn errors(text: &str) -> Vec<String> {
    one(text).err().unwrap_or_default()
}

fn proxy(service: Option<&str>) -> ProxyInfo {
    ProxyInfo {
        service: service.map(str::to_string),
        ..Default::default()
    }
}

fn route_config<'a>(g: &'a Generated, name: &str) -> &'a model::RouteConfiguration {
    g.route_configs
        .iter()
        .find(|r| r.name == name)
        .expect("route config")
}

fn vhost<'a>(g: &'a Generated, name: &str) -> &'a model::VirtualHost {
    route_config(g, "outbound")
        .virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name}"))
}

fn action<'a>(vh: &'a model::VirtualHost, route: &str) -> &'a RouteAction {
    vh.routes
        .iter()
        .find(|r| r.name.as_deref() == Some(route))
        .and_then(|r| r.route.as_ref())
        .unwrap_or_else(|| panic!("no route {route}"))
}

const REVIEWS: &str = "reviews.default.svc.cluster.local";

#[test]
fn a_sidecar_gets_listeners_routes_and_clusters_for_what_it_may_call() {
    let mesh = example();
    let g = generate::generate(&mesh, &[], &proxy(Some("productpage")));
    assert!(g.warnings.is_empty(), "{:?}", g.warnings);
    let listeners: Vec<(&str, &str)> = g
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.address.as_str()))
        .collect();
    assert_eq!(
        listeners,
        [
            ("outbound", "127.0.0.1:15001"),
            ("inbound", "0.0.0.0:15006")
        ]
    );
    // productpage may call reviews and ratings (its egress), not db.
    let vhosts: Vec<&str> = route_config(&g, "outbound")
        .virtual_hosts
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        vhosts,
        [
            format!("{REVIEWS}:9080"),
            "ratings.default.svc.cluster.local:9080".into(),
            "ratings.default.svc.cluster.local:9090".into()
        ]
    );
    let mut clusters: Vec<&str> = g.clusters.iter().map(|c| c.name.as_str()).collect();
    clusters.sort();
    assert_eq!(
        clusters,
        [
            "inbound|9080||",
            "outbound|9080|v1|reviews.default.svc.cluster.local",
            "outbound|9080|v2|reviews.default.svc.cluster.local",
            "outbound|9080|v3|reviews.default.svc.cluster.local",
            "outbound|9080||ratings.default.svc.cluster.local",
            "outbound|9080||reviews.default.svc.cluster.local",
            "outbound|9090||ratings.default.svc.cluster.local",
        ]
    );
    // Subsets select workloads by label; multi-port workloads map ports.
    let endpoints = |name: &str| -> Vec<String> {
        g.clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .endpoints
            .iter()
            .map(|e| e.address.clone())
            .collect()
    };
    assert_eq!(
        endpoints(&format!("outbound|9080|v2|{REVIEWS}")),
        ["127.0.0.1:19082"]
    );
    assert_eq!(endpoints(&format!("outbound|9080||{REVIEWS}")).len(), 3);
    assert_eq!(
        endpoints("outbound|9090||ratings.default.svc.cluster.local"),
        ["127.0.0.1:19085"]
    );
    assert_eq!(endpoints("inbound|9080||"), ["127.0.0.1:9080"]);
    let reviews = &g
        .clusters
        .iter()
        .find(|c| c.name == format!("outbound|9080|v1|{REVIEWS}"))
        .unwrap();
    assert_eq!(reviews.lb_policy, model::LbPolicy::LeastRequest);
    assert_eq!(reviews.discovery, model::DiscoveryType::Eds);
    let grpc = g
        .clusters
        .iter()
        .find(|c| c.name == "outbound|9090||ratings.default.svc.cluster.local")
        .unwrap();
    assert_eq!(grpc.protocol, model::UpstreamProtocol::Http2);
}

#[test]
fn traffic_rules_become_routes() {
    let mesh = example();
    let g = generate::generate(&mesh, &[], &proxy(Some("productpage")));
    let vh = vhost(&g, &format!("{REVIEWS}:9080"));
    assert_eq!(
        vh.domains,
        [
            REVIEWS.to_string(),
            format!("{REVIEWS}:9080"),
            "reviews.default".into(),
            "reviews.default:9080".into(),
            "reviews".into(),
            "reviews:9080".into()
        ]
    );
    // In order: testers (header), chaos (fault), api (prefix + rewrite),
    // canary (split).
    let names: Vec<&str> = vh.routes.iter().filter_map(|r| r.name.as_deref()).collect();
    assert_eq!(names, ["testers", "chaos", "api", "canary"]);
    let fault = vh.routes[1].fault.as_ref().expect("chaos injects faults");
    assert_eq!(
        fault
            .delay
            .as_ref()
            .and_then(|d| d.fixed)
            .map(|d| d.get().as_secs()),
        Some(2)
    );
    assert_eq!(fault.abort.as_ref().and_then(|a| a.http_status), Some(503));
    assert!(vh.routes[0].fault.is_none());
    let testers = &vh.routes[0].route_match;
    assert_eq!(testers.headers[0].name, "end-user");
    assert_eq!(testers.headers[0].exact.as_deref(), Some("jason"));
    assert_eq!(
        action(vh, "testers").cluster.as_deref(),
        Some(format!("outbound|9080|v3|{REVIEWS}").as_str())
    );
    let api = action(vh, "api");
    assert_eq!(api.prefix_rewrite.as_deref(), Some("/api/v1/"));
    assert_eq!(api.timeout.get().as_secs(), 3);
    let canary = action(vh, "canary");
    let split: Vec<(String, u32)> = canary
        .weighted_clusters
        .iter()
        .map(|w| (w.name.clone(), w.weight))
        .collect();
    assert_eq!(
        split,
        [
            (format!("outbound|9080|v1|{REVIEWS}"), 90),
            (format!("outbound|9080|v2|{REVIEWS}"), 10)
        ]
    );
    assert_eq!(
        canary.timeout.get().as_secs(),
        15,
        "Envoy's default route timeout"
    );
}

#[test]
fn every_generated_resource_is_one_legate_accepts() {
    let mesh = example();
    for who in [
        None,
        Some("productpage"),
        Some("reviews"),
        Some("ratings"),
        Some("db"),
    ] {
        let snap = generate::snapshot(&generate::generate(&mesh, &[], &proxy(who)));
        for t in [LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE] {
            let resources = snap.get(t).expect("every type is present");
            for (name, r) in &resources.resources {
                let (decoded, _) = translate::decode(t, &r.resource)
                    .unwrap_or_else(|e| panic!("{who:?}: {t} {name}: {e}"));
                assert_eq!(&decoded, name);
            }
        }
    }
}

#[test]
fn a_client_only_proxy_gets_every_service_and_no_inbound() {
    let mesh = example();
    let g = generate::generate(&mesh, &[], &proxy(None));
    assert_eq!(g.listeners.len(), 1);
    // productpage, reviews, ratings x2; db is TCP (clusters only).
    assert_eq!(route_config(&g, "outbound").virtual_hosts.len(), 4);
    assert!(
        g.clusters
            .iter()
            .any(|c| c.name == "outbound|5432||db.default.svc.cluster.local")
    );
    // Short names only within the proxy's own namespace.
    let other = ProxyInfo {
        namespace: "shop".into(),
        ..proxy(None)
    };
    let g = generate::generate(&mesh, &[], &other);
    let vh = vhost(&g, &format!("{REVIEWS}:9080"));
    assert!(
        !vh.domains
            .iter()
            .any(|d| d == "reviews" || d == "reviews:9080")
    );
}

#[test]
fn an_unknown_service_is_a_warning_not_a_failure() {
    let g = generate::generate(&example(), &[], &proxy(Some("nope")));
    assert_eq!(g.warnings.len(), 1, "{:?}", g.warnings);
    assert!(g.warnings[0].contains("\"nope\""));
    assert_eq!(g.listeners.len(), 1);
}

#[test]
fn the_node_says_who_the_proxy_is() {
    use prost_types::{Struct, Value, value::Kind};
    let s = |v: &str| Value {
        kind: Some(Kind::StringValue(v.into())),
    };
    let node = Node {
        id: "reviews-1".into(),
        cluster: "ignored-when-metadata-says".into(),
        metadata: Some(Struct {
            fields: [
                ("service".to_string(), s("reviews")),
                ("namespace".to_string(), s("shop")),
                ("outbound_address".to_string(), s("127.0.0.1:25001")),
                ("inbound_address".to_string(), s("not an address")),
                ("app_address".to_string(), s("127.0.0.1:8080")),
            ]
            .into(),
        }),
        ..Default::default()
    };
    let (info, warnings) = ProxyInfo::from_node(&node);
    assert_eq!(info.service.as_deref(), Some("reviews"));
    assert_eq!(info.namespace, "shop");
    assert_eq!(info.outbound_address, "127.0.0.1:25001");
    assert_eq!(info.inbound_address, "0.0.0.0:15006");
    assert_eq!(info.app_address.as_deref(), Some("127.0.0.1:8080"));
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("inbound_address"), "{warnings:?}");
    // Envoy's --service-cluster convention.
    let (info, _) = ProxyInfo::from_node(&Node {
        cluster: "ratings".into(),
        ..Default::default()
    });
    assert_eq!(info.service.as_deref(), Some("ratings"));
}

#[test]
fn only_what_changed_gets_a_new_version() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh/bookinfo.yaml"),
    )
    .unwrap();
    let before = generate::snapshot(&generate::generate(
        &one(&text).unwrap(),
        &[],
        &proxy(Some("productpage")),
    ));
    let again = generate::snapshot(&generate::generate(
        &one(&text).unwrap(),
        &[],
        &proxy(Some("productpage")),
    ));
    assert_eq!(before, again, "generation is deterministic");
    let changed = text
        .replace("{ subset: v1, weight: 90 }", "{ subset: v1, weight: 50 }")
        .replace("{ subset: v2, weight: 10 }", "{ subset: v2, weight: 50 }");
    let after = generate::snapshot(&generate::generate(
        &one(&changed).unwrap(),
        &[],
        &proxy(Some("productpage")),
    ));
    for t in [LISTENER_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE] {
        assert_eq!(before.get(t), after.get(t), "{t} unchanged");
    }
    assert_ne!(
        before.get(ROUTE_TYPE).unwrap().version,
        after.get(ROUTE_TYPE).unwrap().version
    );
}

#[test]
fn errors_name_file_line_and_field() {
    let text = "\
services:
  - name: reviews
    ports: [{ port: 9080 }]
    subsets:
      - { name: v1, labels: { version: v1 } }
    routes:
      - destinations:
          - { subset: v1, weight: 90 }
          - { subset: v9, weight: 20 }
";
    assert_eq!(
        errors(text),
        [
            "mesh.yaml:9: services[0].routes[0].destinations[1].subset: service \"reviews\" has no subset \"v9\"",
            "mesh.yaml:7: services[0].routes[0].destinations: weights are percentages and must sum to 100, not 110",
        ]
    );
    // Syntax and unknown fields: serde's own line.
    let e = errors("services:\n  - name: a\n    ports: [{ port: 80 }]\n    retires: 3\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("mesh.yaml:4: services[0].retires: unknown field `retires`"),
        "{e:?}"
    );
    let e = errors("services:\n  - name: a\n    ports: [{ port: 80, protocol: quic }]\n");
    assert!(
        e[0].starts_with("mesh.yaml:3: services[0].ports[0].protocol: unknown variant `quic`"),
        "{e:?}"
    );
}

#[test]
fn every_check_has_a_message() {
    let cases: &[(&str, &str)] = &[
        (
            "services: [{ name: Bad_Name, ports: [{ port: 80 }] }]",
            "services[0].name: \"Bad_Name\" must be a DNS label",
        ),
        (
            "services: [{ name: a, ports: [] }]",
            "services[0].ports: a service needs at least one port",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }, { port: 80 }] }]",
            "services[0].ports[1].port: port 80 is listed twice",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], workloads: [{ address: nowhere }] }]",
            "services[0].workloads[0].address: invalid address \"nowhere\"",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }, { port: 81 }], workloads: [{ address: \"10.0.0.1:80\" }] }]",
            "services[0].workloads[0].address: \"10.0.0.1:80\": a service with several ports takes an IP address here",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], workloads: [{ address: 10.0.0.1, ports: { 81: 8081 } }] }]",
            "services[0].workloads[0].ports: the service has no port 81",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], routes: [{ destinations: [{ service: b }] }] }]",
            "services[0].routes[0].destinations[0].service: no service \"b\" in the mesh",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], routes: [{ destinations: [] }] }]",
            "services[0].routes[0].destinations: a route needs at least one destination",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], routes: [{ destinations: [{ weight: 50 }] }] }]",
            "services[0].routes[0].destinations[0].weight: a single destination takes all traffic",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], routes: [{ destinations: [{}, { weight: 50 }] }] }]",
            "services[0].routes[0].destinations[0].weight: with several destinations each needs a weight",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], routes: [{ match: [{ prefix: a }], destinations: [{}] }] }]",
            "services[0].routes[0].match[0].prefix: \"a\" must start with /",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], routes: [{ match: [{ prefix: /, path: /x }], destinations: [{}] }] }]",
            "services[0].routes[0].match[0]: give at most one of prefix, path and regex",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], routes: [{ match: [{ regex: \"(\" }], destinations: [{}] }] }]",
            "services[0].routes[0].match[0].regex: invalid regex",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], routes: [{ match: [{ headers: { x: {} } }], destinations: [{}] }] }]",
            "services[0].routes[0].match[0].headers.x: give exactly one of exact, prefix, regex and present",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], routes: [{ destinations: [{ port: 81 }] }] }]",
            "services[0].routes[0].destinations[0].port: service \"a\" has no port 81",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80, protocol: tcp }], routes: [{ destinations: [{}] }] }]",
            "services[0].routes: routes apply to http, http2 and grpc ports",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], egress: [zz] }]",
            "services[0].egress[0]: no service \"zz\" in the mesh",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], routes: [{ destinations: [{}], fault: { abort: { http_status: 700, percent: 5 } } }] }]",
            "services[0].routes[0].fault.abort.http_status: 700 is not between 200 and 599",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], routes: [{ rewrite: { prefix: x }, destinations: [{}] }] }]",
            "services[0].routes[0].rewrite.prefix: \"x\" must start with /",
        ),
    ];
    for (text, want) in cases {
        let e = errors(text);
        assert!(
            e.iter().any(|m| m.contains(want)),
            "{text}\nwanted: {want}\ngot: {e:?}"
        );
    }
}

#[test]
fn a_directory_is_one_mesh_and_duplicates_are_refused() {
    let dir = std::env::temp_dir().join(format!("legate-mesh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("a.yaml"),
        "services:\n  - name: a\n    ports: [{ port: 80 }]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.yml"),
        "services:\n  - name: b\n    ports: [{ port: 80 }]\n    routes: [{ destinations: [{ service: a }] }]\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not yaml").unwrap();
    let m = mesh::load(&dir).unwrap();
    assert_eq!(m.services.len(), 2);
    std::fs::write(
        dir.join("c.yaml"),
        "# again\nservices:\n  - name: a\n    ports: [{ port: 81 }]\n",
    )
    .unwrap();
    let e: Vec<String> = mesh::load(&dir)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    let a = dir.join("a.yaml").display().to_string();
    let c = dir.join("c.yaml").display().to_string();
    assert_eq!(
        e,
        [format!(
            "{c}:3: services[0].name: service \"a\" in namespace \"default\" is already defined at {a}:2"
        )]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_proxyless_grpc_client_gets_api_listeners_named_by_target() {
    let (info, _) = ProxyInfo::from_node(&Node {
        id: "grpc-client".into(),
        user_agent_name: "gRPC Python".into(),
        ..Default::default()
    });
    assert!(info.proxyless);
    let mesh = example();
    let g = generate::generate(&mesh, &[], &info);
    assert!(g.listeners.is_empty(), "no listening sockets for a library");
    for name in [
        "reviews:9080",
        "reviews",
        "reviews.default.svc.cluster.local:9080",
        "ratings:9090",
    ] {
        assert!(
            g.api_listeners.iter().any(|n| n == name),
            "{name}: {:?}",
            g.api_listeners
        );
    }
    let snap = generate::snapshot(&g);
    let listeners = &snap.get(LISTENER_TYPE).unwrap().resources;
    assert_eq!(listeners.len(), g.api_listeners.len());
    // Legate itself refuses API listeners: they are only for proxyless clients.
    let err = translate::decode(LISTENER_TYPE, &listeners["reviews:9080"].resource).unwrap_err();
    assert!(
        err.to_string().contains("api_listener: not supported"),
        "{err}"
    );
    // Routes and clusters are the same as a sidecar's.
    assert!(
        snap.get(ROUTE_TYPE)
            .unwrap()
            .resources
            .contains_key("outbound")
    );
    // A sidecar is not.
    assert!(!ProxyInfo::from_node(&Node::default()).0.proxyless);
}

fn cluster<'a>(g: &'a Generated, name: &str) -> &'a model::Cluster {
    g.clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

#[test]
fn destination_policies_become_circuit_breakers_and_outlier_detection() {
    let g = generate::generate(&example(), &[], &proxy(None));
    let all = cluster(&g, &format!("outbound|9080||{REVIEWS}"));
    assert_eq!(all.lb_policy, model::LbPolicy::LeastRequest);
    assert_eq!(
        all.connect_timeout.get().as_secs(),
        1,
        "policy.connect_timeout"
    );
    assert_eq!(all.idle_timeout.get().as_secs(), 300);
    let limits = &all.circuit_breakers.default;
    assert_eq!(limits.max_connections, 100);
    assert_eq!(limits.max_pending_requests, 64);
    assert_eq!(limits.max_requests, 200);
    assert_eq!(limits.max_retries, Some(10));
    assert_eq!(limits.retry_budget, None);
    assert!(
        all.circuit_breakers.high.is_default(),
        "mesh routes use the default priority"
    );
    let o = all.outlier_detection.as_ref().expect("outlier detection");
    assert_eq!(
        (
            o.consecutive_gateway_failure,
            o.enforcing_consecutive_gateway_failure
        ),
        (5, 100),
        "a gateway-error threshold that is set ejects"
    );
    assert_eq!(
        (o.consecutive_5xx, o.enforcing_consecutive_5xx),
        (5, 100),
        "Envoy's default"
    );
    assert_eq!(
        o.enforcing_success_rate, 0,
        "as Istio: no success-rate ejection"
    );
    assert_eq!(o.enforcing_local_origin_success_rate, 0);
    assert_eq!(o.interval.get().as_secs(), 10);
    assert_eq!(o.base_ejection_time.get().as_secs(), 30);
    assert_eq!(o.max_ejection_time.get().as_secs(), 300);
    assert_eq!(o.max_ejection_percent, 34);
    assert_eq!(
        all.healthy_panic_threshold, 0.0,
        "Istio's min_health_percent default"
    );

    // v1 has no overrides: the service's policy.
    let v1 = cluster(&g, &format!("outbound|9080|v1|{REVIEWS}"));
    assert_eq!(v1.circuit_breakers, all.circuit_breakers);
    assert_eq!(v1.outlier_detection, all.outlier_detection);
    // v2 overrides two fields and inherits the rest.
    let v2 = cluster(&g, &format!("outbound|9080|v2|{REVIEWS}"));
    assert_eq!(v2.circuit_breakers.default.max_requests, 50);
    assert_eq!(v2.circuit_breakers.default.max_connections, 100);
    assert_eq!(v2.circuit_breakers.default.max_retries, Some(10));
    assert_eq!(v2.connect_timeout.get().as_secs(), 1);
    assert_eq!(v2.lb_policy, model::LbPolicy::LeastRequest);
    let o2 = v2.outlier_detection.as_ref().expect("inherited");
    assert_eq!((o2.consecutive_5xx, o2.enforcing_consecutive_5xx), (3, 100));
    assert_eq!(o2.consecutive_gateway_failure, 5);
    assert_eq!(o2.max_ejection_percent, 34);

    // A service without a policy keeps every default.
    let ratings = cluster(&g, "outbound|9080||ratings.default.svc.cluster.local");
    let defaults = model::Cluster::default();
    assert!(ratings.circuit_breakers.is_default());
    assert_eq!(ratings.outlier_detection, None);
    assert_eq!(ratings.healthy_panic_threshold, 50.0);
    assert_eq!(ratings.connect_timeout, defaults.connect_timeout);
    assert_eq!(ratings.idle_timeout.get().as_secs(), 3600);
    assert_eq!(
        ratings.http2_max_concurrent_streams,
        defaults.http2_max_concurrent_streams
    );
}

const FULL_POLICY: &str = "\
services:
  - name: api
    ports: [{ port: 8080, protocol: grpc }]
    workloads:
      - { address: 127.0.0.1:18080, labels: { track: stable } }
      - { address: 127.0.0.1:18081, labels: { track: canary } }
    subsets:
      - { name: stable, labels: { track: stable } }
      - name: canary
        labels: { track: canary }
        policy:
          load_balancer: random
          connection_pool:
            tcp: { connect_timeout: 250ms }
            http: { max_concurrent_streams: 10, max_retries: 0 }
          outlier_detection: { consecutive_gateway_errors: 0, min_health_percent: 25 }
    policy:
      load_balancer: ring_hash
      connection_pool:
        tcp: { max_connections: 10, connect_timeout: 2s }
        http:
          http1_max_pending_requests: 5
          http2_max_requests: 20
          max_retries: 3
          idle_timeout: 90s
          max_concurrent_streams: 50
      outlier_detection:
        consecutive_5xx_errors: 0
        consecutive_gateway_errors: 2
        consecutive_local_origin_failures: 4
        split_external_local_origin_errors: true
        interval: 500ms
        base_ejection_time: 10m
        max_ejection_percent: 100
        min_health_percent: 60
  - name: web
    ports: [{ port: 80, protocol: http }, { port: 81, protocol: http2 }]
    policy: { connection_pool: { http: { max_concurrent_streams: 7 } } }
  - name: plain
    ports: [{ port: 80 }]
    subsets: [{ name: fast, labels: { speed: fast }, policy: { outlier_detection: { consecutive_5xx_errors: 1 } } }]
";

#[test]
fn every_policy_field_reaches_the_cluster() {
    let mesh = one(FULL_POLICY).unwrap_or_else(|e| panic!("{e:?}"));
    let g = generate::generate(&mesh, &[], &proxy(None));
    let api = cluster(&g, "outbound|8080||api.default.svc.cluster.local");
    assert_eq!(api.lb_policy, model::LbPolicy::RingHash);
    assert_eq!(api.connect_timeout.get().as_secs(), 2);
    assert_eq!(api.idle_timeout.get().as_secs(), 90);
    assert_eq!(api.http2_max_concurrent_streams, 50);
    assert_eq!(
        api.circuit_breakers.default,
        model::Thresholds {
            max_connections: 10,
            max_pending_requests: 5,
            max_requests: 20,
            max_retries: Some(3),
            retry_budget: None,
        }
    );
    assert_eq!(
        api.outlier_detection,
        Some(model::OutlierDetection {
            consecutive_5xx: 0,
            enforcing_consecutive_5xx: 0,
            consecutive_gateway_failure: 2,
            enforcing_consecutive_gateway_failure: 100,
            consecutive_local_origin_failure: 4,
            enforcing_consecutive_local_origin_failure: 100,
            split_external_local_origin_errors: true,
            interval: Dur::from_millis(500),
            base_ejection_time: Dur::from_secs(600),
            max_ejection_time: Dur::from_secs(600),
            max_ejection_percent: 100,
            enforcing_success_rate: 0,
            enforcing_local_origin_success_rate: 0,
            ..Default::default()
        })
    );
    assert_eq!(api.healthy_panic_threshold, 60.0);

    // The subset: its fields win, field by field; the rest is the service's.
    let stable = cluster(&g, "outbound|8080|stable|api.default.svc.cluster.local");
    assert_eq!(
        model::Cluster {
            name: api.name.clone(),
            endpoints: api.endpoints.clone(),
            ..stable.clone()
        },
        *api
    );
    let canary = cluster(&g, "outbound|8080|canary|api.default.svc.cluster.local");
    assert_eq!(canary.lb_policy, model::LbPolicy::Random);
    assert_eq!(canary.connect_timeout, Dur::from_millis(250));
    assert_eq!(canary.idle_timeout.get().as_secs(), 90);
    assert_eq!(canary.http2_max_concurrent_streams, 10);
    assert_eq!(
        canary.circuit_breakers.default,
        model::Thresholds {
            max_retries: Some(0),
            ..api.circuit_breakers.default.clone()
        }
    );
    let o = canary.outlier_detection.as_ref().unwrap();
    assert_eq!(
        (
            o.consecutive_gateway_failure,
            o.enforcing_consecutive_gateway_failure
        ),
        (0, 0),
        "0 turns a detection off"
    );
    assert_eq!(o.consecutive_local_origin_failure, 4);
    assert!(o.split_external_local_origin_errors);
    assert_eq!(canary.healthy_panic_threshold, 25.0);
    let addresses: Vec<&str> = canary
        .endpoints
        .iter()
        .map(|e| e.address.as_str())
        .collect();
    assert_eq!(addresses, ["127.0.0.1:18081"]);

    // Streams are an HTTP/2 setting: HTTP/1 clusters keep the default
    // (which is what they carry over xDS).
    let web = |port: u16| {
        cluster(
            &g,
            &format!("outbound|{port}||web.default.svc.cluster.local"),
        )
    };
    assert_eq!(web(81).http2_max_concurrent_streams, 7);
    assert_eq!(
        web(80).http2_max_concurrent_streams,
        model::Cluster::default().http2_max_concurrent_streams
    );

    // A subset may turn on outlier detection its service does not have.
    let plain = cluster(&g, "outbound|80||plain.default.svc.cluster.local");
    assert_eq!(plain.outlier_detection, None);
    assert_eq!(plain.healthy_panic_threshold, 50.0);
    let fast = cluster(&g, "outbound|80|fast|plain.default.svc.cluster.local");
    let o = fast.outlier_detection.as_ref().expect("the subset's own");
    assert_eq!((o.consecutive_5xx, o.enforcing_consecutive_5xx), (1, 100));
    assert_eq!(o.interval.get().as_secs(), 10, "Envoy's default");
    assert_eq!(fast.healthy_panic_threshold, 0.0);
    assert!(fast.circuit_breakers.is_default());
}

#[test]
fn generated_clusters_with_policies_round_trip_through_xds() {
    let full = one(FULL_POLICY).unwrap_or_else(|e| panic!("{e:?}"));
    for mesh in [example(), full] {
        let g = generate::generate(&mesh, &[], &proxy(None));
        assert!(g.clusters.len() > 4);
        for c in &g.clusters {
            let (xc, cla) = translate::cluster_to_xds(c);
            assert!(cla.is_some(), "{}: eds", c.name);
            let back = translate::cluster_from_xds(&xc)
                .unwrap_or_else(|e| panic!("{}: refused: {e}", c.name));
            // Endpoints travel apart, by EDS.
            let want = model::Cluster {
                endpoints: Vec::new(),
                ..c.clone()
            };
            assert_eq!(back, want, "{}", c.name);
        }
    }
}

#[test]
fn policy_errors_name_file_line_and_field() {
    let text = "\
services:
  - name: reviews
    ports: [{ port: 9080, protocol: grpc }]
    subsets:
      - name: v1
        labels: { version: v1 }
        policy:
          connection_pool:
            http: { http2_max_requests: 0 }
          outlier_detection:
            split_external_local_origin_errors: false
    policy:
      connect_timeout: 1s
      idle_timeout: 0s
      connection_pool:
        tcp:
          max_connections: 0
          connect_timeout: 2s
        http:
          idle_timeout: 30s
          max_concurrent_streams: 0
      outlier_detection:
        consecutive_local_origin_failures: 3
        split_external_local_origin_errors: true
        interval: 0s
        max_ejection_percent: 150
        min_health_percent: 101
";
    assert_eq!(
        errors(text),
        [
            "mesh.yaml:18: services[0].policy.connection_pool.tcp.connect_timeout: policy.connect_timeout and policy.connection_pool.tcp.connect_timeout are the same setting: give only one of them",
            "mesh.yaml:20: services[0].policy.connection_pool.http.idle_timeout: policy.idle_timeout and policy.connection_pool.http.idle_timeout are the same setting: give only one of them",
            "mesh.yaml:17: services[0].policy.connection_pool.tcp.max_connections: must be at least 1 (0 would refuse every request; leave it out for the default)",
            "mesh.yaml:21: services[0].policy.connection_pool.http.max_concurrent_streams: must be at least 1 (0 would refuse every request; leave it out for the default)",
            "mesh.yaml:25: services[0].policy.outlier_detection.interval: must be greater than 0",
            "mesh.yaml:26: services[0].policy.outlier_detection.max_ejection_percent: 150 is not a percentage (between 0 and 100)",
            "mesh.yaml:27: services[0].policy.outlier_detection.min_health_percent: 101 is not a percentage (between 0 and 100)",
            "mesh.yaml:9: services[0].subsets[0].policy.connection_pool.http.http2_max_requests: must be at least 1 (0 would refuse every request; leave it out for the default)",
            "mesh.yaml:11: services[0].subsets[0].policy.outlier_detection.split_external_local_origin_errors: consecutive_local_origin_failures needs split_external_local_origin_errors: true (without it, local-origin failures count toward consecutive_5xx_errors)",
        ]
    );
    // Fields the data plane does not have are refused by name, with the line.
    let e = errors(
        "services:\n  - name: a\n    ports: [{ port: 80 }]\n    policy:\n      connection_pool:\n        http: { max_requests_per_connection: 1 }\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "mesh.yaml:6: services[0].policy.connection_pool.http.max_requests_per_connection: unknown field `max_requests_per_connection`"
        ),
        "{e:?}"
    );
    // A subset overrides the pool, the outlier detection and the load
    // balancer only; its connect timeout goes in its connection pool.
    let e = errors(
        "services:\n  - name: a\n    ports: [{ port: 80 }]\n    subsets:\n      - name: b\n        labels: {}\n        policy: { connect_timeout: 1s }\n",
    );
    assert!(
        e[0].starts_with("mesh.yaml:7: services[0].subsets[0].policy.connect_timeout: unknown field `connect_timeout`"),
        "{e:?}"
    );
    let cases: &[(&str, &str)] = &[
        (
            "services: [{ name: a, ports: [{ port: 80 }], policy: { outlier_detection: { consecutive_local_origin_failures: 2 } } }]",
            "mesh.yaml:1: services[0].policy.outlier_detection.consecutive_local_origin_failures: consecutive_local_origin_failures needs split_external_local_origin_errors: true",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], policy: { connect_timeout: 0s } }]",
            "services[0].policy.connect_timeout: must be greater than 0",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], policy: { connection_pool: { http: { http1_max_pending_requests: 0 } } } }]",
            "services[0].policy.connection_pool.http.http1_max_pending_requests: must be at least 1",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], subsets: [{ name: b, labels: {}, policy: { connection_pool: { http: { max_concurrent_streams: 8 } } } }] }]",
            "mesh.yaml:1: services[0].subsets[0].policy.connection_pool.http.max_concurrent_streams: limits streams on HTTP/2 connections, and this service has no http2 or grpc port",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], policy: { outlier_detection: { base_ejection_time: 0s } } }]",
            "services[0].policy.outlier_detection.base_ejection_time: must be greater than 0",
        ),
        (
            "services: [{ name: a, ports: [{ port: 80 }], policy: { connection_pool: { tcp: { max_connections: -1 } } } }]",
            "services[0].policy.connection_pool.tcp.max_connections: invalid type: integer `-1`, expected u32",
        ),
    ];
    for (text, want) in cases {
        let e = errors(text);
        assert!(
            e.iter().any(|m| m.contains(want)),
            "{text}\nwanted: {want}\ngot: {e:?}"
        );
    }
    // The old spellings alone still work.
    let m = one("services: [{ name: a, ports: [{ port: 80 }], policy: { connect_timeout: 3s, idle_timeout: 1m } }]")
        .unwrap();
    let g = generate::generate(&m, &[], &proxy(None));
    let c = cluster(&g, "outbound|80||a.default.svc.cluster.local");
    assert_eq!(
        (
            c.connect_timeout.get().as_secs(),
            c.idle_timeout.get().as_secs()
        ),
        (3, 60)
    );
}
