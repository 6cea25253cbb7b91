//! xDS resources (Legate's wire subset of Envoy's v3 API) <-> the model.
//!
//! Inbound ([`decode`] and the `*_from_xds` functions), every field of a
//! resource is either translated, accepted and ignored (it does not change
//! what Legate does, or Legate already behaves that way), or refused: a
//! resource with any refused field is refused whole, with the path of the
//! field in Envoy's names. The translated resource is then checked with the
//! model's own validation ([`crate::validate`]), whose errors are reported
//! with the same kind of path.
//!
//! Fields that the wire subset does not define are skipped by prost (that
//! is how they are "ignored"). Fields that would change behaviour belong in
//! the wire subset, so that they can be refused: those whose message Legate
//! never reads are declared with an empty placeholder message of Envoy's
//! name (enough to see that they are set). A few, at the top level of
//! Listener and Cluster resources (in [`decode`]) and of the HTTP
//! connection manager and TCP proxy configs, are instead found in the
//! encoded bytes and refused (`*_UNMODELLED` below).
//!
//! Defaults: where a field is absent, Envoy's default applies, except for
//! the HTTP connection manager's `request_headers_timeout` (Envoy: disabled;
//! Legate: 60 s) and `http2_protocol_options.max_concurrent_streams`
//! (Envoy: 2147483647; Legate: 1024), where the model's default applies. The
//! outbound direction (`*_to_xds`) always writes those fields (and every
//! other field whose Envoy default differs from the model's), so
//! model -> xDS -> model is exact.

mod cluster;
mod fault;
mod filters;
mod health;
mod listener;
mod paths;
mod ratelimit;
mod retry;
mod route;
#[cfg(test)]
mod tests;
mod upstream;

pub use cluster::{cluster_from_xds, cluster_to_xds, load_assignment_from_xds};
pub use fault::FAULT_FILTER;
pub use listener::{listener_from_xds, listener_to_xds};
pub use ratelimit::RATE_LIMIT_FILTER;
pub use route::{route_config_from_xds, route_config_to_xds};

use crate::duration::Dur;
use crate::model;
use crate::validate::FieldError;
use crate::wire::envoy::config::cluster::v3 as xcluster;
use crate::wire::envoy::config::core::v3 as xcore;
use crate::wire::envoy::config::endpoint::v3 as xendpoint;
use crate::wire::envoy::config::listener::v3 as xlistener;
use crate::wire::envoy::config::route::v3 as xroute;
use prost::Message;
use std::net::{IpAddr, SocketAddr};

pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const SECRET_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// Endpoints of one EDS service (a ClusterLoadAssignment).
#[derive(Clone, Debug, PartialEq)]
pub struct LoadAssignment {
    pub cluster_name: String,
    pub endpoints: Vec<model::Endpoint>,
}

/// One translated xDS resource.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    Listener(model::Listener),
    Route(model::RouteConfiguration),
    Cluster(model::Cluster),
    Endpoints(LoadAssignment),
}

/// Why a resource was refused. Display: `Listener "web": filter_chains[0].filters[0]: <message>`
/// (kind, resource name, field path inside the resource in Envoy's field names, message).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{kind} {name:?}: {}{message}", path_prefix(.path))]
pub struct TranslateError {
    /// `Listener`, `RouteConfiguration`, `Cluster`, `ClusterLoadAssignment`
    /// (or `Secret`, `Resource` for types Legate does not take).
    pub kind: &'static str,
    /// The resource's name (empty when it could not be decoded).
    pub name: String,
    /// The field at fault inside the resource, in Envoy's field names
    /// (empty: the resource as a whole).
    pub path: String,
    pub message: String,
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// Decodes one xDS resource (an Any whose type_url must equal `type_url`)
/// and translates it to the model, validated. Returns the resource's name
/// with it (for a ClusterLoadAssignment, its `cluster_name`).
pub fn decode(
    type_url: &str,
    any: &prost_types::Any,
) -> Result<(String, Resource), TranslateError> {
    let kind = kind_of(type_url);
    let whole = |message: String| TranslateError {
        kind,
        name: String::new(),
        path: String::new(),
        message,
    };
    if any.type_url != type_url {
        return Err(whole(format!(
            "resource has type {:?}, expected {type_url:?}",
            any.type_url
        )));
    }
    let bytes = any.value.as_slice();
    let undecodable = |e: prost::DecodeError| whole(format!("cannot decode the resource: {e}"));
    match type_url {
        LISTENER_TYPE => {
            let l = xlistener::Listener::decode(bytes).map_err(undecodable)?;
            unmodelled("", bytes, LISTENER_UNMODELLED).map_err(|e| e.into_error(kind, &l.name))?;
            let m = listener_from_xds(&l)?;
            Ok((l.name, Resource::Listener(m)))
        }
        ROUTE_TYPE => {
            let r = xroute::RouteConfiguration::decode(bytes).map_err(undecodable)?;
            let m = route_config_from_xds(&r)?;
            Ok((r.name, Resource::Route(m)))
        }
        CLUSTER_TYPE => {
            let c = xcluster::Cluster::decode(bytes).map_err(undecodable)?;
            unmodelled("", bytes, CLUSTER_UNMODELLED).map_err(|e| e.into_error(kind, &c.name))?;
            let m = cluster_from_xds(&c)?;
            Ok((c.name, Resource::Cluster(m)))
        }
        ENDPOINT_TYPE => {
            let c = xendpoint::ClusterLoadAssignment::decode(bytes).map_err(undecodable)?;
            let m = load_assignment_from_xds(&c)?;
            Ok((c.cluster_name, Resource::Endpoints(m)))
        }
        SECRET_TYPE => Err(whole(TLS_NOT_YET.into())),
        other => Err(whole(format!("unsupported resource type {other:?}"))),
    }
}

fn kind_of(type_url: &str) -> &'static str {
    match type_url {
        LISTENER_TYPE => "Listener",
        ROUTE_TYPE => "RouteConfiguration",
        CLUSTER_TYPE => "Cluster",
        ENDPOINT_TYPE => "ClusterLoadAssignment",
        SECRET_TYPE => "Secret",
        _ => "Resource",
    }
}

