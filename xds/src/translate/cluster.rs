//! Cluster and ClusterLoadAssignment.

use super::{
    LoadAssignment, NO_BUFFER_TIMEOUT, R, TLS_NOT_YET, TranslateError, address_from, address_to,
    ads_config_source, at, at_i, check, config_source_from, dur_to, dynamic_stub, nonzero, opt_dur,
    paths, refusal, refuse, to_any, type_name, unknown_enum, unpack,
};
use super::{health, upstream};
use crate::model;
use crate::validate::validate;
use crate::wire::envoy::config::cluster::v3 as xcluster;
use crate::wire::envoy::config::core::v3 as xcore;
use crate::wire::envoy::config::endpoint::v3 as xendpoint;
use crate::wire::envoy::extensions::upstreams::http::v3 as xupstream;
use prost::Name;
use std::collections::{BTreeMap, HashMap};

/// The `typed_extension_protocol_options` key of the upstream HTTP options.
pub(crate) const HTTP_OPTIONS_KEY: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// The `metadata.filter_metadata` namespace of Legate's own cluster settings.
pub(crate) const LEGATE_METADATA: &str = "legate";
pub(crate) const MAX_IDLE_KEY: &str = "max_idle_connections_per_endpoint";

/// Translates a Cluster (validated as the model would). An `eds` cluster
/// comes without endpoints: they arrive in ClusterLoadAssignments.
pub fn cluster_from_xds(c: &xcluster::Cluster) -> Result<model::Cluster, TranslateError> {
    let (m, origins) = cluster_from(c).map_err(|e| e.into_error("Cluster", &c.name))?;
    let config = model::Config {
        dynamic: Some(dynamic_stub()),
        clusters: vec![m.clone()],
        ..Default::default()
    };
    check("Cluster", &c.name, validate(&config), |p| {
        paths::cluster(p, &origins)
    })?;
    Ok(m)
}

const NO_SLOW_START: &str = "not supported (Legate sends new endpoints their full share at once)";

