//! xDS -> model translation: realistic Envoy resources (built with
//! envoy-types, encoded, and decoded as Legate's wire types) translate field
//! by field; every refusal names its field; `decode` reports wrong types
//! and bad bytes.

// envoy-types marks Envoy's deprecated fields `#[deprecated]`; we set some.
#![allow(deprecated)]

use std::collections::HashMap;

use legate_xds::duration::Dur;
use legate_xds::model::{self, DiscoveryType, HealthStatus, LbPolicy, UpstreamProtocol};
use legate_xds::translate::{self, Resource, TranslateError};
use prost::{Message, Name};

use envoy_types::pb::envoy::config::cluster::v3 as ecluster;
use envoy_types::pb::envoy::config::core::v3 as ecore;
use envoy_types::pb::envoy::config::endpoint::v3 as eendpoint;
use envoy_types::pb::envoy::config::listener::v3 as elis;
use envoy_types::pb::envoy::config::route::v3 as eroute;
use envoy_types::pb::envoy::extensions::filters::http::router::v3 as erouter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as ehcm;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as etcp;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as eupstream;
use envoy_types::pb::envoy::r#type::matcher::v3 as ematcher;
use envoy_types::pb::google::protobuf as epb;

use legate_xds::wire::envoy::config::cluster::v3 as cluster;
use legate_xds::wire::envoy::config::core::v3 as core;
use legate_xds::wire::envoy::config::endpoint::v3 as endpoint;
use legate_xds::wire::envoy::config::listener::v3 as lis;
use legate_xds::wire::envoy::config::route::v3 as route;
use legate_xds::wire::envoy::extensions::filters::http::router::v3 as router;
use legate_xds::wire::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use legate_xds::wire::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use legate_xds::wire::envoy::extensions::upstreams::http::v3 as upstream;
use legate_xds::wire::envoy::r#type::matcher::v3 as matcher;

// ---------------------------------------------------------------------------
// Helpers