/// Wraps a message in an `Any` (type_url `type.googleapis.com/<full name>`).
pub fn to_any<M: prost::Name>(m: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

// ---------------------------------------------------------------------------
// Fields of Envoy's messages that Legate's wire subset leaves out (prost skips
// them when decoding) but that would change behaviour if ignored. `decode`
// finds them in the resource's bytes and refuses the resource.

const LISTENER_UNMODELLED: &[(u32, &str, &str)] = &[
    (
        18,
        "udp_listener_config",
        "not supported (Legate listens on TCP only)",
    ),
    (19, "api_listener", "not supported"),
    (27, "internal_listener", "not supported"),
    (
        32,
        "filter_chain_matcher",
        "not supported (only filter_chain_match.destination_port is)",
    ),
    (
        33,
        "additional_addresses",
        "not supported (a listener has one address)",
    ),
];

/// In the HTTP connection manager's `typed_config`.
pub(crate) const HCM_UNMODELLED: &[(u32, &str, &str)] = &[
    (
        31,
        "scoped_routes",
        "not supported (use rds or route_config)",
    ),
    (
        39,
        "strip_matching_host_port",
        "not supported (use strip_any_host_port)",
    ),
];

/// In the TCP proxy's `typed_config`.
pub(crate) const TCP_PROXY_UNMODELLED: &[(u32, &str, &str)] =
    &[(12, "tunneling_config", "not supported")];

const CLUSTER_UNMODELLED: &[(u32, &str, &str)] = &[
    (
        14,
        "http2_protocol_options",
        "not supported: use typed_extension_protocol_options[\"envoy.extensions.upstreams.http.v3.HttpProtocolOptions\"] (explicit_http_config.http2_protocol_options)",
    ),
    (22, "lb_subset_config", "not supported yet"),
    (40, "filters", "not supported (upstream network filters)"),
    (
        41,
        "load_balancing_policy",
        "not supported yet (use lb_policy)",
    ),
    (43, "transport_socket_matches", TLS_NOT_YET),
    (48, "upstream_config", "not supported"),
];

/// Refuses a message (at path `p`) whose top-level fields include one of
/// `fields`.
pub(crate) fn unmodelled(p: &str, bytes: &[u8], fields: &[(u32, &str, &str)]) -> R<()> {
    let present = top_level_fields(bytes);
    match fields.iter().find(|(n, _, _)| present.contains(n)) {
        Some((_, field, message)) => refuse(at(p, field), *message),
        None => Ok(()),
    }
}

/// The field numbers present at the top level of an encoded message (as
/// far as it can be parsed; decoding reports malformed input).
fn top_level_fields(mut b: &[u8]) -> Vec<u32> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn skip(b: &mut &[u8], n: u64) -> Option<()> {
        let n = usize::try_from(n).ok()?;
        *b = b.get(n..)?;
        Some(())
    }
    let mut fields = Vec::new();
    while !b.is_empty() {
        let Some(key) = varint(&mut b) else { break };
        let ok = match key & 7 {
            0 => varint(&mut b).map(|_| ()),
            1 => skip(&mut b, 8),
            2 => varint(&mut b).and_then(|n| skip(&mut b, n)),
            5 => skip(&mut b, 4),
            _ => None,
        };
        if ok.is_none() {
            break;
        }
        if let Ok(n) = u32::try_from(key >> 3) {
            fields.push(n);
        }
    }
    fields
}