/// The cluster and the Envoy path of each of its endpoints.
fn cluster_from(c: &xcluster::Cluster) -> R<(model::Cluster, Vec<String>)> {
    use xcluster::cluster::{
        ClusterDiscoveryType, ClusterProtocolSelection, DiscoveryType as D, LbConfig, LbPolicy as L,
    };
    if c.transport_socket.is_some() {
        return refuse("transport_socket", TLS_NOT_YET);
    }
    let refused = [
        (
            "transport_socket_matcher",
            c.transport_socket_matcher.is_some(),
            TLS_NOT_YET,
        ),
        (
            "per_connection_buffer_high_watermark_timeout",
            nonzero(&c.per_connection_buffer_high_watermark_timeout),
            NO_BUFFER_TIMEOUT,
        ),
        (
            "upstream_bind_config",
            c.upstream_bind_config.is_some(),
            "not supported (Legate lets the system choose the source address)",
        ),
        (
            "upstream_connection_options",
            c.upstream_connection_options.is_some(),
            "not supported yet",
        ),
        (
            "common_http_protocol_options",
            c.common_http_protocol_options.is_some(),
            "not supported: use typed_extension_protocol_options[\"envoy.extensions.upstreams.http.v3.HttpProtocolOptions\"] (common_http_protocol_options)",
        ),
        (
            "connection_pool_per_downstream_connection",
            c.connection_pool_per_downstream_connection,
            "not supported (Legate shares upstream connections between downstream connections)",
        ),
        (
            "queuing_policies",
            c.queuing_policies.is_some(),
            "not supported",
        ),
    ];
    if let Some((field, _, message)) = refused.iter().find(|(_, set, _)| *set) {
        return refuse(*field, *message);
    }
    let mut m = model::Cluster {
        name: c.name.clone(),
        ..Default::default()
    };
    m.discovery = match &c.cluster_discovery_type {
        None => model::DiscoveryType::Static,
        Some(ClusterDiscoveryType::Type(t)) => match D::try_from(*t) {
            Ok(D::Static) => model::DiscoveryType::Static,
            Ok(D::StrictDns) => model::DiscoveryType::StrictDns,
            Ok(D::Eds) => model::DiscoveryType::Eds,
            Ok(D::LogicalDns) => {
                return refuse("type", "LOGICAL_DNS is not supported (use STRICT_DNS)");
            }
            Ok(D::OriginalDst) => {
                return refuse(
                    "type",
                    "ORIGINAL_DST is not supported yet (traffic interception is a later feature)",
                );
            }
            Err(_) => return Err(unknown_enum("type", *t)),
        },
        Some(ClusterDiscoveryType::ClusterType(t)) => {
            return refuse(
                "cluster_type",
                format!("custom cluster types are not supported ({:?})", t.name),
            );
        }
    };
    if m.discovery == model::DiscoveryType::StrictDns {
        // Only a DNS cluster resolves anything.
        const SYSTEM_RESOLVER: &str = "not supported (Legate uses the system's resolver)";
        let refused = [
            ("dns_resolvers", !c.dns_resolvers.is_empty()),
            ("dns_resolution_config", c.dns_resolution_config.is_some()),
            (
                "typed_dns_resolver_config",
                c.typed_dns_resolver_config.is_some(),
            ),
        ];
        if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
            return refuse(*field, SYSTEM_RESOLVER);
        }
    }
    if m.discovery == model::DiscoveryType::Eds {
        let Some(e) = &c.eds_cluster_config else {
            return refuse("eds_cluster_config", "must be set for an EDS cluster");
        };
        config_source_from("eds_cluster_config.eds_config", e.eds_config.as_ref())?;
        m.eds_service_name = (!e.service_name.is_empty()).then(|| e.service_name.clone());
    }
    m.connect_timeout = opt_dur("connect_timeout", &c.connect_timeout, m.connect_timeout)?;
    m.dns_refresh_rate = opt_dur("dns_refresh_rate", &c.dns_refresh_rate, m.dns_refresh_rate)?;
    m.lb_policy = match L::try_from(c.lb_policy) {
        Ok(L::RoundRobin) => model::LbPolicy::RoundRobin,
        Ok(L::LeastRequest) => model::LbPolicy::LeastRequest,
        Ok(L::Random) => model::LbPolicy::Random,
        Ok(L::RingHash) => model::LbPolicy::RingHash,
        Ok(other) => {
            return refuse(
                "lb_policy",
                format!("{} is not supported", other.as_str_name()),
            );
        }
        Err(_) => return Err(unknown_enum("lb_policy", c.lb_policy)),
    };
    match &c.lb_config {
        Some(LbConfig::RingHashLbConfig(r)) => {
            if let Some(n) = r.minimum_ring_size {
                m.ring_size = u32::try_from(n).map_err(|_| {
                    refusal(
                        "ring_hash_lb_config.minimum_ring_size",
                        "must be between 1 and 8388608",
                    )
                })?;
            }
        }
        Some(LbConfig::LeastRequestLbConfig(l)) if m.lb_policy == model::LbPolicy::LeastRequest => {
            if let Some(n) = l.choice_count
                && n != 2
            {
                return refuse(
                    "least_request_lb_config.choice_count",
                    "only 2 is supported (power of two choices)",
                );
            }
            if l.slow_start_config.is_some() {
                return refuse("least_request_lb_config.slow_start_config", NO_SLOW_START);
            }
        }
        Some(LbConfig::RoundRobinLbConfig(r)) if m.lb_policy == model::LbPolicy::RoundRobin => {
            if r.slow_start_config.is_some() {
                return refuse("round_robin_lb_config.slow_start_config", NO_SLOW_START);
            }
        }
        // Envoy ignores the settings of another policy.
        Some(LbConfig::LeastRequestLbConfig(_) | LbConfig::RoundRobinLbConfig(_)) | None => {}
    }

    if let Some(cb) = &c.circuit_breakers {
        m.circuit_breakers = upstream::circuit_breakers_from("circuit_breakers", cb)?;
    }
    if let Some(o) = &c.outlier_detection {
        m.outlier_detection = Some(upstream::outlier_from("outlier_detection", o)?);
    }
    if let Some(lb) = &c.common_lb_config {
        m.healthy_panic_threshold = upstream::common_lb_from("common_lb_config", lb)?;
    }
    m.health_checks = health::health_checks_from("", &c.health_checks)?;

    let mut origins = Vec::new();
    if m.discovery != model::DiscoveryType::Eds
        && let Some(la) = &c.load_assignment
    {
        (m.endpoints, origins) = endpoints_from("load_assignment", la)?;
    }

    let mut keys: Vec<&String> = c.typed_extension_protocol_options.keys().collect();
    keys.sort();
    for key in keys {
        let kp = format!("typed_extension_protocol_options[{key:?}]");
        if key != HTTP_OPTIONS_KEY {
            return refuse(kp, format!("not supported (only {HTTP_OPTIONS_KEY} is)"));
        }
        let any = &c.typed_extension_protocol_options[key];
        if type_name(&any.type_url) != xupstream::HttpProtocolOptions::full_name() {
            return refuse(
                kp,
                format!(
                    "holds a {:?}, expected {}",
                    any.type_url,
                    xupstream::HttpProtocolOptions::full_name()
                ),
            );
        }
        protocol_from(&kp, &unpack(&kp, any)?, &mut m)?;
    }
    match ClusterProtocolSelection::try_from(c.protocol_selection) {
        Ok(ClusterProtocolSelection::UseConfiguredProtocol) => {}
        Ok(ClusterProtocolSelection::UseDownstreamProtocol) => {
            m.protocol = model::UpstreamProtocol::UseDownstream;
        }
        Err(_) => return Err(unknown_enum("protocol_selection", c.protocol_selection)),
    }

    if let Some(s) = c
        .metadata
        .as_ref()
        .and_then(|md| md.filter_metadata.get(LEGATE_METADATA))
    {
        let mp = format!("metadata.filter_metadata[{LEGATE_METADATA:?}]");
        for (key, value) in &s.fields {
            let fp = at(&mp, key);
            if key != MAX_IDLE_KEY {
                return refuse(
                    fp,
                    format!("unknown Legate setting (known: {MAX_IDLE_KEY})"),
                );
            }
            match &value.kind {
                Some(prost_types::value::Kind::NumberValue(n))
                    if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n) =>
                {
                    // Exact: an integer within u32's range.
                    m.max_idle_connections_per_endpoint = *n as u32;
                }
                _ => return refuse(fp, "must be a whole number between 0 and 4294967295"),
            }
        }
    }
    Ok((m, origins))
}

