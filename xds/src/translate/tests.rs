use super::*;
use crate::validate::FieldError;

#[test]
fn top_level_fields_are_found_in_the_bytes() {
    let c = xcluster::Cluster {
        name: "c".into(),
        connect_timeout: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        lb_policy: 2,
        ignore_health_on_host_removal: true,
        ..Default::default()
    };
    let mut fields = top_level_fields(&c.encode_to_vec());
    fields.sort();
    assert_eq!(fields, [1, 4, 6, 32]);
    // Fixed-width and truncated input.
    assert_eq!(
        top_level_fields(&[0x09, 1, 2, 3, 4, 5, 6, 7, 8, 0x15, 1, 2, 3, 4]),
        [1, 2]
    );
    assert_eq!(top_level_fields(&[0x0a, 0x05, b'a']), Vec::<u32>::new());
    assert_eq!(top_level_fields(&[0xff]), Vec::<u32>::new());
}

#[test]
fn model_paths_become_envoy_paths() {
    let chains = vec![
        "filter_chains[1]".to_string(),
        "default_filter_chain".to_string(),
    ];
    let l = |p: &str| paths::listener(p, &chains);
    assert_eq!(l("listeners[0].address"), "address.socket_address");
    assert_eq!(l("listeners[0].name"), "name");
    assert_eq!(l("listeners[0]"), "");
    assert_eq!(l("listeners[0].filter_chains"), "filter_chains");
    assert_eq!(
        l("listeners[0].filter_chains[0].tcp.cluster"),
        "filter_chains[1].filters[0].typed_config.cluster"
    );
    assert_eq!(
        l("listeners[0].filter_chains[1].http.rds"),
        "default_filter_chain.filters[0].typed_config.rds.route_config_name"
    );
    let vh = "listeners[0].filter_chains[0].http.route_config.virtual_hosts[2]";
    let evh = "filter_chains[1].filters[0].typed_config.route_config.virtual_hosts[2]";
    for (model, envoy) in [
        (
            "request_headers.add[1].name",
            "request_headers_to_add[1].header.key",
        ),
        (
            "response_headers.add[0].value",
            "response_headers_to_add[0].header.value",
        ),
        (
            "response_headers.remove[3]",
            "response_headers_to_remove[3]",
        ),
        ("routes[1].match.regex", "routes[1].match.safe_regex.regex"),
        (
            "routes[1].match.headers[0].name",
            "routes[1].match.headers[0].name",
        ),
        (
            "routes[0].route.weighted_clusters[2].name",
            "routes[0].route.weighted_clusters.clusters[2].name",
        ),
        (
            "routes[0].route.weighted_clusters",
            "routes[0].route.weighted_clusters",
        ),
        (
            "routes[0].route.host_rewrite",
            "routes[0].route.host_rewrite_literal",
        ),
        (
            "routes[0].route.regex_rewrite.pattern",
            "routes[0].route.regex_rewrite.pattern.regex",
        ),
        (
            "routes[0].route.hash_policy[1].header",
            "routes[0].route.hash_policy[1].header.header_name",
        ),
        (
            "routes[0].route.hash_policy[1].cookie",
            "routes[0].route.hash_policy[1].cookie.name",
        ),
        (
            "routes[0].redirect.scheme",
            "routes[0].redirect.scheme_redirect",
        ),
        (
            "routes[0].redirect.host",
            "routes[0].redirect.host_redirect",
        ),
        (
            "routes[0].redirect.path",
            "routes[0].redirect.path_redirect",
        ),
        (
            "routes[0].redirect.response_code",
            "routes[0].redirect.response_code",
        ),
        (
            "routes[0].request_headers.add[0].name",
            "routes[0].request_headers_to_add[0].header.key",
        ),
        ("routes[0]", "routes[0]"),
    ] {
        assert_eq!(l(&format!("{vh}.{model}")), format!("{evh}.{envoy}"));
        assert_eq!(
            paths::route_config(&format!("route_configs[0].virtual_hosts[2].{model}")),
            format!("virtual_hosts[2].{envoy}")
        );
    }

    let eps = vec!["load_assignment.endpoints[1].lb_endpoints[0]".to_string()];
    let c = |p: &str| paths::cluster(p, &eps);
    assert_eq!(
        c("clusters[0].endpoints[0].address"),
        "load_assignment.endpoints[1].lb_endpoints[0].endpoint.address.socket_address"
    );
    assert_eq!(
        c("clusters[0].endpoints[0].weight"),
        "load_assignment.endpoints[1].lb_endpoints[0].load_balancing_weight"
    );
    assert_eq!(
        c("clusters[0].eds_service_name"),
        "eds_cluster_config.service_name"
    );
    assert_eq!(
        c("clusters[0].ring_size"),
        "ring_hash_lb_config.minimum_ring_size"
    );
    assert_eq!(
        c("clusters[0].idle_timeout"),
        "typed_extension_protocol_options[\"envoy.extensions.upstreams.http.v3.HttpProtocolOptions\"].common_http_protocol_options.idle_timeout"
    );
    assert_eq!(
        c("clusters[0].max_idle_connections_per_endpoint"),
        "metadata.filter_metadata[\"legate\"].max_idle_connections_per_endpoint"
    );
    assert_eq!(c("clusters[0].connect_timeout"), "connect_timeout");
    let eps = vec!["endpoints[0].lb_endpoints[3]".to_string()];
    assert_eq!(
        paths::load_assignment("clusters[0].endpoints[0].address", &eps),
        "endpoints[0].lb_endpoints[3].endpoint.address.socket_address"
    );
    assert_eq!(
        paths::load_assignment("clusters[0].name", &eps),
        "cluster_name"
    );
}

#[test]
fn every_validation_error_is_reported() {
    let errors = vec![
        FieldError {
            path: "clusters[0].a".into(),
            message: "first".into(),
        },
        FieldError {
            path: "clusters[0].b".into(),
            message: "second".into(),
        },
    ];
    let e = check("Cluster", "c", errors, |p| paths::cluster(p, &[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Cluster \"c\": a: first (and 1 more: b: second)"
    );
    assert!(check("Cluster", "c", vec![], |p| p.to_string()).is_ok());
}

#[test]
fn addresses_and_durations() {
    assert_eq!(host_port("::1", 80), "[::1]:80");
    assert_eq!(host_port("10.0.0.1", 80), "10.0.0.1:80");
    assert_eq!(host_port("db.local", 5432), "db.local:5432");
    assert_eq!(host_port("fe80::1%eth0", 1), "[fe80::1%eth0]:1");
    for s in ["[::1]:80", "10.0.0.1:0", "db.local:5432"] {
        assert_eq!(address_from("a", Some(&address_to(s))).unwrap(), s);
    }
    let d = Dur(std::time::Duration::new(3, 7));
    assert_eq!(dur_from("d", &dur_to(d)).unwrap(), d);
    let bad = prost_types::Duration {
        seconds: 1,
        nanos: -1,
    };
    assert_eq!(dur_from("d", &bad).unwrap_err().path, "d");
    let empty = xcore::Address::default();
    assert_eq!(
        address_from("a", Some(&empty)).unwrap_err().message,
        "must be set"
    );
}
