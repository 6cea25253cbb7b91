//! Listener, HTTP connection manager and TCP proxy.

use super::{
    HCM_UNMODELLED, NO_BUFFER_TIMEOUT, R, TCP_PROXY_UNMODELLED, TLS_NOT_YET, TranslateError,
    address_from, address_to, ads_config_source, at, at_i, check, config_source_from, dur_to,
    dynamic_stub, nonzero, opt_dur, paths, refuse,
    route::{rc_from, rc_to},
    to_any, type_name, unknown_enum, unmodelled, unpack,
};
use crate::duration::Dur;
use crate::model;
use crate::validate::validate;
use crate::wire::envoy::config::core::v3 as xcore;
use crate::wire::envoy::config::listener::v3 as xlistener;
use crate::wire::envoy::extensions::filters::http::router::v3 as xrouter;
use crate::wire::envoy::extensions::filters::network::http_connection_manager::v3 as xhcm;
use crate::wire::envoy::extensions::filters::network::tcp_proxy::v3 as xtcp;
use prost::Name;
use std::collections::HashMap;

pub(crate) const HCM_NAME: &str = "envoy.filters.network.http_connection_manager";
pub(crate) const TCP_PROXY_NAME: &str = "envoy.filters.network.tcp_proxy";
pub(crate) const ROUTER_NAME: &str = "envoy.filters.http.router";

/// Listener filters that change nothing for Legate (it detects HTTP/1 and
/// HTTP/2 itself, has no TLS yet, and reads the original destination of a
/// `use_original_dst` listener's connections itself): accepted and ignored.
const IGNORED_LISTENER_FILTERS: &[(&str, &str)] = &[
    (
        "envoy.filters.listener.tls_inspector",
        "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
    ),
    (
        "envoy.filters.listener.http_inspector",
        "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
    ),
    (
        "envoy.filters.listener.original_dst",
        "envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
    ),
];

/// Translates a Listener (validated as the model would).
pub fn listener_from_xds(l: &xlistener::Listener) -> Result<model::Listener, TranslateError> {
    let (m, origins) = listener_from(l).map_err(|r| r.into_error("Listener", &l.name))?;
    let config = model::Config {
        dynamic: Some(dynamic_stub()),
        listeners: vec![m.clone()],
        ..Default::default()
    };
    check("Listener", &l.name, validate(&config), |p| {
        paths::listener(p, &origins)
    })?;
    Ok(m)
}

