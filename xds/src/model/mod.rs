//! Legate's configuration model.
//!
//! Every configuration source (the static YAML file today, xDS later)
//! produces a [`Config`]; the data plane compiles it into runtime objects.
//! The serde representation is the static file format and the `/config_dump`
//! format, so the two can never drift apart.

use crate::duration::Dur;
use serde::{Deserialize, Serialize};

mod health;
pub use health::{
    Checker, GrpcHealthCheck, HealthCheck, HealthCheckCodec, HttpHealthCheck, Payload, StatusRange,
    TcpHealthCheck, validate_health_checks,
};
mod upstream;
pub use upstream::{CircuitBreakers, OutlierDetection, RetryBudget, RoutingPriority, Thresholds};

/// The whole configuration of one proxy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub admin: Admin,
    /// Where dynamic (xDS) configuration comes from; absent for a purely
    /// static proxy. When present, the resources below are the static
    /// ones, and references (clusters, route configurations) may name
    /// resources that the control plane delivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<Dynamic>,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Named route configurations, referenced by `http.rds` (what RDS
    /// delivers; static files may define them too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_configs: Vec<RouteConfiguration>,
    #[serde(default)]
    pub clusters: Vec<Cluster>,
}

/// The control plane connection (Envoy's `dynamic_resources` with an ADS
/// `api_config_source`, plus the node identity of the bootstrap).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dynamic {
    /// Control plane addresses (`host:port`), tried in turn on reconnect.
    pub servers: Vec<String>,
    pub node: Node,
    /// The ADS variant: `sotw` (state of the world, Envoy's `GRPC`) or
    /// `delta` (Envoy's `DELTA_GRPC`).
    #[serde(default)]
    pub api: XdsApi,
    /// How long a listener or cluster waits for the resources it depends on
    /// (routes, endpoints) before it is used anyway; also how long `/ready`
    /// waits for the first complete configuration (Envoy's
    /// `initial_fetch_timeout`, default 15 s; 0 waits forever).
    #[serde(default = "default_initial_fetch_timeout")]
    pub initial_fetch_timeout: Dur,
}

impl Dynamic {
    /// One control plane, a node id, Envoy's default warming limit.
    pub fn new(server: &str, node_id: &str, api: XdsApi) -> Dynamic {
        Dynamic {
            servers: vec![server.to_string()],
            node: Node {
                id: node_id.to_string(),
                ..Default::default()
            },
            api,
            initial_fetch_timeout: default_initial_fetch_timeout(),
        }
    }
}

fn default_initial_fetch_timeout() -> Dur {
    Dur::from_secs(15)
}

/// The node identity sent to the control plane.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// Free-form metadata (Envoy's `node.metadata` Struct).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XdsApi {
    /// `StreamAggregatedResources`: every response carries the whole set.
    #[default]
    Sotw,
    /// `DeltaAggregatedResources`: responses carry changes and removals.
    Delta,
}

/// The admin server and process-wide settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Address of the admin HTTP server (`/ready`, `/stats/prometheus`, ...).
    pub address: String,
    /// How long in-flight requests may take to finish after SIGTERM or
    /// `/quitquitquit` before the process exits.
    pub drain_timeout: Dur,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            address: "127.0.0.1:15000".into(),
            drain_timeout: Dur::from_secs(5),
        }
    }
}

/// A listening socket with one or more filter chains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    /// `ip:port` to bind.
    pub address: String,
    /// Filter chains, tried in order; the first whose `match` fits the
    /// connection serves it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_chains: Vec<FilterChain>,
    /// Shorthand for a single filter chain with an HTTP connection manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConnectionManager>,
    /// Shorthand for a single filter chain with a TCP proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProxy>,
    /// Serve each connection by its original destination (the address
    /// it had before an iptables REDIRECT, `SO_ORIGINAL_DST`), as Envoy's
    /// virtual outbound listener: handed to the listener with
    /// `bind_to_port: false` at that address (or at `0.0.0.0`/`[::]` and
    /// its port), else to this listener's filter chain matching it, else to
    /// `outbound_traffic_policy`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_original_dst: bool,
    /// Off: the address is not bound; the listener serves the connections
    /// a `use_original_dst` listener hands it.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub bind_to_port: bool,
    /// With `use_original_dst`: what becomes of a connection to a
    /// destination nothing here matches (Istio's outboundTrafficPolicy):
    /// `allow_any` (default) passes it through to its original
    /// destination; `registry_only` closes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