/// An envoy-types message as the `Any` a control plane would send.
fn eany<M: Name>(m: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// The same, as envoy-types' own Any (for nesting in envoy-types messages).
fn eany_nested<M: Name>(m: &M) -> epb::Any {
    epb::Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn u32v(value: u32) -> Option<epb::UInt32Value> {
    Some(epb::UInt32Value { value })
}

fn boolv(value: bool) -> Option<epb::BoolValue> {
    Some(epb::BoolValue { value })
}

fn esecs(seconds: i64) -> Option<epb::Duration> {
    Some(epb::Duration { seconds, nanos: 0 })
}

fn secs(s: u64) -> Dur {
    Dur::from_secs(s)
}

fn esocket(address: &str, port: u32) -> Option<ecore::Address> {
    Some(ecore::Address {
        address: Some(ecore::address::Address::SocketAddress(
            ecore::SocketAddress {
                address: address.into(),
                port_specifier: Some(ecore::socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            },
        )),
    })
}

/// A load assignment of one endpoint.
fn one_endpoint(
    cluster: &str,
    address: &str,
    port: u32,
) -> Option<eendpoint::ClusterLoadAssignment> {
    Some(eendpoint::ClusterLoadAssignment {
        cluster_name: cluster.into(),
        endpoints: vec![eendpoint::LocalityLbEndpoints {
            lb_endpoints: vec![eendpoint::LbEndpoint {
                host_identifier: Some(eendpoint::lb_endpoint::HostIdentifier::Endpoint(
                    eendpoint::Endpoint {
                        address: esocket(address, port),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn ads() -> Option<ecore::ConfigSource> {
    Some(ecore::ConfigSource {
        config_source_specifier: Some(ecore::config_source::ConfigSourceSpecifier::Ads(
            ecore::AggregatedConfigSource {},
        )),
        resource_api_version: ecore::ApiVersion::V3 as i32,
        ..Default::default()
    })
}

fn estring(p: ematcher::string_matcher::MatchPattern) -> ematcher::StringMatcher {
    ematcher::StringMatcher {
        match_pattern: Some(p),
        ..Default::default()
    }
}

fn eregex(r: &str) -> ematcher::RegexMatcher {
    ematcher::RegexMatcher {
        regex: r.into(),
        ..Default::default()
    }
}

fn eheader(key: &str, value: &str, action: i32) -> ecore::HeaderValueOption {
    ecore::HeaderValueOption {
        header: Some(ecore::HeaderValue {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }),
        append_action: action,
        ..Default::default()
    }
}

fn decode_ok(type_url: &str, any: &prost_types::Any) -> (String, Resource) {
    match translate::decode(type_url, any) {
        Ok(r) => r,
        Err(e) => panic!("refused: {e}"),
    }
}

/// Asserts a refusal's kind, name, path, and message (prefix).
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    r: Result<T, TranslateError>,
    kind: &str,
    name: &str,
    path: &str,
    message: &str,
) {
    match r {
        Ok(v) => panic!("accepted, expected {path}: {message}: {v:?}"),
        Err(e) => {
            assert_eq!(
                (e.kind, e.name.as_str(), e.path.as_str()),
                (kind, name, path),
                "{e}"
            );
            assert!(
                e.message.starts_with(message),
                "message {:?} does not start with {message:?}",
                e.message
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Realistic resources, field by field

/// An Envoy HTTP connection manager as a control plane would write it,
/// with fields Legate ignores and fields our wire subset does not have.
fn envoy_hcm() -> ehcm::HttpConnectionManager {
    use ematcher::string_matcher::MatchPattern as P;
    use eroute::header_matcher::HeaderMatchSpecifier as H;
    let vh = eroute::VirtualHost {
        name: "site".into(),
        domains: vec!["www.example.com".into(), "*.example.org".into()],
        routes: vec![
            eroute::Route {
                name: "static".into(),
                r#match: Some(eroute::RouteMatch {
                    path_specifier: Some(eroute::route_match::PathSpecifier::Prefix(
                        "/static/".into(),
                    )),
                    headers: vec![eroute::HeaderMatcher {
                        name: "x-canary".into(),
                        header_match_specifier: Some(H::StringMatch(estring(P::Exact(
                            "yes".into(),
                        )))),
                        invert_match: true,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                action: Some(eroute::route::Action::Route(eroute::RouteAction {
                    cluster_specifier: Some(eroute::route_action::ClusterSpecifier::Cluster(
                        "assets".into(),
                    )),
                    timeout: esecs(3),
                    idle_timeout: esecs(60),
                    ..Default::default()
                })),
                // Ignored: not in Legate's wire subset.
                decorator: Some(eroute::Decorator {
                    operation: "static".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            eroute::Route {
                r#match: Some(eroute::RouteMatch {
                    path_specifier: Some(eroute::route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(eroute::route::Action::Route(eroute::RouteAction {
                    cluster_specifier: Some(eroute::route_action::ClusterSpecifier::Cluster(
                        "web".into(),
                    )),
                    ..Default::default()
                })),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    ehcm::HttpConnectionManager {
        codec_type: ehcm::http_connection_manager::CodecType::Auto as i32,
        stat_prefix: "ingress_http".into(),
        route_specifier: Some(ehcm::http_connection_manager::RouteSpecifier::RouteConfig(
            eroute::RouteConfiguration {
                name: "inline".into(),
                virtual_hosts: vec![vh],
                validate_clusters: boolv(false),
                ..Default::default()
            },
        )),
        http_filters: vec![
            ehcm::HttpFilter {
                name: "envoy.filters.http.cors".into(),
                is_optional: true,
                ..Default::default()
            },
            ehcm::HttpFilter {
                name: "envoy.filters.http.router".into(),
                config_type: Some(ehcm::http_filter::ConfigType::TypedConfig(eany_nested(
                    &erouter::Router {
                        suppress_envoy_headers: true,
                        ..Default::default()
                    },
                ))),
                ..Default::default()
            },
        ],
        common_http_protocol_options: Some(ecore::HttpProtocolOptions {
            idle_timeout: esecs(300),
            max_headers_count: u32v(80),
            ..Default::default()
        }),
        http2_protocol_options: Some(ecore::Http2ProtocolOptions {
            max_concurrent_streams: u32v(200),
            initial_stream_window_size: u32v(65536),
            ..Default::default()
        }),
        request_headers_timeout: esecs(10),
        max_request_headers_kb: u32v(96),
        use_remote_address: boolv(true),
        xff_num_trusted_hops: 1,
        generate_request_id: boolv(false),
        normalize_path: boolv(true),
        merge_slashes: true,
        stream_idle_timeout: esecs(300),
        drain_timeout: esecs(5),
        upgrade_configs: vec![ehcm::http_connection_manager::UpgradeConfig {
            upgrade_type: "websocket".into(),
            ..Default::default()
        }],
        strip_port_mode: Some(ehcm::http_connection_manager::StripPortMode::StripAnyHostPort(true)),
        // Accepted: Legate passes the upstream's server header on.
        server_name: "edge".into(),
        server_header_transformation:
            ehcm::http_connection_manager::ServerHeaderTransformation::PassThrough as i32,
        // Ignored: not in Legate's wire subset.
        stream_error_on_invalid_http_message: boolv(true),
        ..Default::default()
    }
}

#[test]
fn realistic_listener() {
    let tcp_proxy = etcp::TcpProxy {
        stat_prefix: "db".into(),
        cluster_specifier: Some(etcp::tcp_proxy::ClusterSpecifier::Cluster(
            "postgres".into(),
        )),
        idle_timeout: esecs(1800),
        max_connect_attempts: u32v(3),
        ..Default::default()
    };
    let fallback = etcp::TcpProxy {
        stat_prefix: "fallback".into(),
        cluster_specifier: Some(etcp::tcp_proxy::ClusterSpecifier::Cluster("legacy".into())),
        ..Default::default()
    };
    let filter = |name: &str, any: epb::Any| elis::Filter {
        name: name.into(),
        config_type: Some(elis::filter::ConfigType::TypedConfig(any)),
    };
    let l = elis::Listener {
        name: "ingress".into(),
        address: esocket("0.0.0.0", 8080),
        stat_prefix: "ingress".into(),
        traffic_direction: ecore::TrafficDirection::Inbound as i32,
        per_connection_buffer_limit_bytes: u32v(32768),
        bind_to_port: boolv(true),
        listener_filters: vec![
            elis::ListenerFilter {
                name: "tls".into(),
                config_type: Some(elis::listener_filter::ConfigType::TypedConfig(epb::Any {
                    type_url: "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector".into(),
                    value: vec![],
                })),
                ..Default::default()
            },
            elis::ListenerFilter {
                name: "envoy.filters.listener.http_inspector".into(),
                ..Default::default()
            },
        ],
        listener_filters_timeout: esecs(1),
        filter_chains: vec![
            // A catch-all chain listed first: Envoy prefers the more specific
            // chains, so it comes last in the model.
            elis::FilterChain {
                name: "web".into(),
                filters: vec![filter(
                    "envoy.filters.network.http_connection_manager",
                    eany_nested(&envoy_hcm()),
                )],
                ..Default::default()
            },
            elis::FilterChain {
                filter_chain_match: Some(elis::FilterChainMatch {
                    destination_port: u32v(5432),
                    ..Default::default()
                }),
                filters: vec![filter("tcp", eany_nested(&tcp_proxy))],
                ..Default::default()
            },
        ],
        // Unreachable behind the catch-all chain: dropped.
        default_filter_chain: Some(elis::FilterChain {
            filters: vec![filter("tcp", eany_nested(&fallback))],
            ..Default::default()
        }),
        // Ignored: not in Legate's wire subset.
        enable_reuse_port: boolv(true),
        ..Default::default()
    };
    let (name, r) = decode_ok(translate::LISTENER_TYPE, &eany(&l));
    assert_eq!(name, "ingress");
    let Resource::Listener(m) = r else {
        panic!("{r:?}")
    };
    assert_eq!(m.name, "ingress");
    assert_eq!(m.address, "0.0.0.0:8080");
    assert!(m.http.is_none() && m.tcp.is_none());
    assert_eq!(m.filter_chains.len(), 2);

    let db = &m.filter_chains[0];
    assert_eq!(db.name, None);
    assert_eq!(db.filter_chain_match.destination_port, Some(5432));
    assert!(db.http.is_none());
    let t = db.tcp.as_ref().unwrap();
    assert_eq!(t.cluster, "postgres");
    assert_eq!(t.idle_timeout, secs(1800));

    let web = &m.filter_chains[1];
    assert_eq!(web.name.as_deref(), Some("web"));
    assert_eq!(web.filter_chain_match.destination_port, None);
    assert!(web.tcp.is_none());
    let h = web.http.as_ref().unwrap();
    assert_eq!(h.rds, None);
    assert_eq!(h.max_request_headers_kb, 96);
    assert_eq!(h.max_request_headers_count, 80);
    assert_eq!(h.request_headers_timeout, secs(10));
    assert_eq!(h.http2_max_concurrent_streams, 200);
    assert!(!h.generate_request_id);
    assert!(h.strip_any_host_port);
    let rc = h.route_config.as_ref().unwrap();
    assert_eq!(rc.name, "inline");
    assert_eq!(rc.virtual_hosts.len(), 1);
    let vh = &rc.virtual_hosts[0];
    assert_eq!(vh.name, "site");
    assert_eq!(vh.domains, ["www.example.com", "*.example.org"]);
    assert!(vh.request_headers.is_empty() && vh.response_headers.is_empty());
    assert_eq!(vh.routes.len(), 2);
    let r0 = &vh.routes[0];
    assert_eq!(r0.name.as_deref(), Some("static"));
    assert_eq!(r0.route_match.prefix.as_deref(), Some("/static/"));
    assert!(r0.route_match.case_sensitive);
    assert_eq!(
        r0.route_match.headers,
        [model::HeaderMatcher {
            name: "x-canary".into(),
            exact: Some("yes".into()),
            invert: true,
            ..Default::default()
        }]
    );
    let a0 = r0.route.as_ref().unwrap();
    assert_eq!(a0.cluster.as_deref(), Some("assets"));
    assert_eq!(a0.timeout, secs(3));
    let r1 = &vh.routes[1];
    assert_eq!(r1.name, None);
    assert_eq!(r1.route_match.prefix.as_deref(), Some("/"));
    let a1 = r1.route.as_ref().unwrap();
    assert_eq!(a1.cluster.as_deref(), Some("web"));
    assert_eq!(a1.timeout, secs(15), "Envoy's default route timeout");
}

#[test]
fn listener_defaults_are_envoys_except_two() {
    // A minimal HCM: absent fields take Envoy's defaults, except
    // request_headers_timeout and HTTP/2 max_concurrent_streams, which take
    // the model's (documented in the module).
    let h = hcm::HttpConnectionManager {
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::Rds(
            hcm::Rds {
                config_source: Some(core::ConfigSource {
                    config_source_specifier: Some(
                        core::config_source::ConfigSourceSpecifier::ApiConfigSource(
                            core::ApiConfigSource {
                                api_type: core::api_config_source::ApiType::AggregatedGrpc as i32,
                                ..Default::default()
                            },
                        ),
                    ),
                    ..Default::default()
                }),
                route_config_name: "routes".into(),
            },
        )),
        http_filters: vec![hcm::HttpFilter {
            name: "envoy.filters.http.router".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let m = translate::listener_from_xds(&listener_with(h)).unwrap();
    let got = m.filter_chains[0].http.as_ref().unwrap();
    let want = model::HttpConnectionManager {
        route_config: None,
        rds: Some("routes".into()),
        max_request_headers_kb: 60,
        max_request_headers_count: 100,
        request_headers_timeout: secs(60),
        http2_max_concurrent_streams: 1024,
        generate_request_id: true,
        strip_any_host_port: false,
        // Envoy's use_remote_address defaults to false: no XFF append.
        append_x_forwarded_for: false,
    };
    assert_eq!(got, &want);

    let t = tcp::TcpProxy {
        cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::Cluster("db".into())),
        ..Default::default()
    };
    let m = translate::listener_from_xds(&listener_with_filter(translate::to_any(&t))).unwrap();
    assert_eq!(
        m.filter_chains[0].tcp,
        Some(model::TcpProxy {
            cluster: "db".into(),
            idle_timeout: secs(3600)
        })
    );
}

#[test]
fn realistic_route_configuration() {
    use ecore::header_value_option::HeaderAppendAction as A;
    use ematcher::string_matcher::MatchPattern as P;
    use eroute::header_matcher::HeaderMatchSpecifier as H;
    use eroute::route_action::hash_policy::PolicySpecifier as HP;
    let rmatch = |p: eroute::route_match::PathSpecifier| eroute::RouteMatch {
        path_specifier: Some(p),
        ..Default::default()
    };
    let api = eroute::VirtualHost {
        name: "api".into(),
        domains: vec!["api.example.com".into(), "api.example.com:8080".into()],
        request_headers_to_add: vec![
            eheader("x-via-legate", "1", A::OverwriteIfExistsOrAdd as i32),
            eheader("x-trace", "on", A::AppendIfExistsOrAdd as i32),
        ],
        request_headers_to_remove: vec!["x-internal".into()],
        response_headers_to_add: vec![ecore::HeaderValueOption {
            header: Some(ecore::HeaderValue {
                key: "x-raw".into(),
                raw_value: b"bytes".to_vec(),
                ..Default::default()
            }),
            // The deprecated `append` wins over append_action.
            append: boolv(false),
            append_action: A::AppendIfExistsOrAdd as i32,
            ..Default::default()
        }],
        response_headers_to_remove: vec!["server".into()],
        routes: vec![
            eroute::Route {
                r#match: Some(eroute::RouteMatch {
                    path_specifier: Some(eroute::route_match::PathSpecifier::Prefix(
                        "/v1/".into(),
                    )),
                    case_sensitive: boolv(false),
                    headers: vec![
                        eroute::HeaderMatcher {
                            name: "x-env".into(),
                            header_match_specifier: Some(H::ExactMatch("prod".into())),
                            ..Default::default()
                        },
                        eroute::HeaderMatcher {
                            name: "x-user".into(),
                            header_match_specifier: Some(H::PrefixMatch("u-".into())),
                            ..Default::default()
                        },
                        eroute::HeaderMatcher {
                            name: "x-id".into(),
                            header_match_specifier: Some(H::SafeRegexMatch(eregex("[0-9]+"))),
                            ..Default::default()
                        },
                        eroute::HeaderMatcher {
                            name: "x-debug".into(),
                            header_match_specifier: Some(H::PresentMatch(false)),
                            ..Default::default()
                        },
                        eroute::HeaderMatcher {
                            name: "x-region".into(),
                            header_match_specifier: Some(H::StringMatch(estring(P::SafeRegex(
                                eregex("eu-.*"),
                            )))),
                            ..Default::default()
                        },
                        eroute::HeaderMatcher {
                            name: "x-team".into(),
                            header_match_specifier: Some(H::StringMatch(estring(P::Prefix(
                                "core".into(),
                            )))),
                            ..Default::default()
                        },
                        eroute::HeaderMatcher {
                            name: "x-any".into(),
                            ..Default::default()
                        },
                    ],
                    query_parameters: vec![
                        eroute::QueryParameterMatcher {
                            name: "debug".into(),
                            query_parameter_match_specifier: Some(
                                eroute::query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                                    estring(P::Exact("1".into())),
                                ),
                            ),
                        },
                        eroute::QueryParameterMatcher {
                            name: "page".into(),
                            query_parameter_match_specifier: Some(
                                eroute::query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                                    estring(P::SafeRegex(eregex("[0-9]+"))),
                                ),
                            ),
                        },
                        eroute::QueryParameterMatcher {
                            name: "trace".into(),
                            query_parameter_match_specifier: Some(
                                eroute::query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true),
                            ),
                        },
                    ],
                    ..Default::default()
                }),
                action: Some(eroute::route::Action::Route(eroute::RouteAction {
                    cluster_specifier: Some(
                        eroute::route_action::ClusterSpecifier::WeightedClusters(
                            eroute::WeightedCluster {
                                clusters: vec![
                                    eroute::weighted_cluster::ClusterWeight {
                                        name: "api-v1".into(),
                                        weight: u32v(80),
                                        ..Default::default()
                                    },
                                    eroute::weighted_cluster::ClusterWeight {
                                        name: "api-v2".into(),
                                        weight: u32v(20),
                                        ..Default::default()
                                    },
                                ],
                                total_weight: u32v(100),
                                ..Default::default()
                            },
                        ),
                    ),
                    prefix_rewrite: "/".into(),
                    timeout: esecs(5),
                    hash_policy: vec![eroute::route_action::HashPolicy {
                        policy_specifier: Some(HP::Header(
                            eroute::route_action::hash_policy::Header {
                                header_name: "x-user".into(),
                                ..Default::default()
                            },
                        )),
                        terminal: false,
                    }],
                    upgrade_configs: vec![eroute::route_action::UpgradeConfig {
                        upgrade_type: "websocket".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })),
                response_headers_to_add: vec![eheader("cache-control", "no-store", 0)],
                ..Default::default()
            },
            eroute::Route {
                r#match: Some(rmatch(eroute::route_match::PathSpecifier::SafeRegex(eregex(
                    "/users/([0-9]+)",
                )))),
                action: Some(eroute::route::Action::Route(eroute::RouteAction {
                    cluster_specifier: Some(eroute::route_action::ClusterSpecifier::Cluster(
                        "users".into(),
                    )),
                    regex_rewrite: Some(ematcher::RegexMatchAndSubstitute {
                        pattern: Some(eregex("^/users/([0-9]+)$")),
                        substitution: "/u/\\1".into(),
                    }),
                    host_rewrite_specifier: Some(
                        eroute::route_action::HostRewriteSpecifier::HostRewriteLiteral(
                            "users.internal:8080".into(),
                        ),
                    ),
                    timeout: esecs(0),
                    hash_policy: vec![
                        eroute::route_action::HashPolicy {
                            policy_specifier: Some(HP::Cookie(
                                eroute::route_action::hash_policy::Cookie {
                                    name: "session".into(),
                                    ..Default::default()
                                },
                            )),
                            terminal: true,
                        },
                        eroute::route_action::HashPolicy {
                            policy_specifier: Some(HP::ConnectionProperties(
                                eroute::route_action::hash_policy::ConnectionProperties {
                                    source_ip: true,
                                },
                            )),
                            terminal: false,
                        },
                    ],
                    ..Default::default()
                })),
                // Ignored.
                metadata: Some(ecore::Metadata::default()),
                ..Default::default()
            },
            eroute::Route {
                r#match: Some(rmatch(eroute::route_match::PathSpecifier::Path("/old".into()))),
                action: Some(eroute::route::Action::Redirect(eroute::RedirectAction {
                    scheme_rewrite_specifier: Some(
                        eroute::redirect_action::SchemeRewriteSpecifier::HttpsRedirect(true),
                    ),
                    host_redirect: "new.example.com".into(),
                    port_redirect: 8443,
                    path_rewrite_specifier: Some(
                        eroute::redirect_action::PathRewriteSpecifier::PathRedirect("/new".into()),
                    ),
                    response_code: eroute::redirect_action::RedirectResponseCode::PermanentRedirect
                        as i32,
                    strip_query: true,
                })),
                ..Default::default()
            },
            eroute::Route {
                r#match: Some(rmatch(eroute::route_match::PathSpecifier::Prefix(
                    "/docs".into(),
                ))),
                action: Some(eroute::route::Action::Redirect(eroute::RedirectAction {
                    scheme_rewrite_specifier: Some(
                        eroute::redirect_action::SchemeRewriteSpecifier::SchemeRedirect(
                            "http".into(),
                        ),
                    ),
                    path_rewrite_specifier: Some(
                        eroute::redirect_action::PathRewriteSpecifier::PrefixRewrite(
                            "/manual".into(),
                        ),
                    ),
                    response_code: eroute::redirect_action::RedirectResponseCode::Found as i32,
                    ..Default::default()
                })),
                ..Default::default()
            },
            eroute::Route {
                r#match: Some(rmatch(eroute::route_match::PathSpecifier::Prefix("/".into()))),
                action: Some(eroute::route::Action::DirectResponse(
                    eroute::DirectResponseAction {
                        status: 404,
                        body: Some(ecore::DataSource {
                            specifier: Some(ecore::data_source::Specifier::InlineBytes(
                                b"not found".to_vec(),
                            )),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let fallback = eroute::VirtualHost {
        name: "fallback".into(),
        domains: vec!["*".into()],
        routes: vec![eroute::Route {
            r#match: Some(rmatch(eroute::route_match::PathSpecifier::Prefix(
                "/".into(),
            ))),
            action: Some(eroute::route::Action::DirectResponse(
                eroute::DirectResponseAction {
                    status: 421,
                    body: Some(ecore::DataSource {
                        specifier: Some(ecore::data_source::Specifier::InlineString(
                            "misdirected".into(),
                        )),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }],
        ..Default::default()
    };
    let rc = eroute::RouteConfiguration {
        name: "api-routes".into(),
        virtual_hosts: vec![api, fallback],
        validate_clusters: boolv(false),
        max_direct_response_body_size_bytes: u32v(8192),
        // Accepted: no route changes a header its virtual host changes too.
        most_specific_header_mutations_wins: true,
        // Ignored: not in Legate's wire subset.
        metadata: Some(ecore::Metadata::default()),
        ..Default::default()
    };
    let (name, r) = decode_ok(translate::ROUTE_TYPE, &eany(&rc));
    assert_eq!(name, "api-routes");
    let Resource::Route(m) = r else {
        panic!("{r:?}")
    };
    assert_eq!(m.name, "api-routes");
    assert_eq!(m.virtual_hosts.len(), 2);

    let vh = &m.virtual_hosts[0];
    assert_eq!(vh.name, "api");
    assert_eq!(vh.domains, ["api.example.com", "api.example.com:8080"]);
    let hv = |name: &str, value: &str, append: bool| model::HeaderValueOption {
        name: name.into(),
        value: value.into(),
        append,
    };
    assert_eq!(
        vh.request_headers,
        model::HeaderMutation {
            add: vec![hv("x-via-legate", "1", false), hv("x-trace", "on", true)],
            remove: vec!["x-internal".into()],
        }
    );
    assert_eq!(
        vh.response_headers,
        model::HeaderMutation {
            add: vec![hv("x-raw", "bytes", false)],
            remove: vec!["server".into()],
        }
    );
    assert_eq!(vh.routes.len(), 5);

    let r = &vh.routes[0];
    assert_eq!(r.name, None);
    let rm = &r.route_match;
    assert_eq!(
        (
            rm.prefix.as_deref(),
            rm.path.as_deref(),
            rm.regex.as_deref()
        ),
        (Some("/v1/"), None, None)
    );
    assert!(!rm.case_sensitive);
    let hm = |name: &str| model::HeaderMatcher {
        name: name.into(),
        ..Default::default()
    };
    assert_eq!(
        rm.headers,
        [
            model::HeaderMatcher {
                exact: Some("prod".into()),
                ..hm("x-env")
            },
            model::HeaderMatcher {
                prefix: Some("u-".into()),
                ..hm("x-user")
            },
            model::HeaderMatcher {
                regex: Some("[0-9]+".into()),
                ..hm("x-id")
            },
            model::HeaderMatcher {
                present: Some(false),
                ..hm("x-debug")
            },
            model::HeaderMatcher {
                regex: Some("eu-.*".into()),
                ..hm("x-region")
            },
            model::HeaderMatcher {
                prefix: Some("core".into()),
                ..hm("x-team")
            },
            // No specifier: Envoy matches on presence.
            model::HeaderMatcher {
                present: Some(true),
                ..hm("x-any")
            },
        ]
    );
    let qm = |name: &str| model::QueryParameterMatcher {
        name: name.into(),
        ..Default::default()
    };
    assert_eq!(
        rm.query_parameters,
        [
            model::QueryParameterMatcher {
                exact: Some("1".into()),
                ..qm("debug")
            },
            model::QueryParameterMatcher {
                regex: Some("[0-9]+".into()),
                ..qm("page")
            },
            model::QueryParameterMatcher {
                present: Some(true),
                ..qm("trace")
            },
        ]
    );
    assert_eq!(
        r.route,
        Some(model::RouteAction {
            weighted_clusters: vec![
                model::ClusterWeight {
                    name: "api-v1".into(),
                    weight: 80
                },
                model::ClusterWeight {
                    name: "api-v2".into(),
                    weight: 20
                },
            ],
            prefix_rewrite: Some("/".into()),
            timeout: secs(5),
            hash_policy: vec![model::HashPolicy {
                header: Some("x-user".into()),
                ..Default::default()
            }],
            ..Default::default()
        })
    );
    assert!(r.redirect.is_none() && r.direct_response.is_none());
    assert!(r.request_headers.is_empty());
    assert_eq!(
        r.response_headers.add,
        [hv("cache-control", "no-store", true)],
        "append_action's default is APPEND_IF_EXISTS_OR_ADD"
    );

    let r = &vh.routes[1];
    assert_eq!(r.route_match.regex.as_deref(), Some("/users/([0-9]+)"));
    assert!(r.route_match.case_sensitive);
    assert_eq!(
        r.route,
        Some(model::RouteAction {
            cluster: Some("users".into()),
            regex_rewrite: Some(model::RegexRewrite {
                pattern: "^/users/([0-9]+)$".into(),
                substitution: "/u/\\1".into(),
            }),
            host_rewrite: Some("users.internal:8080".into()),
            timeout: secs(0),
            hash_policy: vec![
                model::HashPolicy {
                    cookie: Some("session".into()),
                    ..Default::default()
                },
                model::HashPolicy {
                    source_ip: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
    );

    let r = &vh.routes[2];
    assert_eq!(r.route_match.path.as_deref(), Some("/old"));
    assert_eq!(
        r.redirect,
        Some(model::RedirectAction {
            scheme: Some("https".into()),
            host: Some("new.example.com".into()),
            port: Some(8443),
            path: Some("/new".into()),
            prefix_rewrite: None,
            response_code: 308,
            strip_query: true,
        })
    );
    let r = &vh.routes[3];
    assert_eq!(
        r.redirect,
        Some(model::RedirectAction {
            scheme: Some("http".into()),
            prefix_rewrite: Some("/manual".into()),
            response_code: 302,
            ..Default::default()
        })
    );
    let r = &vh.routes[4];
    assert_eq!(
        r.direct_response,
        Some(model::DirectResponse {
            status: 404,
            body: Some("not found".into())
        })
    );

    let vh = &m.virtual_hosts[1];
    assert_eq!(
        (vh.name.as_str(), vh.domains.as_slice()),
        ("fallback", &["*".to_string()][..])
    );
    assert_eq!(
        vh.routes[0].direct_response,
        Some(model::DirectResponse {
            status: 421,
            body: Some("misdirected".into())
        })
    );
}

#[test]
fn realistic_clusters() {
    let endpoint = |host: &str, port: u32, weight: Option<u32>, health: ecore::HealthStatus| {
        eendpoint::LbEndpoint {
            host_identifier: Some(eendpoint::lb_endpoint::HostIdentifier::Endpoint(
                eendpoint::Endpoint {
                    address: esocket(host, port),
                    hostname: "ignored".into(),
                    ..Default::default()
                },
            )),
            health_status: health as i32,
            load_balancing_weight: weight.and_then(u32v),
            ..Default::default()
        }
    };
    let http2 = eupstream::HttpProtocolOptions {
        common_http_protocol_options: Some(ecore::HttpProtocolOptions {
            idle_timeout: esecs(90),
            max_requests_per_connection: u32v(1000),
            ..Default::default()
        }),
        upstream_protocol_options: Some(
            eupstream::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                eupstream::http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(
                        eupstream::http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                            ecore::Http2ProtocolOptions {
                                max_concurrent_streams: u32v(50),
                                ..Default::default()
                            },
                        ),
                    ),
                },
            ),
        ),
        ..Default::default()
    };
    let legate = epb::Struct {
        fields: HashMap::from([(
            "max_idle_connections_per_endpoint".to_string(),
            epb::Value {
                kind: Some(epb::value::Kind::NumberValue(16.0)),
            },
        )]),
    };
    let c = ecluster::Cluster {
        name: "backend".into(),
        alt_stat_name: "backend_stats".into(),
        cluster_discovery_type: Some(ecluster::cluster::ClusterDiscoveryType::Type(
            ecluster::cluster::DiscoveryType::StrictDns as i32,
        )),
        connect_timeout: esecs(2),
        lb_policy: ecluster::cluster::LbPolicy::LeastRequest as i32,
        lb_config: Some(ecluster::cluster::LbConfig::LeastRequestLbConfig(
            ecluster::cluster::LeastRequestLbConfig {
                choice_count: u32v(2),
                ..Default::default()
            },
        )),
        dns_refresh_rate: esecs(10),
        dns_lookup_family: ecluster::cluster::DnsLookupFamily::V4Only as i32,
        per_connection_buffer_limit_bytes: u32v(65536),
        common_lb_config: Some(ecluster::cluster::CommonLbConfig {
            healthy_panic_threshold: Some(envoy_types::pb::envoy::r#type::v3::Percent {
                value: 30.0,
            }),
            ..Default::default()
        }),
        circuit_breakers: Some(ecluster::CircuitBreakers {
            thresholds: vec![
                ecluster::circuit_breakers::Thresholds {
                    max_connections: u32v(10),
                    max_pending_requests: u32v(5),
                    max_retries: u32v(2),
                    track_remaining: true,
                    ..Default::default()
                },
                ecluster::circuit_breakers::Thresholds {
                    priority: ecore::RoutingPriority::High as i32,
                    max_requests: u32v(2000),
                    retry_budget: Some(ecluster::circuit_breakers::thresholds::RetryBudget {
                        budget_percent: Some(envoy_types::pb::envoy::r#type::v3::Percent {
                            value: 10.0,
                        }),
                        min_retry_concurrency: None,
                        ..Default::default()
                    }),
                    // Overridden by the budget, as in Envoy.
                    max_retries: u32v(7),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        outlier_detection: Some(ecluster::OutlierDetection {
            consecutive_5xx: u32v(3),
            interval: esecs(1),
            base_ejection_time: esecs(600),
            max_ejection_percent: u32v(50),
            enforcing_consecutive_gateway_failure: u32v(100),
            ..Default::default()
        }),
        load_assignment: Some(eendpoint::ClusterLoadAssignment {
            cluster_name: "backend".into(),
            endpoints: vec![
                eendpoint::LocalityLbEndpoints {
                    locality: Some(ecore::Locality {
                        region: "eu".into(),
                        ..Default::default()
                    }),
                    lb_endpoints: vec![
                        endpoint("backend-a.svc", 8080, Some(3), ecore::HealthStatus::Healthy),
                        endpoint("10.0.0.7", 8080, None, ecore::HealthStatus::Unknown),
                    ],
                    load_balancing_weight: u32v(10),
                    priority: 0,
                    ..Default::default()
                },
                eendpoint::LocalityLbEndpoints {
                    lb_endpoints: vec![endpoint(
                        "backup.svc",
                        9090,
                        Some(1),
                        ecore::HealthStatus::Degraded,
                    )],
                    priority: 1,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        typed_extension_protocol_options: HashMap::from([(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            eany_nested(&http2),
        )]),
        metadata: Some(ecore::Metadata {
            filter_metadata: HashMap::from([
                ("legate".to_string(), legate),
                ("istio".to_string(), epb::Struct::default()),
            ]),
            ..Default::default()
        }),
        close_connections_on_host_health_failure: true,
        // Ignored: not in Legate's wire subset.
        respect_dns_ttl: true,
        ..Default::default()
    };
    let (name, r) = decode_ok(translate::CLUSTER_TYPE, &eany(&c));
    assert_eq!(name, "backend");
    let ep =
        |address: &str, weight: u32, priority: u32, health_status: HealthStatus| model::Endpoint {
            address: address.into(),
            weight,
            priority,
            health_status,
        };
    assert_eq!(
        r,
        Resource::Cluster(model::Cluster {
            name: "backend".into(),
            discovery: DiscoveryType::StrictDns,
            eds_service_name: None,
            endpoints: vec![
                ep("backend-a.svc:8080", 3, 0, HealthStatus::Healthy),
                ep("10.0.0.7:8080", 1, 0, HealthStatus::Unknown),
                ep("backup.svc:9090", 1, 1, HealthStatus::Degraded),
            ],
            lb_policy: LbPolicy::LeastRequest,
            protocol: UpstreamProtocol::Http2,
            connect_timeout: secs(2),
            idle_timeout: secs(90),
            dns_refresh_rate: secs(10),
            http2_max_concurrent_streams: 50,
            max_idle_connections_per_endpoint: 16,
            ring_size: 1024,
            circuit_breakers: model::CircuitBreakers {
                default: model::Thresholds {
                    max_connections: 10,
                    max_pending_requests: 5,
                    max_requests: 1024,
                    max_retries: Some(2),
                    retry_budget: None,
                },
                high: model::Thresholds {
                    max_requests: 2000,
                    retry_budget: Some(model::RetryBudget {
                        budget_percent: 10.0,
                        min_retry_concurrency: 3,
                    }),
                    ..Default::default()
                },
            },
            outlier_detection: Some(model::OutlierDetection {
                consecutive_5xx: 3,
                interval: secs(1),
                base_ejection_time: secs(600),
                // Envoy: 300 s, or base_ejection_time when larger.
                max_ejection_time: secs(600),
                max_ejection_percent: 50,
                enforcing_consecutive_gateway_failure: 100,
                ..Default::default()
            }),
            healthy_panic_threshold: 30.0,
            health_checks: vec![],
        })
    );

    // An EDS cluster: endpoints come separately; Envoy's defaults elsewhere.
    let c = ecluster::Cluster {
        name: "payments".into(),
        cluster_discovery_type: Some(ecluster::cluster::ClusterDiscoveryType::Type(
            ecluster::cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(ecluster::cluster::EdsClusterConfig {
            eds_config: ads(),
            service_name: "payments-v2".into(),
        }),
        lb_policy: ecluster::cluster::LbPolicy::RingHash as i32,
        lb_config: Some(ecluster::cluster::LbConfig::RingHashLbConfig(
            ecluster::cluster::RingHashLbConfig {
                minimum_ring_size: Some(epb::UInt64Value { value: 4096 }),
                ..Default::default()
            },
        )),
        protocol_selection: ecluster::cluster::ClusterProtocolSelection::UseDownstreamProtocol
            as i32,
        ..Default::default()
    };
    let (name, r) = decode_ok(translate::CLUSTER_TYPE, &eany(&c));
    assert_eq!(name, "payments");
    assert_eq!(
        r,
        Resource::Cluster(model::Cluster {
            name: "payments".into(),
            discovery: DiscoveryType::Eds,
            eds_service_name: Some("payments-v2".into()),
            endpoints: vec![],
            lb_policy: LbPolicy::RingHash,
            protocol: UpstreamProtocol::UseDownstream,
            connect_timeout: secs(5),
            idle_timeout: secs(3600),
            dns_refresh_rate: secs(5),
            http2_max_concurrent_streams: 100,
            max_idle_connections_per_endpoint: 64,
            ring_size: 4096,
            ..Default::default()
        })
    );
}

#[test]
fn realistic_health_checks() {
    use ecore::health_check::{
        GrpcHealthCheck, HealthChecker, HttpHealthCheck, Payload, TcpHealthCheck, payload,
    };
    use envoy_types::pb::envoy::r#type::v3 as etype;
    let ms = |ms: i32| {
        Some(epb::Duration {
            seconds: 0,
            nanos: ms * 1_000_000,
        })
    };
    let c = ecluster::Cluster {
        name: "backend".into(),
        load_assignment: one_endpoint("backend", "10.0.0.7", 8080),
        health_checks: vec![
            // As a control plane writes an HTTP check.
            ecore::HealthCheck {
                timeout: esecs(1),
                interval: esecs(5),
                initial_jitter: ms(500),
                interval_jitter: ms(250),
                interval_jitter_percent: 10,
                unhealthy_threshold: u32v(4),
                healthy_threshold: u32v(1),
                reuse_connection: boolv(false),
                unhealthy_interval: esecs(10),
                healthy_edge_interval: esecs(2),
                // Accepted and ignored: logging.
                always_log_health_check_failures: true,
                health_checker: Some(HealthChecker::HttpHealthCheck(HttpHealthCheck {
                    host: "backend.internal".into(),
                    path: "/healthz?full=1".into(),
                    request_headers_to_add: vec![
                        eheader("x-probe", "legate", 0),
                        eheader("user-agent", "probe/1", 2),
                    ],
                    expected_statuses: vec![
                        etype::Int64Range {
                            start: 200,
                            end: 300,
                        },
                        etype::Int64Range {
                            start: 429,
                            end: 430,
                        },
                    ],
                    codec_client_type: etype::CodecClientType::Http2 as i32,
                    ..Default::default()
                })),
                ..Default::default()
            },
            // A Redis-like TCP exchange; thresholds left out.
            ecore::HealthCheck {
                timeout: ms(200),
                interval: esecs(1),
                health_checker: Some(HealthChecker::TcpHealthCheck(TcpHealthCheck {
                    send: Some(Payload {
                        payload: Some(payload::Payload::Text("50494e470d0a".into())),
                    }),
                    receive: vec![
                        Payload {
                            payload: Some(payload::Payload::Binary(b"+PONG".to_vec())),
                        },
                        Payload {
                            payload: Some(payload::Payload::Binary(vec![0xff, 0x0d])),
                        },
                    ],
                    ..Default::default()
                })),
                ..Default::default()
            },
            ecore::HealthCheck {
                timeout: esecs(1),
                interval: esecs(3),
                unhealthy_threshold: u32v(2),
                healthy_threshold: u32v(2),
                health_checker: Some(HealthChecker::GrpcHealthCheck(GrpcHealthCheck {
                    service_name: "pay.v1.Payments".into(),
                    authority: "pay.internal".into(),
                    ..Default::default()
                })),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let (name, r) = decode_ok(translate::CLUSTER_TYPE, &eany(&c));
    assert_eq!(name, "backend");
    let Resource::Cluster(m) = r else {
        panic!("{r:?}")
    };
    let mst = Dur::from_millis;
    assert_eq!(
        m.health_checks,
        vec![
            model::HealthCheck {
                timeout: secs(1),
                interval: secs(5),
                initial_jitter: mst(500),
                interval_jitter: mst(250),
                interval_jitter_percent: 10,
                unhealthy_threshold: 4,
                healthy_threshold: 1,
                unhealthy_interval: Some(secs(10)),
                unhealthy_edge_interval: None,
                healthy_edge_interval: Some(secs(2)),
                reuse_connection: false,
                http: Some(model::HttpHealthCheck {
                    path: "/healthz?full=1".into(),
                    host: Some("backend.internal".into()),
                    request_headers_to_add: vec![
                        model::HeaderValueOption {
                            name: "x-probe".into(),
                            value: "legate".into(),
                            append: true,
                        },
                        model::HeaderValueOption {
                            name: "user-agent".into(),
                            value: "probe/1".into(),
                            append: false,
                        },
                    ],
                    expected_statuses: vec![
                        model::StatusRange {
                            start: 200,
                            end: 300
                        },
                        model::StatusRange {
                            start: 429,
                            end: 430
                        },
                    ],
                    codec: model::HealthCheckCodec::Http2,
                }),
                tcp: None,
                grpc: None,
            },
            model::HealthCheck {
                timeout: mst(200),
                interval: secs(1),
                initial_jitter: Dur::default(),
                interval_jitter: Dur::default(),
                interval_jitter_percent: 0,
                // The model's defaults (Envoy requires both).
                unhealthy_threshold: 3,
                healthy_threshold: 2,
                unhealthy_interval: None,
                unhealthy_edge_interval: None,
                healthy_edge_interval: None,
                reuse_connection: true,
                http: None,
                tcp: Some(model::TcpHealthCheck {
                    // Envoy's `text` is hex; `binary` is text when UTF-8.
                    send: Some(model::Payload::hex("50494e470d0a")),
                    receive: vec![model::Payload::text("+PONG"), model::Payload::hex("ff0d")],
                }),
                grpc: None,
            },
            model::HealthCheck {
                timeout: secs(1),
                interval: secs(3),
                initial_jitter: Dur::default(),
                interval_jitter: Dur::default(),
                interval_jitter_percent: 0,
                unhealthy_threshold: 2,
                healthy_threshold: 2,
                unhealthy_interval: None,
                unhealthy_edge_interval: None,
                healthy_edge_interval: None,
                reuse_connection: true,
                http: None,
                tcp: None,
                grpc: Some(model::GrpcHealthCheck {
                    service_name: "pay.v1.Payments".into(),
                    authority: Some("pay.internal".into()),
                }),
            },
        ]
    );
    assert_eq!(
        m.health_checks[1]
            .tcp
            .as_ref()
            .unwrap()
            .send
            .as_ref()
            .unwrap()
            .bytes(),
        Ok(b"PING\r\n".to_vec())
    );
    // And back: the model's own translation decodes to the same checks.
    let (xc, _) = translate::cluster_to_xds(&m);
    let again = translate::cluster_from_xds(&xc).unwrap();
    assert_eq!(again.health_checks, m.health_checks);
}

#[test]
fn realistic_load_assignment() {
    let lb = |address: &str, port: u32, weight: Option<u32>, health: ecore::HealthStatus| {
        eendpoint::LbEndpoint {
            host_identifier: Some(eendpoint::lb_endpoint::HostIdentifier::Endpoint(
                eendpoint::Endpoint {
                    address: esocket(address, port),
                    ..Default::default()
                },
            )),
            health_status: health as i32,
            load_balancing_weight: weight.and_then(u32v),
            metadata: Some(ecore::Metadata::default()),
        }
    };
    let cla = eendpoint::ClusterLoadAssignment {
        cluster_name: "payments-v2".into(),
        endpoints: vec![
            eendpoint::LocalityLbEndpoints {
                locality: Some(ecore::Locality {
                    region: "eu-west-1".into(),
                    zone: "a".into(),
                    ..Default::default()
                }),
                lb_endpoints: vec![
                    lb("10.1.0.1", 8443, Some(2), ecore::HealthStatus::Healthy),
                    lb("fd00::1", 8443, None, ecore::HealthStatus::Draining),
                ],
                load_balancing_weight: u32v(100),
                priority: 0,
                ..Default::default()
            },
            eendpoint::LocalityLbEndpoints {
                lb_endpoints: vec![
                    lb("10.2.0.1", 8443, Some(5), ecore::HealthStatus::Unhealthy),
                    lb("10.2.0.2", 8443, None, ecore::HealthStatus::Timeout),
                ],
                priority: 2,
                ..Default::default()
            },
        ],
        policy: Some(eendpoint::cluster_load_assignment::Policy {
            overprovisioning_factor: u32v(140),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (name, r) = decode_ok(translate::ENDPOINT_TYPE, &eany(&cla));
    assert_eq!(name, "payments-v2");
    let ep =
        |address: &str, weight: u32, priority: u32, health_status: HealthStatus| model::Endpoint {
            address: address.into(),
            weight,
            priority,
            health_status,
        };
    assert_eq!(
        r,
        Resource::Endpoints(translate::LoadAssignment {
            cluster_name: "payments-v2".into(),
            endpoints: vec![
                ep("10.1.0.1:8443", 2, 0, HealthStatus::Healthy),
                ep("[fd00::1]:8443", 1, 0, HealthStatus::Draining),
                ep("10.2.0.1:8443", 5, 2, HealthStatus::Unhealthy),
                ep("10.2.0.2:8443", 1, 2, HealthStatus::Timeout),
            ],
        })
    );
}

#[test]
fn model_to_xds_writes_what_envoy_needs() {
    // The outbound direction: defaults that differ are explicit, RDS and
    // EDS point at ADS, EDS endpoints go in their own assignment.
    let l = model::Listener {
        name: "web".into(),
        address: "[::1]:8080".into(),
        http: Some(model::HttpConnectionManager {
            route_config: None,
            rds: Some("routes".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let x = translate::listener_to_xds(&l);
    assert_eq!(x.name, "web");
    let Some(core::address::Address::SocketAddress(sa)) =
        x.address.as_ref().and_then(|a| a.address.as_ref())
    else {
        panic!("{x:?}")
    };
    assert_eq!(sa.address, "::1");
    assert_eq!(
        sa.port_specifier,
        Some(core::socket_address::PortSpecifier::PortValue(8080))
    );
    assert_eq!(x.filter_chains.len(), 1);
    let f = &x.filter_chains[0].filters[0];
    assert_eq!(f.name, "envoy.filters.network.http_connection_manager");
    let Some(lis::filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("{f:?}")
    };
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    );
    let h = hcm::HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    let Some(hcm::http_connection_manager::RouteSpecifier::Rds(rds)) = &h.route_specifier else {
        panic!("{h:?}")
    };
    assert_eq!(rds.route_config_name, "routes");
    assert!(matches!(
        rds.config_source
            .as_ref()
            .and_then(|c| c.config_source_specifier.as_ref()),
        Some(core::config_source::ConfigSourceSpecifier::Ads(_))
    ));
    assert_eq!(
        rds.config_source.as_ref().unwrap().resource_api_version,
        core::ApiVersion::V3 as i32
    );
    assert_eq!(
        h.request_headers_timeout,
        Some(prost_types::Duration {
            seconds: 60,
            nanos: 0
        })
    );
    assert_eq!(
        h.http2_protocol_options
            .as_ref()
            .unwrap()
            .max_concurrent_streams,
        Some(1024)
    );
    let names: Vec<&str> = h.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.fault",
            "envoy.filters.http.local_ratelimit",
            "envoy.filters.http.router"
        ]
    );

    let c = model::Cluster {
        name: "pay".into(),
        discovery: DiscoveryType::Eds,
        endpoints: vec![
            model::Endpoint {
                address: "10.0.0.2:80".into(),
                priority: 1,
                ..Default::default()
            },
            model::Endpoint {
                address: "10.0.0.1:80".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let (xc, cla) = translate::cluster_to_xds(&c);
    let eds = xc.eds_cluster_config.as_ref().unwrap();
    assert_eq!(eds.service_name, "");
    assert!(matches!(
        eds.eds_config
            .as_ref()
            .and_then(|c| c.config_source_specifier.as_ref()),
        Some(core::config_source::ConfigSourceSpecifier::Ads(_))
    ));
    assert!(xc.load_assignment.is_none());
    let cla = cla.unwrap();
    assert_eq!(cla.cluster_name, "pay");
    let priorities: Vec<u32> = cla.endpoints.iter().map(|g| g.priority).collect();
    assert_eq!(priorities, [0, 1], "one group per priority, ascending");

    let static_cluster = model::Cluster {
        name: "s".into(),
        ..Default::default()
    };
    let (xc, cla) = translate::cluster_to_xds(&static_cluster);
    assert!(cla.is_none());
    assert_eq!(xc.load_assignment.unwrap().cluster_name, "s");

    // to_any uses the type.googleapis.com URL.
    assert_eq!(
        translate::to_any(&xc_default()).type_url,
        translate::CLUSTER_TYPE
    );
}

fn xc_default() -> cluster::Cluster {
    cluster::Cluster::default()
}

// ---------------------------------------------------------------------------
// decode

#[test]
fn decode_reports_wrong_types_and_bad_bytes() {
    let any = translate::to_any(&route::RouteConfiguration {
        name: "r".into(),
        ..Default::default()
    });
    let e = translate::decode(translate::LISTENER_TYPE, &any).unwrap_err();
    assert_eq!(e.kind, "Listener");
    assert_eq!(e.path, "");
    assert_eq!(
        e.to_string(),
        "Listener \"\": resource has type \"type.googleapis.com/envoy.config.route.v3.RouteConfiguration\", expected \"type.googleapis.com/envoy.config.listener.v3.Listener\""
    );

    let bad = prost_types::Any {
        type_url: translate::CLUSTER_TYPE.into(),
        value: vec![0x0a, 0x05, b'a'],
    };
    let e = translate::decode(translate::CLUSTER_TYPE, &bad).unwrap_err();
    assert_eq!((e.kind, e.path.as_str()), ("Cluster", ""));
    assert!(e.message.starts_with("cannot decode the resource: "), "{e}");

    let secret = prost_types::Any {
        type_url: translate::SECRET_TYPE.into(),
        value: vec![],
    };
    let e = translate::decode(translate::SECRET_TYPE, &secret).unwrap_err();
    assert_eq!(e.to_string(), "Secret \"\": TLS is not supported yet");

    let other = prost_types::Any {
        type_url: "type.googleapis.com/envoy.config.core.v3.Node".into(),
        value: vec![],
    };
    let e = translate::decode(&other.type_url, &other).unwrap_err();
    assert_eq!(e.kind, "Resource");
    assert!(e.message.starts_with("unsupported resource type"), "{e}");
}

#[test]
fn errors_display_kind_name_path_message() {
    let e = TranslateError {
        kind: "Listener",
        name: "web".into(),
        path: "filter_chains[0].filters[0]".into(),
        message: "boom".into(),
    };
    assert_eq!(
        e.to_string(),
        "Listener \"web\": filter_chains[0].filters[0]: boom"
    );
}

#[test]
fn decode_refuses_fields_outside_the_wire_subset() {
    // Fields our protos leave out but that would change behaviour.
    let c = ecluster::Cluster {
        name: "c".into(),
        lb_subset_config: Some(ecluster::cluster::LbSubsetConfig::default()),
        ..Default::default()
    };
    assert_refused(
        translate::decode(translate::CLUSTER_TYPE, &eany(&c)),
        "Cluster",
        "c",
        "lb_subset_config",
        "not supported yet",
    );
    let c = ecluster::Cluster {
        name: "c".into(),
        load_balancing_policy: Some(ecluster::LoadBalancingPolicy::default()),
        ..Default::default()
    };
    assert_refused(
        translate::decode(translate::CLUSTER_TYPE, &eany(&c)),
        "Cluster",
        "c",
        "load_balancing_policy",
        "not supported yet",
    );
    let c = ecluster::Cluster {
        name: "c".into(),
        http2_protocol_options: Some(ecore::Http2ProtocolOptions::default()),
        ..Default::default()
    };
    assert_refused(
        translate::decode(translate::CLUSTER_TYPE, &eany(&c)),
        "Cluster",
        "c",
        "http2_protocol_options",
        "not supported: use typed_extension_protocol_options",
    );
    let l = elis::Listener {
        name: "l".into(),
        address: esocket("127.0.0.1", 80),
        additional_addresses: vec![elis::AdditionalAddress::default()],
        ..Default::default()
    };
    assert_refused(
        translate::decode(translate::LISTENER_TYPE, &eany(&l)),
        "Listener",
        "l",
        "additional_addresses",
        "not supported",
    );
    let l = elis::Listener {
        name: "l".into(),
        filter_chain_matcher: Some(Default::default()),
        ..Default::default()
    };
    assert_refused(
        translate::decode(translate::LISTENER_TYPE, &eany(&l)),
        "Listener",
        "l",
        "filter_chain_matcher",
        "not supported",
    );
    // Inside network filters' typed_config too.
    let in_filter = |any: epb::Any| elis::Listener {
        name: "l".into(),
        address: esocket("127.0.0.1", 80),
        filter_chains: vec![elis::FilterChain {
            filters: vec![elis::Filter {
                name: "f".into(),
                config_type: Some(elis::filter::ConfigType::TypedConfig(any)),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut h = envoy_hcm();
    h.strip_port_mode = None;
    h.strip_matching_host_port = true;
    assert_refused(
        translate::decode(translate::LISTENER_TYPE, &eany(&in_filter(eany_nested(&h)))),
        "Listener",
        "l",
        "filter_chains[0].filters[0].typed_config.strip_matching_host_port",
        "not supported (use strip_any_host_port)",
    );
    let mut h = envoy_hcm();
    h.route_specifier = Some(ehcm::http_connection_manager::RouteSpecifier::ScopedRoutes(
        Default::default(),
    ));
    assert_refused(
        translate::decode(translate::LISTENER_TYPE, &eany(&in_filter(eany_nested(&h)))),
        "Listener",
        "l",
        "filter_chains[0].filters[0].typed_config.scoped_routes",
        "not supported",
    );
    let t = etcp::TcpProxy {
        cluster_specifier: Some(etcp::tcp_proxy::ClusterSpecifier::Cluster("c".into())),
        tunneling_config: Some(Default::default()),
        ..Default::default()
    };
    assert_refused(
        translate::decode(translate::LISTENER_TYPE, &eany(&in_filter(eany_nested(&t)))),
        "Listener",
        "l",
        "filter_chains[0].filters[0].typed_config.tunneling_config",
        "not supported",
    );
}

/// Fields our protos declare only to refuse them (most with placeholder
/// messages), set by a control plane with their full Envoy contents: refused
/// through `decode`, naming the field.
#[test]
fn decode_refuses_declared_fields_set_by_envoy() {
    use ehcm::http_connection_manager::PathWithEscapedSlashesAction as Slashes;
    use ehcm::http_connection_manager::ServerHeaderTransformation as ServerHeader;
    use envoy_types::pb::xds::r#type::matcher::v3 as exmatcher;
    use eroute::route_action::{HostRewriteSpecifier as EH, InternalRedirectAction};

    fn cors() -> Option<eroute::CorsPolicy> {
        Some(eroute::CorsPolicy {
            allow_methods: "GET".into(),
            allow_credentials: boolv(true),
            ..Default::default()
        })
    }
    fn rate_limits() -> Vec<eroute::RateLimit> {
        vec![eroute::RateLimit {
            stage: u32v(1),
            disable_key: "key".into(),
            ..Default::default()
        }]
    }
    fn hedge() -> Option<eroute::HedgePolicy> {
        Some(eroute::HedgePolicy {
            initial_requests: u32v(2),
            hedge_on_per_try_timeout: true,
            ..Default::default()
        })
    }
    fn mirrors() -> Vec<eroute::route_action::RequestMirrorPolicy> {
        vec![eroute::route_action::RequestMirrorPolicy {
            cluster: "shadow".into(),
            ..Default::default()
        }]
    }
    fn extension() -> Option<epb::Any> {
        Some(epb::Any {
            type_url: "type.googleapis.com/test.Extension".into(),
            value: vec![1, 2, 3],
        })
    }
    fn action(rc: &mut eroute::RouteConfiguration) -> &mut eroute::RouteAction {
        match rc.virtual_hosts[0].routes[0].action.as_mut() {
            Some(eroute::route::Action::Route(a)) => a,
            _ => unreachable!(),
        }
    }
    fn route0(rc: &mut eroute::RouteConfiguration) -> &mut eroute::Route {
        &mut rc.virtual_hosts[0].routes[0]
    }
    fn rmatch(rc: &mut eroute::RouteConfiguration) -> &mut eroute::RouteMatch {
        route0(rc).r#match.as_mut().unwrap()
    }
    fn typed_extension(name: &str) -> ecore::TypedExtensionConfig {
        ecore::TypedExtensionConfig {
            name: name.into(),
            typed_config: extension(),
        }
    }
    fn weighted(rc: &mut eroute::RouteConfiguration) -> &mut eroute::WeightedCluster {
        use eroute::route_action::ClusterSpecifier as C;
        let a = action(rc);
        a.cluster_specifier = Some(C::WeightedClusters(eroute::WeightedCluster {
            clusters: vec![eroute::weighted_cluster::ClusterWeight {
                name: "c".into(),
                weight: u32v(1),
                ..Default::default()
            }],
            ..Default::default()
        }));
        match a.cluster_specifier.as_mut() {
            Some(C::WeightedClusters(w)) => w,
            _ => unreachable!(),
        }
    }
    let rc = || eroute::RouteConfiguration {
        name: "r".into(),
        virtual_hosts: vec![eroute::VirtualHost {
            name: "vh".into(),
            domains: vec!["*".into()],
            routes: vec![eroute::Route {
                r#match: Some(eroute::RouteMatch {
                    path_specifier: Some(eroute::route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(eroute::route::Action::Route(eroute::RouteAction {
                    cluster_specifier: Some(eroute::route_action::ClusterSpecifier::Cluster(
                        "c".into(),
                    )),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    decode_ok(translate::ROUTE_TYPE, &eany(&rc()));
    type RcSet = fn(&mut eroute::RouteConfiguration);
    let route_cases: &[(&str, RcSet)] = &[
        ("vhds", |rc| {
            rc.vhds = Some(eroute::Vhds {
                config_source: ads(),
            })
        }),
        ("request_mirror_policies", |rc| {
            rc.request_mirror_policies = mirrors()
        }),
        ("virtual_hosts[0].matcher", |rc| {
            rc.virtual_hosts[0].matcher = Some(exmatcher::Matcher {
                on_no_match: Some(Box::new(exmatcher::matcher::OnMatch {
                    keep_matching: true,
                    ..Default::default()
                })),
                ..Default::default()
            })
        }),
        ("virtual_hosts[0].rate_limits", |rc| {
            rc.virtual_hosts[0].rate_limits = rate_limits()
        }),
        ("virtual_hosts[0].cors", |rc| {
            rc.virtual_hosts[0].cors = cors()
        }),
        ("virtual_hosts[0].retry_policy_typed_config", |rc| {
            rc.virtual_hosts[0].retry_policy_typed_config = extension()
        }),
        ("virtual_hosts[0].hedge_policy", |rc| {
            rc.virtual_hosts[0].hedge_policy = hedge()
        }),
        ("virtual_hosts[0].request_mirror_policies", |rc| {
            rc.virtual_hosts[0].request_mirror_policies = mirrors()
        }),
        ("virtual_hosts[0].routes[0].route.metadata_match", |rc| {
            action(rc).metadata_match = Some(ecore::Metadata {
                filter_metadata: [("envoy.lb".to_string(), Default::default())].into(),
                ..Default::default()
            })
        }),
        (
            "virtual_hosts[0].routes[0].route.path_rewrite_policy",
            |rc| {
                action(rc).path_rewrite_policy = Some(ecore::TypedExtensionConfig {
                    name: "envoy.path.rewrite.uri_template".into(),
                    typed_config: extension(),
                })
            },
        ),
        ("virtual_hosts[0].routes[0].route.path_rewrite", |rc| {
            action(rc).path_rewrite = "/v2%REQ(x-path)%".into()
        }),
        ("virtual_hosts[0].routes[0].route.host_rewrite", |rc| {
            action(rc).host_rewrite_specifier = Some(EH::HostRewrite("%REQ(x-host)%".into()))
        }),
        (
            "virtual_hosts[0].routes[0].route.retry_policy_typed_config",
            |rc| action(rc).retry_policy_typed_config = extension(),
        ),
        ("virtual_hosts[0].routes[0].route.rate_limits", |rc| {
            action(rc).rate_limits = rate_limits()
        }),
        ("virtual_hosts[0].routes[0].route.cors", |rc| {
            action(rc).cors = cors()
        }),
        (
            "virtual_hosts[0].routes[0].route.internal_redirect_policy",
            |rc| {
                action(rc).internal_redirect_policy = Some(eroute::InternalRedirectPolicy {
                    max_internal_redirects: u32v(3),
                    redirect_response_codes: vec![302, 307],
                    ..Default::default()
                })
            },
        ),
        (
            "virtual_hosts[0].routes[0].route.internal_redirect_action",
            |rc| {
                action(rc).internal_redirect_action =
                    InternalRedirectAction::HandleInternalRedirect as i32
            },
        ),
        ("virtual_hosts[0].routes[0].route.hedge_policy", |rc| {
            action(rc).hedge_policy = hedge()
        }),
        ("most_specific_header_mutations_wins", |rc| {
            rc.most_specific_header_mutations_wins = true;
            rc.virtual_hosts[0].request_headers_to_add = vec![eheader("x-a", "1", 0)];
            route0(rc).request_headers_to_remove = vec!["x-a".into()];
        }),
        ("vhost_header", |rc| rc.vhost_header = "x-vhost".into()),
        ("ignore_path_parameters_in_path_matching", |rc| {
            rc.ignore_path_parameters_in_path_matching = true
        }),
        ("typed_per_filter_config", |rc| {
            rc.typed_per_filter_config =
                [("envoy.filters.http.cors".to_string(), extension().unwrap())].into()
        }),
        ("route_specifiers", |rc| {
            rc.route_specifiers = vec![typed_extension("specifier")]
        }),
        ("virtual_hosts[0].include_attempt_count_in_response", |rc| {
            rc.virtual_hosts[0].include_attempt_count_in_response = true
        }),
        ("virtual_hosts[0].route_specifiers", |rc| {
            rc.virtual_hosts[0].route_specifiers = vec![typed_extension("specifier")]
        }),
        ("virtual_hosts[0].routes[0].route_specifiers", |rc| {
            route0(rc).route_specifiers = vec![typed_extension("specifier")]
        }),
        ("virtual_hosts[0].routes[0].filter_action", |rc| {
            route0(rc).action = Some(eroute::route::Action::FilterAction(eroute::FilterAction {
                action: extension(),
            }))
        }),
        ("virtual_hosts[0].routes[0].non_forwarding_action", |rc| {
            route0(rc).action = Some(eroute::route::Action::NonForwardingAction(
                eroute::NonForwardingAction {},
            ))
        }),
        ("virtual_hosts[0].routes[0].match.path_match_policy", |rc| {
            rmatch(rc).path_specifier = Some(eroute::route_match::PathSpecifier::PathMatchPolicy(
                typed_extension("envoy.path.match.uri_template"),
            ))
        }),
        ("virtual_hosts[0].routes[0].match.cookies", |rc| {
            rmatch(rc).cookies = vec![eroute::CookieMatcher {
                name: "session".into(),
                string_match: Some(estring(ematcher::string_matcher::MatchPattern::Exact(
                    "abc".into(),
                ))),
                ..Default::default()
            }]
        }),
        ("virtual_hosts[0].routes[0].match.tls_context", |rc| {
            rmatch(rc).tls_context = Some(eroute::route_match::TlsContextMatchOptions {
                presented: boolv(false),
                ..Default::default()
            })
        }),
        ("virtual_hosts[0].routes[0].match.dynamic_metadata", |rc| {
            rmatch(rc).dynamic_metadata = vec![ematcher::MetadataMatcher {
                filter: "envoy.filters.http.jwt_authn".into(),
                ..Default::default()
            }]
        }),
        ("virtual_hosts[0].routes[0].match.filter_state", |rc| {
            rmatch(rc).filter_state = vec![ematcher::FilterStateMatcher {
                key: "k".into(),
                ..Default::default()
            }]
        }),
        (
            "virtual_hosts[0].routes[0].route.cluster_specifier_plugin",
            |rc| {
                action(rc).cluster_specifier =
                    Some(eroute::route_action::ClusterSpecifier::ClusterSpecifierPlugin("p".into()))
            },
        ),
        (
            "virtual_hosts[0].routes[0].route.inline_cluster_specifier_plugin",
            |rc| {
                action(rc).cluster_specifier = Some(
                    eroute::route_action::ClusterSpecifier::InlineClusterSpecifierPlugin(
                        eroute::ClusterSpecifierPlugin {
                            extension: Some(typed_extension("lua")),
                            is_optional: false,
                        },
                    ),
                )
            },
        ),
        (
            "virtual_hosts[0].routes[0].route.append_x_forwarded_host",
            |rc| action(rc).append_x_forwarded_host = true,
        ),
        ("virtual_hosts[0].routes[0].route.flush_timeout", |rc| {
            action(rc).flush_timeout = esecs(30)
        }),
        ("virtual_hosts[0].routes[0].route.max_grpc_timeout", |rc| {
            action(rc).max_grpc_timeout = esecs(0)
        }),
        (
            "virtual_hosts[0].routes[0].route.hash_policy[0].filter_state",
            |rc| {
                action(rc).hash_policy = vec![eroute::route_action::HashPolicy {
                    policy_specifier: Some(
                        eroute::route_action::hash_policy::PolicySpecifier::FilterState(
                            eroute::route_action::hash_policy::FilterState { key: "k".into() },
                        ),
                    ),
                    ..Default::default()
                }]
            },
        ),
        (
            "virtual_hosts[0].routes[0].route.weighted_clusters.use_hash_policy",
            |rc| {
                weighted(rc).random_value_specifier = Some(
                    eroute::weighted_cluster::RandomValueSpecifier::UseHashPolicy(epb::BoolValue {
                        value: true,
                    }),
                )
            },
        ),
        (
            "virtual_hosts[0].routes[0].route.weighted_clusters.clusters[0].cluster_header",
            |rc| {
                let w = weighted(rc);
                w.clusters[0].name = String::new();
                w.clusters[0].cluster_header = "x-cluster".into();
            },
        ),
        (
            "virtual_hosts[0].routes[0].route.weighted_clusters.clusters[0].metadata_match",
            |rc| {
                weighted(rc).clusters[0].metadata_match = Some(ecore::Metadata {
                    filter_metadata: [("envoy.lb".to_string(), Default::default())].into(),
                    ..Default::default()
                })
            },
        ),
        ("virtual_hosts[0].routes[0].redirect.path_rewrite", |rc| {
            route0(rc).action = Some(eroute::route::Action::Redirect(eroute::RedirectAction {
                path_rewrite_specifier: Some(
                    eroute::redirect_action::PathRewriteSpecifier::PathRewrite(
                        "/new/%REQ(x-id)%".into(),
                    ),
                ),
                ..Default::default()
            }))
        }),
        (
            "virtual_hosts[0].routes[0].direct_response.body_format",
            |rc| {
                route0(rc).action = Some(eroute::route::Action::DirectResponse(
                    eroute::DirectResponseAction {
                        status: 200,
                        body_format: Some(ecore::SubstitutionFormatString {
                            format: Some(ecore::substitution_format_string::Format::TextFormat(
                                "%RESPONSE_CODE%".into(),
                            )),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ))
            },
        ),
    ];
    for (path, set) in route_cases {
        let mut r = rc();
        set(&mut r);
        let e = translate::decode(translate::ROUTE_TYPE, &eany(&r)).unwrap_err();
        assert_eq!(
            (e.kind, e.name.as_str(), e.path.as_str()),
            ("RouteConfiguration", "r", *path),
            "{e}"
        );
        assert!(e.message.contains("not supported"), "{e}");
    }
    // Accepted and ignored (not in the wire subset, or what Legate does).
    let mut r = rc();
    r.metadata = Some(ecore::Metadata::default());
    r.cluster_specifier_plugins = vec![eroute::ClusterSpecifierPlugin {
        extension: Some(typed_extension("lua")),
        is_optional: true,
    }];
    r.most_specific_header_mutations_wins = true;
    let vh = &mut r.virtual_hosts[0];
    vh.virtual_clusters = vec![eroute::VirtualCluster {
        name: "stats".into(),
        ..Default::default()
    }];
    vh.per_request_buffer_limit_bytes = u32v(1 << 20);
    vh.request_body_buffer_limit = Some(epb::UInt64Value { value: 1 << 30 });
    vh.include_is_timeout_retry_header = true;
    vh.metadata = Some(ecore::Metadata::default());
    let route = &mut vh.routes[0];
    route.per_request_buffer_limit_bytes = u32v(1 << 20);
    route.request_body_buffer_limit = Some(epb::UInt64Value { value: 1 << 30 });
    route.decorator = Some(eroute::Decorator {
        operation: "op".into(),
        ..Default::default()
    });
    route.tracing = Some(eroute::Tracing::default());
    route.stat_prefix = "route".into();
    let a = action(&mut r);
    a.flush_timeout = esecs(0);
    a.grpc_timeout_offset = esecs(1);
    a.include_vh_rate_limits = boolv(true);
    a.max_internal_redirects = u32v(3);
    a.early_data_policy = Some(typed_extension("envoy.route.early_data_policy.default"));
    decode_ok(translate::ROUTE_TYPE, &eany(&r));

    // Listeners, and the HTTP connection manager inside them.
    let listener = |h: &ehcm::HttpConnectionManager| elis::Listener {
        name: "l".into(),
        address: esocket("127.0.0.1", 80),
        listener_filters: vec![elis::ListenerFilter {
            name: "envoy.filters.listener.tls_inspector".into(),
            ..Default::default()
        }],
        filter_chains: vec![elis::FilterChain {
            filter_chain_match: Some(elis::FilterChainMatch {
                destination_port: u32v(80),
                ..Default::default()
            }),
            filters: vec![elis::Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(elis::filter::ConfigType::TypedConfig(eany_nested(h))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    decode_ok(translate::LISTENER_TYPE, &eany(&listener(&envoy_hcm())));
    type LSet = fn(&mut elis::Listener);
    let listener_cases: &[(&str, LSet)] = &[
        ("listener_filters[0].filter_disabled", |l| {
            l.listener_filters[0].filter_disabled = Some(elis::ListenerFilterChainMatchPredicate {
                rule: Some(elis::listener_filter_chain_match_predicate::Rule::AnyMatch(
                    true,
                )),
            })
        }),
        ("filter_chains[0].use_proxy_proto", |l| {
            l.filter_chains[0].use_proxy_proto = boolv(true)
        }),
        ("filter_chains[0].filter_chain_match.address_suffix", |l| {
            l.filter_chains[0]
                .filter_chain_match
                .as_mut()
                .unwrap()
                .address_suffix = "::1".into()
        }),
        ("filter_chains[0].filter_chain_match.suffix_len", |l| {
            l.filter_chains[0]
                .filter_chain_match
                .as_mut()
                .unwrap()
                .suffix_len = u32v(64)
        }),
        ("per_connection_buffer_high_watermark_timeout", |l| {
            l.per_connection_buffer_high_watermark_timeout = esecs(10)
        }),
        ("transparent", |l| l.transparent = boolv(true)),
        ("freebind", |l| l.freebind = boolv(true)),
        ("socket_options", |l| {
            l.socket_options = vec![ecore::SocketOption {
                description: "SO_MARK".into(),
                level: 1,
                name: 36,
                ..Default::default()
            }]
        }),
        ("tcp_keepalive", |l| {
            l.tcp_keepalive = Some(ecore::TcpKeepalive {
                keepalive_time: u32v(60),
                ..Default::default()
            })
        }),
    ];
    for (path, set) in listener_cases {
        let mut l = listener(&envoy_hcm());
        set(&mut l);
        let e = translate::decode(translate::LISTENER_TYPE, &eany(&l)).unwrap_err();
        assert_eq!(
            (e.kind, e.name.as_str(), e.path.as_str()),
            ("Listener", "l", *path),
            "{e}"
        );
        assert!(e.message.starts_with("not supported"), "{e}");
    }
    type HSet = fn(&mut ehcm::HttpConnectionManager);
    let hcm_cases: &[(&str, HSet, &str)] = &[
        (
            "local_reply_config",
            |h| {
                h.local_reply_config = Some(ehcm::LocalReplyConfig {
                    mappers: vec![ehcm::ResponseMapper {
                        status_code: u32v(404),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
            },
            "not supported",
        ),
        (
            "internal_address_config",
            |h| {
                h.internal_address_config =
                    Some(ehcm::http_connection_manager::InternalAddressConfig {
                        unix_sockets: true,
                        ..Default::default()
                    })
            },
            "not supported",
        ),
        (
            "path_with_escaped_slashes_action",
            |h| h.path_with_escaped_slashes_action = Slashes::UnescapeAndRedirect as i32,
            "UNESCAPE_AND_REDIRECT is not supported",
        ),
        (
            "add_user_agent",
            |h| h.add_user_agent = boolv(true),
            "not supported",
        ),
        (
            "tracing",
            |h| {
                h.tracing = Some(ehcm::http_connection_manager::Tracing {
                    random_sampling: Some(envoy_types::pb::envoy::r#type::v3::Percent {
                        value: 1.0,
                    }),
                    ..Default::default()
                })
            },
            "not supported",
        ),
        (
            "server_name",
            |h| {
                h.server_name = "edge".into();
                h.server_header_transformation = ServerHeader::Overwrite as i32;
            },
            "not supported",
        ),
        (
            "scheme_header_transformation",
            |h| {
                h.scheme_header_transformation = Some(ecore::SchemeHeaderTransformation {
                    transformation: Some(
                        ecore::scheme_header_transformation::Transformation::SchemeToOverwrite(
                            "https".into(),
                        ),
                    ),
                    ..Default::default()
                })
            },
            "not supported",
        ),
        (
            "stream_flush_timeout",
            |h| h.stream_flush_timeout = esecs(30),
            "not supported yet",
        ),
        (
            "original_ip_detection_extensions",
            |h| h.original_ip_detection_extensions = vec![typed_extension("xff")],
            "not supported",
        ),
        (
            "early_header_mutation_extensions",
            |h| h.early_header_mutation_extensions = vec![typed_extension("mutation")],
            "not supported",
        ),
        (
            "always_set_request_id_in_response",
            |h| h.always_set_request_id_in_response = true,
            "not supported",
        ),
        (
            "forward_client_cert_matcher",
            |h| {
                h.forward_client_cert_matcher = Some(exmatcher::Matcher {
                    on_no_match: Some(Box::new(exmatcher::matcher::OnMatch {
                        keep_matching: true,
                        ..Default::default()
                    })),
                    ..Default::default()
                })
            },
            "not supported yet",
        ),
        (
            "proxy_100_continue",
            |h| h.proxy_100_continue = true,
            "not supported",
        ),
        (
            "represent_ipv4_remote_address_as_ipv4_mapped_ipv6",
            |h| h.represent_ipv4_remote_address_as_ipv4_mapped_ipv6 = true,
            "not supported",
        ),
        (
            "request_id_extension",
            |h| {
                h.request_id_extension = Some(ehcm::RequestIdExtension {
                    typed_config: extension(),
                })
            },
            "not supported",
        ),
        (
            "strip_trailing_host_dot",
            |h| h.strip_trailing_host_dot = true,
            "not supported",
        ),
        (
            "proxy_status_config",
            |h| {
                h.proxy_status_config = Some(ehcm::http_connection_manager::ProxyStatusConfig {
                    remove_details: true,
                    ..Default::default()
                })
            },
            "not supported",
        ),
        (
            "typed_header_validation_config",
            |h| {
                h.typed_header_validation_config = Some(typed_extension(
                    "envoy.http.header_validators.envoy_default",
                ))
            },
            "not supported",
        ),
        (
            "append_x_forwarded_port",
            |h| h.append_x_forwarded_port = true,
            "not supported",
        ),
    ];
    for (field, set, message) in hcm_cases {
        let mut h = envoy_hcm();
        set(&mut h);
        assert_refused(
            translate::decode(translate::LISTENER_TYPE, &eany(&listener(&h))),
            "Listener",
            "l",
            &format!("filter_chains[0].filters[0].typed_config.{field}"),
            message,
        );
    }
    let mut h = envoy_hcm();
    h.path_with_escaped_slashes_action = Slashes::KeepUnchanged as i32;
    decode_ok(translate::LISTENER_TYPE, &eany(&listener(&h)));
    // Accepted and ignored (not in the wire subset, or what Legate does).
    let mut h = envoy_hcm();
    h.server_name = "edge".into();
    h.server_header_transformation = ServerHeader::PassThrough as i32;
    h.stream_flush_timeout = esecs(0);
    h.access_log = vec![envoy_types::pb::envoy::config::accesslog::v3::AccessLog {
        name: "envoy.access_loggers.stdout".into(),
        ..Default::default()
    }];
    h.stream_error_on_invalid_http_message = boolv(true);
    h.set_current_client_cert_details = Some(Default::default());
    h.http3_protocol_options = Some(Default::default());
    h.append_local_overload = true;
    let mut l = listener(&h);
    l.per_connection_buffer_high_watermark_timeout = esecs(0);
    l.transparent = boolv(false);
    l.drain_type = elis::listener::DrainType::ModifyOnly as i32;
    l.tcp_fast_open_queue_length = u32v(16);
    l.tcp_backlog_size = u32v(1024);
    l.enable_reuse_port = boolv(true);
    l.enable_mptcp = true;
    l.ignore_global_conn_limit = true;
    l.access_log = h.access_log.clone();
    decode_ok(translate::LISTENER_TYPE, &eany(&l));

    // Clusters and their endpoints.
    let cluster = || ecluster::Cluster {
        name: "c".into(),
        cluster_discovery_type: Some(ecluster::cluster::ClusterDiscoveryType::Type(
            ecluster::cluster::DiscoveryType::StrictDns as i32,
        )),
        load_assignment: one_endpoint("c", "db.internal", 5432),
        ..Default::default()
    };
    decode_ok(translate::CLUSTER_TYPE, &eany(&cluster()));
    fn slow_start() -> Option<ecluster::cluster::SlowStartConfig> {
        Some(ecluster::cluster::SlowStartConfig {
            slow_start_window: esecs(30),
            ..Default::default()
        })
    }
    type CSet = fn(&mut ecluster::Cluster);
    let cluster_cases: &[(&str, CSet, &str)] = &[
        (
            "transport_socket_matcher",
            |c| {
                c.transport_socket_matcher = Some(exmatcher::Matcher {
                    on_no_match: Some(Box::new(exmatcher::matcher::OnMatch {
                        keep_matching: true,
                        ..Default::default()
                    })),
                    ..Default::default()
                })
            },
            "TLS is not supported yet",
        ),
        (
            "per_connection_buffer_high_watermark_timeout",
            |c| c.per_connection_buffer_high_watermark_timeout = esecs(1),
            "not supported",
        ),
        (
            "upstream_bind_config",
            |c| {
                c.upstream_bind_config = Some(ecore::BindConfig {
                    freebind: boolv(true),
                    ..Default::default()
                })
            },
            "not supported",
        ),
        (
            "upstream_connection_options",
            |c| {
                c.upstream_connection_options = Some(ecluster::UpstreamConnectionOptions {
                    tcp_keepalive: Some(ecore::TcpKeepalive {
                        keepalive_time: u32v(30),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            },
            "not supported yet",
        ),
        (
            "common_http_protocol_options",
            |c| {
                c.common_http_protocol_options = Some(ecore::HttpProtocolOptions {
                    idle_timeout: esecs(30),
                    ..Default::default()
                })
            },
            "not supported: use typed_extension_protocol_options",
        ),
        (
            "connection_pool_per_downstream_connection",
            |c| c.connection_pool_per_downstream_connection = true,
            "not supported",
        ),
        (
            "queuing_policies",
            |c| {
                c.queuing_policies = Some(ecluster::cluster::QueuingPolicies {
                    pending_rq_policy: Some(typed_extension("lifo")),
                })
            },
            "not supported",
        ),
        (
            "dns_resolvers",
            |c| c.dns_resolvers = vec![esocket("10.0.0.53", 53).unwrap()],
            "not supported (Legate uses the system's resolver)",
        ),
        (
            "dns_resolution_config",
            |c| {
                c.dns_resolution_config = Some(ecore::DnsResolutionConfig {
                    resolvers: vec![esocket("10.0.0.53", 53).unwrap()],
                    ..Default::default()
                })
            },
            "not supported (Legate uses the system's resolver)",
        ),
        (
            "typed_dns_resolver_config",
            |c| {
                c.typed_dns_resolver_config =
                    Some(typed_extension("envoy.network.dns_resolver.cares"))
            },
            "not supported (Legate uses the system's resolver)",
        ),
        (
            "round_robin_lb_config.slow_start_config",
            |c| {
                c.lb_config = Some(ecluster::cluster::LbConfig::RoundRobinLbConfig(
                    ecluster::cluster::RoundRobinLbConfig {
                        slow_start_config: slow_start(),
                    },
                ))
            },
            "not supported",
        ),
        (
            "least_request_lb_config.slow_start_config",
            |c| {
                c.lb_policy = ecluster::cluster::LbPolicy::LeastRequest as i32;
                c.lb_config = Some(ecluster::cluster::LbConfig::LeastRequestLbConfig(
                    ecluster::cluster::LeastRequestLbConfig {
                        slow_start_config: slow_start(),
                        ..Default::default()
                    },
                ));
            },
            "not supported",
        ),
    ];
    for (field, set, message) in cluster_cases {
        let mut c = cluster();
        set(&mut c);
        assert_refused(
            translate::decode(translate::CLUSTER_TYPE, &eany(&c)),
            "Cluster",
            "c",
            field,
            message,
        );
    }
    // Accepted and ignored (not in the wire subset, or what Legate does).
    let mut c = cluster();
    c.respect_dns_ttl = true;
    c.dns_failure_refresh_rate = Some(Default::default());
    c.use_tcp_for_dns_lookups = true;
    c.dns_jitter = esecs(1);
    c.max_requests_per_connection = u32v(100);
    c.per_connection_buffer_high_watermark_timeout = esecs(0);
    c.lb_config = Some(ecluster::cluster::LbConfig::RoundRobinLbConfig(
        Default::default(),
    ));
    c.preconnect_policy = Some(Default::default());
    c.track_cluster_stats = Some(Default::default());
    decode_ok(translate::CLUSTER_TYPE, &eany(&c));
    let mut c = cluster();
    c.cluster_discovery_type = Some(ecluster::cluster::ClusterDiscoveryType::Type(
        ecluster::cluster::DiscoveryType::Static as i32,
    ));
    c.load_assignment = None;
    c.dns_resolvers = vec![esocket("10.0.0.53", 53).unwrap()];
    c.typed_dns_resolver_config = Some(typed_extension("envoy.network.dns_resolver.cares"));
    decode_ok(translate::CLUSTER_TYPE, &eany(&c));

    let cla = eendpoint::ClusterLoadAssignment {
        cluster_name: "c".into(),
        endpoints: vec![eendpoint::LocalityLbEndpoints {
            lb_config: Some(
                eendpoint::locality_lb_endpoints::LbConfig::LedsClusterLocalityConfig(
                    eendpoint::LedsClusterLocalityConfig {
                        leds_config: ads(),
                        leds_collection_name: "xdstp://leds/c".into(),
                    },
                ),
            ),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_refused(
        translate::decode(translate::ENDPOINT_TYPE, &eany(&cla)),
        "ClusterLoadAssignment",
        "c",
        "endpoints[0].leds_cluster_locality_config",
        "not supported (LEDS)",
    );
    let mut cla = cluster().load_assignment.unwrap();
    if let Some(eendpoint::lb_endpoint::HostIdentifier::Endpoint(e)) =
        &mut cla.endpoints[0].lb_endpoints[0].host_identifier
    {
        e.address = esocket("10.0.0.1", 5432);
        e.additional_addresses = vec![eendpoint::endpoint::AdditionalAddress {
            address: esocket("fd00::1", 5432),
        }];
    }
    assert_refused(
        translate::decode(translate::ENDPOINT_TYPE, &eany(&cla)),
        "ClusterLoadAssignment",
        "c",
        "endpoints[0].lb_endpoints[0].endpoint.additional_addresses",
        "not supported (Legate connects to the endpoint's address only)",
    );
    // Accepted and ignored.
    let mut cla = cluster().load_assignment.unwrap();
    if let Some(eendpoint::lb_endpoint::HostIdentifier::Endpoint(e)) =
        &mut cla.endpoints[0].lb_endpoints[0].host_identifier
    {
        e.address = esocket("10.0.0.1", 5432);
        e.observability_name = "db-0".into();
    }
    cla.endpoints[0].metadata = Some(ecore::Metadata::default());
    cla.named_endpoints
        .insert("unused".into(), eendpoint::Endpoint::default());
    decode_ok(translate::ENDPOINT_TYPE, &eany(&cla));
}

// ---------------------------------------------------------------------------
// Refusals: listeners

fn router_filter() -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(
            translate::to_any(&router::Router::default()),
        )),
        ..Default::default()
    }
}

fn base_route_config() -> route::RouteConfiguration {
    route::RouteConfiguration {
        name: "routes".into(),
        virtual_hosts: vec![route::VirtualHost {
            name: "vh".into(),
            domains: vec!["*".into()],
            routes: vec![base_route()],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn base_route() -> route::Route {
    route::Route {
        r#match: Some(route::RouteMatch {
            path_specifier: Some(route::route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(route::route::Action::Route(base_action())),
        ..Default::default()
    }
}

fn base_action() -> route::RouteAction {
    route::RouteAction {
        cluster_specifier: Some(route::route_action::ClusterSpecifier::Cluster("c".into())),
        ..Default::default()
    }
}

fn base_hcm() -> hcm::HttpConnectionManager {
    hcm::HttpConnectionManager {
        stat_prefix: "web".into(),
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(
            base_route_config(),
        )),
        http_filters: vec![router_filter()],
        ..Default::default()
    }
}

fn listener_with_filter(any: prost_types::Any) -> lis::Listener {
    lis::Listener {
        name: "web".into(),
        address: Some(translate_address("127.0.0.1", 8080)),
        filter_chains: vec![lis::FilterChain {
            filters: vec![lis::Filter {
                name: "f".into(),
                config_type: Some(lis::filter::ConfigType::TypedConfig(any)),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn listener_with(h: hcm::HttpConnectionManager) -> lis::Listener {
    listener_with_filter(translate::to_any(&h))
}

fn translate_address(ip: &str, port: u32) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: ip.into(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

/// Asserts that `l` (as mutated) is refused at `path` (through `decode`
/// too, which must agree).
#[track_caller]
fn listener_refused(l: &lis::Listener, path: &str, message: &str) {
    assert_refused(
        translate::listener_from_xds(l),
        "Listener",
        &l.name,
        path,
        message,
    );
    assert_refused(
        translate::decode(translate::LISTENER_TYPE, &translate::to_any(l)),
        "Listener",
        &l.name,
        path,
        message,
    );
}

#[track_caller]
fn hcm_refused(f: impl FnOnce(&mut hcm::HttpConnectionManager), path: &str, message: &str) {
    let mut h = base_hcm();
    f(&mut h);
    listener_refused(
        &listener_with(h),
        &format!("filter_chains[0].filters[0].typed_config{path}"),
        message,
    );
}

#[test]
fn base_resources_are_accepted() {
    translate::listener_from_xds(&listener_with(base_hcm())).unwrap();
    translate::route_config_from_xds(&base_route_config()).unwrap();
    translate::cluster_from_xds(&base_cluster()).unwrap();
    translate::load_assignment_from_xds(&base_cla()).unwrap();
}

#[test]
fn listener_refusals() {
    let base = listener_with(base_hcm());
    // Interception: a virtual listener serves connections by their
    // original destination; listeners that bind no port are served
    // through it. One listener cannot be both.
    let mut l = base.clone();
    l.use_original_dst = Some(true);
    let m = translate::listener_from_xds(&l).unwrap();
    assert!(m.use_original_dst && m.bind_to_port);
    assert_eq!(translate::listener_to_xds(&m).use_original_dst, Some(true));
    l.bind_to_port = Some(false);
    listener_refused(
        &l,
        "bind_to_port",
        "a `use_original_dst` listener must bind its port",
    );
    let mut l = base.clone();
    l.bind_to_port = Some(false);
    let m = translate::listener_from_xds(&l).unwrap();
    assert!(!m.use_original_dst && !m.bind_to_port);
    assert_eq!(translate::listener_to_xds(&m).bind_to_port, Some(false));

    let mut l = base.clone();
    l.listener_filters = vec![
        lis::ListenerFilter {
            name: "envoy.filters.listener.original_dst".into(),
            ..Default::default()
        },
        lis::ListenerFilter {
            name: "custom".into(),
            config_type: Some(lis::listener_filter::ConfigType::TypedConfig(prost_types::Any {
                type_url: "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector".into(),
                value: vec![],
            })),
            ..Default::default()
        },
        lis::ListenerFilter {
            name: "envoy.filters.listener.proxy_protocol".into(),
            ..Default::default()
        },
    ];
    listener_refused(
        &l,
        "listener_filters[2]",
        "unsupported listener filter \"envoy.filters.listener.proxy_protocol\"",
    );

    let mut l = base.clone();
    l.address = None;
    listener_refused(&l, "address", "must be set");
    l.address = Some(core::Address {
        address: Some(core::address::Address::Pipe(core::Pipe::default())),
    });
    listener_refused(&l, "address.pipe", "not supported");
    let mut a = translate_address("127.0.0.1", 80);
    if let Some(core::address::Address::SocketAddress(s)) = &mut a.address {
        s.protocol = core::socket_address::Protocol::Udp as i32;
    }
    l.address = Some(a);
    listener_refused(
        &l,
        "address.socket_address.protocol",
        "UDP is not supported",
    );
    let mut a = translate_address("127.0.0.1", 80);
    if let Some(core::address::Address::SocketAddress(s)) = &mut a.address {
        s.port_specifier = Some(core::socket_address::PortSpecifier::NamedPort(
            "http".into(),
        ));
    }
    l.address = Some(a);
    listener_refused(&l, "address.socket_address.named_port", "not supported");
    l.address = Some(translate_address("127.0.0.1", 70000));
    listener_refused(
        &l,
        "address.socket_address.port_value",
        "70000 is not a port",
    );
    // The model's validation, mapped to the resource's fields.
    l.address = Some(translate_address("localhost", 80));
    listener_refused(
        &l,
        "address.socket_address",
        "invalid socket address \"localhost:80\"",
    );

    let mut l = base.clone();
    l.filter_chains[0].transport_socket = Some(core::TransportSocket::default());
    listener_refused(
        &l,
        "filter_chains[0].transport_socket",
        "TLS is not supported yet",
    );

    // A listener filter Legate accepts (and ignores), with a match predicate.
    let mut l = base.clone();
    l.listener_filters = vec![lis::ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        filter_disabled: Some(lis::ListenerFilterChainMatchPredicate {}),
        ..Default::default()
    }];
    listener_refused(&l, "listener_filters[0].filter_disabled", "not supported");
    l.listener_filters[0].filter_disabled = None;
    translate::listener_from_xds(&l).unwrap();

    // The PROXY protocol (deprecated in Envoy), in any chain.
    let proxy_proto = "not supported (Legate does not read PROXY protocol headers)";
    let mut l = base.clone();
    l.filter_chains[0].use_proxy_proto = Some(true);
    listener_refused(&l, "filter_chains[0].use_proxy_proto", proxy_proto);
    l.filter_chains[0].use_proxy_proto = Some(false);
    translate::listener_from_xds(&l).unwrap();
    let mut l = base.clone();
    l.filter_chains[0].filter_chain_match = Some(lis::FilterChainMatch {
        destination_port: Some(81),
        ..Default::default()
    });
    let mut fallback = l.filter_chains[0].clone();
    fallback.filter_chain_match = None;
    fallback.use_proxy_proto = Some(true);
    l.default_filter_chain = Some(fallback);
    listener_refused(&l, "default_filter_chain.use_proxy_proto", proxy_proto);

    // Socket settings.
    type Set = fn(&mut lis::Listener);
    let refused: [(&str, Set, &str); 5] = [
        (
            "per_connection_buffer_high_watermark_timeout",
            |l| {
                l.per_connection_buffer_high_watermark_timeout = Some(prost_types::Duration {
                    seconds: 5,
                    nanos: 0,
                })
            },
            "not supported (Legate does not close connections for their buffer use)",
        ),
        (
            "transparent",
            |l| l.transparent = Some(true),
            "not supported (Legate does not set IP_TRANSPARENT)",
        ),
        (
            "freebind",
            |l| l.freebind = Some(true),
            "not supported (Legate does not set IP_FREEBIND)",
        ),
        (
            "socket_options",
            |l| l.socket_options = vec![core::SocketOption {}],
            "not supported",
        ),
        (
            "tcp_keepalive",
            |l| l.tcp_keepalive = Some(core::TcpKeepalive {}),
            "not supported yet",
        ),
    ];
    for (path, set, message) in refused {
        let mut l = base.clone();
        set(&mut l);
        listener_refused(&l, path, message);
    }
    // What Legate does: 0 disables the watermark timeout, false leaves the
    // socket option off.
    let mut l = base.clone();
    l.per_connection_buffer_high_watermark_timeout = Some(Default::default());
    l.transparent = Some(false);
    l.freebind = Some(false);
    translate::listener_from_xds(&l).unwrap();
}

#[test]
fn filter_chain_match_refusals() {
    let base = listener_with(base_hcm());
    type Set = fn(&mut lis::FilterChainMatch);
    let cases: [(&str, Set); 10] = [
        ("prefix_ranges", |m| {
            m.prefix_ranges = vec![Default::default()]
        }),
        ("address_suffix", |m| m.address_suffix = "::1".into()),
        ("suffix_len", |m| m.suffix_len = Some(64)),
        ("direct_source_prefix_ranges", |m| {
            m.direct_source_prefix_ranges = vec![Default::default()]
        }),
        ("source_type", |m| m.source_type = 1),
        ("source_prefix_ranges", |m| {
            m.source_prefix_ranges = vec![Default::default()]
        }),
        ("source_ports", |m| m.source_ports = vec![1234]),
        ("server_names", |m| {
            m.server_names = vec!["example.com".into()]
        }),
        ("transport_protocol", |m| {
            m.transport_protocol = "tls".into()
        }),
        ("application_protocols", |m| {
            m.application_protocols = vec!["h2".into()]
        }),
    ];
    for (field, set) in cases {
        let mut l = base.clone();
        let mut m = lis::FilterChainMatch {
            destination_port: Some(80),
            ..Default::default()
        };
        set(&mut m);
        l.filter_chains[0].filter_chain_match = Some(m);
        listener_refused(
            &l,
            &format!("filter_chains[0].filter_chain_match.{field}"),
            "not supported: only destination_port is",
        );
    }
    let mut l = base.clone();
    l.filter_chains[0].filter_chain_match = Some(lis::FilterChainMatch {
        destination_port: Some(0),
        ..Default::default()
    });
    listener_refused(
        &l,
        "filter_chains[0].filter_chain_match.destination_port",
        "0 is not a port",
    );

    // Duplicate matches.
    let mut l = base.clone();
    l.filter_chains.push(l.filter_chains[0].clone());
    listener_refused(
        &l,
        "filter_chains[1]",
        "filter_chains[0] has the same filter_chain_match",
    );
}

#[test]
fn network_filter_refusals() {
    let base = listener_with(base_hcm());
    let mut l = base.clone();
    l.filter_chains[0].filters.clear();
    listener_refused(
        &l,
        "filter_chains[0].filters",
        "a filter chain needs one network filter",
    );

    let mut l = base.clone();
    let f = l.filter_chains[0].filters[0].clone();
    l.filter_chains[0].filters.push(f);
    listener_refused(
        &l,
        "filter_chains[0].filters[1]",
        "a filter chain takes exactly one network filter",
    );

    let mut l = base.clone();
    l.filter_chains[0].filters[0].config_type = None;
    listener_refused(
        &l,
        "filter_chains[0].filters[0]",
        "network filter \"f\" has no typed_config",
    );

    let rbac = prost_types::Any {
        type_url: "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC".into(),
        value: vec![],
    };
    listener_refused(
        &listener_with_filter(rbac),
        "filter_chains[0].filters[0]",
        "unsupported network filter \"f\" (type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC)",
    );

    let garbage = prost_types::Any {
        type_url: hcm::HttpConnectionManager::type_url(),
        value: vec![0xff, 0xff],
    };
    listener_refused(
        &listener_with_filter(garbage),
        "filter_chains[0].filters[0].typed_config",
        "cannot decode envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    );

    // TCP proxy.
    let t = tcp::TcpProxy {
        cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::WeightedClusters(
            Default::default(),
        )),
        ..Default::default()
    };
    listener_refused(
        &listener_with_filter(translate::to_any(&t)),
        "filter_chains[0].filters[0].typed_config.weighted_clusters",
        "not supported yet",
    );
    let t = tcp::TcpProxy {
        cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::Cluster(String::new())),
        ..Default::default()
    };
    listener_refused(
        &listener_with_filter(translate::to_any(&t)),
        "filter_chains[0].filters[0].typed_config.cluster",
        "must not be empty",
    );
    listener_refused(
        &listener_with_filter(translate::to_any(&tcp::TcpProxy::default())),
        "filter_chains[0].filters[0].typed_config.cluster",
        "must be set",
    );
}

#[test]
fn http_connection_manager_refusals() {
    use hcm::http_connection_manager::{CodecType, ForwardClientCertDetails, RouteSpecifier};
    hcm_refused(
        |h| h.codec_type = CodecType::Http3 as i32,
        ".codec_type",
        "HTTP3 is not supported",
    );
    hcm_refused(
        |h| h.forward_client_cert_details = ForwardClientCertDetails::AppendForward as i32,
        ".forward_client_cert_details",
        "not supported yet",
    );
    hcm_refused(|h| h.route_specifier = None, "", "set rds or route_config");
    hcm_refused(
        |h| h.local_reply_config = Some(hcm::LocalReplyConfig {}),
        ".local_reply_config",
        "not supported (Legate's local replies cannot be customized)",
    );
    hcm_refused(
        |h| {
            h.internal_address_config = Some(hcm::http_connection_manager::InternalAddressConfig {})
        },
        ".internal_address_config",
        "not supported",
    );
    {
        use hcm::http_connection_manager::PathWithEscapedSlashesAction as Slashes;
        for (action, name) in [
            (Slashes::RejectRequest, "REJECT_REQUEST"),
            (Slashes::UnescapeAndRedirect, "UNESCAPE_AND_REDIRECT"),
            (Slashes::UnescapeAndForward, "UNESCAPE_AND_FORWARD"),
        ] {
            hcm_refused(
                |h| h.path_with_escaped_slashes_action = action as i32,
                ".path_with_escaped_slashes_action",
                &format!("{name} is not supported (Legate keeps escaped slashes unchanged)"),
            );
        }
        hcm_refused(
            |h| h.path_with_escaped_slashes_action = 99,
            ".path_with_escaped_slashes_action",
            "unknown value 99",
        );
        // What Legate does (and Envoy's default).
        for action in [
            Slashes::KeepUnchanged,
            Slashes::ImplementationSpecificDefault,
        ] {
            let mut h = base_hcm();
            h.path_with_escaped_slashes_action = action as i32;
            translate::listener_from_xds(&listener_with(h)).unwrap();
        }
    }
    hcm_refused(
        |h| {
            h.common_http_protocol_options = Some(core::HttpProtocolOptions {
                headers_with_underscores_action:
                    core::http_protocol_options::HeadersWithUnderscoresAction::RejectRequest as i32,
                ..Default::default()
            })
        },
        ".common_http_protocol_options.headers_with_underscores_action",
        "not supported",
    );
    {
        use hcm::http_connection_manager::{
            ProxyStatusConfig, ServerHeaderTransformation, Tracing,
        };
        let extension = || core::TypedExtensionConfig {
            name: "x".into(),
            ..Default::default()
        };
        let four_secs = || {
            Some(prost_types::Duration {
                seconds: 4,
                nanos: 0,
            })
        };
        type Set = Box<dyn FnOnce(&mut hcm::HttpConnectionManager)>;
        let cases: Vec<(&str, Set, &str)> = vec![
            (
                "add_user_agent",
                Box::new(|h| h.add_user_agent = Some(true)),
                "not supported (Legate sets neither user-agent nor x-envoy-downstream-service-cluster)",
            ),
            (
                "tracing",
                Box::new(|h| h.tracing = Some(Tracing {})),
                "not supported (Legate does not trace requests)",
            ),
            (
                "server_name",
                Box::new(|h| h.server_name = "edge".into()),
                "not supported (Legate passes the upstream's server header on)",
            ),
            (
                "server_name",
                Box::new(|h| {
                    h.server_name = "edge".into();
                    h.server_header_transformation =
                        ServerHeaderTransformation::AppendIfAbsent as i32;
                }),
                "not supported (Legate passes the upstream's server header on)",
            ),
            (
                "server_header_transformation",
                Box::new(|h| h.server_header_transformation = 9),
                "unknown value 9",
            ),
            (
                "scheme_header_transformation",
                Box::new(|h| h.scheme_header_transformation = Some(Default::default())),
                "not supported",
            ),
            (
                "stream_flush_timeout",
                Box::new(move |h| h.stream_flush_timeout = four_secs()),
                "not supported yet",
            ),
            (
                "original_ip_detection_extensions",
                Box::new(move |h| h.original_ip_detection_extensions = vec![extension()]),
                "not supported",
            ),
            (
                "early_header_mutation_extensions",
                Box::new(move |h| h.early_header_mutation_extensions = vec![extension()]),
                "not supported",
            ),
            (
                "always_set_request_id_in_response",
                Box::new(|h| h.always_set_request_id_in_response = true),
                "not supported (Legate does not send x-request-id in responses)",
            ),
            (
                "forward_client_cert_matcher",
                Box::new(|h| {
                    h.forward_client_cert_matcher =
                        Some(legate_xds::wire::xds::r#type::matcher::v3::Matcher {})
                }),
                "not supported yet (client certificates come with TLS)",
            ),
            (
                "proxy_100_continue",
                Box::new(|h| h.proxy_100_continue = true),
                "not supported (Legate answers Expect: 100-continue itself)",
            ),
            (
                "represent_ipv4_remote_address_as_ipv4_mapped_ipv6",
                Box::new(|h| h.represent_ipv4_remote_address_as_ipv4_mapped_ipv6 = true),
                "not supported",
            ),
            (
                "request_id_extension",
                Box::new(|h| h.request_id_extension = Some(hcm::RequestIdExtension {})),
                "not supported (Legate generates random UUIDs)",
            ),
            (
                "strip_trailing_host_dot",
                Box::new(|h| h.strip_trailing_host_dot = true),
                "not supported",
            ),
            (
                "proxy_status_config",
                Box::new(|h| h.proxy_status_config = Some(ProxyStatusConfig {})),
                "not supported (Legate sends no proxy-status header)",
            ),
            (
                "typed_header_validation_config",
                Box::new(move |h| h.typed_header_validation_config = Some(extension())),
                "not supported",
            ),
            (
                "append_x_forwarded_port",
                Box::new(|h| h.append_x_forwarded_port = true),
                "not supported (Legate does not set x-forwarded-port)",
            ),
        ];
        for (field, set, message) in cases {
            hcm_refused(set, &format!(".{field}"), message);
        }
        // What Legate does: it never writes a server header of its own (a
        // server_name only passed through changes nothing), and a flush
        // timeout of 0 is none.
        let mut h = base_hcm();
        h.server_name = "edge".into();
        h.server_header_transformation = ServerHeaderTransformation::PassThrough as i32;
        h.stream_flush_timeout = Some(Default::default());
        h.add_user_agent = Some(false);
        translate::listener_from_xds(&listener_with(h)).unwrap();
        for t in [
            ServerHeaderTransformation::Overwrite,
            ServerHeaderTransformation::AppendIfAbsent,
        ] {
            let mut h = base_hcm();
            h.server_header_transformation = t as i32;
            translate::listener_from_xds(&listener_with(h)).unwrap();
        }
    }

    // RDS config sources: only ADS.
    let rds = |cs: Option<core::ConfigSource>| {
        move |h: &mut hcm::HttpConnectionManager| {
            h.route_specifier = Some(RouteSpecifier::Rds(hcm::Rds {
                config_source: cs,
                route_config_name: "r".into(),
            }))
        }
    };
    hcm_refused(rds(None), ".rds.config_source", "must be set");
    hcm_refused(
        rds(Some(core::ConfigSource {
            config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Path(
                "/etc/routes.yaml".into(),
            )),
            ..Default::default()
        })),
        ".rds.config_source.path",
        "not supported",
    );
    hcm_refused(
        rds(Some(core::ConfigSource {
            config_source_specifier: Some(
                core::config_source::ConfigSourceSpecifier::ApiConfigSource(
                    core::ApiConfigSource {
                        api_type: core::api_config_source::ApiType::Grpc as i32,
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        })),
        ".rds.config_source.api_config_source.api_type",
        "GRPC is not supported",
    );
    let mut h = base_hcm();
    rds(Some(core::ConfigSource {
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Self_(
            Default::default(),
        )),
        ..Default::default()
    }))(&mut h);
    translate::listener_from_xds(&listener_with(h)).unwrap();
    // The model's validation: an empty name.
    hcm_refused(
        |h| {
            h.route_specifier = Some(RouteSpecifier::Rds(hcm::Rds {
                config_source: Some(core::ConfigSource {
                    config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
                        Default::default(),
                    )),
                    ..Default::default()
                }),
                route_config_name: String::new(),
            }))
        },
        ".rds.route_config_name",
        "must not be empty",
    );

    // HTTP filters.
    hcm_refused(
        |h| h.http_filters.clear(),
        ".http_filters",
        "must end with the router",
    );
    let other = |optional: bool, disabled: bool| {
        hcm::HttpFilter {
        name: "envoy.filters.http.jwt_authn".into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(prost_types::Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication".into(),
            value: vec![],
        })),
        is_optional: optional,
        disabled,
    }
    };
    hcm_refused(
        |h| h.http_filters.insert(0, other(false, false)),
        ".http_filters[0]",
        "unsupported HTTP filter \"envoy.filters.http.jwt_authn\"",
    );
    for (optional, disabled) in [(true, false), (false, true)] {
        let mut h = base_hcm();
        h.http_filters.insert(0, other(optional, disabled));
        translate::listener_from_xds(&listener_with(h)).unwrap();
    }
    hcm_refused(
        |h| h.http_filters = vec![other(true, false)],
        ".http_filters[0]",
        "the last HTTP filter must be the router",
    );
    hcm_refused(
        |h| h.http_filters.push(other(true, false)),
        ".http_filters[0]",
        "the router must be the last HTTP filter",
    );
    hcm_refused(
        |h| h.http_filters.insert(0, router_filter()),
        ".http_filters[0]",
        "the router must be the last HTTP filter",
    );
    // By name alone, without typed_config.
    let mut h = base_hcm();
    h.http_filters = vec![hcm::HttpFilter {
        name: "envoy.filters.http.router".into(),
        ..Default::default()
    }];
    translate::listener_from_xds(&listener_with(h)).unwrap();

    // Inside the inline route configuration too.
    let inline = |f: fn(&mut route::RouteConfiguration)| {
        move |h: &mut hcm::HttpConnectionManager| {
            let Some(RouteSpecifier::RouteConfig(rc)) = &mut h.route_specifier else {
                unreachable!()
            };
            f(rc);
        }
    };
    hcm_refused(
        inline(|rc| rc.vhds = Some(Default::default())),
        ".route_config.vhds",
        "not supported",
    );
    hcm_refused(
        inline(|rc| rc.request_mirror_policies = vec![Default::default()]),
        ".route_config.request_mirror_policies",
        "not supported yet (request mirroring is a later feature)",
    );
    hcm_refused(
        inline(|rc| rc.virtual_hosts[0].cors = Some(route::CorsPolicy {})),
        ".route_config.virtual_hosts[0].cors",
        "not supported",
    );

    // The model's validation, inside the inline route configuration.
    hcm_refused(
        |h| h.max_request_headers_kb = Some(4),
        ".max_request_headers_kb",
        "must be between 8 and 8192",
    );
    hcm_refused(
        |h| {
            h.common_http_protocol_options = Some(core::HttpProtocolOptions {
                max_headers_count: Some(0),
                ..Default::default()
            })
        },
        ".common_http_protocol_options.max_headers_count",
        "must be between 1 and 10000",
    );
    hcm_refused(
        |h| {
            let Some(RouteSpecifier::RouteConfig(rc)) = &mut h.route_specifier else {
                unreachable!()
            };
            let Some(route::route::Action::Route(a)) = &mut rc.virtual_hosts[0].routes[0].action
            else {
                unreachable!()
            };
            a.hash_policy = vec![route::route_action::HashPolicy {
                policy_specifier: Some(route::route_action::hash_policy::PolicySpecifier::Cookie(
                    route::route_action::hash_policy::Cookie {
                        name: "a=b".into(),
                        ..Default::default()
                    },
                )),
                terminal: false,
            }];
        },
        ".route_config.virtual_hosts[0].routes[0].route.hash_policy[0].cookie.name",
        "invalid cookie name \"a=b\"",
    );
}

#[test]
fn validation_paths_follow_reordered_chains() {
    // Chain 0 matches everything, chain 1 a port: the model puts chain 1
    // first, and errors still name the chains by their Envoy index.
    let mut bad = base_hcm();
    bad.max_request_headers_kb = Some(1);
    let mut l = listener_with(bad);
    let good = translate::to_any(&base_hcm());
    l.filter_chains.push(lis::FilterChain {
        filter_chain_match: Some(lis::FilterChainMatch {
            destination_port: Some(81),
            ..Default::default()
        }),
        filters: vec![lis::Filter {
            name: "hcm".into(),
            config_type: Some(lis::filter::ConfigType::TypedConfig(good.clone())),
        }],
        ..Default::default()
    });
    listener_refused(
        &l,
        "filter_chains[0].filters[0].typed_config.max_request_headers_kb",
        "must be between 8 and 8192",
    );

    // The default filter chain comes last and is named as such.
    let mut l = listener_with(base_hcm());
    l.filter_chains[0].filter_chain_match = Some(lis::FilterChainMatch {
        destination_port: Some(81),
        ..Default::default()
    });
    let mut bad = base_hcm();
    bad.http2_protocol_options = Some(core::Http2ProtocolOptions {
        max_concurrent_streams: Some(0),
        ..Default::default()
    });
    l.default_filter_chain = Some(lis::FilterChain {
        filters: vec![lis::Filter {
            name: "hcm".into(),
            config_type: Some(lis::filter::ConfigType::TypedConfig(translate::to_any(
                &bad,
            ))),
        }],
        ..Default::default()
    });
    listener_refused(
        &l,
        "default_filter_chain.filters[0].typed_config.http2_protocol_options.max_concurrent_streams",
        "must be at least 1",
    );
    let m = translate::listener_from_xds(&listener_with(base_hcm())).unwrap();
    assert_eq!(m.filter_chains.len(), 1);
}

// ---------------------------------------------------------------------------
// Refusals: route configurations

#[track_caller]
fn rc_refused(rc: &route::RouteConfiguration, path: &str, message: &str) {
    assert_refused(
        translate::route_config_from_xds(rc),
        "RouteConfiguration",
        &rc.name,
        path,
        message,
    );
}

#[track_caller]
fn vh_refused(f: impl FnOnce(&mut route::VirtualHost), path: &str, message: &str) {
    let mut rc = base_route_config();
    f(&mut rc.virtual_hosts[0]);
    rc_refused(&rc, &format!("virtual_hosts[0]{path}"), message);
}

#[track_caller]
fn route_refused(f: impl FnOnce(&mut route::Route), path: &str, message: &str) {
    vh_refused(
        |vh| f(&mut vh.routes[0]),
        &format!(".routes[0]{path}"),
        message,
    );
}

#[track_caller]
fn action_refused(f: impl FnOnce(&mut route::RouteAction), path: &str, message: &str) {
    route_refused(
        |r| {
            let mut a = base_action();
            f(&mut a);
            r.action = Some(route::route::Action::Route(a));
        },
        &format!(".route{path}"),
        message,
    );
}

#[track_caller]
fn match_refused(f: impl FnOnce(&mut route::RouteMatch), path: &str, message: &str) {
    route_refused(
        |r| f(r.r#match.as_mut().unwrap()),
        &format!(".match{path}"),
        message,
    );
}

fn hv(key: &str, value: &str) -> core::HeaderValueOption {
    core::HeaderValueOption {
        header: Some(core::HeaderValue {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn route_configuration_refusals() {
    let level = "not supported yet (header mutations at the route configuration level";
    let mut rc = base_route_config();
    rc.request_headers_to_add = vec![hv("x-a", "1")];
    rc_refused(&rc, "request_headers_to_add", level);
    let mut rc = base_route_config();
    rc.request_headers_to_remove = vec!["x-a".into()];
    rc_refused(&rc, "request_headers_to_remove", level);
    let mut rc = base_route_config();
    rc.response_headers_to_add = vec![hv("x-a", "1")];
    rc_refused(&rc, "response_headers_to_add", level);
    let mut rc = base_route_config();
    rc.response_headers_to_remove = vec!["x-a".into()];
    rc_refused(&rc, "response_headers_to_remove", level);
    let mut rc = base_route_config();
    rc.internal_only_headers = vec!["x-internal".into()];
    rc_refused(&rc, "internal_only_headers", "not supported yet");
    let mut rc = base_route_config();
    rc.ignore_port_in_host_matching = true;
    rc_refused(
        &rc,
        "ignore_port_in_host_matching",
        "not supported: use the HTTP connection manager's strip_any_host_port",
    );
    let mut rc = base_route_config();
    rc.vhds = Some(route::Vhds::default());
    rc_refused(&rc, "vhds", "not supported");
    let mut rc = base_route_config();
    rc.request_mirror_policies = vec![route::route_action::RequestMirrorPolicy {
        cluster: "shadow".into(),
        ..Default::default()
    }];
    rc_refused(
        &rc,
        "request_mirror_policies",
        "not supported yet (request mirroring is a later feature)",
    );
    // The order of the levels' header changes matters only for a header
    // changed at both levels.
    let mut rc = base_route_config();
    rc.most_specific_header_mutations_wins = true;
    rc.virtual_hosts[0].request_headers_to_add = vec![hv("x-a", "1")];
    rc.virtual_hosts[0].routes[0].request_headers_to_add = vec![hv("x-b", "1")];
    rc.virtual_hosts[0].response_headers_to_remove = vec!["x-c".into()];
    rc.virtual_hosts[0].routes[0].request_headers_to_remove = vec!["x-c".into()];
    translate::route_config_from_xds(&rc).unwrap();
    rc.virtual_hosts[0].routes[0].response_headers_to_add = vec![hv("X-C", "2")];
    rc_refused(
        &rc,
        "most_specific_header_mutations_wins",
        "not supported: virtual_hosts[0].routes[0] and its virtual host both change \"x-c\" (Legate applies a route's header changes before its virtual host's",
    );
    rc.virtual_hosts[0].routes[0].response_headers_to_add = vec![];
    rc.virtual_hosts[0].routes[0].request_headers_to_remove = vec!["x-a".into()];
    rc_refused(
        &rc,
        "most_specific_header_mutations_wins",
        "not supported: virtual_hosts[0].routes[0] and its virtual host both change \"x-a\"",
    );
    let mut rc = base_route_config();
    rc.vhost_header = "x-vhost".into();
    rc_refused(
        &rc,
        "vhost_header",
        "not supported (Legate picks the virtual host by the request's authority)",
    );
    let mut rc = base_route_config();
    rc.ignore_path_parameters_in_path_matching = true;
    rc_refused(
        &rc,
        "ignore_path_parameters_in_path_matching",
        "not supported (Legate matches the whole path, parameters included)",
    );
    let mut rc = base_route_config();
    rc.typed_per_filter_config
        .insert("envoy.filters.http.cors".into(), Default::default());
    rc_refused(
        &rc,
        "typed_per_filter_config",
        "not supported (Legate has no HTTP filters to configure)",
    );
    let mut rc = base_route_config();
    rc.route_specifiers = vec![Default::default()];
    rc_refused(&rc, "route_specifiers", "not supported (route specifiers)");
    // Accepted and ignored.
    let mut rc = base_route_config();
    rc.validate_clusters = Some(true);
    rc.max_direct_response_body_size_bytes = Some(1);
    translate::route_config_from_xds(&rc).unwrap();

    // The model's validation: the name of an RDS resource, duplicate domains.
    let mut rc = base_route_config();
    rc.name = String::new();
    rc_refused(&rc, "name", "must not be empty");
    let mut rc = base_route_config();
    let vh = rc.virtual_hosts[0].clone();
    rc.virtual_hosts.push(vh);
    rc_refused(
        &rc,
        "virtual_hosts[1].domains[0]",
        "domain \"*\" is already used by virtual_hosts[0]",
    );
}

#[test]
fn virtual_host_refusals() {
    vh_refused(
        |vh| vh.require_tls = route::virtual_host::TlsRequirementType::All as i32,
        ".require_tls",
        "TLS is not supported yet",
    );
    // An empty policy names no condition: refused by the model's check,
    // reported at Envoy's field.
    vh_refused(
        |vh| vh.retry_policy = Some(Default::default()),
        ".retry_policy.retry_on",
        "name at least one condition (5xx, reset, connect-failure, ...)",
    );
    vh_refused(
        |vh| {
            vh.retry_policy = Some(route::RetryPolicy {
                retry_on: "5xx,teapot".into(),
                ..Default::default()
            })
        },
        ".retry_policy.retry_on",
        "\"teapot\" is not a retry condition Legate supports",
    );
    vh_refused(
        |vh| {
            vh.retry_policy = Some(route::RetryPolicy {
                retry_on: "5xx".into(),
                retry_priority: Some(Default::default()),
                ..Default::default()
            })
        },
        ".retry_policy.retry_priority",
        "not supported yet",
    );
    vh_refused(
        |vh| {
            vh.typed_per_filter_config
                .insert("envoy.filters.http.cors".into(), Default::default());
        },
        ".typed_per_filter_config.envoy.filters.http.cors",
        "not supported (): Legate configures the fault and local rate limit filters per route",
    );
    vh_refused(
        |vh| vh.matcher = Some(legate_xds::wire::xds::r#type::matcher::v3::Matcher {}),
        ".matcher",
        "not supported (use routes)",
    );
    vh_refused(
        |vh| vh.rate_limits = vec![route::RateLimit {}],
        ".rate_limits",
        "not supported yet (rate limits are a later feature)",
    );
    vh_refused(
        |vh| vh.cors = Some(route::CorsPolicy {}),
        ".cors",
        "not supported (Legate has no CORS filter)",
    );
    vh_refused(
        |vh| vh.retry_policy_typed_config = Some(Default::default()),
        ".retry_policy_typed_config",
        "not supported (use retry_policy)",
    );
    vh_refused(
        |vh| vh.hedge_policy = Some(route::HedgePolicy {}),
        ".hedge_policy",
        "not supported yet (hedging comes with retries, a later feature)",
    );
    vh_refused(
        |vh| vh.request_mirror_policies = vec![Default::default()],
        ".request_mirror_policies",
        "not supported yet (request mirroring is a later feature)",
    );
    vh_refused(
        |vh| vh.domains = vec!["a*b".into()],
        ".domains[0]",
        "invalid domain \"a*b\"",
    );
    vh_refused(
        |vh| vh.include_attempt_count_in_response = true,
        ".include_attempt_count_in_response",
        "not supported (Legate sends no x-envoy-attempt-count header)",
    );
    vh_refused(
        |vh| vh.route_specifiers = vec![Default::default()],
        ".route_specifiers",
        "not supported (route specifiers)",
    );
    vh_refused(
        |vh| vh.include_attempt_count_in_response = true,
        ".include_attempt_count_in_response",
        "not supported",
    );
}

#[test]
fn via_stream_durations_and_xff_append() {
    hcm_refused(
        |h| h.via = "legate".into(),
        ".via",
        "not supported (Legate adds no via header)",
    );
    let msd = "not supported yet (stream duration limits and grpc-timeout headers)";
    action_refused(
        |a| {
            a.max_stream_duration = Some(route::route_action::MaxStreamDuration {
                max_stream_duration: Some(prost_types::Duration {
                    seconds: 30,
                    nanos: 0,
                }),
                ..Default::default()
            })
        },
        ".max_stream_duration",
        msd,
    );
    action_refused(
        |a| {
            a.max_stream_duration = Some(route::route_action::MaxStreamDuration {
                grpc_timeout_header_max: Some(Default::default()),
                ..Default::default()
            })
        },
        ".max_stream_duration",
        msd,
    );
    // x-forwarded-for: appended only with use_remote_address and without
    // skip_xff_append, as Envoy does.
    let xff = |use_remote: Option<bool>, skip: bool| {
        let mut h = base_hcm();
        h.use_remote_address = use_remote;
        h.skip_xff_append = skip;
        let l = translate::listener_from_xds(&listener_with(h)).unwrap();
        l.filter_chains[0]
            .http
            .as_ref()
            .unwrap()
            .append_x_forwarded_for
    };
    assert!(!xff(None, false));
    assert!(!xff(Some(false), false));
    assert!(xff(Some(true), false));
    assert!(!xff(Some(true), true));
}

#[test]
fn route_refusals() {
    route_refused(
        |r| r.action = None,
        "",
        "needs an action: route, redirect or direct_response",
    );
    route_refused(|r| r.r#match = None, ".match", "must be set");
    route_refused(
        |r| r.action = Some(route::route::Action::FilterAction(route::FilterAction {})),
        ".filter_action",
        "not supported",
    );
    route_refused(
        |r| {
            r.action = Some(route::route::Action::NonForwardingAction(
                route::NonForwardingAction {},
            ))
        },
        ".non_forwarding_action",
        "not supported (Legate has no HTTP filters to answer the request)",
    );
    route_refused(
        |r| r.route_specifiers = vec![Default::default()],
        ".route_specifiers",
        "not supported (route specifiers)",
    );
    route_refused(
        |r| {
            r.typed_per_filter_config
                .insert("envoy.filters.http.ext_authz".into(), Default::default());
        },
        ".typed_per_filter_config.envoy.filters.http.ext_authz",
        "not supported (): Legate configures the fault and local rate limit filters per route",
    );
    let mut rc = base_route_config();
    rc.virtual_hosts[0].routes[0].metadata = Some(Default::default());
    translate::route_config_from_xds(&rc).unwrap();
}

#[test]
fn route_match_refusals() {
    use route::route_match::PathSpecifier;
    match_refused(
        |m| m.path_specifier = Some(PathSpecifier::PathSeparatedPrefix("/a".into())),
        ".path_separated_prefix",
        "not supported yet",
    );
    match_refused(
        |m| m.path_specifier = Some(PathSpecifier::ConnectMatcher(Default::default())),
        ".connect_matcher",
        "not supported",
    );
    match_refused(
        |m| m.path_specifier = None,
        "",
        "set prefix, path or safe_regex",
    );
    match_refused(
        |m| m.runtime_fraction = Some(Default::default()),
        ".runtime_fraction",
        "not supported",
    );
    match_refused(
        |m| m.grpc = Some(Default::default()),
        ".grpc",
        "not supported yet",
    );
    match_refused(
        |m| {
            m.path_specifier = Some(PathSpecifier::PathMatchPolicy(core::TypedExtensionConfig {
                name: "envoy.path.match.uri_template".into(),
                ..Default::default()
            }))
        },
        ".path_match_policy",
        "not supported (use prefix, path or safe_regex)",
    );
    match_refused(
        |m| m.cookies = vec![route::CookieMatcher {}],
        ".cookies",
        "not supported",
    );
    match_refused(
        |m| m.tls_context = Some(route::route_match::TlsContextMatchOptions {}),
        ".tls_context",
        "TLS is not supported yet",
    );
    match_refused(
        |m| m.dynamic_metadata = vec![matcher::MetadataMatcher {}],
        ".dynamic_metadata",
        "not supported (Legate has no dynamic metadata)",
    );
    match_refused(
        |m| m.filter_state = vec![matcher::FilterStateMatcher {}],
        ".filter_state",
        "not supported (Legate has no filter state)",
    );
    match_refused(
        |m| {
            m.path_specifier = Some(PathSpecifier::SafeRegex(matcher::RegexMatcher {
                regex: "(".into(),
                ..Default::default()
            }))
        },
        ".safe_regex.regex",
        "invalid regex",
    );
    // The model's validation, mapped.
    match_refused(
        |m| m.path_specifier = Some(PathSpecifier::Path("no-slash".into())),
        ".path",
        "\"no-slash\" must start with '/'",
    );
}

#[test]
fn header_and_query_matcher_refusals() {
    use matcher::string_matcher::MatchPattern as P;
    use route::header_matcher::HeaderMatchSpecifier as H;
    use route::query_parameter_matcher::QueryParameterMatchSpecifier as Q;
    let header = |spec: Option<H>| {
        move |m: &mut route::RouteMatch| {
            m.headers = vec![route::HeaderMatcher {
                name: "x-a".into(),
                header_match_specifier: spec,
                ..Default::default()
            }]
        }
    };
    let sm = |p: P| matcher::StringMatcher {
        match_pattern: Some(p),
        ignore_case: false,
    };
    match_refused(
        header(Some(H::SuffixMatch("a".into()))),
        ".headers[0].suffix_match",
        "not supported",
    );
    match_refused(
        header(Some(H::ContainsMatch("a".into()))),
        ".headers[0].contains_match",
        "not supported",
    );
    match_refused(
        header(Some(H::RangeMatch(Default::default()))),
        ".headers[0].range_match",
        "not supported",
    );
    match_refused(
        header(Some(H::StringMatch(sm(P::Suffix("a".into()))))),
        ".headers[0].string_match.suffix",
        "not supported",
    );
    match_refused(
        header(Some(H::StringMatch(sm(P::Contains("a".into()))))),
        ".headers[0].string_match.contains",
        "not supported",
    );
    match_refused(
        header(Some(H::StringMatch(matcher::StringMatcher {
            match_pattern: Some(P::Exact("a".into())),
            ignore_case: true,
        }))),
        ".headers[0].string_match.ignore_case",
        "not supported",
    );
    match_refused(
        header(Some(H::StringMatch(sm(P::SafeRegex(
            matcher::RegexMatcher {
                regex: "[".into(),
                ..Default::default()
            },
        ))))),
        ".headers[0].string_match.safe_regex.regex",
        "invalid regex",
    );
    match_refused(
        |m| {
            m.headers = vec![route::HeaderMatcher {
                name: "x-a".into(),
                treat_missing_header_as_empty: true,
                ..Default::default()
            }]
        },
        ".headers[0].treat_missing_header_as_empty",
        "not supported",
    );
    // The model's validation: pseudo-headers.
    match_refused(
        |m| {
            m.headers = vec![route::HeaderMatcher {
                name: ":method".into(),
                header_match_specifier: Some(H::ExactMatch("GET".into())),
                ..Default::default()
            }]
        },
        ".headers[0].name",
        "\":method\": pseudo-headers cannot be used here",
    );

    let query = |spec: Q| {
        move |m: &mut route::RouteMatch| {
            m.query_parameters = vec![route::QueryParameterMatcher {
                name: "q".into(),
                query_parameter_match_specifier: Some(spec),
            }]
        }
    };
    for (p, field) in [
        (P::Prefix("a".into()), "prefix"),
        (P::Suffix("a".into()), "suffix"),
        (P::Contains("a".into()), "contains"),
    ] {
        match_refused(
            query(Q::StringMatch(sm(p))),
            &format!(".query_parameters[0].string_match.{field}"),
            "not supported",
        );
    }
    match_refused(
        query(Q::StringMatch(matcher::StringMatcher {
            match_pattern: Some(P::Exact("a".into())),
            ignore_case: true,
        })),
        ".query_parameters[0].string_match.ignore_case",
        "not supported",
    );
}

#[test]
fn route_action_refusals() {
    use route::route_action::hash_policy::{Cookie, Header, PolicySpecifier, QueryParameter};
    use route::route_action::{ClusterSpecifier, HashPolicy, HostRewriteSpecifier};
    action_refused(
        |a| a.cluster_specifier = Some(ClusterSpecifier::ClusterHeader("x-cluster".into())),
        ".cluster_header",
        "not supported",
    );
    action_refused(
        |a| a.cluster_specifier = None,
        "",
        "set cluster or weighted_clusters",
    );
    action_refused(
        |a| a.cluster_specifier = Some(ClusterSpecifier::Cluster(String::new())),
        ".cluster",
        "must not be empty",
    );
    action_refused(
        |a| {
            a.retry_policy = Some(route::RetryPolicy {
                retry_on: "reset".into(),
                retry_host_predicate: vec![route::retry_policy::RetryHostPredicate {
                    name: "envoy.retry_host_predicates.omit_canary_hosts".into(),
                    config_type: None,
                }],
                ..Default::default()
            })
        },
        ".retry_policy.retry_host_predicate[0].name",
        "\"envoy.retry_host_predicates.omit_canary_hosts\": only envoy.retry_host_predicates.previous_hosts is supported",
    );
    action_refused(
        |a| a.request_mirror_policies = vec![Default::default()],
        ".request_mirror_policies",
        "not supported yet",
    );
    action_refused(
        |a| a.retry_policy_typed_config = Some(Default::default()),
        ".retry_policy_typed_config",
        "not supported (use retry_policy)",
    );
    action_refused(
        |a| a.cluster_specifier = Some(ClusterSpecifier::ClusterSpecifierPlugin("p".into())),
        ".cluster_specifier_plugin",
        "not supported",
    );
    action_refused(
        |a| {
            a.cluster_specifier = Some(ClusterSpecifier::InlineClusterSpecifierPlugin(
                route::ClusterSpecifierPlugin {},
            ))
        },
        ".inline_cluster_specifier_plugin",
        "not supported",
    );
    action_refused(
        |a| a.append_x_forwarded_host = true,
        ".append_x_forwarded_host",
        "not supported (Legate does not set x-forwarded-host)",
    );
    action_refused(
        |a| {
            a.flush_timeout = Some(prost_types::Duration {
                seconds: 0,
                nanos: 1,
            })
        },
        ".flush_timeout",
        "not supported yet",
    );
    action_refused(
        |a| a.max_grpc_timeout = Some(Default::default()),
        ".max_grpc_timeout",
        "not supported (Legate does not read the grpc-timeout header; use timeout)",
    );
    action_refused(
        |a| {
            a.hash_policy = vec![HashPolicy {
                policy_specifier: Some(PolicySpecifier::FilterState(
                    route::route_action::hash_policy::FilterState {},
                )),
                terminal: false,
            }]
        },
        ".hash_policy[0].filter_state",
        "not supported (Legate has no filter state)",
    );
    action_refused(
        |a| a.metadata_match = Some(Default::default()),
        ".metadata_match",
        "not supported (subset load balancing is not supported)",
    );
    action_refused(
        |a| {
            a.path_rewrite_policy = Some(core::TypedExtensionConfig {
                name: "envoy.path.rewrite.uri_template".into(),
                ..Default::default()
            })
        },
        ".path_rewrite_policy",
        "not supported (use prefix_rewrite or regex_rewrite)",
    );
    action_refused(
        |a| a.path_rewrite = "/v2%REQ(x-path)%".into(),
        ".path_rewrite",
        "not supported (use prefix_rewrite or regex_rewrite)",
    );
    action_refused(
        |a| a.rate_limits = vec![route::RateLimit {}],
        ".rate_limits",
        "not supported yet (rate limits are a later feature)",
    );
    action_refused(
        |a| a.cors = Some(route::CorsPolicy {}),
        ".cors",
        "not supported (Legate has no CORS filter)",
    );
    action_refused(
        |a| a.internal_redirect_policy = Some(route::InternalRedirectPolicy {}),
        ".internal_redirect_policy",
        "not supported (Legate passes upstream redirects on to the client)",
    );
    action_refused(
        |a| {
            a.internal_redirect_action =
                route::route_action::InternalRedirectAction::HandleInternalRedirect as i32
        },
        ".internal_redirect_action",
        "not supported (Legate passes upstream redirects on to the client)",
    );
    action_refused(
        |a| a.internal_redirect_action = 7,
        ".internal_redirect_action",
        "unknown value 7",
    );
    action_refused(
        |a| a.hedge_policy = Some(route::HedgePolicy {}),
        ".hedge_policy",
        "not supported yet (hedging comes with retries, a later feature)",
    );
    action_refused(
        |a| {
            a.cluster_not_found_response_code =
                route::route_action::ClusterNotFoundResponseCode::NotFound as i32
        },
        ".cluster_not_found_response_code",
        "not supported",
    );
    action_refused(
        |a| a.host_rewrite_specifier = Some(HostRewriteSpecifier::AutoHostRewrite(true)),
        ".auto_host_rewrite",
        "not supported",
    );
    action_refused(
        |a| a.host_rewrite_specifier = Some(HostRewriteSpecifier::HostRewriteHeader("x-h".into())),
        ".host_rewrite_header",
        "not supported",
    );
    action_refused(
        |a| {
            a.host_rewrite_specifier = Some(HostRewriteSpecifier::HostRewritePathRegex(
                Default::default(),
            ))
        },
        ".host_rewrite_path_regex",
        "not supported",
    );
    action_refused(
        |a| {
            a.host_rewrite_specifier =
                Some(HostRewriteSpecifier::HostRewrite("%REQ(x-host)%".into()))
        },
        ".host_rewrite",
        "not supported (use host_rewrite_literal)",
    );
    let hash = |spec: PolicySpecifier| {
        move |a: &mut route::RouteAction| {
            a.hash_policy = vec![HashPolicy {
                policy_specifier: Some(spec),
                terminal: false,
            }]
        }
    };
    action_refused(
        hash(PolicySpecifier::QueryParameter(QueryParameter {
            name: "q".into(),
        })),
        ".hash_policy[0].query_parameter",
        "not supported",
    );
    action_refused(
        hash(PolicySpecifier::Cookie(Cookie {
            name: "c".into(),
            ttl: Some(Default::default()),
            ..Default::default()
        })),
        ".hash_policy[0].cookie.ttl",
        "not supported (Legate does not generate cookies)",
    );
    action_refused(
        hash(PolicySpecifier::Cookie(Cookie {
            name: "c".into(),
            path: "/".into(),
            ..Default::default()
        })),
        ".hash_policy[0].cookie.path",
        "not supported",
    );
    action_refused(
        hash(PolicySpecifier::Header(Header {
            header_name: "x-a".into(),
            regex_rewrite: Some(Default::default()),
        })),
        ".hash_policy[0].header.regex_rewrite",
        "not supported",
    );
    action_refused(
        hash(PolicySpecifier::ConnectionProperties(Default::default())),
        ".hash_policy[0].connection_properties.source_ip",
        "must be true",
    );
    action_refused(
        |a| a.regex_rewrite = Some(Default::default()),
        ".regex_rewrite.pattern",
        "must be set",
    );
    // The model's validation, mapped.
    action_refused(
        |a| {
            a.host_rewrite_specifier =
                Some(HostRewriteSpecifier::HostRewriteLiteral("http://x".into()))
        },
        ".host_rewrite_literal",
        "invalid host \"http://x\"",
    );
    action_refused(
        |a| {
            a.regex_rewrite = Some(matcher::RegexMatchAndSubstitute {
                pattern: Some(matcher::RegexMatcher {
                    regex: "(a)".into(),
                    ..Default::default()
                }),
                substitution: "\\2".into(),
            })
        },
        ".regex_rewrite.substitution",
        "\\2 names a group the pattern does not have",
    );
    // Accepted and ignored.
    let mut rc = base_route_config();
    let Some(route::route::Action::Route(a)) = &mut rc.virtual_hosts[0].routes[0].action else {
        unreachable!()
    };
    a.idle_timeout = Some(Default::default());
    a.priority = 1;
    a.max_stream_duration = Some(Default::default());
    a.upgrade_configs = vec![Default::default()];
    a.host_rewrite_specifier = Some(HostRewriteSpecifier::AutoHostRewrite(false));
    a.internal_redirect_action =
        route::route_action::InternalRedirectAction::PassThroughInternalRedirect as i32;
    // 0 disables the flush timeout, as Legate has none.
    a.flush_timeout = Some(Default::default());
    translate::route_config_from_xds(&rc).unwrap();
}

#[test]
fn weighted_cluster_refusals() {
    use route::route_action::ClusterSpecifier;
    use route::weighted_cluster::ClusterWeight;
    let weighted = |f: fn(&mut route::WeightedCluster)| {
        move |a: &mut route::RouteAction| {
            let mut w = route::WeightedCluster {
                clusters: vec![ClusterWeight {
                    name: "a".into(),
                    weight: Some(1),
                    ..Default::default()
                }],
                ..Default::default()
            };
            f(&mut w);
            a.cluster_specifier = Some(ClusterSpecifier::WeightedClusters(w));
        }
    };
    let per_cluster = "not supported yet (per-cluster settings)";
    action_refused(
        weighted(|w| w.clusters[0].request_headers_to_add = vec![hv("x-a", "1")]),
        ".weighted_clusters.clusters[0].request_headers_to_add",
        per_cluster,
    );
    action_refused(
        weighted(|w| w.clusters[0].response_headers_to_remove = vec!["x-a".into()]),
        ".weighted_clusters.clusters[0].response_headers_to_remove",
        per_cluster,
    );
    action_refused(
        weighted(|w| {
            w.clusters[0]
                .typed_per_filter_config
                .insert("f".into(), Default::default());
        }),
        ".weighted_clusters.clusters[0].typed_per_filter_config",
        per_cluster,
    );
    action_refused(
        weighted(|w| {
            w.clusters[0].host_rewrite_specifier = Some(
                route::weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral(
                    "h".into(),
                ),
            )
        }),
        ".weighted_clusters.clusters[0].host_rewrite_literal",
        per_cluster,
    );
    action_refused(
        weighted(|w| w.runtime_key_prefix = "rt".into()),
        ".weighted_clusters.runtime_key_prefix",
        "not supported",
    );
    action_refused(
        weighted(|w| {
            w.random_value_specifier = Some(
                route::weighted_cluster::RandomValueSpecifier::HeaderName("x-r".into()),
            )
        }),
        ".weighted_clusters.header_name",
        "not supported",
    );
    action_refused(
        weighted(|w| {
            w.random_value_specifier =
                Some(route::weighted_cluster::RandomValueSpecifier::UseHashPolicy(true))
        }),
        ".weighted_clusters.use_hash_policy",
        "not supported (Legate picks a weighted cluster at random)",
    );
    action_refused(
        weighted(|w| {
            w.clusters[0].name = String::new();
            w.clusters[0].cluster_header = "x-cluster".into();
        }),
        ".weighted_clusters.clusters[0].cluster_header",
        "not supported",
    );
    action_refused(
        weighted(|w| w.clusters[0].metadata_match = Some(Default::default())),
        ".weighted_clusters.clusters[0].metadata_match",
        "not supported (subset load balancing is not supported)",
    );
    action_refused(
        weighted(|w| w.clusters[0].weight = None),
        ".weighted_clusters.clusters[0].weight",
        "must be set",
    );
    action_refused(
        weighted(|w| w.clusters[0].name = String::new()),
        ".weighted_clusters.clusters[0].name",
        "must not be empty",
    );
    // The model's validation, mapped.
    action_refused(
        weighted(|w| w.clusters[0].weight = Some(0)),
        ".weighted_clusters",
        "weights must not all be 0",
    );
    // total_weight is ignored.
    let mut rc = base_route_config();
    let Some(route::route::Action::Route(a)) = &mut rc.virtual_hosts[0].routes[0].action else {
        unreachable!()
    };
    weighted(|w| {
        w.total_weight = Some(7);
        // Envoy's default: a random value.
        w.random_value_specifier =
            Some(route::weighted_cluster::RandomValueSpecifier::UseHashPolicy(false));
    })(a);
    translate::route_config_from_xds(&rc).unwrap();
}

#[test]
fn redirect_and_direct_response_refusals() {
    use core::data_source::Specifier;
    use route::redirect_action::{PathRewriteSpecifier, SchemeRewriteSpecifier};
    let redirect = |f: fn(&mut route::RedirectAction)| {
        move |r: &mut route::Route| {
            let mut a = route::RedirectAction::default();
            f(&mut a);
            r.action = Some(route::route::Action::Redirect(a));
        }
    };
    route_refused(
        redirect(|a| {
            a.path_rewrite_specifier = Some(PathRewriteSpecifier::RegexRewrite(Default::default()))
        }),
        ".redirect.regex_rewrite",
        "not supported",
    );
    route_refused(
        redirect(|a| a.port_redirect = 65536),
        ".redirect.port_redirect",
        "65536 is not a port",
    );
    route_refused(
        redirect(|a| {
            a.path_rewrite_specifier =
                Some(PathRewriteSpecifier::PathRewrite("/new/%REQ(x-id)%".into()))
        }),
        ".redirect.path_rewrite",
        "not supported (use path_redirect or prefix_rewrite)",
    );
    // The model's validation, mapped.
    route_refused(
        redirect(|a| {
            a.scheme_rewrite_specifier = Some(SchemeRewriteSpecifier::SchemeRedirect("ftp".into()))
        }),
        ".redirect.scheme_redirect",
        "\"ftp\" must be \"http\" or \"https\"",
    );
    route_refused(
        redirect(|a| a.host_redirect = "*.example.com".into()),
        ".redirect.host_redirect",
        "invalid host",
    );

    let direct = |status: u32, body: Option<Specifier>| {
        move |r: &mut route::Route| {
            r.action = Some(route::route::Action::DirectResponse(
                route::DirectResponseAction {
                    status,
                    body: Some(core::DataSource { specifier: body }),
                    body_format: None,
                },
            ));
        }
    };
    route_refused(
        direct(200, Some(Specifier::Filename("/etc/body".into()))),
        ".direct_response.body.filename",
        "not supported",
    );
    route_refused(
        direct(200, Some(Specifier::EnvironmentVariable("BODY".into()))),
        ".direct_response.body.environment_variable",
        "not supported",
    );
    route_refused(
        direct(200, Some(Specifier::InlineBytes(vec![0xff, 0xfe]))),
        ".direct_response.body.inline_bytes",
        "must be UTF-8",
    );
    route_refused(
        direct(100, None),
        ".direct_response.status",
        "100 is not between 200 and 599",
    );
    route_refused(
        |r| {
            r.action = Some(route::route::Action::DirectResponse(
                route::DirectResponseAction {
                    status: 200,
                    body: None,
                    body_format: Some(core::SubstitutionFormatString {}),
                },
            ))
        },
        ".direct_response.body_format",
        "not supported (Legate sends the body as given)",
    );
    let mut rc = base_route_config();
    direct(204, None)(&mut rc.virtual_hosts[0].routes[0]);
    let m = translate::route_config_from_xds(&rc).unwrap();
    assert_eq!(
        m.virtual_hosts[0].routes[0].direct_response,
        Some(model::DirectResponse {
            status: 204,
            body: None
        })
    );
}

#[test]
fn header_value_options() {
    use core::header_value_option::HeaderAppendAction as A;
    let with = |h: core::HeaderValueOption| {
        let mut rc = base_route_config();
        rc.virtual_hosts[0].routes[0].request_headers_to_add = vec![h];
        rc
    };
    let translated = |h: core::HeaderValueOption| {
        translate::route_config_from_xds(&with(h))
            .unwrap()
            .virtual_hosts[0]
            .routes[0]
            .request_headers
            .add
            .clone()
    };
    let opt = |value: &str, append: Option<bool>, action: A, keep: bool| core::HeaderValueOption {
        append,
        append_action: action as i32,
        keep_empty_value: keep,
        ..hv("x-a", value)
    };
    let want = |value: &str, append: bool| {
        vec![model::HeaderValueOption {
            name: "x-a".into(),
            value: value.into(),
            append,
        }]
    };
    assert_eq!(
        translated(opt("1", None, A::AppendIfExistsOrAdd, false)),
        want("1", true)
    );
    assert_eq!(
        translated(opt("1", None, A::OverwriteIfExistsOrAdd, false)),
        want("1", false)
    );
    assert_eq!(
        translated(opt("1", Some(true), A::OverwriteIfExistsOrAdd, false)),
        want("1", true)
    );
    assert_eq!(
        translated(opt("1", Some(false), A::AppendIfExistsOrAdd, false)),
        want("1", false)
    );
    // Envoy drops empty values unless keep_empty_value.
    assert_eq!(
        translated(opt("", None, A::AppendIfExistsOrAdd, false)),
        vec![]
    );
    assert_eq!(
        translated(opt("", None, A::AppendIfExistsOrAdd, true)),
        want("", true)
    );

    let p = "virtual_hosts[0].routes[0].request_headers_to_add[0]";
    for (action, name) in [
        (A::AddIfAbsent, "ADD_IF_ABSENT"),
        (A::OverwriteIfExists, "OVERWRITE_IF_EXISTS"),
    ] {
        rc_refused(
            &with(opt("1", None, action, false)),
            &format!("{p}.append_action"),
            &format!("{name} is not supported yet"),
        );
    }
    let mut raw = hv("x-a", "");
    raw.header.as_mut().unwrap().raw_value = b"raw".to_vec();
    assert_eq!(translated(raw.clone()), want("raw", true));
    raw.header.as_mut().unwrap().raw_value = vec![0xff];
    rc_refused(
        &with(raw.clone()),
        &format!("{p}.header.raw_value"),
        "must be UTF-8",
    );
    raw.header.as_mut().unwrap().value = "v".into();
    rc_refused(
        &with(raw),
        &format!("{p}.header"),
        "set value or raw_value, not both",
    );
    rc_refused(
        &with(hv("host", "x")),
        &format!("{p}.header.key"),
        "use the route's host_rewrite_literal",
    );
    rc_refused(
        &with(hv("bad name", "x")),
        &format!("{p}.header.key"),
        "invalid header name",
    );
    rc_refused(
        &with(hv("x-a", "a\nb")),
        &format!("{p}.header.value"),
        "invalid header value",
    );
    rc_refused(
        &with(core::HeaderValueOption::default()),
        &format!("{p}.header"),
        "must be set",
    );
    let mut rc = base_route_config();
    rc.virtual_hosts[0].request_headers_to_remove = vec!["host".into()];
    rc_refused(
        &rc,
        "virtual_hosts[0].request_headers_to_remove[0]",
        "the host header cannot be removed",
    );
}

// ---------------------------------------------------------------------------
// Refusals: clusters and endpoints

fn base_cluster() -> cluster::Cluster {
    cluster::Cluster {
        name: "c".into(),
        load_assignment: Some(base_cla()),
        ..Default::default()
    }
}

fn base_cla() -> endpoint::ClusterLoadAssignment {
    endpoint::ClusterLoadAssignment {
        cluster_name: "c".into(),
        endpoints: vec![endpoint::LocalityLbEndpoints {
            lb_endpoints: vec![lb_endpoint("10.0.0.1", 80)],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn lb_endpoint(ip: &str, port: u32) -> endpoint::LbEndpoint {
    endpoint::LbEndpoint {
        host_identifier: Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(
            endpoint::Endpoint {
                address: Some(translate_address(ip, port)),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

#[track_caller]
fn cluster_refused(f: impl FnOnce(&mut cluster::Cluster), path: &str, message: &str) {
    let mut c = base_cluster();
    f(&mut c);
    assert_refused(
        translate::cluster_from_xds(&c),
        "Cluster",
        "c",
        path,
        message,
    );
    assert_refused(
        translate::decode(translate::CLUSTER_TYPE, &translate::to_any(&c)),
        "Cluster",
        "c",
        path,
        message,
    );
}

#[track_caller]
fn cla_refused(f: impl FnOnce(&mut endpoint::ClusterLoadAssignment), path: &str, message: &str) {
    let mut c = base_cla();
    f(&mut c);
    assert_refused(
        translate::load_assignment_from_xds(&c),
        "ClusterLoadAssignment",
        &c.cluster_name,
        path,
        message,
    );
    assert_refused(
        translate::decode(translate::ENDPOINT_TYPE, &translate::to_any(&c)),
        "ClusterLoadAssignment",
        &c.cluster_name,
        path,
        message,
    );
}

fn http_options(o: upstream::HttpProtocolOptions) -> HashMap<String, prost_types::Any> {
    HashMap::from([(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
        translate::to_any(&o),
    )])
}

#[test]
fn cluster_refusals() {
    use cluster::cluster::{ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy};
    let ty = |t: DiscoveryType| Some(ClusterDiscoveryType::Type(t as i32));
    cluster_refused(
        |c| c.cluster_discovery_type = ty(DiscoveryType::LogicalDns),
        "type",
        "LOGICAL_DNS is not supported (use STRICT_DNS)",
    );
    cluster_refused(
        |c| c.cluster_discovery_type = ty(DiscoveryType::OriginalDst),
        "type",
        "ORIGINAL_DST is not supported yet",
    );
    cluster_refused(
        |c| {
            c.cluster_discovery_type = Some(ClusterDiscoveryType::ClusterType(
                cluster::cluster::CustomClusterType {
                    name: "envoy.clusters.aggregate".into(),
                    typed_config: None,
                },
            ))
        },
        "cluster_type",
        "custom cluster types are not supported",
    );
    cluster_refused(
        |c| c.lb_policy = LbPolicy::Maglev as i32,
        "lb_policy",
        "MAGLEV is not supported",
    );
    cluster_refused(
        |c| c.lb_policy = LbPolicy::ClusterProvided as i32,
        "lb_policy",
        "CLUSTER_PROVIDED is not supported",
    );
    cluster_refused(
        |c| {
            c.lb_policy = LbPolicy::LeastRequest as i32;
            c.lb_config = Some(LbConfig::LeastRequestLbConfig(
                cluster::cluster::LeastRequestLbConfig {
                    choice_count: Some(3),
                    ..Default::default()
                },
            ));
        },
        "least_request_lb_config.choice_count",
        "only 2 is supported",
    );
    // Envoy requires timeout, interval and a checker.
    cluster_refused(
        |c| c.health_checks = vec![Default::default()],
        "health_checks[0].timeout",
        "must be set",
    );
    fn valid_hc() -> core::HealthCheck {
        core::HealthCheck {
            timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            interval: Some(prost_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
            health_checker: Some(core::health_check::HealthChecker::HttpHealthCheck(
                core::health_check::HttpHealthCheck {
                    path: "/healthz".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }
    // A valid check, then `f`'s.
    let hc = |f: fn(&mut core::HealthCheck)| {
        move |c: &mut cluster::Cluster| {
            let mut h = valid_hc();
            f(&mut h);
            c.health_checks = vec![valid_hc(), h];
        }
    };
    cluster_refused(
        hc(|h| h.interval = None),
        "health_checks[1].interval",
        "must be set",
    );
    cluster_refused(
        hc(|h| {
            h.interval = Some(prost_types::Duration {
                seconds: 0,
                nanos: 0,
            })
        }),
        "health_checks[1].interval",
        "must be greater than 0",
    );
    cluster_refused(
        hc(|h| {
            h.no_traffic_interval = Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            })
        }),
        "health_checks[1].no_traffic_interval",
        "not supported (Legate checks at `interval` whether or not the cluster has had traffic)",
    );
    cluster_refused(
        hc(|h| h.alt_port = Some(8081)),
        "health_checks[1].alt_port",
        "not supported (Legate checks the endpoint's own port)",
    );
    cluster_refused(
        hc(|h| h.healthy_threshold = Some(0)),
        "health_checks[1].healthy_threshold",
        "must be at least 1",
    );
    cluster_refused(
        hc(|h| h.health_checker = None),
        "health_checks[1]",
        "set http_health_check, tcp_health_check or grpc_health_check (custom health checkers are not supported)",
    );
    fn http_hc(h: &mut core::HealthCheck) -> &mut core::health_check::HttpHealthCheck {
        match &mut h.health_checker {
            Some(core::health_check::HealthChecker::HttpHealthCheck(x)) => x,
            _ => panic!("not an HTTP check"),
        }
    }
    cluster_refused(
        hc(|h| http_hc(h).path = String::new()),
        "health_checks[1].http_health_check.path",
        "must be set",
    );
    cluster_refused(
        hc(|h| http_hc(h).path = "/a b".into()),
        "health_checks[1].http_health_check.path",
        "invalid path",
    );
    cluster_refused(
        hc(|h| http_hc(h).codec_client_type = 2),
        "health_checks[1].http_health_check.codec_client_type",
        "HTTP3 is not supported (use HTTP1 or HTTP2)",
    );
    cluster_refused(
        hc(|h| http_hc(h).request_headers_to_remove = vec!["user-agent".into()]),
        "health_checks[1].http_health_check.request_headers_to_remove",
        "not supported",
    );
    cluster_refused(
        hc(|h| http_hc(h).request_headers_to_add = vec![hv("host", "x")]),
        "health_checks[1].http_health_check.request_headers_to_add[0].header.key",
        "set the check's `host` instead",
    );
    cluster_refused(
        hc(|h| {
            http_hc(h).expected_statuses = vec![legate_xds::wire::envoy::r#type::v3::Int64Range {
                start: 200,
                end: 700,
            }]
        }),
        "health_checks[1].http_health_check.expected_statuses[0].end",
        "must be at most 600",
    );
    cluster_refused(
        hc(|h| {
            h.health_checker = Some(core::health_check::HealthChecker::TcpHealthCheck(
                core::health_check::TcpHealthCheck {
                    send: Some(core::health_check::Payload {
                        payload: Some(core::health_check::payload::Payload::Text("0g".into())),
                    }),
                    ..Default::default()
                },
            ))
        }),
        "health_checks[1].tcp_health_check.send.text",
        "\"0g\" is not a hex byte",
    );
    cluster_refused(
        hc(|h| {
            h.health_checker = Some(core::health_check::HealthChecker::TcpHealthCheck(
                core::health_check::TcpHealthCheck {
                    receive: vec![core::health_check::Payload { payload: None }],
                    ..Default::default()
                },
            ))
        }),
        "health_checks[1].tcp_health_check.receive[0]",
        "set text or binary",
    );
    cluster_refused(
        hc(|h| {
            h.health_checker = Some(core::health_check::HealthChecker::GrpcHealthCheck(
                core::health_check::GrpcHealthCheck {
                    authority: "a b".into(),
                    ..Default::default()
                },
            ))
        }),
        "health_checks[1].grpc_health_check.authority",
        "invalid host",
    );
    // Envoy's fields that Legate does not implement, set with envoy-types'
    // own messages and sent through the wire (so the subset's field numbers
    // and types are checked too).
    {
        use ecore::health_check::{
            CustomHealthCheck, GrpcHealthCheck, HealthChecker, HttpHealthCheck, Payload,
            TcpHealthCheck, TlsOptions, custom_health_check, payload,
        };
        use envoy_types::pb::envoy::r#type::v3 as etype;
        fn valid_ehc() -> ecore::HealthCheck {
            ecore::HealthCheck {
                timeout: esecs(1),
                interval: esecs(5),
                health_checker: Some(HealthChecker::HttpHealthCheck(HttpHealthCheck {
                    path: "/healthz".into(),
                    ..Default::default()
                })),
                ..Default::default()
            }
        }
        // A valid check, then `f`'s, decoded from Envoy's bytes.
        let ehc = |f: fn(&mut ecore::HealthCheck)| {
            move |c: &mut cluster::Cluster| {
                let mut h = valid_ehc();
                f(&mut h);
                c.health_checks = [valid_ehc(), h]
                    .iter()
                    .map(|h| core::HealthCheck::decode(h.encode_to_vec().as_slice()).unwrap())
                    .collect();
            }
        };
        fn ehttp(h: &mut ecore::HealthCheck) -> &mut HttpHealthCheck {
            match &mut h.health_checker {
                Some(HealthChecker::HttpHealthCheck(x)) => x,
                _ => panic!("not an HTTP check"),
            }
        }
        let no_traffic = "not supported (Legate checks at `interval` whether or not the cluster has had traffic)";
        cluster_refused(
            ehc(|h| h.no_traffic_healthy_interval = esecs(60)),
            "health_checks[1].no_traffic_healthy_interval",
            no_traffic,
        );
        cluster_refused(
            ehc(|h| {
                h.tls_options = Some(TlsOptions {
                    alpn_protocols: vec!["h2".into()],
                })
            }),
            "health_checks[1].tls_options",
            "TLS is not supported yet",
        );
        cluster_refused(
            ehc(|h| {
                h.transport_socket_match_criteria = Some(epb::Struct {
                    fields: HashMap::from([(
                        "acceptMTLS".to_string(),
                        epb::Value {
                            kind: Some(epb::value::Kind::BoolValue(true)),
                        },
                    )]),
                })
            }),
            "health_checks[1].transport_socket_match_criteria",
            "not supported (transport_socket_matches are not supported)",
        );
        cluster_refused(
            ehc(|h| {
                h.health_checker = Some(HealthChecker::CustomHealthCheck(CustomHealthCheck {
                    name: "envoy.health_checkers.redis".into(),
                    config_type: Some(custom_health_check::ConfigType::TypedConfig(eany_nested(
                        &ecore::health_check::RedisHealthCheck { key: "k".into() },
                    ))),
                }))
            }),
            "health_checks[1].custom_health_check",
            "custom health checkers are not supported (\"envoy.health_checkers.redis\")",
        );
        cluster_refused(
            ehc(|h| {
                ehttp(h).send = Some(Payload {
                    payload: Some(payload::Payload::Text("50494e47".into())),
                })
            }),
            "health_checks[1].http_health_check.send",
            "not supported (Legate's HTTP checks send no request body)",
        );
        cluster_refused(
            ehc(|h| {
                ehttp(h).receive = vec![Payload {
                    payload: Some(payload::Payload::Binary(b"OK".to_vec())),
                }]
            }),
            "health_checks[1].http_health_check.receive",
            "not supported (Legate's HTTP checks do not read the response body)",
        );
        cluster_refused(
            ehc(|h| ehttp(h).response_buffer_size = Some(epb::UInt64Value { value: 4096 })),
            "health_checks[1].http_health_check.response_buffer_size",
            "not supported (Legate's HTTP checks do not read the response body)",
        );
        cluster_refused(
            ehc(|h| {
                ehttp(h).retriable_statuses = vec![etype::Int64Range {
                    start: 500,
                    end: 504,
                }]
            }),
            "health_checks[1].http_health_check.retriable_statuses",
            "not supported (a status outside expected_statuses makes the endpoint unhealthy at once)",
        );
        cluster_refused(
            ehc(|h| {
                ehttp(h).service_name_matcher = Some(estring(
                    ematcher::string_matcher::MatchPattern::Exact("backend".into()),
                ))
            }),
            "health_checks[1].http_health_check.service_name_matcher",
            "not supported (Legate does not check the x-envoy-upstream-healthchecked-cluster response header)",
        );
        cluster_refused(
            ehc(|h| ehttp(h).method = ecore::RequestMethod::Head as i32),
            "health_checks[1].http_health_check.method",
            "HEAD is not supported (Legate's HTTP checks send GET)",
        );
        cluster_refused(
            ehc(|h| ehttp(h).method = 42),
            "health_checks[1].http_health_check.method",
            "unknown value 42",
        );
        cluster_refused(
            ehc(|h| {
                // V1, Envoy's default: an empty message is still set.
                h.health_checker = Some(HealthChecker::TcpHealthCheck(TcpHealthCheck {
                    proxy_protocol_config: Some(Default::default()),
                    ..Default::default()
                }))
            }),
            "health_checks[1].tcp_health_check.proxy_protocol_config",
            "not supported (Legate's TCP checks send no PROXY protocol header)",
        );
        cluster_refused(
            ehc(|h| {
                h.health_checker = Some(HealthChecker::GrpcHealthCheck(GrpcHealthCheck {
                    initial_metadata: vec![eheader("x-probe", "legate", 0)],
                    ..Default::default()
                }))
            }),
            "health_checks[1].grpc_health_check.initial_metadata",
            "not supported (Legate's gRPC checks send no extra metadata)",
        );
        // GET, set explicitly, is what Legate sends; logging fields are
        // accepted and ignored.
        let mut c = base_cluster();
        ehc(|h| {
            ehttp(h).method = ecore::RequestMethod::Get as i32;
            h.always_log_health_check_success = true;
            h.event_logger = vec![ecore::TypedExtensionConfig {
                name: "envoy.health_check.event_sinks.file".into(),
                typed_config: None,
            }];
        })(&mut c);
        let m = translate::cluster_from_xds(&c).expect("accepted");
        assert_eq!(m.health_checks.len(), 2);
        assert_eq!(m.health_checks[0], m.health_checks[1]);
    }
    cluster_refused(
        |c| {
            c.circuit_breakers = Some(cluster::CircuitBreakers {
                per_host_thresholds: vec![Default::default()],
                ..Default::default()
            })
        },
        "circuit_breakers.per_host_thresholds",
        "not supported (limits apply across the cluster)",
    );
    cluster_refused(
        |c| {
            c.circuit_breakers = Some(cluster::CircuitBreakers {
                thresholds: vec![Default::default(), Default::default()],
                ..Default::default()
            })
        },
        "circuit_breakers.thresholds[1].priority",
        "DEFAULT appears twice",
    );
    cluster_refused(
        |c| {
            c.outlier_detection = Some(cluster::OutlierDetection {
                max_ejection_percent: Some(101),
                ..Default::default()
            })
        },
        "outlier_detection.max_ejection_percent",
        "must be a percentage between 0 and 100",
    );
    cluster_refused(
        |c| {
            c.outlier_detection = Some(cluster::OutlierDetection {
                detect_degraded_hosts: Some(true),
                ..Default::default()
            })
        },
        "outlier_detection.detect_degraded_hosts",
        "not supported (Legate does not mark hosts degraded by x-envoy-degraded)",
    );
    cluster_refused(
        |c| {
            c.outlier_detection = Some(cluster::OutlierDetection {
                monitors: vec![Default::default()],
                ..Default::default()
            })
        },
        "outlier_detection.monitors",
        "not supported (passive monitors)",
    );
    cluster_refused(
        |c| c.transport_socket = Some(Default::default()),
        "transport_socket",
        "TLS is not supported yet",
    );
    cluster_refused(
        |c| c.transport_socket_matcher = Some(Default::default()),
        "transport_socket_matcher",
        "TLS is not supported yet",
    );
    cluster_refused(
        |c| {
            c.per_connection_buffer_high_watermark_timeout = Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            })
        },
        "per_connection_buffer_high_watermark_timeout",
        "not supported (Legate does not close connections for their buffer use)",
    );
    cluster_refused(
        |c| c.upstream_bind_config = Some(core::BindConfig {}),
        "upstream_bind_config",
        "not supported (Legate lets the system choose the source address)",
    );
    cluster_refused(
        |c| c.upstream_connection_options = Some(cluster::UpstreamConnectionOptions {}),
        "upstream_connection_options",
        "not supported yet",
    );
    cluster_refused(
        |c| c.common_http_protocol_options = Some(Default::default()),
        "common_http_protocol_options",
        "not supported: use typed_extension_protocol_options",
    );
    cluster_refused(
        |c| c.connection_pool_per_downstream_connection = true,
        "connection_pool_per_downstream_connection",
        "not supported (Legate shares upstream connections between downstream connections)",
    );
    cluster_refused(
        |c| c.queuing_policies = Some(cluster::cluster::QueuingPolicies {}),
        "queuing_policies",
        "not supported",
    );
    // The resolver, for the clusters that resolve names.
    let strict_dns = |c: &mut cluster::Cluster| {
        c.cluster_discovery_type = ty(DiscoveryType::StrictDns);
    };
    type Set = fn(&mut cluster::Cluster);
    let resolvers: [(&str, Set); 3] = [
        ("dns_resolvers", |c| {
            c.dns_resolvers = vec![translate_address("10.0.0.53", 53)]
        }),
        ("dns_resolution_config", |c| {
            c.dns_resolution_config = Some(core::DnsResolutionConfig {})
        }),
        ("typed_dns_resolver_config", |c| {
            c.typed_dns_resolver_config = Some(core::TypedExtensionConfig {
                name: "envoy.network.dns_resolver.cares".into(),
                ..Default::default()
            })
        }),
    ];
    for (field, set) in resolvers {
        cluster_refused(
            |c| {
                strict_dns(c);
                set(c);
            },
            field,
            "not supported (Legate uses the system's resolver)",
        );
        // A static cluster resolves nothing.
        let mut c = base_cluster();
        set(&mut c);
        translate::cluster_from_xds(&c).unwrap();
    }
    // Slow start, for the policy it belongs to.
    let slow = || Some(cluster::cluster::SlowStartConfig {});
    cluster_refused(
        |c| {
            c.lb_config = Some(LbConfig::RoundRobinLbConfig(
                cluster::cluster::RoundRobinLbConfig {
                    slow_start_config: slow(),
                },
            ))
        },
        "round_robin_lb_config.slow_start_config",
        "not supported (Legate sends new endpoints their full share at once)",
    );
    cluster_refused(
        |c| {
            c.lb_policy = LbPolicy::LeastRequest as i32;
            c.lb_config = Some(LbConfig::LeastRequestLbConfig(
                cluster::cluster::LeastRequestLbConfig {
                    slow_start_config: slow(),
                    ..Default::default()
                },
            ));
        },
        "least_request_lb_config.slow_start_config",
        "not supported (Legate sends new endpoints their full share at once)",
    );
    let mut c = base_cluster();
    c.lb_config = Some(LbConfig::RoundRobinLbConfig(Default::default()));
    translate::cluster_from_xds(&c).unwrap();
    // Envoy ignores another policy's settings.
    let mut c = base_cluster();
    c.lb_policy = LbPolicy::Random as i32;
    c.lb_config = Some(LbConfig::RoundRobinLbConfig(
        cluster::cluster::RoundRobinLbConfig {
            slow_start_config: slow(),
        },
    ));
    translate::cluster_from_xds(&c).unwrap();

    // EDS.
    cluster_refused(
        |c| c.cluster_discovery_type = ty(DiscoveryType::Eds),
        "eds_cluster_config",
        "must be set for an EDS cluster",
    );
    cluster_refused(
        |c| {
            c.cluster_discovery_type = ty(DiscoveryType::Eds);
            c.eds_cluster_config = Some(cluster::cluster::EdsClusterConfig {
                eds_config: Some(core::ConfigSource {
                    config_source_specifier: Some(
                        core::config_source::ConfigSourceSpecifier::ApiConfigSource(
                            core::ApiConfigSource {
                                api_type: core::api_config_source::ApiType::Rest as i32,
                                ..Default::default()
                            },
                        ),
                    ),
                    ..Default::default()
                }),
                service_name: String::new(),
            });
        },
        "eds_cluster_config.eds_config.api_config_source.api_type",
        "REST is not supported",
    );

    // Upstream protocol options.
    use upstream::http_protocol_options::{
        AutoHttpConfig, ExplicitHttpConfig, UpstreamProtocolOptions as U,
    };
    let key = "typed_extension_protocol_options[\"envoy.extensions.upstreams.http.v3.HttpProtocolOptions\"]";
    cluster_refused(
        |c| {
            c.typed_extension_protocol_options = http_options(upstream::HttpProtocolOptions {
                upstream_protocol_options: Some(U::AutoConfig(AutoHttpConfig::default())),
                ..Default::default()
            })
        },
        &format!("{key}.auto_config"),
        "not supported",
    );
    cluster_refused(
        |c| {
            c.typed_extension_protocol_options = http_options(upstream::HttpProtocolOptions {
                upstream_protocol_options: Some(U::ExplicitHttpConfig(
                    ExplicitHttpConfig::default(),
                )),
                ..Default::default()
            })
        },
        &format!("{key}.explicit_http_config"),
        "set http_protocol_options or http2_protocol_options",
    );
    cluster_refused(
        |c| {
            c.typed_extension_protocol_options = HashMap::from([(
                "envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions".to_string(),
                prost_types::Any::default(),
            )])
        },
        "typed_extension_protocol_options[\"envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions\"]",
        "not supported",
    );
    cluster_refused(
        |c| {
            c.typed_extension_protocol_options = HashMap::from([(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
                translate::to_any(&router::Router::default()),
            )])
        },
        key,
        "holds a \"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\"",
    );

    // Legate's own settings in metadata.
    let legate = |field: &str, kind: prost_types::value::Kind| {
        let s = prost_types::Struct {
            fields: [(field.to_string(), prost_types::Value { kind: Some(kind) })].into(),
        };
        move |c: &mut cluster::Cluster| {
            c.metadata = Some(core::Metadata {
                filter_metadata: HashMap::from([("legate".to_string(), s)]),
                ..Default::default()
            })
        }
    };
    cluster_refused(
        legate("max_idle", prost_types::value::Kind::NumberValue(1.0)),
        "metadata.filter_metadata[\"legate\"].max_idle",
        "unknown Legate setting",
    );
    cluster_refused(
        legate(
            "max_idle_connections_per_endpoint",
            prost_types::value::Kind::NumberValue(1.5),
        ),
        "metadata.filter_metadata[\"legate\"].max_idle_connections_per_endpoint",
        "must be a whole number",
    );
    cluster_refused(
        legate(
            "max_idle_connections_per_endpoint",
            prost_types::value::Kind::StringValue("8".into()),
        ),
        "metadata.filter_metadata[\"legate\"].max_idle_connections_per_endpoint",
        "must be a whole number",
    );

    // The model's validation, mapped.
    cluster_refused(
        |c| c.connect_timeout = Some(Default::default()),
        "connect_timeout",
        "must be greater than 0",
    );
    cluster_refused(
        |c| {
            c.connect_timeout = Some(prost_types::Duration {
                seconds: -1,
                nanos: 0,
            })
        },
        "connect_timeout",
        "invalid duration",
    );
    cluster_refused(
        |c| {
            c.lb_policy = LbPolicy::RingHash as i32;
            c.lb_config = Some(LbConfig::RingHashLbConfig(
                cluster::cluster::RingHashLbConfig {
                    minimum_ring_size: Some(0),
                    ..Default::default()
                },
            ));
        },
        "ring_hash_lb_config.minimum_ring_size",
        "must be between 1 and 8388608",
    );
    cluster_refused(
        |c| {
            c.typed_extension_protocol_options = http_options(upstream::HttpProtocolOptions {
                upstream_protocol_options: Some(U::ExplicitHttpConfig(ExplicitHttpConfig {
                    protocol_config: Some(
                        upstream::http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                            core::Http2ProtocolOptions {
                                max_concurrent_streams: Some(0),
                                ..Default::default()
                            },
                        ),
                    ),
                })),
                ..Default::default()
            })
        },
        key,
        "must be at least 1",
    );
    cluster_refused(
        |c| {
            c.load_assignment.as_mut().unwrap().endpoints[0].lb_endpoints[0] =
                lb_endpoint("db.local", 5432)
        },
        "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address",
        "invalid socket address \"db.local:5432\"",
    );
    let mut c = base_cluster();
    c.name = String::new();
    assert_refused(
        translate::cluster_from_xds(&c),
        "Cluster",
        "",
        "name",
        "must not be empty",
    );
}

#[test]
fn load_assignment_refusals() {
    cla_refused(
        |c| {
            c.endpoints[0].lb_endpoints[0].host_identifier = Some(
                endpoint::lb_endpoint::HostIdentifier::EndpointName("named".into()),
            )
        },
        "endpoints[0].lb_endpoints[0].endpoint_name",
        "not supported (named endpoints)",
    );
    cla_refused(
        |c| {
            if let Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(e)) =
                &mut c.endpoints[0].lb_endpoints[0].host_identifier
            {
                e.additional_addresses = vec![endpoint::endpoint::AdditionalAddress {
                    address: Some(translate_address("fd00::1", 80)),
                }];
            }
        },
        "endpoints[0].lb_endpoints[0].endpoint.additional_addresses",
        "not supported (Legate connects to the endpoint's address only)",
    );
    cla_refused(
        |c| c.endpoints[0].lb_endpoints[0].host_identifier = None,
        "endpoints[0].lb_endpoints[0].endpoint",
        "must be set",
    );
    cla_refused(
        |c| c.endpoints[0].lb_endpoints[0].load_balancing_weight = Some(0),
        "endpoints[0].lb_endpoints[0].load_balancing_weight",
        "must be at least 1",
    );
    cla_refused(
        |c| {
            c.policy = Some(endpoint::cluster_load_assignment::Policy {
                drop_overloads: vec![Default::default()],
                ..Default::default()
            })
        },
        "policy.drop_overloads",
        "not supported",
    );
    cla_refused(
        |c| {
            c.endpoints[0].lb_config = Some(
                endpoint::locality_lb_endpoints::LbConfig::LedsClusterLocalityConfig(
                    endpoint::LedsClusterLocalityConfig {},
                ),
            )
        },
        "endpoints[0].leds_cluster_locality_config",
        "not supported (LEDS)",
    );
    cla_refused(
        |c| c.endpoints[0].lb_endpoints[0].health_status = 42,
        "endpoints[0].lb_endpoints[0].health_status",
        "unknown value 42",
    );
    cla_refused(
        |c| c.cluster_name = String::new(),
        "cluster_name",
        "must not be empty",
    );
    // EDS endpoints must be IP literals (the model's validation, mapped).
    cla_refused(
        |c| {
            c.endpoints.push(endpoint::LocalityLbEndpoints {
                lb_endpoints: vec![lb_endpoint("10.0.0.2", 80), lb_endpoint("db.local", 5432)],
                priority: 1,
                ..Default::default()
            })
        },
        "endpoints[1].lb_endpoints[1].endpoint.address.socket_address",
        "invalid socket address \"db.local:5432\"",
    );
}