/// The listener and, for each of its model filter chains, the Envoy path
/// it came from (chains are reordered to keep Envoy's matching).
fn listener_from(l: &xlistener::Listener) -> R<(model::Listener, Vec<String>)> {
    let refused = [
        (
            "per_connection_buffer_high_watermark_timeout",
            nonzero(&l.per_connection_buffer_high_watermark_timeout),
            NO_BUFFER_TIMEOUT,
        ),
        (
            "transparent",
            l.transparent == Some(true),
            "not supported (Legate does not set IP_TRANSPARENT)",
        ),
        (
            "freebind",
            l.freebind == Some(true),
            "not supported (Legate does not set IP_FREEBIND)",
        ),
        (
            "socket_options",
            !l.socket_options.is_empty(),
            "not supported",
        ),
        (
            "tcp_keepalive",
            l.tcp_keepalive.is_some(),
            "not supported yet",
        ),
    ];
    if let Some((field, _, message)) = refused.iter().find(|(_, set, _)| *set) {
        return refuse(*field, *message);
    }
    for (i, f) in l.listener_filters.iter().enumerate() {
        let known = IGNORED_LISTENER_FILTERS.iter().any(|(name, ty)| {
            f.name == *name
                || matches!(&f.config_type,
                    Some(xlistener::listener_filter::ConfigType::TypedConfig(a)) if type_name(&a.type_url) == *ty)
        });
        if !known {
            return refuse(
                at_i("", "listener_filters", i),
                format!(
                    "unsupported listener filter {:?} (only tls_inspector, http_inspector and original_dst are accepted, and ignored)",
                    f.name
                ),
            );
        }
        if f.filter_disabled.is_some() {
            return refuse(
                at(&at_i("", "listener_filters", i), "filter_disabled"),
                "not supported",
            );
        }
    }
    let address = address_from("address", l.address.as_ref())?;

    let mut chains: Vec<(model::FilterChain, String)> = Vec::new();
    let mut seen: HashMap<Option<u16>, String> = HashMap::new();
    for (j, fc) in l.filter_chains.iter().enumerate() {
        let p = at_i("", "filter_chains", j);
        let chain = chain_from(&p, fc, true)?;
        if let Some(other) = seen.insert(chain.filter_chain_match.destination_port, p.clone()) {
            return refuse(
                p,
                format!(
                    "{other} has the same filter_chain_match (Envoy refuses duplicate matches)"
                ),
            );
        }
        chains.push((chain, p));
    }
    // Envoy serves a connection with the most specific matching chain: with
    // destination_port the only criterion, chains with a port come first.
    chains.sort_by_key(|(c, _)| c.filter_chain_match.destination_port.is_none());
    if let Some(fc) = &l.default_filter_chain {
        let chain = chain_from("default_filter_chain", fc, false)?;
        // Unreachable when a chain already matches every connection.
        if !seen.contains_key(&None) {
            chains.push((chain, "default_filter_chain".into()));
        }
    }
    let (filter_chains, origins) = chains.into_iter().unzip();
    Ok((
        model::Listener {
            name: l.name.clone(),
            address,
            filter_chains,
            http: None,
            tcp: None,
            use_original_dst: l.use_original_dst == Some(true),
            bind_to_port: l.bind_to_port != Some(false),
            outbound_traffic_policy: None,
        },
        origins,
    ))
}

fn chain_from(p: &str, fc: &xlistener::FilterChain, with_match: bool) -> R<model::FilterChain> {
    if fc.transport_socket.is_some() {
        return refuse(at(p, "transport_socket"), TLS_NOT_YET);
    }
    if fc.use_proxy_proto == Some(true) {
        return refuse(
            at(p, "use_proxy_proto"),
            "not supported (Legate does not read PROXY protocol headers)",
        );
    }
    let mut chain = model::FilterChain {
        name: (!fc.name.is_empty()).then(|| fc.name.clone()),
        ..Default::default()
    };
    if with_match && let Some(m) = &fc.filter_chain_match {
        chain.filter_chain_match = match_from(&at(p, "filter_chain_match"), m)?;
    }
    for (i, f) in fc.filters.iter().enumerate() {
        let fp = at_i(p, "filters", i);
        let Some(xlistener::filter::ConfigType::TypedConfig(any)) = &f.config_type else {
            return refuse(
                fp,
                format!(
                    "network filter {:?} has no typed_config (Legate identifies filters by their typed_config type)",
                    f.name
                ),
            );
        };
        let tp = at(&fp, "typed_config");
        let ty = type_name(&any.type_url);
        if ty == xhcm::HttpConnectionManager::full_name() {
            let h = unpack(&tp, any)?;
            unmodelled(&tp, &any.value, HCM_UNMODELLED)?;
            chain.http = Some(hcm_from(&tp, &h)?);
        } else if ty == xtcp::TcpProxy::full_name() {
            let t = unpack(&tp, any)?;
            unmodelled(&tp, &any.value, TCP_PROXY_UNMODELLED)?;
            chain.tcp = Some(tcp_from(&tp, &t)?);
        } else {
            return refuse(
                fp,
                format!(
                    "unsupported network filter {:?} ({}): Legate supports {HCM_NAME} and {TCP_PROXY_NAME}",
                    f.name, any.type_url
                ),
            );
        }
        if i > 0 {
            return refuse(
                fp,
                "a filter chain takes exactly one network filter (the HTTP connection manager or the TCP proxy)",
            );
        }
    }
    if fc.filters.is_empty() {
        return refuse(
            at(p, "filters"),
            format!("a filter chain needs one network filter: {HCM_NAME} or {TCP_PROXY_NAME}"),
        );
    }
    Ok(chain)
}