/// See [`Listener::outbound_traffic_policy`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundTrafficPolicy {
    #[default]
    AllowAny,
    RegistryOnly,
}

impl Default for Listener {
    /// (Written out: a derived default would not bind the port.)
    fn default() -> Self {
        Listener {
            name: String::new(),
            address: String::new(),
            filter_chains: Vec::new(),
            http: None,
            tcp: None,
            use_original_dst: false,
            bind_to_port: true,
            outbound_traffic_policy: None,
        }
    }
}

impl Listener {
    /// Moves the `http`/`tcp` shorthands into `filter_chains`.
    pub fn normalize(&mut self) {
        if let Some(http) = self.http.take() {
            self.filter_chains.push(FilterChain {
                http: Some(http),
                ..Default::default()
            });
        }
        if let Some(tcp) = self.tcp.take() {
            self.filter_chains.push(FilterChain {
                tcp: Some(tcp),
                ..Default::default()
            });
        }
    }
}

/// One filter chain: a match and exactly one network filter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterChain {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        rename = "match",
        skip_serializing_if = "FilterChainMatch::is_any"
    )]
    pub filter_chain_match: FilterChainMatch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConnectionManager>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProxy>,
}

/// Which connections a filter chain serves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterChainMatch {
    /// The connection's destination port: its original destination's on
    /// a `use_original_dst` listener (and on the listeners it hands
    /// connections to), otherwise the listener's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u16>,
}

impl FilterChainMatch {
    pub fn is_any(&self) -> bool {
        self.destination_port.is_none()
    }
}

/// Opaque TCP proxying to a cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProxy {
    pub cluster: String,
    /// Close the connection after this long without bytes in either direction (0 = never).
    #[serde(default = "default_conn_idle")]
    pub idle_timeout: Dur,
}

/// The HTTP connection manager: codec settings and a route table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConnectionManager {
    /// The route table, inline. Exactly one of `route_config` and `rds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_config: Option<RouteConfiguration>,
    /// The name of a route configuration in `route_configs` (or delivered
    /// by RDS). Requests get 404 until it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rds: Option<String>,
    /// Largest request header block accepted, in KiB (431 past it).
    #[serde(default = "default_max_headers_kb")]
    pub max_request_headers_kb: u32,
    /// Largest number of request headers accepted (431 past it).
    #[serde(default = "default_max_headers_count")]
    pub max_request_headers_count: u32,
    /// Time allowed to receive a request head (0 = no limit). On HTTP/1 the
    /// clock also runs while a keep-alive connection waits for its next
    /// request, so this is also the HTTP/1 keep-alive idle timeout.
    #[serde(default = "default_headers_timeout")]
    pub request_headers_timeout: Dur,
    /// Maximum concurrent streams per downstream HTTP/2 connection.
    #[serde(default = "default_h2_streams")]
    pub http2_max_concurrent_streams: u32,
    /// Generate `x-request-id` when the request has none.
    #[serde(default = "default_true")]
    pub generate_request_id: bool,
    /// Ignore the port in `Host`/`:authority` when choosing a virtual host
    /// (Envoy's `strip_any_host_port`). Off: the host is matched as sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strip_any_host_port: bool,
    /// Append the client's address to `x-forwarded-for` (Envoy's
    /// `use_remote_address` without `skip_xff_append`). Off: the header is
    /// forwarded as received.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub append_x_forwarded_for: bool,
}

fn default_max_headers_kb() -> u32 {
    60
}
fn default_max_headers_count() -> u32 {
    100
}
fn default_conn_idle() -> Dur {
    Dur::from_secs(3600)
}
fn default_headers_timeout() -> Dur {
    Dur::from_secs(60)
}
fn default_h2_streams() -> u32 {
    1024
}
fn default_true() -> bool {
    true
}