/// The upstream HTTP options at `p` into `m` (protocol, HTTP/2 streams,
/// idle timeout).
fn protocol_from(p: &str, o: &xupstream::HttpProtocolOptions, m: &mut model::Cluster) -> R<()> {
    use xupstream::http_protocol_options::UpstreamProtocolOptions as U;
    use xupstream::http_protocol_options::explicit_http_config::ProtocolConfig;
    match &o.upstream_protocol_options {
        None => m.protocol = model::UpstreamProtocol::Http1,
        Some(U::ExplicitHttpConfig(e)) => match &e.protocol_config {
            Some(ProtocolConfig::HttpProtocolOptions(_)) => {
                m.protocol = model::UpstreamProtocol::Http1;
            }
            Some(ProtocolConfig::Http2ProtocolOptions(h2)) => {
                m.protocol = model::UpstreamProtocol::Http2;
                if let Some(n) = h2.max_concurrent_streams {
                    m.http2_max_concurrent_streams = n;
                }
            }
            None => {
                return refuse(
                    at(p, "explicit_http_config"),
                    "set http_protocol_options or http2_protocol_options",
                );
            }
        },
        Some(U::UseDownstreamProtocolConfig(u)) => {
            m.protocol = model::UpstreamProtocol::UseDownstream;
            if let Some(n) = u
                .http2_protocol_options
                .as_ref()
                .and_then(|h2| h2.max_concurrent_streams)
            {
                m.http2_max_concurrent_streams = n;
            }
        }
        Some(U::AutoConfig(_)) => {
            return refuse(
                at(p, "auto_config"),
                "not supported (choosing the protocol by ALPN needs TLS)",
            );
        }
    }
    if let Some(common) = &o.common_http_protocol_options {
        m.idle_timeout = opt_dur(
            &at(p, "common_http_protocol_options.idle_timeout"),
            &common.idle_timeout,
            m.idle_timeout,
        )?;
    }
    Ok(())
}

/// Translates a ClusterLoadAssignment (EDS), validated as the endpoints of
/// an `eds` cluster.
pub fn load_assignment_from_xds(
    c: &xendpoint::ClusterLoadAssignment,
) -> Result<LoadAssignment, TranslateError> {
    const KIND: &str = "ClusterLoadAssignment";
    if c.cluster_name.is_empty() {
        return Err(refusal("cluster_name", "must not be empty").into_error(KIND, ""));
    }
    let (endpoints, origins) =
        endpoints_from("", c).map_err(|e| e.into_error(KIND, &c.cluster_name))?;
    let config = model::Config {
        dynamic: Some(dynamic_stub()),
        clusters: vec![model::Cluster {
            name: c.cluster_name.clone(),
            discovery: model::DiscoveryType::Eds,
            endpoints: endpoints.clone(),
            ..Default::default()
        }],
        ..Default::default()
    };
    check(KIND, &c.cluster_name, validate(&config), |p| {
        paths::load_assignment(p, &origins)
    })?;
    Ok(LoadAssignment {
        cluster_name: c.cluster_name.clone(),
        endpoints,
    })
}