fn match_from(p: &str, m: &xlistener::FilterChainMatch) -> R<model::FilterChainMatch> {
    const ONLY_PORT: &str = "not supported: only destination_port is (this field changes which connections the chain serves)";
    let unsupported = [
        ("prefix_ranges", !m.prefix_ranges.is_empty()),
        ("address_suffix", !m.address_suffix.is_empty()),
        ("suffix_len", m.suffix_len.is_some()),
        (
            "direct_source_prefix_ranges",
            !m.direct_source_prefix_ranges.is_empty(),
        ),
        ("source_type", m.source_type != 0),
        ("source_prefix_ranges", !m.source_prefix_ranges.is_empty()),
        ("source_ports", !m.source_ports.is_empty()),
        ("server_names", !m.server_names.is_empty()),
        ("transport_protocol", !m.transport_protocol.is_empty()),
        ("application_protocols", !m.application_protocols.is_empty()),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
        return refuse(at(p, field), ONLY_PORT);
    }
    let destination_port = match m.destination_port {
        None => None,
        Some(port) => match u16::try_from(port) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                return refuse(
                    at(p, "destination_port"),
                    format!("{port} is not a port (1 to 65535)"),
                );
            }
        },
    };
    Ok(model::FilterChainMatch { destination_port })
}

/// The HTTP connection manager at `p` (the filter's `typed_config`).
fn hcm_from(p: &str, h: &xhcm::HttpConnectionManager) -> R<model::HttpConnectionManager> {
    use xhcm::http_connection_manager::{
        CodecType, ForwardClientCertDetails, PathWithEscapedSlashesAction as Slashes,
        RouteSpecifier, ServerHeaderTransformation, StripPortMode,
    };
    match CodecType::try_from(h.codec_type) {
        Ok(CodecType::Auto | CodecType::Http1 | CodecType::Http2) => {}
        Ok(CodecType::Http3) => return refuse(at(p, "codec_type"), "HTTP3 is not supported"),
        Err(_) => return Err(unknown_enum(&at(p, "codec_type"), h.codec_type)),
    }
    match ForwardClientCertDetails::try_from(h.forward_client_cert_details) {
        Ok(ForwardClientCertDetails::Sanitize) => {}
        Ok(_) => {
            return refuse(
                at(p, "forward_client_cert_details"),
                "not supported yet (client certificates come with TLS)",
            );
        }
        Err(_) => {
            return Err(unknown_enum(
                &at(p, "forward_client_cert_details"),
                h.forward_client_cert_details,
            ));
        }
    }
    match Slashes::try_from(h.path_with_escaped_slashes_action) {
        // Envoy's default is KEEP_UNCHANGED, which is what Legate does.
        Ok(Slashes::ImplementationSpecificDefault | Slashes::KeepUnchanged) => {}
        Ok(other) => {
            return refuse(
                at(p, "path_with_escaped_slashes_action"),
                format!(
                    "{} is not supported (Legate keeps escaped slashes unchanged)",
                    other.as_str_name()
                ),
            );
        }
        Err(_) => {
            return Err(unknown_enum(
                &at(p, "path_with_escaped_slashes_action"),
                h.path_with_escaped_slashes_action,
            ));
        }
    }
    if !h.via.is_empty() {
        return refuse(at(p, "via"), "not supported (Legate adds no via header)");
    }
    if h.internal_address_config.is_some() {
        return refuse(at(p, "internal_address_config"), "not supported");
    }
    if h.local_reply_config.is_some() {
        return refuse(
            at(p, "local_reply_config"),
            "not supported (Legate's local replies cannot be customized)",
        );
    }
    // Legate never writes a server header of its own: it passes the
    // upstream's on, whatever the transformation.
    let pass_through = match ServerHeaderTransformation::try_from(h.server_header_transformation) {
        Ok(t) => t == ServerHeaderTransformation::PassThrough,
        Err(_) => {
            return Err(unknown_enum(
                &at(p, "server_header_transformation"),
                h.server_header_transformation,
            ));
        }
    };
    let refused = [
        (
            "add_user_agent",
            h.add_user_agent == Some(true),
            "not supported (Legate sets neither user-agent nor x-envoy-downstream-service-cluster)",
        ),
        (
            "tracing",
            h.tracing.is_some(),
            "not supported (Legate does not trace requests)",
        ),
        (
            "server_name",
            !h.server_name.is_empty() && !pass_through,
            "not supported (Legate passes the upstream's server header on)",
        ),
        (
            "scheme_header_transformation",
            h.scheme_header_transformation.is_some(),
            "not supported",
        ),
        (
            "stream_flush_timeout",
            nonzero(&h.stream_flush_timeout),
            "not supported yet",
        ),
        (
            "original_ip_detection_extensions",
            !h.original_ip_detection_extensions.is_empty(),
            "not supported",
        ),
        (
            "early_header_mutation_extensions",
            !h.early_header_mutation_extensions.is_empty(),
            "not supported",
        ),
        (
            "always_set_request_id_in_response",
            h.always_set_request_id_in_response,
            "not supported (Legate does not send x-request-id in responses)",
        ),
        (
            "forward_client_cert_matcher",
            h.forward_client_cert_matcher.is_some(),
            "not supported yet (client certificates come with TLS)",
        ),
        (
            "proxy_100_continue",
            h.proxy_100_continue,
            "not supported (Legate answers Expect: 100-continue itself)",
        ),
        (
            "represent_ipv4_remote_address_as_ipv4_mapped_ipv6",
            h.represent_ipv4_remote_address_as_ipv4_mapped_ipv6,
            "not supported",
        ),
        (
            "request_id_extension",
            h.request_id_extension.is_some(),
            "not supported (Legate generates random UUIDs)",
        ),
        (
            "strip_trailing_host_dot",
            h.strip_trailing_host_dot,
            "not supported",
        ),
        (
            "proxy_status_config",
            h.proxy_status_config.is_some(),
            "not supported (Legate sends no proxy-status header)",
        ),
        (
            "typed_header_validation_config",
            h.typed_header_validation_config.is_some(),
            "not supported",
        ),
        (
            "append_x_forwarded_port",
            h.append_x_forwarded_port,
            "not supported (Legate does not set x-forwarded-port)",
        ),
    ];
    if let Some((field, _, message)) = refused.iter().find(|(_, set, _)| *set) {
        return refuse(at(p, field), *message);
    }
    http_filters_from(p, &h.http_filters)?;

    let mut m = model::HttpConnectionManager::default();
    match &h.route_specifier {
        Some(RouteSpecifier::RouteConfig(rc)) => {
            m.route_config = Some(rc_from(&at(p, "route_config"), rc)?);
        }
        Some(RouteSpecifier::Rds(rds)) => {
            let rp = at(p, "rds");
            config_source_from(&at(&rp, "config_source"), rds.config_source.as_ref())?;
            m.route_config = None;
            m.rds = Some(rds.route_config_name.clone());
        }
        None => {
            return refuse(
                p,
                "set rds or route_config (scoped_routes is not supported)",
            );
        }
    }
    if let Some(kb) = h.max_request_headers_kb {
        m.max_request_headers_kb = kb;
    }
    if let Some(o) = &h.common_http_protocol_options {
        use xcore::http_protocol_options::HeadersWithUnderscoresAction as U;
        let op = at(p, "common_http_protocol_options");
        match U::try_from(o.headers_with_underscores_action) {
            Ok(U::Allow) => {}
            Ok(_) => {
                return refuse(
                    at(&op, "headers_with_underscores_action"),
                    "not supported (Legate allows underscores in header names)",
                );
            }
            Err(_) => {
                return Err(unknown_enum(
                    &at(&op, "headers_with_underscores_action"),
                    o.headers_with_underscores_action,
                ));
            }
        }
        if let Some(n) = o.max_headers_count {
            m.max_request_headers_count = n;
        }
    }
    if let Some(o) = &h.http2_protocol_options
        && let Some(n) = o.max_concurrent_streams
    {
        m.http2_max_concurrent_streams = n;
    }
    m.request_headers_timeout = opt_dur(
        &at(p, "request_headers_timeout"),
        &h.request_headers_timeout,
        m.request_headers_timeout,
    )?;
    m.generate_request_id = h.generate_request_id.unwrap_or(true);
    // Envoy appends the peer to x-forwarded-for only with use_remote_address
    // (default false) and without skip_xff_append.
    m.append_x_forwarded_for = h.use_remote_address == Some(true) && !h.skip_xff_append;
    m.strip_any_host_port = matches!(
        h.strip_port_mode,
        Some(StripPortMode::StripAnyHostPort(true))
    );
    Ok(m)
}