impl Default for HttpConnectionManager {
    fn default() -> Self {
        HttpConnectionManager {
            route_config: Some(RouteConfiguration::default()),
            rds: None,
            max_request_headers_kb: default_max_headers_kb(),
            max_request_headers_count: default_max_headers_count(),
            request_headers_timeout: default_headers_timeout(),
            http2_max_concurrent_streams: default_h2_streams(),
            generate_request_id: true,
            strip_any_host_port: false,
            append_x_forwarded_for: true,
        }
    }
}

/// A route table: virtual hosts chosen by `Host`/`:authority`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfiguration {
    #[serde(default)]
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualHost {
    pub name: String,
    /// `example.com`, `example.com:8080`, `*.example.com`, `example.*` or `*`.
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "HeaderMutation::is_empty")]
    pub request_headers: HeaderMutation,
    #[serde(default, skip_serializing_if = "HeaderMutation::is_empty")]
    pub response_headers: HeaderMutation,
    /// One token bucket shared by the routes that have no limit of their
    /// own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<LocalRateLimit>,
    /// The retry policy of routes that have none of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Send `x-envoy-attempt-count` (1 for the first try) upstream (Envoy's
    /// `include_request_attempt_count`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_attempt_count: bool,
}

/// Local rate limiting (Envoy's local_ratelimit filter): a token bucket
/// that starts full and gets `tokens_per_fill` tokens (up to `max_tokens`)
/// every `fill_interval`; each request takes one, and a request that finds
/// none is answered `status` (flag `RL`). The bucket is shared by every
/// connection and worker, and starts over when the route configuration
/// changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRateLimit {
    pub max_tokens: u32,
    #[serde(default = "default_tokens_per_fill")]
    pub tokens_per_fill: u32,
    pub fill_interval: Dur,
    /// The status of limited requests (400-599).
    #[serde(default = "default_rate_limited_status")]
    pub status: u16,
    /// Share of requests the limit is worked out for (the others pass
    /// without taking a token).
    #[serde(default = "Percent::hundred")]
    pub enabled: Percent,
    /// Share of limited requests that are refused; the others pass with
    /// `request_headers_when_not_enforced` added.
    #[serde(default = "Percent::hundred")]
    pub enforced: Percent,
    /// `x-ratelimit-limit`, `-remaining` and `-reset` on responses
    /// (draft 03 of the RateLimit header fields, as Envoy writes them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub x_ratelimit_headers: bool,
    /// Added to the responses of refused requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<HeaderValueOption>,
    /// Added to limited requests that are let through (not enforced).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers_when_not_enforced: Vec<HeaderValueOption>,
}

fn default_tokens_per_fill() -> u32 {
    1
}

fn default_rate_limited_status() -> u16 {
    429
}

/// Headers to add (or set) and remove.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMutation {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HeaderValueOption>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderMutation {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValueOption {
    pub name: String,
    pub value: String,
    /// `true`: add another value; `false` (default): replace existing values.
    #[serde(default)]
    pub append: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub route_match: RouteMatch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<RedirectAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,
    #[serde(default, skip_serializing_if = "HeaderMutation::is_empty")]
    pub request_headers: HeaderMutation,
    #[serde(default, skip_serializing_if = "HeaderMutation::is_empty")]
    pub response_headers: HeaderMutation,
    /// Delays and aborts injected before the request is routed (Envoy's
    /// HTTP fault filter, configured per route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultInjection>,
    /// This route's own token bucket (else its virtual host's, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<LocalRateLimit>,
}

/// Fault injection: a percentage of requests is delayed, a percentage
/// aborted (a delayed request may then be aborted too), as Envoy's fault
/// filter does. Injected delays are flagged `DI`, aborts `FI`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultInjection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
    /// At most this many requests under an injected fault at once (none:
    /// no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_faults: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultDelay {
    /// How long. Exactly one of `fixed` and `from_header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<Dur>,
    /// The delay is the request's `x-envoy-fault-delay-request`
    /// (milliseconds); requests without it are not delayed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_header: bool,
    /// Of the requests the route matches. With `from_header`, a request's
    /// `x-envoy-fault-delay-request-percentage` may lower it.
    pub percent: Percent,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultAbort {
    /// The HTTP status to answer. Exactly one of `http_status`,
    /// `grpc_status` and `from_header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Answer as gRPC does: HTTP 200 with this `grpc-status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    /// The status is the request's `x-envoy-fault-abort-request` (HTTP) or
    /// `x-envoy-fault-abort-grpc-request` (gRPC); requests without either
    /// are not aborted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_header: bool,
    /// Of the requests the route matches. With `from_header`, a request's
    /// `x-envoy-fault-abort-request-percentage` may lower it.
    pub percent: Percent,
    /// The body of the abort response (default `fault filter abort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// A percentage as Envoy keeps it: a numerator over 100, 10,000 or
/// 1,000,000. Written as a number of percent (`10`, `0.5`, `0.0001`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percent {
    pub numerator: u32,
    pub denominator: u32,
}