// ---------------------------------------------------------------------------
// Refusals inside a resource.

pub(crate) const TLS_NOT_YET: &str = "TLS is not supported yet";
pub(crate) const MIRRORING_NOT_YET: &str =
    "not supported yet (request mirroring is a later feature)";
pub(crate) const RATE_LIMITS_NOT_YET: &str = "not supported yet (rate limits are a later feature)";
pub(crate) const HEDGING_NOT_YET: &str =
    "not supported yet (hedging comes with retries, a later feature)";
pub(crate) const NO_CORS: &str = "not supported (Legate has no CORS filter)";
pub(crate) const NO_SUBSETS: &str = "not supported (subset load balancing is not supported)";
pub(crate) const NO_BUFFER_TIMEOUT: &str =
    "not supported (Legate does not close connections for their buffer use)";

/// A refused field: its path inside the resource and why.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub path: String,
    pub message: String,
}

impl Refusal {
    fn into_error(self, kind: &'static str, name: &str) -> TranslateError {
        TranslateError {
            kind,
            name: name.to_string(),
            path: self.path,
            message: self.message,
        }
    }
}

pub(crate) type R<T> = Result<T, Refusal>;

pub(crate) fn refusal(path: impl Into<String>, message: impl Into<String>) -> Refusal {
    Refusal {
        path: path.into(),
        message: message.into(),
    }
}

pub(crate) fn refuse<T>(path: impl Into<String>, message: impl Into<String>) -> R<T> {
    Err(refusal(path, message))
}

/// `p.field` (or `field` at the resource's root).
pub(crate) fn at(p: &str, field: &str) -> String {
    if p.is_empty() {
        field.to_string()
    } else {
        format!("{p}.{field}")
    }
}

/// `p.field[i]`.
pub(crate) fn at_i(p: &str, field: &str, i: usize) -> String {
    at(p, &format!("{field}[{i}]"))
}

/// Refuses an enum value outside the enum (a newer Envoy's value).
pub(crate) fn unknown_enum(p: &str, value: i32) -> Refusal {
    refusal(p, format!("unknown value {value}"))
}

/// Runs the model's validation on a one-resource configuration and reports
/// the first error (and how many more there are) at the resource's own path.
pub(crate) fn check(
    kind: &'static str,
    name: &str,
    errors: Vec<FieldError>,
    map: impl Fn(&str) -> String,
) -> Result<(), TranslateError> {
    let mut iter = errors.into_iter();
    let Some(first) = iter.next() else {
        return Ok(());
    };
    let rest: Vec<String> = iter
        .map(|e| format!("{}: {}", map(&e.path), e.message))
        .collect();
    let message = if rest.is_empty() {
        first.message
    } else {
        format!(
            "{} (and {} more: {})",
            first.message,
            rest.len(),
            rest.join("; ")
        )
    };
    Err(TranslateError {
        kind,
        name: name.to_string(),
        path: map(&first.path),
        message,
    })
}

/// A control plane section for validating one resource: with it,
/// references to clusters and route configurations are not checked (they
/// may arrive in other resources).
pub(crate) fn dynamic_stub() -> model::Dynamic {
    model::Dynamic::new("127.0.0.1:1", "translate", model::XdsApi::Sotw)
}

// ---------------------------------------------------------------------------
// Shared field translations.

pub(crate) fn dur_from(p: &str, d: &prost_types::Duration) -> R<Dur> {
    match (u64::try_from(d.seconds), u32::try_from(d.nanos)) {
        (Ok(s), Ok(n)) if n < 1_000_000_000 => Ok(Dur(std::time::Duration::new(s, n))),
        _ => refuse(
            p,
            format!(
                "invalid duration ({}s {}ns): must not be negative",
                d.seconds, d.nanos
            ),
        ),
    }
}

/// An optional Duration field: `default` when absent.
pub(crate) fn opt_dur(p: &str, d: &Option<prost_types::Duration>, default: Dur) -> R<Dur> {
    match d {
        Some(d) => dur_from(p, d),
        None => Ok(default),
    }
}

/// Whether a duration is set to something other than 0 (for the timeouts
/// where Envoy reads 0 as "disabled", which is what Legate does).
pub(crate) fn nonzero(d: &Option<prost_types::Duration>) -> bool {
    d.as_ref().is_some_and(|d| d.seconds != 0 || d.nanos != 0)
}