/// The HTTP filters must end with the router; other filters are refused
/// unless optional or disabled (then skipped).
fn http_filters_from(p: &str, filters: &[xhcm::HttpFilter]) -> R<()> {
    let is_router = |f: &xhcm::HttpFilter| match &f.config_type {
        Some(xhcm::http_filter::ConfigType::TypedConfig(a)) => {
            type_name(&a.type_url) == xrouter::Router::full_name()
        }
        None => f.name == ROUTER_NAME,
    };
    let Some((last, rest)) = filters.split_last() else {
        return refuse(
            at(p, "http_filters"),
            format!("must end with the router ({ROUTER_NAME})"),
        );
    };
    for (i, f) in rest.iter().enumerate() {
        let fp = at_i(p, "http_filters", i);
        if is_router(f) {
            return refuse(fp, "the router must be the last HTTP filter");
        }
        if let Some(xhcm::http_filter::ConfigType::TypedConfig(a)) = &f.config_type
            && (f.disabled || super::filters::http_filter_from(&fp, a)?)
        {
            continue;
        }
        if !(f.is_optional || f.disabled) {
            let ty = match &f.config_type {
                Some(xhcm::http_filter::ConfigType::TypedConfig(a)) => a.type_url.as_str(),
                None => "no typed_config",
            };
            return refuse(
                fp,
                format!(
                    "unsupported HTTP filter {:?} ({ty}): Legate has the fault and local rate limit filters and the router (mark it is_optional to skip it)",
                    f.name
                ),
            );
        }
    }
    if !is_router(last) {
        return refuse(
            at_i(p, "http_filters", filters.len() - 1),
            format!("the last HTTP filter must be the router ({ROUTER_NAME})"),
        );
    }
    Ok(())
}