impl Default for Percent {
    fn default() -> Self {
        Percent {
            numerator: 0,
            denominator: 100,
        }
    }
}

impl Percent {
    pub fn hundred() -> Percent {
        Percent {
            numerator: 100,
            denominator: 100,
        }
    }

    pub const DENOMINATORS: [u32; 3] = [100, 10_000, 1_000_000];

    /// The share of requests, in millionths.
    pub fn per_million(&self) -> u64 {
        u64::from(self.numerator) * 1_000_000 / u64::from(self.denominator.max(1))
    }

    /// `value` percent, with the smallest denominator that holds it exactly
    /// (to a millionth); `None` outside 0..=100.
    pub fn from_percent(value: f64) -> Option<Percent> {
        if !(0.0..=100.0).contains(&value) {
            return None;
        }
        for d in Percent::DENOMINATORS {
            let n = value * f64::from(d) / 100.0;
            if (n - n.round()).abs() < 1e-6 {
                return Some(Percent {
                    numerator: n.round() as u32,
                    denominator: d,
                });
            }
        }
        Some(Percent {
            numerator: (value * 10_000.0).round() as u32,
            denominator: 1_000_000,
        })
    }

    pub fn as_percent(&self) -> f64 {
        f64::from(self.numerator) * 100.0 / f64::from(self.denominator.max(1))
    }
}

impl Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_percent())
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Percent::from_percent(v).ok_or_else(|| {
            serde::de::Error::custom(format!("invalid percentage {v}: must be between 0 and 100"))
        })
    }
}

/// What a route matches. Exactly one of `prefix`, `path`, `regex`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A regular expression that must match the whole path (query excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub case_sensitive: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatcher>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_parameters: Vec<QueryParameterMatcher>,
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Matches one request header. Exactly one of `exact`, `prefix`, `regex`, `present`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatcher {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// Inverts the result.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invert: bool,
}

/// Matches one query parameter. Exactly one of `exact`, `regex`, `present`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParameterMatcher {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// Forward to a cluster (or a weighted set of clusters).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weighted_clusters: Vec<ClusterWeight>,
    /// Replaces the matched prefix (with `prefix` matches) of the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex_rewrite: Option<RegexRewrite>,
    /// Replaces the `Host`/`:authority` sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_rewrite: Option<String>,
    /// Whole-request timeout, 0 disables (Envoy's default 15 s).
    #[serde(default = "default_route_timeout")]
    pub timeout: Dur,
    /// Hash inputs for `ring_hash` clusters; the first that yields a value wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hash_policy: Vec<HashPolicy>,
    /// Retries (else the virtual host's policy, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Which circuit-breaker thresholds the request counts against.
    #[serde(default, skip_serializing_if = "is_default_priority")]
    pub priority: RoutingPriority,
}

/// When and how a failed request is tried again (Envoy's retry policy).
/// The route timeout covers every try. Only requests without a body, or
/// with a `content-length` body of at most 64 KiB, are retried; others are
/// sent once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Envoy's conditions: `5xx`, `gateway-error`, `reset`,
    /// `connect-failure`, `retriable-4xx`, `refused-stream`,
    /// `retriable-status-codes`, and for gRPC (by `grpc-status` in the
    /// response headers) `cancelled`, `deadline-exceeded`, `internal`,
    /// `resource-exhausted`, `unavailable`.
    pub retry_on: Vec<RetryOn>,
    #[serde(default = "default_num_retries")]
    pub num_retries: u32,
    /// Time allowed for each try (none: only the route timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Dur>,
    /// For `retriable-status-codes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retriable_status_codes: Vec<u16>,
    /// Full-jitter exponential back-off: the n-th retry waits a random
    /// time up to `base × (2^n − 1)`, at most `max` (default 10 × base).
    #[serde(default = "default_backoff_base")]
    pub backoff_base: Dur,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_max: Option<Dur>,
    /// A retry avoids the endpoints already tried (Envoy's
    /// `previous_hosts` predicate).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_previous_hosts: bool,
}