/// The endpoints of a load assignment at `p`, each with its Envoy path.
fn endpoints_from(
    p: &str,
    c: &xendpoint::ClusterLoadAssignment,
) -> R<(Vec<model::Endpoint>, Vec<String>)> {
    use xendpoint::lb_endpoint::HostIdentifier;
    if let Some(policy) = &c.policy
        && !policy.drop_overloads.is_empty()
    {
        return refuse(at(p, "policy.drop_overloads"), "not supported");
    }
    let mut endpoints = Vec::new();
    let mut origins = Vec::new();
    for (g, group) in c.endpoints.iter().enumerate() {
        let gp = at_i(p, "endpoints", g);
        if group.lb_config.is_some() {
            // Envoy then ignores lb_endpoints.
            return refuse(
                at(&gp, "leds_cluster_locality_config"),
                "not supported (LEDS)",
            );
        }
        for (k, lb) in group.lb_endpoints.iter().enumerate() {
            let lp = at_i(&gp, "lb_endpoints", k);
            let address = match &lb.host_identifier {
                Some(HostIdentifier::Endpoint(e)) => {
                    if !e.additional_addresses.is_empty() {
                        return refuse(
                            at(&lp, "endpoint.additional_addresses"),
                            "not supported (Legate connects to the endpoint's address only)",
                        );
                    }
                    address_from(&at(&lp, "endpoint.address"), e.address.as_ref())?
                }
                Some(HostIdentifier::EndpointName(_)) => {
                    return refuse(at(&lp, "endpoint_name"), "not supported (named endpoints)");
                }
                None => return refuse(at(&lp, "endpoint"), "must be set"),
            };
            let weight = match lb.load_balancing_weight {
                None => 1,
                Some(0) => return refuse(at(&lp, "load_balancing_weight"), "must be at least 1"),
                Some(w) => w,
            };
            endpoints.push(model::Endpoint {
                address,
                weight,
                priority: group.priority,
                health_status: health_from(&at(&lp, "health_status"), lb.health_status)?,
            });
            origins.push(lp);
        }
    }
    Ok((endpoints, origins))
}

fn health_from(p: &str, h: i32) -> R<model::HealthStatus> {
    use xcore::HealthStatus as H;
    Ok(match H::try_from(h) {
        Ok(H::Unknown) => model::HealthStatus::Unknown,
        Ok(H::Healthy) => model::HealthStatus::Healthy,
        Ok(H::Unhealthy) => model::HealthStatus::Unhealthy,
        Ok(H::Draining) => model::HealthStatus::Draining,
        Ok(H::Timeout) => model::HealthStatus::Timeout,
        Ok(H::Degraded) => model::HealthStatus::Degraded,
        Err(_) => return Err(unknown_enum(p, h)),
    })
}

fn health_to(h: model::HealthStatus) -> xcore::HealthStatus {
    use xcore::HealthStatus as H;
    match h {
        model::HealthStatus::Unknown => H::Unknown,
        model::HealthStatus::Healthy => H::Healthy,
        model::HealthStatus::Unhealthy => H::Unhealthy,
        model::HealthStatus::Draining => H::Draining,
        model::HealthStatus::Timeout => H::Timeout,
        model::HealthStatus::Degraded => H::Degraded,
    }
}

// ---------------------------------------------------------------------------
// model -> xDS