fn tcp_from(p: &str, t: &xtcp::TcpProxy) -> R<model::TcpProxy> {
    use xtcp::tcp_proxy::ClusterSpecifier;
    let cluster = match &t.cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) if !c.is_empty() => c.clone(),
        Some(ClusterSpecifier::Cluster(_)) => return refuse(at(p, "cluster"), "must not be empty"),
        Some(ClusterSpecifier::WeightedClusters(_)) => {
            return refuse(at(p, "weighted_clusters"), "not supported yet");
        }
        None => return refuse(at(p, "cluster"), "must be set"),
    };
    Ok(model::TcpProxy {
        cluster,
        idle_timeout: opt_dur(
            &at(p, "idle_timeout"),
            &t.idle_timeout,
            Dur::from_secs(3600),
        )?,
    })
}

/// The listener as xDS (normalized: every chain in `filter_chains`).
pub fn listener_to_xds(l: &model::Listener) -> xlistener::Listener {
    let mut l = l.clone();
    l.normalize();
    xlistener::Listener {
        name: l.name.clone(),
        address: Some(address_to(&l.address)),
        filter_chains: l
            .filter_chains
            .iter()
            .map(|fc| chain_to(fc, &l.name))
            .collect(),
        use_original_dst: l.use_original_dst.then_some(true),
        bind_to_port: (!l.bind_to_port).then_some(false),
        ..Default::default()
    }
}