fn is_default_priority(p: &RoutingPriority) -> bool {
    *p == RoutingPriority::Default
}

fn default_num_retries() -> u32 {
    1
}

fn default_backoff_base() -> Dur {
    Dur::from_millis(25)
}

/// A retry condition, by Envoy's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RetryOn {
    #[serde(rename = "5xx")]
    FiveXx,
    #[serde(rename = "gateway-error")]
    GatewayError,
    #[serde(rename = "reset")]
    Reset,
    #[serde(rename = "connect-failure")]
    ConnectFailure,
    #[serde(rename = "retriable-4xx")]
    Retriable4xx,
    #[serde(rename = "refused-stream")]
    RefusedStream,
    #[serde(rename = "retriable-status-codes")]
    RetriableStatusCodes,
    #[serde(rename = "cancelled")]
    Cancelled,
    #[serde(rename = "deadline-exceeded")]
    DeadlineExceeded,
    #[serde(rename = "internal")]
    Internal,
    #[serde(rename = "resource-exhausted")]
    ResourceExhausted,
    #[serde(rename = "unavailable")]
    Unavailable,
}

impl RetryOn {
    pub const ALL: [RetryOn; 12] = [
        RetryOn::FiveXx,
        RetryOn::GatewayError,
        RetryOn::Reset,
        RetryOn::ConnectFailure,
        RetryOn::Retriable4xx,
        RetryOn::RefusedStream,
        RetryOn::RetriableStatusCodes,
        RetryOn::Cancelled,
        RetryOn::DeadlineExceeded,
        RetryOn::Internal,
        RetryOn::ResourceExhausted,
        RetryOn::Unavailable,
    ];

    /// Envoy's name.
    pub fn name(self) -> &'static str {
        match self {
            RetryOn::FiveXx => "5xx",
            RetryOn::GatewayError => "gateway-error",
            RetryOn::Reset => "reset",
            RetryOn::ConnectFailure => "connect-failure",
            RetryOn::Retriable4xx => "retriable-4xx",
            RetryOn::RefusedStream => "refused-stream",
            RetryOn::RetriableStatusCodes => "retriable-status-codes",
            RetryOn::Cancelled => "cancelled",
            RetryOn::DeadlineExceeded => "deadline-exceeded",
            RetryOn::Internal => "internal",
            RetryOn::ResourceExhausted => "resource-exhausted",
            RetryOn::Unavailable => "unavailable",
        }
    }

    pub fn from_name(name: &str) -> Option<RetryOn> {
        RetryOn::ALL.into_iter().find(|r| r.name() == name)
    }
}