/// The cluster as xDS. An `eds` cluster gives a Cluster with
/// `eds_cluster_config` (ADS) plus its ClusterLoadAssignment (named by
/// `eds_service_name`, or the cluster's name); `static` and `strict_dns`
/// clusters carry their endpoints in `load_assignment` and give `None`.
pub fn cluster_to_xds(
    c: &model::Cluster,
) -> (xcluster::Cluster, Option<xendpoint::ClusterLoadAssignment>) {
    use xcluster::cluster::{ClusterDiscoveryType, DiscoveryType as D, LbConfig, LbPolicy as L};
    use xupstream::http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions as U, UseDownstreamHttpConfig,
        explicit_http_config::ProtocolConfig,
    };
    let h2 = || xcore::Http2ProtocolOptions {
        max_concurrent_streams: Some(c.http2_max_concurrent_streams),
        ..Default::default()
    };
    let protocol = match c.protocol {
        model::UpstreamProtocol::Http1 => U::ExplicitHttpConfig(ExplicitHttpConfig {
            protocol_config: Some(ProtocolConfig::HttpProtocolOptions(Default::default())),
        }),
        model::UpstreamProtocol::Http2 => U::ExplicitHttpConfig(ExplicitHttpConfig {
            protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(h2())),
        }),
        model::UpstreamProtocol::UseDownstream => {
            U::UseDownstreamProtocolConfig(UseDownstreamHttpConfig {
                http_protocol_options: Some(Default::default()),
                http2_protocol_options: Some(h2()),
            })
        }
    };
    let options = xupstream::HttpProtocolOptions {
        common_http_protocol_options: Some(xcore::HttpProtocolOptions {
            idle_timeout: Some(dur_to(c.idle_timeout)),
            ..Default::default()
        }),
        upstream_protocol_options: Some(protocol),
    };
    let legate = prost_types::Struct {
        fields: BTreeMap::from([(
            MAX_IDLE_KEY.to_string(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::NumberValue(f64::from(
                    c.max_idle_connections_per_endpoint,
                ))),
            },
        )]),
    };
    let discovery = match c.discovery {
        model::DiscoveryType::Static => D::Static,
        model::DiscoveryType::StrictDns => D::StrictDns,
        model::DiscoveryType::Eds => D::Eds,
    };
    let lb_policy = match c.lb_policy {
        model::LbPolicy::RoundRobin => L::RoundRobin,
        model::LbPolicy::LeastRequest => L::LeastRequest,
        model::LbPolicy::Random => L::Random,
        model::LbPolicy::RingHash => L::RingHash,
    };
    let mut cluster = xcluster::Cluster {
        name: c.name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(discovery as i32)),
        connect_timeout: Some(dur_to(c.connect_timeout)),
        lb_policy: lb_policy as i32,
        lb_config: (c.lb_policy == model::LbPolicy::RingHash).then(|| {
            LbConfig::RingHashLbConfig(xcluster::cluster::RingHashLbConfig {
                minimum_ring_size: Some(c.ring_size.into()),
                ..Default::default()
            })
        }),
        dns_refresh_rate: Some(dur_to(c.dns_refresh_rate)),
        circuit_breakers: upstream::circuit_breakers_to(&c.circuit_breakers),
        outlier_detection: c.outlier_detection.as_ref().map(upstream::outlier_to),
        common_lb_config: Some(upstream::common_lb_to(c.healthy_panic_threshold)),
        health_checks: health::health_checks_to(&c.health_checks),
        typed_extension_protocol_options: HashMap::from([(
            HTTP_OPTIONS_KEY.to_string(),
            to_any(&options),
        )]),
        metadata: Some(xcore::Metadata {
            filter_metadata: HashMap::from([(LEGATE_METADATA.to_string(), legate)]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let assignment = |cluster_name: String| xendpoint::ClusterLoadAssignment {
        cluster_name,
        endpoints: groups_to(&c.endpoints),
        policy: None,
    };
    if c.discovery == model::DiscoveryType::Eds {
        cluster.eds_cluster_config = Some(xcluster::cluster::EdsClusterConfig {
            eds_config: Some(ads_config_source()),
            service_name: c.eds_service_name.clone().unwrap_or_default(),
        });
        let name = c.eds_service_name.clone().unwrap_or_else(|| c.name.clone());
        (cluster, Some(assignment(name)))
    } else {
        cluster.load_assignment = Some(assignment(c.name.clone()));
        (cluster, None)
    }
}

/// One LocalityLbEndpoints per distinct priority, in ascending order
/// (endpoints keep their order within a priority).
fn groups_to(endpoints: &[model::Endpoint]) -> Vec<xendpoint::LocalityLbEndpoints> {
    let mut groups: BTreeMap<u32, Vec<xendpoint::LbEndpoint>> = BTreeMap::new();
    for e in endpoints {
        groups
            .entry(e.priority)
            .or_default()
            .push(xendpoint::LbEndpoint {
                host_identifier: Some(xendpoint::lb_endpoint::HostIdentifier::Endpoint(
                    xendpoint::Endpoint {
                        address: Some(address_to(&e.address)),
                        ..Default::default()
                    },
                )),
                health_status: health_to(e.health_status) as i32,
                load_balancing_weight: Some(e.weight),
                ..Default::default()
            });
    }
    groups
        .into_iter()
        .map(|(priority, lb_endpoints)| xendpoint::LocalityLbEndpoints {
            lb_endpoints,
            priority,
            // Envoy ignores both without locality-weighted balancing;
            // gRPC refuses a group without a locality and drops one
            // without a weight.
            locality: Some(Default::default()),
            load_balancing_weight: Some(1),
            ..Default::default()
        })
        .collect()
}