pub(crate) fn dur_to(d: Dur) -> prost_types::Duration {
    let d = d.get();
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// An `Address` (at path `p`) as `ip:port` / `host:port` (`[v6]:port`).
pub(crate) fn address_from(p: &str, a: Option<&xcore::Address>) -> R<String> {
    use xcore::address::Address as A;
    use xcore::socket_address::{PortSpecifier, Protocol};
    let sp = at(p, "socket_address");
    match a.and_then(|a| a.address.as_ref()) {
        None => refuse(p, "must be set"),
        Some(A::Pipe(_)) => refuse(at(p, "pipe"), "not supported (use socket_address)"),
        Some(A::SocketAddress(s)) => {
            match Protocol::try_from(s.protocol) {
                Ok(Protocol::Tcp) => {}
                Ok(Protocol::Udp) => {
                    return refuse(at(&sp, "protocol"), "UDP is not supported");
                }
                Err(_) => return Err(unknown_enum(&at(&sp, "protocol"), s.protocol)),
            }
            if !s.resolver_name.is_empty() {
                return refuse(at(&sp, "resolver_name"), "not supported");
            }
            let port = match &s.port_specifier {
                Some(PortSpecifier::PortValue(v)) => u16::try_from(*v).map_err(|_| {
                    refusal(
                        at(&sp, "port_value"),
                        format!("{v} is not a port (0 to 65535)"),
                    )
                })?,
                Some(PortSpecifier::NamedPort(_)) => {
                    return refuse(at(&sp, "named_port"), "not supported (use port_value)");
                }
                None => 0,
            };
            if s.address.is_empty() {
                return refuse(at(&sp, "address"), "must not be empty");
            }
            Ok(host_port(&s.address, port))
        }
    }
}

/// `ip:port` for IP literals (`[v6]:port`), otherwise `host:port`.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) if host.contains(':') => format!("[{host}]:{port}"),
        Err(_) => format!("{host}:{port}"),
    }
}

/// The inverse of [`host_port`] (for model addresses, valid or not).
pub(crate) fn address_to(s: &str) -> xcore::Address {
    let (host, port) = match s.parse::<SocketAddr>() {
        Ok(a) => (a.ip().to_string(), a.port()),
        Err(_) => match s.rsplit_once(':') {
            Some((h, p)) => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                p.parse().unwrap_or(0),
            ),
            None => (s.to_string(), 0),
        },
    };
    xcore::Address {
        address: Some(xcore::address::Address::SocketAddress(
            xcore::SocketAddress {
                address: host,
                port_specifier: Some(xcore::socket_address::PortSpecifier::PortValue(port.into())),
                ..Default::default()
            },
        )),
    }
}

/// A config source for RDS or EDS: Legate gets everything over its one ADS
/// stream, so `ads`, `self` and an aggregated `api_config_source` are
/// accepted (and mean the same), anything else is refused.
pub(crate) fn config_source_from(p: &str, cs: Option<&xcore::ConfigSource>) -> R<()> {
    use xcore::api_config_source::ApiType;
    use xcore::config_source::ConfigSourceSpecifier as S;
    const ADS_ONLY: &str = "Legate gets every resource over its ADS stream (use `ads: {}`)";
    let Some(cs) = cs else {
        return refuse(p, format!("must be set: {ADS_ONLY}"));
    };
    if cs.resource_api_version == xcore::ApiVersion::V2 as i32 {
        return refuse(
            at(p, "resource_api_version"),
            "V2 is not supported (use V3)",
        );
    }
    match &cs.config_source_specifier {
        Some(S::Ads(_) | S::Self_(_)) => Ok(()),
        Some(S::ApiConfigSource(a)) => match ApiType::try_from(a.api_type) {
            Ok(ApiType::AggregatedGrpc | ApiType::AggregatedDeltaGrpc) => Ok(()),
            Ok(other) => refuse(
                at(p, "api_config_source.api_type"),
                format!("{} is not supported: {ADS_ONLY}", other.as_str_name()),
            ),
            Err(_) => Err(unknown_enum(
                &at(p, "api_config_source.api_type"),
                a.api_type,
            )),
        },
        Some(S::Path(_)) => refuse(at(p, "path"), format!("not supported: {ADS_ONLY}")),
        None => refuse(p, format!("must name a source: {ADS_ONLY}")),
    }
}

/// What the outbound direction writes for RDS and EDS: `ads: {}`, V3.
pub(crate) fn ads_config_source() -> xcore::ConfigSource {
    xcore::ConfigSource {
        config_source_specifier: Some(xcore::config_source::ConfigSourceSpecifier::Ads(
            xcore::AggregatedConfigSource {},
        )),
        resource_api_version: xcore::ApiVersion::V3 as i32,
        ..Default::default()
    }
}

/// The name of the type in an `Any`'s type URL (after the last `/`, as
/// Envoy resolves it).
pub(crate) fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// Decodes an `Any` known to hold `M` (checked by the caller).
pub(crate) fn unpack<M: prost::Name + Default>(p: &str, any: &prost_types::Any) -> R<M> {
    M::decode(any.value.as_slice())
        .map_err(|e| refusal(p, format!("cannot decode {}: {e}", M::full_name())))
}