fn default_route_timeout() -> Dur {
    Dur::from_secs(15)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterWeight {
    pub name: String,
    pub weight: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexRewrite {
    pub pattern: String,
    /// Substitution; `\1` (Envoy/RE2 style) or `$1` refer to capture groups.
    pub substitution: String,
}

/// One input for consistent hashing. Exactly one of the fields is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashPolicy {
    /// Hash the value of this request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Hash the value of this cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// Hash the downstream source IP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub source_ip: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    /// 301 (default), 302, 303, 307 or 308.
    #[serde(default = "default_redirect_code")]
    pub response_code: u16,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strip_query: bool,
}

fn default_redirect_code() -> u16 {
    301
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectResponse {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// An upstream cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    #[serde(default, rename = "type")]
    pub discovery: DiscoveryType,
    /// `eds` clusters: the name their endpoints are published under
    /// (Envoy's `eds_cluster_config.service_name`; default the cluster's
    /// name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eds_service_name: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub lb_policy: LbPolicy,
    /// Protocol spoken to the endpoints.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Close pooled upstream connections idle for this long.
    #[serde(default = "default_conn_idle")]
    pub idle_timeout: Dur,
    /// Re-resolution interval for `strict_dns` clusters.
    #[serde(default = "default_dns_refresh")]
    pub dns_refresh_rate: Dur,
    /// Maximum concurrent streams on each upstream HTTP/2 connection.
    #[serde(default = "default_h2_upstream_streams")]
    pub http2_max_concurrent_streams: u32,
    /// Idle HTTP/1 connections kept per endpoint.
    #[serde(default = "default_max_idle")]
    pub max_idle_connections_per_endpoint: u32,
    /// Ring size for `ring_hash` (Envoy's default minimum 1024).
    #[serde(default = "default_ring_size")]
    pub ring_size: u32,
    /// Limits on connections, pending requests, requests and retries.
    #[serde(default, skip_serializing_if = "CircuitBreakers::is_default")]
    pub circuit_breakers: CircuitBreakers,
    /// Ejection of endpoints that keep failing (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// Below this percentage of healthy endpoints (in the priority
    /// serving), the load balancer uses all of them, healthy or not, as
    /// Envoy's panic mode does; 0 turns it off.
    #[serde(default = "default_panic_threshold")]
    pub healthy_panic_threshold: f64,
    /// Active health checks (none: every endpoint is taken as passing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheck>,
}

fn default_connect_timeout() -> Dur {
    Dur::from_secs(5)
}
fn default_dns_refresh() -> Dur {
    Dur::from_secs(5)
}
fn default_h2_upstream_streams() -> u32 {
    100
}
fn default_max_idle() -> u32 {
    64
}
fn default_ring_size() -> u32 {
    1024
}
fn default_panic_threshold() -> f64 {
    50.0
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            name: String::new(),
            discovery: DiscoveryType::Static,
            eds_service_name: None,
            endpoints: Vec::new(),
            lb_policy: LbPolicy::RoundRobin,
            protocol: UpstreamProtocol::Http1,
            connect_timeout: default_connect_timeout(),
            idle_timeout: default_conn_idle(),
            dns_refresh_rate: default_dns_refresh(),
            http2_max_concurrent_streams: default_h2_upstream_streams(),
            max_idle_connections_per_endpoint: default_max_idle(),
            ring_size: default_ring_size(),
            circuit_breakers: CircuitBreakers::default(),
            outlier_detection: None,
            healthy_panic_threshold: default_panic_threshold(),
            health_checks: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryType {
    /// Endpoints are `ip:port` literals.
    #[default]
    Static,
    /// Endpoints are `host:port`; every address each name resolves to is an
    /// endpoint, re-resolved every `dns_refresh_rate`.
    StrictDns,
    /// Endpoints are `ip:port` literals delivered by EDS (a control plane's
    /// `ClusterLoadAssignment`); needs `dynamic`.
    Eds,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    /// Power of two choices on active requests.
    LeastRequest,
    Random,
    /// Consistent hashing on the route's `hash_policy`.
    RingHash,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive (Envoy's default).
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge.
    Http2,
    /// Whatever the downstream request used.
    UseDownstream,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `ip:port` (static) or `host:port` (strict_dns).
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Traffic goes to the lowest priority that has an available endpoint.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: u32,
    /// As reported by EDS: `unhealthy`, `draining` and `timeout` endpoints
    /// get no new requests.
    #[serde(default, skip_serializing_if = "HealthStatus::is_unknown")]
    pub health_status: HealthStatus,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint {
            address: String::new(),
            weight: default_weight(),
            priority: 0,
            health_status: HealthStatus::Unknown,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Envoy's `core.v3.HealthStatus`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    #[default]
    Unknown,
    Healthy,
    Unhealthy,
    Draining,
    Timeout,
    Degraded,
}

impl HealthStatus {
    pub fn is_unknown(&self) -> bool {
        *self == HealthStatus::Unknown
    }

    /// Whether new requests may go to an endpoint in this state.
    pub fn is_available(&self) -> bool {
        matches!(
            self,
            HealthStatus::Unknown | HealthStatus::Healthy | HealthStatus::Degraded
        )
    }
}

fn default_weight() -> u32 {
    1
}