fn chain_to(fc: &model::FilterChain, stat_prefix: &str) -> xlistener::FilterChain {
    let mut filters = Vec::new();
    if let Some(h) = &fc.http {
        filters.push(xlistener::Filter {
            name: HCM_NAME.into(),
            config_type: Some(xlistener::filter::ConfigType::TypedConfig(to_any(&hcm_to(
                h,
                stat_prefix,
            )))),
        });
    }
    if let Some(t) = &fc.tcp {
        filters.push(xlistener::Filter {
            name: TCP_PROXY_NAME.into(),
            config_type: Some(xlistener::filter::ConfigType::TypedConfig(to_any(
                &xtcp::TcpProxy {
                    stat_prefix: stat_prefix.into(),
                    cluster_specifier: Some(xtcp::tcp_proxy::ClusterSpecifier::Cluster(
                        t.cluster.clone(),
                    )),
                    idle_timeout: Some(dur_to(t.idle_timeout)),
                    ..Default::default()
                },
            ))),
        });
    }
    xlistener::FilterChain {
        filter_chain_match: fc.filter_chain_match.destination_port.map(|port| {
            xlistener::FilterChainMatch {
                destination_port: Some(port.into()),
                ..Default::default()
            }
        }),
        filters,
        name: fc.name.clone().unwrap_or_default(),
        ..Default::default()
    }
}

fn hcm_to(h: &model::HttpConnectionManager, stat_prefix: &str) -> xhcm::HttpConnectionManager {
    use xhcm::http_connection_manager::{RouteSpecifier, StripPortMode};
    let route_specifier = match (&h.route_config, &h.rds) {
        (Some(rc), _) => RouteSpecifier::RouteConfig(rc_to(rc)),
        (None, name) => RouteSpecifier::Rds(xhcm::Rds {
            config_source: Some(ads_config_source()),
            route_config_name: name.clone().unwrap_or_default(),
        }),
    };
    xhcm::HttpConnectionManager {
        stat_prefix: stat_prefix.into(),
        route_specifier: Some(route_specifier),
        http_filters: {
            // Faults and rate limits are configured per route; the filters
            // must be there.
            let mut f = super::filters::http_filters_to();
            f.push(xhcm::HttpFilter {
                name: ROUTER_NAME.into(),
                config_type: Some(xhcm::http_filter::ConfigType::TypedConfig(to_any(
                    &xrouter::Router::default(),
                ))),
                ..Default::default()
            });
            f
        },
        common_http_protocol_options: Some(xcore::HttpProtocolOptions {
            max_headers_count: Some(h.max_request_headers_count),
            ..Default::default()
        }),
        http2_protocol_options: Some(xcore::Http2ProtocolOptions {
            max_concurrent_streams: Some(h.http2_max_concurrent_streams),
            ..Default::default()
        }),
        request_headers_timeout: Some(dur_to(h.request_headers_timeout)),
        max_request_headers_kb: Some(h.max_request_headers_kb),
        generate_request_id: Some(h.generate_request_id),
        use_remote_address: Some(h.append_x_forwarded_for),
        strip_port_mode: h
            .strip_any_host_port
            .then_some(StripPortMode::StripAnyHostPort(true)),
        ..Default::default()
    }
}
